//! Starting children from a parent that runs busy threads.

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

/// In a spawned child (never in the test runner itself): with a second,
/// idle thread, fork is refused, and the unsafe opt-in forks anyway.
fn fork_with_an_idle_thread(_: ()) -> (bool, u32) {
    let idle = thread::spawn(|| thread::sleep(std::time::Duration::from_millis(500)));
    let refused = matches!(
        Process::new(inc, 1).start_method(StartMethod::Fork).start(),
        Err(StartError::ThreadedFork { threads: 2 })
    );
    // SAFETY: the other thread only sleeps: it holds no lock (allocator,
    // stdout, mproc state) that the forked child could need.
    let p = unsafe {
        Process::new(inc, 41)
            .start_method(StartMethod::Fork)
            .allow_fork_with_threads()
    };
    let v = p.start().expect("opt-in fork").join().expect("join");
    idle.join().expect("idle thread");
    (refused, v)
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
    assert_eq!(r, (true, 42));
}
