//! Daemons die with their parent, even a SIGKILLed one; others survive.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{reap, watchdog};
use mproc_process::{ExitStatus, JoinError, Process, StartMethod};
use mproc_shm::SharedAtomicU64;

fn sleep_forever(_: ()) {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// The intermediate parent: starts a daemon and a non-daemon child with
/// `method`, publishes their pids (and its fork server's), then waits to be
/// killed.
fn middle(args: (String, SharedAtomicU64, SharedAtomicU64, SharedAtomicU64)) {
    let (m, daemon_pid, plain_pid, server_pid) = args;
    let m: StartMethod = m.parse().expect("method");
    let d = Process::new(sleep_forever, ())
        .daemon(true)
        .start_method(m)
        .start()
        .expect("daemon");
    let p = Process::new(sleep_forever, ())
        .daemon(false)
        .start_method(m)
        .start()
        .expect("plain");
    server_pid.store(
        mproc_process::__private::fork_server_pid().unwrap_or(0) as u64,
        Ordering::SeqCst,
    );
    plain_pid.store(p.pid().as_raw() as u64, Ordering::SeqCst);
    daemon_pid.store(d.pid().as_raw() as u64, Ordering::SeqCst);
    sleep_forever(())
}

fn pidfd(pid: i32) -> i32 {
    // SAFETY: pidfd_open takes a pid and flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    fd
}

/// Whether the process behind `fd` exits within `t`.
fn exits_within(fd: i32, t: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, t.as_millis() as i32) };
    n == 1
}

/// Kills and reaps the listed orphans if the test fails half-way, so that no
/// process outlives it (and holds the test runner's output pipe open).
struct Cleanup(Vec<i32>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: kill takes plain integers; these are our own (orphaned) descendants.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = reap(pid);
        }
    }
}

fn dies_with_parent(method: &str) {
    let atoms: Vec<SharedAtomicU64> = (0..3)
        .map(|_| SharedAtomicU64::new(0).expect("atomic"))
        .collect();
    let args = (
        method.to_owned(),
        atoms[0].try_clone().unwrap(),
        atoms[1].try_clone().unwrap(),
        atoms[2].try_clone().unwrap(),
    );
    let mut mid = Process::new(middle, args)
        .start_method(StartMethod::Spawn)
        .kill_on_drop(true)
        .start()
        .expect("start middle");
    let t0 = Instant::now();
    while atoms[0].load(Ordering::SeqCst) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "{method}: middle never reported"
        );
        if !mid.is_alive() {
            panic!("{method}: middle died: {:?}", mid.join());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let daemon = atoms[0].load(Ordering::SeqCst) as i32;
    let plain = atoms[1].load(Ordering::SeqCst) as i32;
    let server = atoms[2].load(Ordering::SeqCst) as i32;
    let mut cleanup = Cleanup(
        vec![daemon, plain, server]
            .into_iter()
            .filter(|&p| p > 0)
            .collect(),
    );
    let (dfd, pfd) = (pidfd(daemon), pidfd(plain));

    mid.kill().expect("kill middle");
    match mid.join() {
        Err(JoinError::Failed(ExitStatus::Signaled(9))) => {}
        other => panic!("{method}: middle joined as {other:?}"),
    }
    assert!(
        exits_within(dfd, Duration::from_secs(1)),
        "{method}: daemon {daemon} outlived its parent by 1 s"
    );
    assert!(
        !exits_within(pfd, Duration::from_millis(500)),
        "{method}: non-daemon {plain} died with its parent"
    );

    // Clean up: the orphans were re-parented to this process (a subreaper).
    let st = reap(daemon).expect("reap daemon");
    assert!(
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL,
        "{method}: daemon status {st:#x}"
    );
    // SAFETY: kill takes plain integers; `plain` is our re-parented orphan.
    unsafe { libc::kill(plain, libc::SIGKILL) };
    assert!(
        reap(plain).is_some(),
        "{method}: could not reap the non-daemon"
    );
    if server > 0 {
        assert!(
            reap(server).is_some(),
            "{method}: the orphaned fork server did not exit"
        );
    }
    cleanup.0.clear();
    // SAFETY: closing the two pidfds opened above.
    unsafe {
        libc::close(dfd);
        libc::close(pfd);
    }
}

