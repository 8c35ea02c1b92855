//! The standard library's in-process `Mutex`, `RwLock` and `Condvar` as
//! every mproc crate uses them: poisoning ignored.
//!
//! mproc's own bookkeeping behind these locks (a pool's task table, a
//! connection's read buffer, a manager's object map) is kept consistent at
//! every point a panic could unwind through it, and a panic in one user
//! callback must not turn every later call of the same pool or connection
//! into a second panic. So a poisoned lock is simply taken.

use std::sync::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// Locks `m`, taking it also when a panicking thread poisoned it.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read-locks `l`, poisoning ignored.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Write-locks `l`, poisoning ignored.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// [`Condvar::wait`], poisoning ignored (the caller re-checks its
/// condition: wake-ups may be spurious).
pub fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|e| e.into_inner())
}

/// [`Condvar::wait_timeout`] for at most `timeout`, poisoning ignored; the
/// caller re-checks its condition and its clock.
pub fn wait_for<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>, timeout: Duration) -> MutexGuard<'a, T> {
    cv.wait_timeout(g, timeout)
        .unwrap_or_else(|e| e.into_inner())
        .0
}

/// Waits on `cv` until woken or `deadline` (`None`: no limit); returns at
/// once when the deadline has passed. Poisoning ignored; the caller
/// re-checks its condition and its clock.
pub fn wait_until<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    deadline: Option<Instant>,
) -> MutexGuard<'a, T> {
    match deadline {
        None => wait(cv, g),
        Some(d) => match d.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => wait_for(cv, g, left),
            _ => g,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_mutex_is_still_taken() {
        let m = Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
        let l = RwLock::new(5);
        *write(&l) += 1;
        assert_eq!(*read(&l), 6);
    }

    #[test]
    fn a_wait_until_a_past_deadline_returns_without_a_notify() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let m = Mutex::new(7);
            let cv = Condvar::new();
            let g = wait_until(
                &cv,
                lock(&m),
                Some(Instant::now() - Duration::from_millis(1)),
            );
            let _ = tx.send(*g);
        });
        // Nobody notifies: only the past deadline can end the wait.
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok(7));
    }
}
