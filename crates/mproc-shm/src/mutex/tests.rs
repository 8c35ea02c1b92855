use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// Runs `f` on a thread and fails the test if it does not finish in time.
fn watchdog<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).expect("test body hung or panicked")
}

#[test]
fn lock_unlock_and_state() {
    let m = RawMutex::new();
    assert!(!m.is_locked());
    assert_eq!(m.try_lock(), Some(Acquired::Clean));
    assert!(m.is_locked());
    assert_eq!(m.owner_pid(), Some(std::process::id()));
    assert!(m.is_held_by_current_process());
    assert_eq!(m.lock_timeout(Duration::ZERO), None);
    // SAFETY: locked just above by this thread.
    unsafe { m.unlock() };
    assert!(!m.is_locked());
    // SAFETY: the lock is free; unlock_if_locked reports that.
    assert!(!unsafe { m.unlock_if_locked() });
    assert_eq!(m.lock(), Acquired::Clean);
    // SAFETY: locked just above.
    assert!(unsafe { m.unlock_if_locked() });
}

#[test]
fn timeout_waits_at_least_the_timeout() {
    watchdog(Duration::from_secs(10), || {
        let m = RawMutex::new();
        let _ = m.lock();
        let t0 = Instant::now();
        assert_eq!(m.lock_timeout(Duration::from_millis(60)), None);
        assert!(t0.elapsed() >= Duration::from_millis(60));
    });
}

#[test]
fn threads_exclude_each_other() {
    watchdog(Duration::from_secs(60), || {
        let m = Arc::new(RawMutex::new());
        let counter = Arc::new(AtomicU64::new(0));
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (m, c) = (m.clone(), counter.clone());
                thread::spawn(move || {
                    for _ in 0..20_000 {
                        let _ = m.lock();
                        // A non-atomic read-modify-write: lost updates would show.
                        let v = c.load(Ordering::Relaxed);
                        c.store(v + 1, Ordering::Relaxed);
                        // SAFETY: locked just above.
                        unsafe { m.unlock() };
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
    });
}

#[test]
fn impossible_owner_is_dead() {
    let m = RawMutex::new();
    m.word.store(PID_MAX_LIMIT + 5, Ordering::Relaxed);
    assert_eq!(m.try_lock(), Some(Acquired::OwnerDied));
    assert!(m.is_held_by_current_process());
    let m = RawMutex::new();
    m.word.store(WAITERS, Ordering::Relaxed);
    assert_eq!(
        m.lock_timeout(Duration::from_millis(5)),
        Some(Acquired::OwnerDied)
    );
    // The waiters bit is kept so that sleepers are still woken.
    assert_eq!(m.word.load(Ordering::Relaxed), current_pid() | WAITERS);
}

#[test]
fn liveness_of_processes() {
    assert!(process_alive(std::process::id()));
    assert!(!process_alive(0));
    assert!(!process_alive(PID_MAX_LIMIT + 1));
    let mut child = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    assert!(process_alive(pid));
    child.kill().unwrap();
    // Killed but not reaped: a zombie, which counts as dead.
    let t0 = Instant::now();
    while process_alive(pid) && t0.elapsed() < Duration::from_secs(10) {
        thread::sleep(Duration::from_millis(1));
    }
    assert!(!process_alive(pid));
    child.wait().unwrap();
    assert!(!process_alive(pid));
}

#[test]
fn dead_owner_is_taken_over_by_a_blocked_locker() {
    watchdog(Duration::from_secs(20), || {
        let mut child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let m = Arc::new(RawMutex::new());
        m.word.store(child.id(), Ordering::Relaxed);
        let m2 = m.clone();
        let waiter = thread::spawn(move || {
            let t0 = Instant::now();
            (m2.lock(), t0.elapsed())
        });
        thread::sleep(Duration::from_millis(30));
        child.kill().unwrap();
        let killed = Instant::now();
        let (how, _) = waiter.join().unwrap();
        let after_kill = killed.elapsed();
        child.wait().unwrap();
        assert_eq!(how, Acquired::OwnerDied);
        assert!(m.is_held_by_current_process());
        eprintln!("recovered {after_kill:?} after the kill");
    });
}
