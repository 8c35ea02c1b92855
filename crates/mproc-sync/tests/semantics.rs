//! CPython §1.5 behaviours of every primitive, exercised with threads (the
//! cross-process paths are the same code; see cross_process.rs).

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::watchdog;
use mproc_sync::{
    Acquired, Barrier, BoundedSemaphore, BrokenBarrier, Condition, Event, Lock, LockTimeoutError,
    NotOwner, OverRelease, RLock, Semaphore, TryLockError, WaitError,
};

const LIMIT: Duration = Duration::from_secs(30);
const T: Duration = Duration::from_millis(50);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A thread that takes `c`'s lock and waits on it at most `timeout`;
/// joining it gives whether it was notified.
fn condition_waiter(c: &Condition, timeout: Duration) -> thread::JoinHandle<bool> {
    let c = c.clone();
    thread::spawn(move || {
        let _g = c.lock().unwrap();
        c.wait_timeout(timeout).unwrap()
    })
}

/// `n` threads waiting for `e` at most `timeout` each; joining one gives
/// whether it saw the flag set.
fn event_waiters(e: &Event, n: usize, timeout: Duration) -> Vec<thread::JoinHandle<bool>> {
    (0..n)
        .map(|_| {
            let e = e.clone();
            thread::spawn(move || e.wait_timeout(timeout))
        })
        .collect()
}

/// A thread waiting on `b` (on which nobody waited yet), once it waits.
fn barrier_waiter(b: &Barrier) -> thread::JoinHandle<Result<usize, BrokenBarrier>> {
    let b2 = b.clone();
    let h = thread::spawn(move || b2.wait());
    while b.n_waiting() < 1 {
        thread::sleep(ms(1));
    }
    h
}

#[test]
fn lock_timeout_waits_at_least_the_timeout() {
    watchdog(LIMIT, || {
        let lock = Lock::new().unwrap();
        let _g = lock.lock().unwrap();
        let t0 = Instant::now();
        assert!(matches!(
            lock.lock_timeout(T),
            Err(LockTimeoutError::Timeout)
        ));
        assert!(t0.elapsed() >= T);
        // Zero timeout: try once.
        assert!(matches!(
            lock.lock_timeout(Duration::ZERO),
            Err(LockTimeoutError::Timeout)
        ));
        assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
        // Not recursive: the holder itself cannot take it again.
        assert!(lock.lock_timeout(ms(5)).is_err());
    });
}

#[test]
fn lock_released_by_another_thread_and_over_release() {
    watchdog(LIMIT, || {
        let lock = Lock::new().unwrap();
        std::mem::forget(lock.lock().unwrap());
        let l2 = lock.clone();
        thread::spawn(move || l2.release()).join().unwrap().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(lock.release(), Err(OverRelease));
        assert_eq!(
            OverRelease.to_string(),
            "semaphore or lock released too many times"
        );
    });
}

#[test]
fn lock_wakes_a_blocked_thread() {
    watchdog(LIMIT, || {
        let lock = Lock::new().unwrap();
        let g = lock.lock().unwrap();
        let l2 = lock.clone();
        let t0 = Instant::now();
        let h = thread::spawn(move || {
            let _g = l2.lock().unwrap();
            t0.elapsed()
        });
        thread::sleep(T);
        drop(g);
        assert!(h.join().unwrap() >= T);
    });
}

#[test]
fn rlock_recursion_and_owner_rules() {
    watchdog(LIMIT, || {
        let r = RLock::new().unwrap();
        // Not held: release is a NotOwner error.
        assert_eq!(r.release(), Err(NotOwner));
        let a = r.lock().unwrap();
        let b = r.try_lock().unwrap();
        let c = r.lock_timeout(Duration::ZERO).unwrap();
        assert_eq!(r.count(), 3);
        let r2 = r.clone();
        let other = thread::spawn(move || {
            let not_owner = r2.release();
            let try_other = r2.lock_timeout(ms(20)).is_err();
            (not_owner, try_other, r2.count())
        });
        // The count is visible from another thread (CPython's repr shows it
        // for any observer).
        assert_eq!(other.join().unwrap(), (Err(NotOwner), true, 3));
        drop(c);
        drop(b);
        assert!(r.is_locked());
        drop(a);
        assert!(!r.is_locked());
        assert_eq!(r.count(), 0);
        assert_eq!(r.owner(), None);
        // Release through a forgotten guard, CPython style.
        std::mem::forget(r.lock().unwrap());
        assert_eq!(r.release(), Ok(()));
        assert!(!r.is_locked());
    });
}

