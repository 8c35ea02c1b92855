//! current_process, parent_process, active_children, names, contexts.

mod common;

use std::time::Duration;

use common::watchdog;
use mproc_process::{
    Process, ProcessInfo, StartMethod, active_children, all_start_methods, current_process,
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
        let t0 = std::time::Instant::now();
        while active_children()
            .iter()
            .any(|c| c.pid() == pa || c.pid() == pb)
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "killed children still listed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
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
        let t0 = std::time::Instant::now();
        while active_children().iter().any(|c| c.pid() == pid) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "kill_on_drop child still running"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
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
