//! A barrier's timeout and action belong to the barrier: they travel with
//! it to other processes (issue: they were properties of one handle).

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use common::{Counter, payload, spawn_child, watchdog};
use mproc_sync::{Barrier, BrokenBarrier};

const PARTIES: usize = 5;
const TIMEOUT: Duration = Duration::from_millis(500);
const LIMIT: Duration = Duration::from_secs(60);

/// Five children, one late: the constructor's timeout breaks the barrier
/// for all of them (CPython), instead of the others waiting for ever.
#[test]
fn a_late_party_breaks_the_barrier_for_all_children() {
    watchdog(Duration::from_secs(120), || {
        let b = Barrier::new(PARTIES).unwrap().with_timeout(TIMEOUT);
        let kids: Vec<_> = (0..PARTIES)
            .map(|i| spawn_child("child_late_party", &(&b, i == PARTIES - 1)))
            .collect();
        for k in kids {
            let st = k.wait(LIMIT);
            assert!(st.success(), "a child did not see BrokenBarrier: {st:?}");
        }
        assert!(b.broken());
    });
}

#[test]
#[ignore = "child role of a_late_party_breaks_the_barrier_for_all_children"]
fn child_late_party() {
    let Some((b, late)) = payload::<(Barrier, bool)>() else {
        return;
    };
    assert_eq!(b.timeout(), Some(TIMEOUT), "the timeout did not travel");
    if late {
        std::thread::sleep(TIMEOUT * 6);
    }
    assert_eq!(b.wait(), Err(BrokenBarrier));
}

/// The action's shared counter in this process (an action is a `fn` item:
/// it finds its state through statics set up in each process).
static RUNS: OnceLock<Counter> = OnceLock::new();

fn count_generation() {
    // Runs under the barrier's internal lock: a plain increment is safe.
    RUNS.get()
        .expect("the counter is set up before waiting")
        .bump();
}

const GENERATIONS: u64 = 6;

/// The action set in the parent runs in whichever child arrives last,
/// exactly once per generation.
#[test]
fn the_action_runs_once_per_generation_across_processes() {
    watchdog(Duration::from_secs(120), || {
        let runs = Counter::new();
        let b = Barrier::new(3)
            .unwrap()
            .with_action(count_generation)
            .unwrap();
        let kids: Vec<_> = (0..3)
            .map(|_| spawn_child("child_action", &(&b, &runs)))
            .collect();
        for k in kids {
            let st = k.wait(LIMIT);
            assert!(st.success(), "child failed: {st:?}");
        }
        assert_eq!(runs.get(), GENERATIONS);
        assert!(!b.broken());
    });
}

#[test]
#[ignore = "child role of the_action_runs_once_per_generation_across_processes"]
fn child_action() {
    let Some((b, runs)) = payload::<(Barrier, Counter)>() else {
        return;
    };
    let runs = RUNS.get_or_init(|| runs);
    for generation in 1..=GENERATIONS {
        b.wait_timeout(Duration::from_secs(30)).unwrap();
        // The action ran before anyone was released, and only once (the
        // next generation cannot end before this process arrives again).
        assert_eq!(runs.get(), generation);
    }
}
