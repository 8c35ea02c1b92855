//! Starting children from a parent that runs busy threads.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use common::watchdog;
use mproc_process::{Process, StartError, StartMethod};

fn inc(x: u32) -> u32 {
    x + 1
}

fn with_busy_threads<T>(n: usize, f: impl FnOnce() -> T) -> T {
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut x = 0u64;
                // Relaxed: only the eventual stop matters.
                while !stop.load(Ordering::Relaxed) {
                    // Allocate and free constantly, so that a fork at a bad
                    // moment would inherit a held allocator lock.
                    let v = vec![x; 16];
                    x = x.wrapping_add(v[3]).wrapping_add(1);
                    std::hint::black_box(&v);
                }
                x
            })
        })
        .collect();
    let r = f();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("busy thread");
    }
    r
}

fn starts(method: StartMethod) {
    with_busy_threads(8, || {
        for i in 0..200u32 {
            let mut h = Process::new(inc, i)
                .start_method(method)
                .start()
                .unwrap_or_else(|e| panic!("{method} start {i}: {e}"));
            assert_eq!(
                h.join()
                    .unwrap_or_else(|e| panic!("{method} join {i}: {e}")),
                i + 1
            );
        }
    });
}

#[test]
fn forkserver_starts_200_children_from_a_busy_threaded_parent() {
    watchdog(600, || starts(StartMethod::ForkServer));
}

#[test]
fn spawn_starts_200_children_from_a_busy_threaded_parent() {
    watchdog(600, || starts(StartMethod::Spawn));
}

#[test]
fn fork_refuses_in_a_threaded_parent() {
    watchdog(60, || {
        with_busy_threads(8, || {
            let r = Process::new(inc, 1).start_method(StartMethod::Fork).start();
            match r {
                Err(StartError::ThreadedFork { threads }) => {
                    assert!(threads >= 9, "threads {threads}")
                }
                other => panic!("fork in a threaded parent gave {other:?}"),
            }
        })
    });
}

/// Forks a child of its own (which must see itself single-threaded).
fn fork_inc(x: u32) -> u32 {
    Process::new(inc, x)
        .start_method(StartMethod::Fork)
        .start()
        .expect("a forked child is single-threaded")
        .join()
        .expect("join")
}

/// In a spawned child (never in the test runner itself): fork works while
/// single-threaded; with a second, idle thread, fork is refused, and the
/// unsafe opt-in forks anyway (a child that forks again: it must not judge
/// by its parent's threads); once the thread has ended, fork works again.
fn fork_with_an_idle_thread(_: ()) -> (bool, bool, u32, bool) {
    let before = Process::new(inc, 1)
        .start_method(StartMethod::Fork)
        .start()
        .ok()
        .and_then(|mut c| c.join().ok())
        == Some(2);
    let idle = thread::spawn(|| thread::sleep(std::time::Duration::from_millis(500)));
    let refused = matches!(
        Process::new(inc, 1).start_method(StartMethod::Fork).start(),
        Err(StartError::ThreadedFork { threads: 2 })
    );
    // SAFETY: the other thread only sleeps: it holds no lock (allocator,
    // stdout, mproc state) that the forked child could need.
    let p = unsafe {
        Process::new(fork_inc, 41)
            .start_method(StartMethod::Fork)
            .allow_fork_with_threads()
    };
    let v = p.start().expect("opt-in fork").join().expect("join");
    idle.join().expect("idle thread");
    // The ended thread may linger in /proc for a moment after `join`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let after = loop {
        match Process::new(inc, 1).start_method(StartMethod::Fork).start() {
            Ok(mut c) => break c.join().ok() == Some(2),
            Err(StartError::ThreadedFork { .. }) if std::time::Instant::now() < deadline => {
                thread::sleep(std::time::Duration::from_millis(10))
            }
            Err(_) => break false,
        }
    };
    (before, refused, v, after)
}

#[test]
fn the_unsafe_opt_in_forks_a_threaded_process() {
    let r = watchdog(60, || {
        Process::new(fork_with_an_idle_thread, ())
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap()
            .join()
            .unwrap()
    });
    assert_eq!(r, (true, true, 42, true));
}
