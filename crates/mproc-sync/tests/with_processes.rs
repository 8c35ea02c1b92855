//! The primitives in children started by mproc-process: by the fork server
//! (the default; the child is forked from a process that may have used a
//! lock before, so its cached process id must be refreshed) and by spawn.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::time::Duration;

use common::{Counter, watchdog};
use mproc_process::{ExitStatus, JoinError, Process, StartMethod};
use mproc_sync::{Event, Lock, LockTimeoutError};

const METHODS: [StartMethod; 2] = [StartMethod::ForkServer, StartMethod::Spawn];

/// Takes the lock `n` times; returns whether the lock word always named
/// this process while it held the lock.
fn hammer((lock, counter, n): (Lock, Counter, u64)) -> bool {
    let me = std::process::id();
    let mut own = true;
    for _ in 0..n {
        let _g = lock.lock().expect("no holder dies here");
        own &= lock.owner_pid() == Some(me);
        counter.bump_slowly();
    }
    own
}

#[test]
fn children_of_each_start_method_share_a_lock() {
    watchdog(Duration::from_secs(120), || {
        for method in METHODS {
            let lock = Lock::new().unwrap();
            let counter = Counter::new();
            // The parent uses the lock first, caching its own pid.
            drop(lock.lock().unwrap());
            let mut hs: Vec<_> = (0..3)
                .map(|_| {
                    let args = (
                        lock.clone(),
                        Counter(counter.0.try_clone().unwrap()),
                        20_000,
                    );
                    Process::new(hammer, args)
                        .start_method(method)
                        .kill_on_drop(true)
                        .start()
                        .unwrap()
                })
                .collect();
            for h in &mut hs {
                assert!(
                    h.join().unwrap(),
                    "{method:?}: a child recorded another process as owner"
                );
            }
            assert_eq!(counter.get(), 60_000, "{method:?}");
            assert!(!lock.is_locked());
        }
    });
}

fn hold_and_hang((lock, ready): (Lock, Event)) {
    std::mem::forget(lock.lock().unwrap());
    ready.set();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn a_killed_child_holding_the_lock_is_recovered() {
    watchdog(Duration::from_secs(120), || {
        for method in METHODS {
            let lock = Lock::new().unwrap();
            let ready = Event::new().unwrap();
            let mut h = Process::new(hold_and_hang, (lock.clone(), ready.clone()))
                .start_method(method)
                .kill_on_drop(true)
                .start()
                .unwrap();
            assert!(
                ready.wait_timeout(Duration::from_secs(30)),
                "{method:?}: child never took the lock"
            );
            assert_eq!(lock.owner_pid(), Some(h.pid().as_raw() as u32));
            h.kill().unwrap();
            match lock.lock_timeout(Duration::from_secs(20)) {
                Err(LockTimeoutError::OwnerDied(g)) => drop(g),
                Err(LockTimeoutError::Timeout) => panic!("{method:?}: dead holder not recovered"),
                Ok(_) => panic!("{method:?}: no owner-died indication"),
            }
            match h.join() {
                Err(JoinError::Failed(ExitStatus::Signaled(sig))) => assert_eq!(sig, libc::SIGKILL),
                other => panic!("{method:?}: unexpected end {:?}", other.map(|_| ())),
            }
        }
    });
}
