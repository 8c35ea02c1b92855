//! CPython's `Value(…, lock=L)` / `Array(…, lock=L)`: several shared values
//! guarded by one caller-supplied lock, which travels with them to children.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::time::Duration;

use common::{payload, spawn_child, watchdog};
use mproc_shm::{Synchronized, SynchronizedArray, ValueLock, WrongLock};
use mproc_sync::{Barrier, Event, Lock, RLock};

const PROCS: usize = 4;
const MOVES: i64 = 2_000;
const TOTAL: i64 = 1_000_000;
const CHILD_LIMIT: Duration = Duration::from_secs(120);

type Pair = (Synchronized<i64, Lock>, Synchronized<i64, Lock>);

/// Moves one unit from `a` to `b` under one acquisition of their shared lock,
/// checking the invariant before and after. Between the two writes the
/// invariant is broken, which another process would see without the lock.
fn move_one((a, b): &Pair) -> Result<(), String> {
    let lock = a.get_lock();
    let g = lock.lock().map_err(|_| "a holder died")?;
    let (la, lb) = (
        a.locked(&g).map_err(|e| e.to_string())?,
        b.locked(&g).map_err(|e| e.to_string())?,
    );
    let (x, y) = (la.get(), lb.get());
    if x + y != TOTAL {
        return Err(format!("invariant broken: {x} + {y}"));
    }
    la.set(x - 1);
    for _ in 0..50 {
        std::hint::spin_loop();
    }
    lb.set(y + 1);
    Ok(())
}

#[test]
fn two_values_share_one_lock_across_processes() {
    watchdog(Duration::from_secs(180), || {
        let lock = Lock::new().unwrap();
        let a = Synchronized::new(TOTAL, &lock).unwrap();
        let b = Synchronized::new(0i64, &lock).unwrap();
        assert_eq!(a.get_lock().identity(), lock.identity());
        assert_eq!(b.get_lock().identity(), lock.identity());
        let start = Barrier::new(PROCS + 1).unwrap();
        // Only the values go to the children: the lock travels with them.
        let children: Vec<_> = (0..PROCS)
            .map(|_| spawn_child("child_moves", &(&a, &b, &start)))
            .collect();
        start.wait_timeout(Duration::from_secs(60)).unwrap();
        // The parent checks the invariant under the lock while they run.
        let pair = (a.clone(), b.clone());
        let mut checks = 0;
        while pair.1.get() < PROCS as i64 * MOVES && checks < 100_000 {
            let g = lock.lock().unwrap();
            let (x, y) = (
                pair.0.locked(&g).unwrap().get(),
                pair.1.locked(&g).unwrap().get(),
            );
            assert_eq!(x + y, TOTAL);
            drop(g);
            checks += 1;
        }
        for c in children {
            c.wait_success(CHILD_LIMIT);
        }
        assert_eq!(a.get(), TOTAL - PROCS as i64 * MOVES);
        assert_eq!(b.get(), PROCS as i64 * MOVES);
        assert!(!lock.is_locked());
    });
}

#[test]
#[ignore = "child role of two_values_share_one_lock_across_processes"]
fn child_moves() {
    let Some((a, b, start)) =
        payload::<(Synchronized<i64, Lock>, Synchronized<i64, Lock>, Barrier)>()
    else {
        return;
    };
    // Both values arrived with the same lock (two handles to it).
    assert_eq!(a.get_lock().identity(), b.get_lock().identity());
    start.wait_timeout(Duration::from_secs(60)).unwrap();
    let pair = (a, b);
    for _ in 0..MOVES {
        move_one(&pair).unwrap();
    }
}

#[test]
fn a_guard_of_another_lock_is_refused() {
    watchdog(Duration::from_secs(30), || {
        let lock = Lock::new().unwrap();
        let other = Lock::new().unwrap();
        let v = Synchronized::new(7u32, &lock).unwrap();
        let arr = SynchronizedArray::from_slice(&[1u8, 2, 3], &lock).unwrap();
        {
            let g = other.lock().unwrap();
            assert_eq!(v.locked(&g).unwrap_err(), WrongLock);
            assert_eq!(arr.locked(&g).unwrap_err(), WrongLock);
        }
        // A clone of the lock is the same lock.
        let same = lock.clone();
        let g = same.lock().unwrap();
        assert_eq!(v.locked(&g).unwrap().get(), 7);
        let la = arr.locked(&g).unwrap();
        la.set(1, 20).unwrap();
        assert!(la.set(3, 0).is_err());
        assert_eq!(la.to_vec(), vec![1, 20, 3]);
        assert!(lock.is_locked());
        drop(g);
        // The one-acquisition forms.
        v.with_lock(|x| *x += 1);
        assert_eq!(v.get(), 8);
        arr.with_lock(|s| s.reverse());
        assert_eq!(arr.to_vec(), vec![3, 20, 1]);
        assert_eq!(arr.get(3), None);
        assert!(!lock.is_locked());
    });
}

/// With an RLock (CPython's default lock), the one-value forms may be used
/// while the lock is held: they re-enter it.
#[test]
fn an_rlock_guard_allows_the_one_value_forms_inside() {
    watchdog(Duration::from_secs(30), || {
        let rlock = RLock::new().unwrap();
        let a = Synchronized::new(1u64, &rlock).unwrap();
        let b = SynchronizedArray::<u64, _>::new(2, &rlock).unwrap();
        let g = rlock.lock().unwrap();
        a.set(a.get() + 1);
        b.set(0, a.get()).unwrap();
        assert_eq!(b.locked(&g).unwrap().get(0), Some(2));
        assert_eq!(rlock.count(), 1);
        drop(g);
        assert!(!rlock.is_locked());
    });
}

/// A value and its lock reach a child made by mproc's start methods.
#[test]
fn the_lock_travels_to_a_spawned_child() {
    watchdog(Duration::from_secs(60), || {
        let lock = Lock::new().unwrap();
        let v = Synchronized::new(0u64, &lock).unwrap();
        let seen = Event::new().unwrap();
        let g = lock.lock().unwrap();
        let child = spawn_child("child_waits_for_lock", &(&v, &seen));
        // The child finds the lock held (by us), then blocks on it.
        assert!(seen.wait_timeout(Duration::from_secs(60)));
        assert_eq!(v.locked(&g).unwrap().get(), 0);
        drop(g);
        child.wait_success(CHILD_LIMIT);
        assert_eq!(v.get(), 1);
    });
}

#[test]
#[ignore = "child role of the_lock_travels_to_a_spawned_child"]
fn child_waits_for_lock() {
    let Some((v, seen)) = payload::<(Synchronized<u64, Lock>, Event)>() else {
        return;
    };
    assert!(v.get_lock().try_lock().unwrap_err().is_would_block());
    seen.set();
    v.with_lock(|x| *x += 1);
}
