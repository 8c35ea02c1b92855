//! Workers that cannot be started while work is already queued for them
//! (build returns before the workers exist; work sent meanwhile waits in
//! their sockets). One test only: it stops and kills this binary's fork
//! server and limits its descriptors, which tests running alongside would
//! feel.

mod common;

use std::time::Duration;

use common::{alive, watchdog};
use mproc_pool::{GetTimeoutError, Pool, TaskError};

fn square(x: u64) -> u64 {
    x * x
}

fn noop(_: ()) {}

/// This process's fork server (started if need be).
fn fork_server() -> i32 {
    mproc_process::Process::new(noop, ())
        .start()
        .expect("start")
        .join()
        .expect("join");
    mproc_process::__private::fork_server_pid().expect("a fork server runs")
}

fn signal(pid: i32, sig: libc::c_int) {
    // SAFETY: plain kill(2) on a pid of ours.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

/// Kills `pid` (a stopped fork server) after 50 ms, from another thread.
fn kill_later(pid: i32) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        signal(pid, libc::SIGKILL);
    })
}

/// Lowers the descriptor limit to 3 (below every descriptor open but the
/// standard ones) and takes any free number below it, so that creating a
/// descriptor fails, whichever are closed meanwhile; returns the old limit
/// and the numbers taken (restore the one, close the others to undo it).
fn exhaust_descriptors() -> (libc::rlimit, Vec<std::fs::File>) {
    let limit = 3;
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid rlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: old.rlim_max,
    };
    // SAFETY: `new` is a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) }, 0);
    let mut held = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        held.push(f);
        assert!(held.len() <= limit as usize, "the limit does not hold");
    }
    (old, held)
}

#[test]
fn workers_that_cannot_start_hand_their_work_on() {
    watchdog(120, || {
        // 1. The fork server dies after the requests were sent and work
        // was queued for the workers it never created: replacements (from
        // a new fork server) run that work.
        let server = fork_server();
        signal(server, libc::SIGSTOP);
        let pool = Pool::new(2).expect("build returns before the workers exist");
        // The first operation sends its work, then waits for the workers
        // to exist: the server is killed meanwhile.
        let killer = kill_later(server);
        let r = pool.map_async(square, 0..1000u64).expect("map_async");
        killer.join().unwrap();
        let v = r.get().expect("the work ran in replacement workers");
        assert_eq!(v, (0..1000u64).map(square).collect::<Vec<_>>());
        let pids = pool.pids();
        assert_eq!(pids.len(), 2, "both slots have a worker again: {pids:?}");
        assert_eq!(pool.map(square, 0..100u64).unwrap()[9], 81);
        let new_server = mproc_process::__private::fork_server_pid().expect("a new server");
        assert_ne!(new_server, server);
        assert!(!alive(server));
        pool.close();
        pool.join().unwrap();
        assert!(pids.iter().all(|&p| !alive(p)));

        // 2. Nothing can be started any more (no descriptor is left to
        // start a worker or a fork server with): the queued work fails
        // with `WorkerStart` instead of waiting for ever, and the pool
        // still closes and joins.
        let server = fork_server();
        signal(server, libc::SIGSTOP);
        let pool = Pool::new(2).expect("build");
        let (old, held) = exhaust_descriptors();
        let killer = kill_later(server);
        let r = pool.map_async(square, 0..1000u64).expect("map_async");
        killer.join().unwrap();
        let got = r.get_timeout(Duration::from_secs(30));
        drop(held);
        // SAFETY: `old` is the limit read before.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
        match got {
            Err(GetTimeoutError::Failed(e)) => match e.task_error() {
                Some(TaskError::WorkerStart(m)) => assert!(m.contains("os error 24"), "{m}"),
                other => panic!("failed with {other:?} ({e})"),
            },
            Ok(_) => panic!("ran without any worker"),
            Err(GetTimeoutError::Timeout(_)) => panic!("no answer within 30 s"),
        }
        pool.close();
        assert!(pool.join_timeout(Duration::from_secs(30)).unwrap());
        drop(pool);

        // 3. Descriptors back: pools work again.
        let pool = Pool::new(2).expect("build");
        assert_eq!(
            pool.map(square, 0..10u64).unwrap(),
            [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
        );
    });
}
