//! How work is cut: a map over a range is split between workers while it
//! runs, the first chunks of an unmeasured function are cut to a time
//! budget, and neither loses, repeats or reorders an item, even when items
//! panic or kill their worker.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{alive, only_failure_at, sorted_values, values, with_pool};
use mproc_pool::{Pool, PoolError, TaskError};

/// Items below 2000 are slow (they sleep, so the test does not depend on
/// CPU time); the others are instant.
fn lopsided(x: u64) -> (u64, u32) {
    if x < 2000 {
        std::thread::sleep(Duration::from_micros(50));
    }
    (x * 3, std::process::id())
}

fn lopsided_panics_at_1500(x: u64) -> u64 {
    assert!(x != 1500, "item 1500");
    lopsided(x).0
}

fn lopsided_aborts_at_1500(x: u64) -> u64 {
    if x == 1500 {
        std::process::abort();
    }
    lopsided(x).0
}

/// Sleeps `ms`, then says who ran it.
fn nap((x, ms): (u64, u64)) -> (u64, u32) {
    std::thread::sleep(Duration::from_millis(ms));
    (x, std::process::id())
}

fn tiny(x: u64) -> u8 {
    (x % 251) as u8
}

fn slow_plus_one(x: u32) -> u32 {
    std::thread::sleep(Duration::from_micros(300));
    x + 1
}

#[test]
fn a_range_map_is_split_while_it_runs() {
    with_pool(120, 2, |pool| {
        // `map` gives each worker half of the range; the second half is
        // instant, so its worker goes idle and takes over part of the
        // first half (at least 100 ms of sleeping) from the other.
        let out = pool.map(lopsided, 0..4000u64).unwrap();
        assert_eq!(out.len(), 4000);
        for (i, (v, _)) in out.iter().enumerate() {
            assert_eq!(*v, i as u64 * 3);
        }
        let slow_pids: HashSet<u32> = out[..2000].iter().map(|(_, p)| *p).collect();
        assert_eq!(slow_pids.len(), 2, "the slow half was not shared");
        // The pool is still in a clean state for the next map.
        assert_eq!(
            pool.map(|x: u64| x + 1, 0..10u64).unwrap(),
            (1..11).collect::<Vec<_>>()
        );
    });
}

#[test]
fn imap_over_a_range_cuts_its_first_chunks() {
    with_pool(120, 2, |pool| {
        // Unmeasured: the first chunks are cut by the workers after their
        // time budget and the rest is queued again (a quarter of the range
        // each when unordered; ordered, from the front of the order).
        let got = values(pool.imap(slow_plus_one, 0..600u32).unwrap());
        assert_eq!(got, (1..601).collect::<Vec<_>>());
        let unordered = sorted_values(pool.imap_unordered(slow_plus_one, 0..=599u32).unwrap());
        assert_eq!(unordered, (1..601).collect::<Vec<_>>());
    });
}

/// Runs `f`, which fails at item 1500, over the split range `0..4000`
/// with `map` and then `imap`: `map` reports item 1500 and `imap` yields
/// every other item's value; returns the two errors of item 1500.
fn fail_at_1500_in_a_split_range<F>(pool: &Pool, f: F) -> (TaskError, TaskError)
where
    F: Fn(u64) -> u64 + Copy + Send + 'static,
{
    let from_map = match pool.map(f, 0..4000u64) {
        Err(PoolError::Task { index: 1500, error }) => error,
        other => panic!("unexpected {other:?}"),
    };
    let from_imap = only_failure_at(pool.imap(f, 0..4000u64).unwrap(), 1500, |i| i as u64 * 3);
    (from_map, from_imap)
}

#[test]
fn a_panic_in_a_split_range_fails_only_that_item() {
    with_pool(120, 2, |pool| {
        let (from_map, from_imap) = fail_at_1500_in_a_split_range(&pool, lopsided_panics_at_1500);
        match from_map {
            TaskError::Panicked { message, .. } => {
                assert!(message.contains("item 1500"), "{message}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            matches!(from_imap, TaskError::Panicked { .. }),
            "{from_imap}"
        );
    });
}

#[test]
fn a_worker_dying_in_a_split_range_loses_only_its_item() {
    with_pool(120, 2, |pool| {
        let (from_map, from_imap) = fail_at_1500_in_a_split_range(&pool, lopsided_aborts_at_1500);
        assert!(
            matches!(from_map, TaskError::WorkerLost { .. }),
            "{from_map:?}"
        );
        assert!(
            matches!(from_imap, TaskError::WorkerLost { .. }),
            "{from_imap}"
        );
        assert_eq!(pool.pids().len(), 2);
    });
}

#[test]
fn a_worker_killed_among_tiny_range_items_loses_at_most_one() {
    with_pool(120, 2, |pool| {
        // Tiny items run in blocks tracked as a whole; a worker killed in
        // one has the block run again item by item, so at most the one
        // item known to be running is lost.
        let n = 10_000_000u64;
        for round in 0..2u64 {
            let victim = pool.pids()[0];
            let killer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(3 + 2 * round));
                // SAFETY: kill(2) on a worker of our pool.
                unsafe { libc::kill(victim, libc::SIGKILL) };
            });
            let mut lost = 0;
            for (i, r) in pool.imap(tiny, 0..n).unwrap().enumerate() {
                match r {
                    Ok(v) => assert_eq!(v, (i as u64 % 251) as u8),
                    Err(TaskError::WorkerLost { .. }) => lost += 1,
                    Err(e) => panic!("item {i}: {e}"),
                }
            }
            killer.join().unwrap();
            assert!(lost <= 1, "lost {lost}");
            assert!(!alive(victim));
        }
        assert_eq!(pool.map(tiny, 0..300u64).unwrap()[260], 9);
    });
}

#[test]
fn encoded_items_are_split_while_running_too() {
    with_pool(120, 2, |pool| {
        // Measured fast: the 16 items go in chunks of 4, two per worker.
        let _ = pool.map(nap, vec![(0, 0)]).unwrap();
        // The first chunk is slow (4 x 40 ms), the others instant: the
        // other worker runs out of work and takes part of it over.
        let items: Vec<(u64, u64)> = (0..16).map(|x| (x, if x < 4 { 40 } else { 0 })).collect();
        let out = pool.map(nap, items).unwrap();
        assert_eq!(
            out.iter().map(|(x, _)| *x).collect::<Vec<_>>(),
            (0..16).collect::<Vec<_>>()
        );
        let slow_pids: HashSet<u32> = out[..4].iter().map(|(_, p)| *p).collect();
        assert_eq!(slow_pids.len(), 2, "the slow chunk was not shared");
    });
}
