//! current_process, parent_process, active_children, names, contexts.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::time::Duration;

use common::{start, watchdog};
use mproc_process::{
    Pid, Process, ProcessInfo, StartMethod, active_children, all_start_methods, current_process,
    get_context, parent_process,
};

fn who(_: ()) -> (String, bool, Option<(i32, String)>, i32) {
    let me = current_process();
    let parent = parent_process().map(|p| (p.pid().as_raw(), p.name().to_owned()));
    (me.name().to_owned(), me.daemon(), parent, me.pid().as_raw())
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

#[test]
fn children_know_who_they_and_their_parents_are() {
    watchdog(60, || {
        let main = current_process();
        assert_eq!(main.name(), "MainProcess");
        assert!(parent_process().is_none());
        for m in all_start_methods()
            .into_iter()
            .filter(|&m| m != StartMethod::Fork)
        {
            let mut h = get_context(m).process(who, ()).start().unwrap();
            let (name, daemon, parent, pid) = h.join().unwrap();
            assert_eq!(name, h.name());
            assert!(name.starts_with("Process-"), "{name}");
            assert!(!daemon);
            assert_eq!(
                parent,
                Some((std::process::id() as i32, "MainProcess".to_owned()))
            );
            assert_eq!(pid, h.pid().as_raw());
            let mut named = Process::new(who, ())
                .name("worker")
                .daemon(true)
                .start_method(m)
                .start()
                .unwrap();
            let (name, daemon, _, _) = named.join().unwrap();
            assert_eq!((name.as_str(), daemon), ("worker", true));
        }
    });
}

/// Waits up to 10 s for `pids` to leave `active_children()`; fails with
/// `what` if they do not.
fn wait_unlisted(pids: &[Pid], what: &str) {
    let t0 = std::time::Instant::now();
    while active_children().iter().any(|c| pids.contains(&c.pid())) {
        assert!(t0.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn active_children_lists_running_children_and_reaps_finished_ones() {
    watchdog(60, || {
        let a = Process::new(nap, 10_000)
            .kill_on_drop(true)
            .name("sleeper-a")
            .start()
            .unwrap();
        let b = Process::new(nap, 10_000)
            .kill_on_drop(true)
            .name("sleeper-b")
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap();
        let live: Vec<ProcessInfo> = active_children();
        for h in [&a, &b] {
            assert!(
                live.iter()
                    .any(|c| c.pid() == h.pid() && c.name() == h.name()),
                "{live:?}"
            );
            assert!(live.iter().find(|c| c.pid() == h.pid()).unwrap().is_alive());
        }
        a.kill().unwrap();
        b.kill().unwrap();
        let (pa, pb) = (a.pid(), b.pid());
        drop((a, b));
        wait_unlisted(&[pa, pb], "killed children still listed");
    });
}

#[test]
fn start_methods_parse_like_python_names() {
    assert_eq!(
        "forkserver".parse::<StartMethod>().unwrap(),
        StartMethod::ForkServer
    );
    assert_eq!("spawn".parse::<StartMethod>().unwrap(), StartMethod::Spawn);
    assert_eq!("fork".parse::<StartMethod>().unwrap(), StartMethod::Fork);
    let e = "nope".parse::<StartMethod>().unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot find context for 'nope' (expected forkserver, spawn or fork)"
    );
    assert_eq!(StartMethod::default(), StartMethod::ForkServer);
    assert_eq!(
        get_context(StartMethod::Spawn).start_method(),
        StartMethod::Spawn
    );
    assert_eq!(all_start_methods()[0], StartMethod::ForkServer);
}

#[test]
fn kill_on_drop_kills() {
    watchdog(60, || {
        let h = Process::new(nap, 30_000)
            .kill_on_drop(true)
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap();
        let pid = h.pid();
        drop(h);
        wait_unlisted(&[pid], "kill_on_drop child still running");
    });
}

#[test]
fn sentinels_become_readable_when_children_end() {
    use std::os::fd::AsRawFd;
    watchdog(60, || {
        for m in [StartMethod::ForkServer, StartMethod::Spawn] {
            let slow = Process::new(nap, 30_000)
                .kill_on_drop(true)
                .start_method(m)
                .start()
                .unwrap();
            let mut quick = Process::new(nap, 50).start_method(m).start().unwrap();
            let mut fds = [
                libc::pollfd {
                    fd: slow.sentinel().unwrap().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: quick.sentinel().unwrap().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: `fds` is a valid array of two pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 10_000) };
            assert_eq!(n, 1, "{m}: exactly the quick child ended");
            assert_eq!(fds[0].revents, 0, "{m}");
            assert_ne!(fds[1].revents & libc::POLLIN, 0, "{m}");
            quick.try_join().unwrap();
            assert!(slow.is_alive());
        }
    });
}

fn key_and_method(_: ()) -> (Vec<u8>, Option<StartMethod>) {
    let me = current_process();
    (
        me.authkey().expect("own key").as_bytes().to_vec(),
        me.start_method(),
    )
}

/// In a child: its key, and what its own children (under every start
/// method) report, after `set_authkey` if `new` is given.
fn keys_below(new: Option<Vec<u8>>) -> Result<Vec<u8>, String> {
    if let Some(k) = new {
        mproc_process::set_authkey(mproc_process::AuthKey::new(k));
    }
    let mine = current_process().authkey().unwrap().as_bytes().to_vec();
    for m in all_start_methods() {
        let mut h = start(Process::new(key_and_method, ()), m)?;
        let (key, method) = h.join().map_err(|e| e.to_string())?;
        if key != mine || method != Some(m) {
            return Err(format!("{m}: key {} method {method:?}", key == mine));
        }
    }
    Ok(mine)
}

#[test]
fn children_inherit_the_authkey_and_know_their_start_method() {
    watchdog(60, || {
        let main = current_process();
        assert_eq!(main.start_method(), None);
        let key = main.authkey().expect("the main process has a key");
        assert_eq!(key.as_bytes().len(), 32);
        assert_ne!(key.as_bytes(), [0u8; 32]);
        assert_eq!(
            format!("{key:?}"),
            "AuthKey(<32 secret bytes>)",
            "Debug hides the key"
        );
        // Every start method hands the key down, over two generations
        // (fork runs in a spawned, single-threaded child).
        let mut h = Process::new(keys_below, None)
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap();
        assert_eq!(h.join().unwrap(), Ok(key.as_bytes().to_vec()));
        for m in [StartMethod::ForkServer, StartMethod::Spawn] {
            let mut h = Process::new(key_and_method, ())
                .start_method(m)
                .start()
                .unwrap();
            assert_eq!(h.join().unwrap(), (key.as_bytes().to_vec(), Some(m)));
        }
        // A key set in a child is what its own children inherit.
        let mut h = Process::new(keys_below, Some(b"set in the child".to_vec()))
            .start_method(StartMethod::ForkServer)
            .start()
            .unwrap();
        assert_eq!(h.join().unwrap(), Ok(b"set in the child".to_vec()));
        assert_eq!(
            current_process().authkey().unwrap(),
            key,
            "ours is unchanged"
        );
        // A running child's description carries the key it was started with.
        let h = Process::new(nap, 10_000)
            .kill_on_drop(true)
            .start()
            .unwrap();
        let info = active_children()
            .into_iter()
            .find(|c| c.pid() == h.pid())
            .unwrap();
        assert_eq!(info.authkey(), Some(key));
        assert_eq!(info.start_method(), Some(StartMethod::ForkServer));
        assert!(parent_process().is_none());
    });
}

/// Shared flags of the parent-death test: the grandchild's pid, whether it
/// saw its parent alive at first, and whether (and how) it saw it die.
type Flags = (
    mproc_shm::SharedAtomicU64,
    mproc_shm::SharedAtomicU64,
    mproc_shm::SharedAtomicU64,
);

/// The grandchild: watches its parent until it dies (at most 60 s).
fn watch_parent(flags: Flags) {
    use std::sync::atomic::Ordering::SeqCst;
    let (_, alive_at_first, saw_death) = flags;
    let parent = parent_process().expect("a parent");
    alive_at_first.store(1 + u64::from(parent.is_alive()), SeqCst);
    // The parent is killed while we wait; join_timeout returns then.
    let ended = parent.join_timeout(Duration::from_secs(60));
    // 2: join_timeout said ended and is_alive agrees.
    saw_death.store(1 + u64::from(ended && !parent.is_alive()), SeqCst);
}

/// The middle process: starts the watcher with `method`, publishes its pid
/// (and its fork server's) and waits to be killed.
fn middle(args: (String, Flags, mproc_shm::SharedAtomicU64)) {
    use std::sync::atomic::Ordering::SeqCst;
    let (m, flags, server) = args;
    let gc_pid = flags.0.try_clone().unwrap();
    let h = Process::new(watch_parent, flags)
        .start_method(m.parse().unwrap())
        .start()
        .expect("grandchild");
    let server_pid = mproc_process::__private::fork_server_pid().unwrap_or(0);
    server.store(server_pid as u64, SeqCst);
    gc_pid.store(h.pid().as_raw() as u64, SeqCst);
    std::mem::forget(h);
    loop {
        nap(60_000);
    }
}

#[test]
fn a_grandchild_sees_its_killed_parent_dead_even_as_a_zombie() {
    use std::sync::atomic::Ordering::SeqCst;
    common::become_subreaper();
    watchdog(120, || {
        for m in ["forkserver", "spawn", "fork"] {
            let flags: Flags = (
                mproc_shm::SharedAtomicU64::new(0).unwrap(),
                mproc_shm::SharedAtomicU64::new(0).unwrap(),
                mproc_shm::SharedAtomicU64::new(0).unwrap(),
            );
            let mine = (
                flags.0.try_clone().unwrap(),
                flags.1.try_clone().unwrap(),
                flags.2.try_clone().unwrap(),
            );
            let server = mproc_shm::SharedAtomicU64::new(0).unwrap();
            let args = (m.to_owned(), flags, server.try_clone().unwrap());
            let mut mid = Process::new(middle, args)
                .start_method(StartMethod::Spawn)
                .kill_on_drop(true)
                .start()
                .unwrap();
            let t0 = std::time::Instant::now();
            while mine.0.load(SeqCst) == 0 || mine.1.load(SeqCst) == 0 {
                assert!(t0.elapsed() < Duration::from_secs(20), "{m}: no grandchild");
                nap(5);
            }
            let gc = mine.0.load(SeqCst) as i32;
            assert_eq!(mine.1.load(SeqCst), 2, "{m}: the live parent looked dead");
            mid.kill().unwrap();
            // The middle stays a zombie (unreaped) until the watcher saw it
            // die: signal 0 would still reach it.
            let t0 = std::time::Instant::now();
            while mine.2.load(SeqCst) == 0 {
                assert!(
                    t0.elapsed() < Duration::from_secs(20),
                    "{m}: the grandchild still sees its killed parent alive"
                );
                nap(5);
            }
            assert_eq!(
                mine.2.load(SeqCst),
                2,
                "{m}: join_timeout and is_alive disagree"
            );
            assert!(mid.join().is_err());
            // The watcher exits by itself; it is reaped by the middle's fork
            // server, or by us once the parents it had are gone.
            assert!(common::reap_or_gone(gc), "{m}: the grandchild lives on");
            let server = server.load(SeqCst) as i32;
            if server > 0 {
                assert!(
                    common::reap(server).is_some(),
                    "{m}: the orphaned fork server"
                );
            }
        }
    });
}