#[test]
fn a_daemon_dies_within_1s_of_its_parent_sigkill_and_a_non_daemon_survives() {
    common::become_subreaper();
    watchdog(120, || {
        for m in ["forkserver", "spawn", "fork"] {
            dies_with_parent(m);
        }
    });
}

fn square(x: u64) -> u64 {
    x * x
}

fn nested(m: String) -> (bool, u64, String) {
    let me = mproc_process::current_process();
    let mut h = Process::new(square, 9)
        .start_method(m.parse().unwrap())
        .start()
        .expect("grandchild");
    let v = h.join().expect("grandchild join");
    (me.daemon(), v, h.name().to_owned())
}

#[test]
fn daemons_may_have_children() {
    watchdog(60, || {
        for m in ["forkserver", "spawn", "fork"] {
            let mut h = Process::new(nested, m.to_owned())
                .daemon(true)
                .start_method(StartMethod::Spawn)
                .start()
                .unwrap();
            let (daemon, v, name) = h.join().unwrap_or_else(|e| panic!("{m}: {e}"));
            assert!(daemon);
            assert_eq!(v, 81);
            assert_eq!(name, format!("{}:1", h.name()));
        }
    });
}

#[test]
fn a_dead_fork_server_is_restarted_and_its_children_report_lost() {
    common::become_subreaper();
    watchdog(60, || {
        let _ = Process::new(square, 1).start().unwrap().join().unwrap();
        let mut orphan = Process::new(sleep_forever, ())
            .daemon(false)
            .start()
            .unwrap();
        let opid = orphan.pid().as_raw();
        let server = mproc_process::__private::fork_server_pid().expect("server runs");
        // SAFETY: kill takes plain integers; the server is our child.
        assert_eq!(unsafe { libc::kill(server, libc::SIGKILL) }, 0);
        match orphan.join_timeout(Duration::from_secs(10)) {
            Err(mproc_process::JoinTimeoutError::Join(JoinError::Lost)) => {}
            other => panic!("a child of a dead server joined as {other:?}"),
        }
        assert_eq!(
            orphan.exitcode(),
            Some(255),
            "CPython's code for an unknown status"
        );
        // The pidfd still reaches the orphan (re-parented to us, a subreaper).
        orphan.kill().unwrap();
        let st = reap(opid).expect("reap the orphan");
        assert!(libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL);
        // The next start restarts the server.
        assert_eq!(
            Process::new(square, 12).start().unwrap().join().unwrap(),
            144
        );
        let new_server = mproc_process::__private::fork_server_pid().expect("server runs");
        assert_ne!(new_server, server);
    });
}

/// The intermediate parent of the next test: starts a daemon with `method`,
/// publishes its pid, and kills itself at once, most likely before the
/// daemon has even set up its parent-death signal.
fn middle_dies_at_once(args: (String, SharedAtomicU64)) {
    let (m, daemon_pid) = args;
    let d = Process::new(sleep_forever, ())
        .daemon(true)
        .start_method(m.parse().expect("method"))
        .start()
        .expect("daemon");
    daemon_pid.store(d.pid().as_raw() as u64, Ordering::SeqCst);
    // SAFETY: kill takes plain integers; this process kills itself.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    sleep_forever(())
}

#[test]
fn a_daemon_whose_parent_dies_before_it_runs_is_killed_by_sigkill_too() {
    common::become_subreaper();
    watchdog(120, || {
        for m in ["spawn", "fork", "forkserver"] {
            for _ in 0..3 {
                let pid = SharedAtomicU64::new(0).expect("atomic");
                let mut mid = Process::new(
                    middle_dies_at_once,
                    (m.to_owned(), pid.try_clone().unwrap()),
                )
                .start_method(StartMethod::Spawn)
                .start()
                .expect("start middle");
                match mid.join() {
                    Err(JoinError::Failed(ExitStatus::Signaled(9))) => {}
                    other => panic!("{m}: middle joined as {other:?}"),
                }
                let daemon = pid.load(Ordering::SeqCst) as i32;
                assert!(daemon > 0, "{m}: the middle never published its daemon");
                let cleanup = Cleanup(vec![daemon]);
                // Whichever way it learns that its parent died, a daemon
                // dies the same way: by SIGKILL.
                let st = reap(daemon).expect("the daemon outlived its parent by 5 s");
                std::mem::forget(cleanup);
                assert!(
                    libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL,
                    "{m}: daemon status {st:#x} (exit code {})",
                    libc::WEXITSTATUS(st)
                );
            }
        }
    });
}