/// CPython: `acquire(block, timeout) -> bool` and `release()`; a Lock may be
/// released by any thread, an RLock only by its owner.
#[test]
fn guardless_acquire_and_release_follow_cpython() {
    watchdog(LIMIT, || {
        let lock = Lock::new().unwrap();
        assert_eq!(lock.acquire(), Acquired::Clean);
        assert!(lock.is_owned_by_current_thread());
        assert_eq!(lock.try_acquire(), None);
        let t0 = Instant::now();
        assert_eq!(lock.acquire_timeout(Some(T)), None);
        assert!(t0.elapsed() >= T);
        // Another thread releases it (CPython's Lock is not owner-checked).
        let l2 = lock.clone();
        assert_eq!(thread::spawn(move || l2.release()).join().unwrap(), Ok(()));
        assert!(!lock.is_locked());
        assert_eq!(lock.release(), Err(OverRelease));
        assert_eq!(lock.acquire_timeout(None), Some(Acquired::Clean));
        assert_eq!(lock.release(), Ok(()));

        let r = RLock::new().unwrap();
        assert_eq!(r.acquire(), Acquired::Clean);
        assert_eq!(r.try_acquire(), Some(Acquired::Clean));
        assert_eq!(
            r.acquire_timeout(Some(Duration::ZERO)),
            Some(Acquired::Clean)
        );
        assert_eq!(r.count(), 3);
        let r2 = r.clone();
        let other =
            thread::spawn(move || (r2.release(), r2.acquire_timeout(Some(ms(20))), r2.count()));
        assert_eq!(other.join().unwrap(), (Err(NotOwner), None, 3));
        for left in [2, 1, 0] {
            assert_eq!(r.release(), Ok(()));
            assert_eq!(r.count(), left);
        }
        assert!(!r.is_locked());
        assert_eq!(r.release(), Err(NotOwner));
    });
}

#[test]
fn semaphore_counts() {
    watchdog(LIMIT, || {
        let s = Semaphore::new(2).unwrap();
        assert_eq!(s.value(), 2);
        let a = s.acquire().unwrap();
        let b = s.try_acquire().unwrap();
        assert_eq!(s.value(), 0);
        let t0 = Instant::now();
        assert!(s.acquire_timeout(T).unwrap_err().is_timeout());
        assert!(t0.elapsed() >= T);
        drop(a);
        assert_eq!(s.value(), 1);
        b.forget();
        assert_eq!(s.value(), 1);
        // Unbounded: release may go above the initial value.
        s.release().unwrap();
        s.release().unwrap();
        assert_eq!(s.value(), 3);
        assert!(Semaphore::new(mproc_sync::SEM_VALUE_MAX + 1).is_err());
    });
}

#[test]
fn semaphore_zero_blocks_until_released_elsewhere() {
    watchdog(LIMIT, || {
        let s = Semaphore::new(0).unwrap();
        let s2 = s.clone();
        // Measured from before the release is even possible.
        let t0 = Instant::now();
        let h = thread::spawn(move || {
            s2.acquire().unwrap().forget();
            t0.elapsed()
        });
        thread::sleep(T);
        s.release().unwrap();
        assert!(h.join().unwrap() >= T);
        assert_eq!(s.value(), 0);
    });
}

#[test]
fn bounded_semaphore_over_release() {
    let s = BoundedSemaphore::new(2).unwrap();
    assert_eq!(s.max_value(), 2);
    assert_eq!(s.release(), Err(OverRelease));
    let g = s.acquire().unwrap();
    g.forget();
    assert_eq!(s.value(), 1);
    assert_eq!(s.release(), Ok(()));
    assert_eq!(s.release(), Err(OverRelease));
    assert_eq!(s.value(), 2);
}

#[test]
fn condition_requires_the_lock() {
    let c = Condition::new().unwrap();
    assert_eq!(c.wait_timeout(ms(1)), Err(WaitError::NotOwner));
    assert_eq!(c.notify(1), Err(NotOwner));
    assert_eq!(c.notify_all(), Err(NotOwner));
    assert_eq!(c.wait_for_timeout(|| true, ms(1)), Err(WaitError::NotOwner));
    let c = Condition::with_lock(Lock::new().unwrap()).unwrap();
    assert_eq!(c.wait_timeout(ms(1)), Err(WaitError::NotOwner));
    let _g = c.lock().unwrap();
    let t0 = Instant::now();
    assert_eq!(c.wait_timeout(T), Ok(false));
    assert!(t0.elapsed() >= T);
    assert_eq!(c.notify(1), Ok(0));
}

#[test]
fn condition_wait_releases_a_reentered_rlock_fully() {
    watchdog(LIMIT, || {
        let c = Condition::new().unwrap();
        let _a = c.lock().unwrap();
        let _b = c.lock().unwrap();
        let _d = c.lock().unwrap();
        let c2 = c.clone();
        let h = thread::spawn(move || {
            // Can only get the lock if the waiter released all 3 levels.
            let _g = c2.lock().unwrap();
            c2.notify(1).unwrap()
        });
        assert_eq!(c.wait_timeout(Duration::from_secs(20)), Ok(true));
        assert_eq!(h.join().unwrap(), 1);
        // The recursion level is restored.
        let ConditionProbe(count) = probe(&c);
        assert_eq!(count, 3);
    });
}

struct ConditionProbe(usize);

fn probe(c: &Condition) -> ConditionProbe {
    // The condition's RLock is only reachable through its guard.
    let g = c.lock().unwrap();
    let n = match &g {
        mproc_sync::ConditionGuard::RLock(r) => r.lock().count() - 1,
        mproc_sync::ConditionGuard::Lock(_) => 0,
    };
    ConditionProbe(n)
}

#[test]
fn condition_notify_counts() {
    watchdog(LIMIT, || {
        let c = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let woken = Arc::new(AtomicU32::new(0));
        let hs: Vec<_> = (0..5)
            .map(|_| {
                let (c, woken) = (c.clone(), woken.clone());
                thread::spawn(move || {
                    let _g = c.lock().unwrap();
                    if c.wait_timeout(Duration::from_secs(5)).unwrap() {
                        woken.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        while c.waiting() < 5 {
            thread::sleep(ms(1));
        }
        {
            let _g = c.lock().unwrap();
            assert_eq!(c.notify(2), Ok(2));
        }
        thread::sleep(ms(200));
        assert_eq!(woken.load(Ordering::SeqCst), 2);
        {
            let _g = c.lock().unwrap();
            assert_eq!(c.notify_all(), Ok(3));
        }
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(woken.load(Ordering::SeqCst), 5);
    });
}

#[test]
fn condition_notify_skips_waiters_that_timed_out() {
    watchdog(LIMIT, || {
        let c = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let short = condition_waiter(&c, ms(20));
        assert!(!short.join().unwrap());
        let long = condition_waiter(&c, Duration::from_secs(10));
        while c.waiting() < 1 {
            thread::sleep(ms(1));
        }
        let _g = c.lock().unwrap();
        // Only the live waiter counts; the notification reaches it.
        assert_eq!(c.notify(1), Ok(1));
        drop(_g);
        assert!(long.join().unwrap());
    });
}

#[test]
fn condition_wait_for_returns_the_predicate() {
    watchdog(LIMIT, || {
        let c = Condition::new().unwrap();
        let flag = Arc::new(AtomicU32::new(0));
        let _g = c.lock().unwrap();
        let t0 = Instant::now();
        assert_eq!(
            c.wait_for_timeout(|| flag.load(Ordering::SeqCst) == 1, T),
            Ok(false)
        );
        assert!(t0.elapsed() >= T);
        let (c2, f2) = (c.clone(), flag.clone());
        let h = thread::spawn(move || {
            thread::sleep(ms(20));
            let _g = c2.lock().unwrap();
            f2.store(1, Ordering::SeqCst);
            c2.notify_all().unwrap();
        });
        assert_eq!(c.wait_for(|| flag.load(Ordering::SeqCst) == 1), Ok(true));
        drop(_g);
        h.join().unwrap();
    });
}

/// A set that is cleared again before a sleeping waiter runs still wakes it
/// (`threading.Event`: the waiter was signalled). Before, the waiter saw the
/// flag clear and slept on, missing the wake-up for ever.
#[test]
fn event_pulse_wakes_sleeping_waiters() {
    watchdog(LIMIT, || {
        // One CPU: the setter clears before the woken waiter runs.
        mproc_testkit::pin_to_nth_cpu(0);
        for _ in 0..20 {
            let e = Event::new().unwrap();
            let hs = event_waiters(&e, 2, Duration::from_secs(5));
            thread::sleep(ms(20));
            e.set();
            e.clear();
            for h in hs {
                assert!(h.join().unwrap(), "a waiter missed the set");
            }
            assert!(!e.is_set());
        }
    });
}

#[test]
fn event_set_clear_wait() {
    watchdog(LIMIT, || {
        let e = Event::new().unwrap();
        assert!(!e.is_set());
        let t0 = Instant::now();
        assert!(!e.wait_timeout(T));
        assert!(t0.elapsed() >= T);
        assert!(!e.wait_timeout(Duration::ZERO));
        e.set();
        e.set(); // idempotent
        assert!(e.is_set());
        assert!(e.wait_timeout(Duration::ZERO));
        e.clear();
        assert!(!e.is_set());
        let hs = event_waiters(&e, 3, Duration::from_secs(20));
        thread::sleep(ms(20));
        e.set();
        for h in hs {
            assert!(h.join().unwrap());
        }
    });
}

/// issue: a notify woke a waiter that started waiting after it (here the
/// notifier itself, waiting right after notifying), so the waiter it was
/// meant for slept on: ping-pong deadlocked.
#[test]
fn condition_notify_wakes_only_earlier_waiters() {
    watchdog(LIMIT, || {
        for _ in 0..10 {
            let c = Condition::new().unwrap();
            let c2 = c.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            let t = thread::spawn(move || {
                let _g = c2.lock().unwrap();
                tx.send(()).unwrap();
                c2.wait_timeout(Duration::from_secs(5)).unwrap()
            });
            rx.recv().unwrap();
            {
                let _g = c.lock().unwrap();
                // The other thread is waiting once we hold the lock.
                assert_eq!(c.notify(1), Ok(1));
                // Not woken by our own notify: it was for the other thread.
                assert_eq!(c.wait_timeout(ms(100)), Ok(false));
            }
            assert!(t.join().unwrap(), "the earlier waiter missed its notify");
        }
    });
}

/// notify(n) wakes the n longest waiting, and a waiter that timed out does
/// not take a notify meant for one still waiting.
#[test]
fn condition_timed_out_waiter_does_not_spend_a_notify() {
    watchdog(LIMIT, || {
        let c = Condition::new().unwrap();
        let patient = condition_waiter(&c, Duration::from_secs(20));
        while c.waiting() < 1 {
            thread::sleep(ms(1));
        }
        let hasty = condition_waiter(&c, ms(10));
        assert!(!hasty.join().unwrap(), "nobody notified the hasty waiter");
        assert_eq!(c.waiting(), 1);
        let _g = c.lock().unwrap();
        assert_eq!(c.notify(1), Ok(1));
        drop(_g);
        assert!(patient.join().unwrap());
        assert_eq!(c.waiting(), 0);
    });
}

#[test]
fn barrier_indices_and_action() {
    watchdog(LIMIT, || {
        // An action is a `fn` item (it may run in another process): its
        // state is a static.
        static RUNS: AtomicU32 = AtomicU32::new(0);
        fn count() {
            RUNS.fetch_add(1, Ordering::SeqCst);
        }
        let b = Barrier::new(3).unwrap().with_action(count).unwrap();
        assert!(b.has_action());
        assert_eq!(b.parties(), 3);
        for generation in 1..=3 {
            let hs: Vec<_> = (0..3)
                .map(|_| {
                    let b = b.clone();
                    thread::spawn(move || {
                        let i = b.wait().unwrap();
                        // The action ran before anyone was released.
                        (i, RUNS.load(Ordering::SeqCst))
                    })
                })
                .collect();
            let mut got: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
            got.sort();
            assert_eq!(got, vec![(0, generation), (1, generation), (2, generation)]);
        }
        assert_eq!(Barrier::new(1).unwrap().wait(), Ok(0));
        assert!(Barrier::new(0).is_err());
    });
}

#[test]
fn barrier_timeout_breaks_it_for_all() {
    watchdog(LIMIT, || {
        let b = Barrier::new(3).unwrap();
        let patient = barrier_waiter(&b);
        let t0 = Instant::now();
        assert_eq!(b.wait_timeout(T), Err(BrokenBarrier));
        assert!(t0.elapsed() >= T);
        assert_eq!(patient.join().unwrap(), Err(BrokenBarrier));
        assert!(b.broken());
        assert_eq!(b.wait(), Err(BrokenBarrier));
        b.reset();
        assert!(!b.broken());
        // The barrier's default timeout breaks it too, through every handle.
        let b = Barrier::new(2).unwrap().with_timeout(ms(10));
        let other = b.clone();
        assert_eq!(other.timeout(), Some(ms(10)));
        let t0 = Instant::now();
        assert_eq!(other.wait(), Err(BrokenBarrier));
        assert!(t0.elapsed() >= ms(10));
    });
}

#[test]
fn barrier_abort_and_reset() {
    watchdog(LIMIT, || {
        let b = Barrier::new(2).unwrap();
        let waiter = barrier_waiter(&b);
        b.abort();
        assert_eq!(waiter.join().unwrap(), Err(BrokenBarrier));
        assert_eq!(b.wait(), Err(BrokenBarrier));
        b.reset();
        // Reset while a party waits: it fails, and the barrier is usable after.
        let waiter = barrier_waiter(&b);
        b.reset();
        assert_eq!(waiter.join().unwrap(), Err(BrokenBarrier));
        assert!(!b.broken());
        let b4 = b.clone();
        let waiter = thread::spawn(move || b4.wait());
        let mine = b.wait().unwrap();
        let theirs = waiter.join().unwrap().unwrap();
        assert_eq!(mine + theirs, 1);
    });
}

#[test]
fn barrier_action_panic_breaks_it() {
    watchdog(LIMIT, || {
        let b = Barrier::new(2).unwrap();
        let waiter = barrier_waiter(&b);
        let last = b.clone().with_action(|| panic!("action failed")).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| last.wait()));
        assert!(r.is_err(), "the panic continues in the last party");
        assert_eq!(waiter.join().unwrap(), Err(BrokenBarrier));
        assert!(b.broken());
    });
}

#[test]
fn debug_and_display() {
    let l = Lock::new().unwrap();
    assert!(format!("{l:?}").starts_with("Lock"));
    let s = BoundedSemaphore::new(2).unwrap();
    assert_eq!(format!("{s:?}"), "BoundedSemaphore { value: 2, max: 2 }");
    assert_eq!(BrokenBarrier.to_string(), "barrier is broken");
    let e: TryLockError<()> = TryLockError::WouldBlock;
    assert_eq!(e.to_string(), "the lock is held by someone else");
    let e = Event::new().unwrap();
    assert_eq!(format!("{e:?}"), "Event { set: false }");
}
