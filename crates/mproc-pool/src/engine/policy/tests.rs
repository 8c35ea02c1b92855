use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::error::TaskError;
use crate::input::{Produced, producer};
use crate::job::Sink;
use crate::task::{Data, Payload, Task};
use crate::wire::TaskOut;

/// A job that ignores its outcomes (the policy never delivers).
struct NoJob;

impl Sink for NoJob {
    fn deliver(&self, _: usize, _: usize, _: &TaskOut, _: &[u8], _: Vec<OwnedFd>) {}
    fn fail(&self, _: usize, _: usize, _: TaskError) {}
}

fn range_task(entry: i64, first: usize, count: usize) -> Task {
    let start = first as i128;
    let payload = Payload {
        bytes: Data::Owned(postcard::to_stdvec(&start).unwrap()),
        fds: Vec::new(),
        offsets: Vec::new(),
        elem: 0,
        start,
    };
    Task::new(Arc::new(NoJob), entry, Kind::Range, first, count, payload)
}

/// A task of `count` encoded items (item `k` is `first + k`, as postcard).
fn seq_task(entry: i64, first: usize, count: usize) -> Task {
    let mut bytes = Vec::new();
    let mut offsets = vec![0];
    for k in first..first + count {
        bytes.extend(postcard::to_stdvec(&(k as u64)).unwrap());
        offsets.push(bytes.len());
    }
    let payload = Payload {
        bytes: Data::Owned(bytes),
        fds: Vec::new(),
        offsets,
        elem: 0,
        start: 0,
    };
    Task::new(Arc::new(NoJob), entry, Kind::Seq, first, count, payload)
}

/// The items a task stands for, decoded from its payload.
fn items_of(t: &Task) -> Vec<u64> {
    let p = &t.payload;
    let b = p.bytes.as_slice();
    match t.kind {
        Kind::Range => (0..t.count as i128).map(|k| (p.start + k) as u64).collect(),
        Kind::Pod => b
            .chunks(p.elem)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .collect(),
        Kind::Seq => p
            .offsets
            .windows(2)
            .map(|w| postcard::from_bytes::<u64>(&b[w[0]..w[1]]).unwrap())
            .collect(),
    }
}

fn est(ns: f64, bytes: f64, weight: f64) -> Estimate {
    Estimate { ns, bytes, weight }
}

fn idle() -> Load {
    Load {
        available: true,
        batches: 0,
        assigned: 0,
    }
}

#[test]
fn estimate_follows_new_samples() {
    let first = Estimate::sample(4, 4_000, 40.0);
    assert_eq!(first, est(1_000.0, 10.0, 4.0));
    // The first sample is folded into itself (as the collector does).
    let mut e = first;
    e.update(first);
    assert_eq!(e, est(1_000.0, 10.0, 8.0));
    assert!(!e.trusted());
    // A larger sample outweighs the old one: the old weight is capped at it.
    e.update(Estimate::sample(200, 400_000, 0.0));
    assert_eq!(e.weight, 208.0);
    assert!((e.ns - (1_000.0 * 8.0 + 2_000.0 * 200.0) / 208.0).abs() < 1e-9);
    assert!(e.trusted());
    // A small sample after a large one counts as much as itself.
    e.update(Estimate::sample(8, 8 * 10_000, 0.0));
    assert_eq!(e.weight, 16.0);
}

#[test]
fn even_share_is_one_chunk_per_worker() {
    let p = Policy::new(4, None);
    assert_eq!(p.even_share(Some(40_000_000)), 10_000_000);
    assert_eq!(p.even_share(Some(5)), 2);
    assert_eq!(p.even_share(Some(0)), 1);
    assert_eq!(p.even_share(None), 1);
    assert_eq!(p.even_share(Some(usize::MAX)), MAX_CHUNK);
    assert_eq!(Policy::new(4, Some(7)).even_share(Some(1000)), 7);
    assert_eq!(Policy::new(0, None).even_share(Some(10)), 10);
}

#[test]
fn chunk_size_of_unmeasured_functions() {
    let p = Policy::new(2, None);
    // One item at a time until something is measured.
    assert_eq!(p.chunk_size(None, Some(1000), false), 1);
    assert_eq!(p.chunk_size(None, None, false), 1);
    // A range: a fair share, which the worker cuts to its time budget.
    assert_eq!(p.chunk_size(None, Some(1000), true), 250);
    let few = est(1.0, 0.0, CONFIDENT_ITEMS - 1.0);
    assert_eq!(p.chunk_size(Some(few), Some(1000), true), 250);
    assert_eq!(
        Policy::new(2, Some(3)).chunk_size(None, Some(1000), true),
        3
    );
}

#[test]
fn chunk_size_of_measured_functions() {
    let p = Policy::new(2, None);
    let trusted = |ns, bytes| Some(est(ns, bytes, 1_000.0));
    // About TARGET_NS of work per chunk, when much is left.
    assert_eq!(p.chunk_size(trusted(1_000.0, 0.0), None, false), 2_000);
    assert_eq!(
        p.chunk_size(trusted(1_000.0, 0.0), Some(1_000_000), false),
        2_000
    );
    // At most MAX_CHUNK_BYTES of arguments and results.
    assert_eq!(p.chunk_size(trusted(10.0, 1024.0), None, false), 1024);
    // Tiny items: as if each took at least 0.05 ns.
    assert_eq!(p.chunk_size(trusted(0.0, 0.0), None, false), 40_000_000);
    // Never more than MAX_CHUNK.
    assert_eq!(p.chunk_size(None, Some(1 << 40), true), MAX_CHUNK);
    // Long items: one each.
    assert_eq!(p.chunk_size(trusted(1e9, 0.0), Some(100), false), 1);
    // The tail: a share of what is left, but not below the floor of
    // MIN_CHUNK_NS of work...
    assert_eq!(p.chunk_size(trusted(1_000.0, 0.0), Some(2_000), false), 500);
    assert_eq!(p.chunk_size(trusted(1_000.0, 0.0), Some(600), false), 200);
    // ... even when what is left is worth less than a floor per worker
    // (halving it further would only add round trips).
    assert_eq!(p.chunk_size(trusted(1_000.0, 0.0), Some(300), false), 200);
    assert_eq!(p.chunk_size(trusted(1_000.0, 0.0), Some(16), false), 200);
    assert_eq!(p.chunk_size(trusted(1_000_000.0, 0.0), Some(16), false), 2);
    // An untrusted estimate gets no floor.
    let few = Some(est(1_000.0, 0.0, 10.0));
    assert_eq!(p.chunk_size(few, Some(600), false), 150);
    // max_tasks_per_child bounds every chunk.
    assert_eq!(
        Policy::new(2, Some(5)).chunk_size(trusted(1.0, 0.0), None, false),
        5
    );
}

#[test]
fn next_chunk_follows_the_cutting() {
    let p = Policy::new(2, None);
    let cut = |chunksize, ordered, eager| Cutting {
        chunksize,
        ordered,
        eager,
    };
    let mut even = None;
    // An explicit size wins.
    assert_eq!(
        p.next_chunk(cut(Some(7), true, true), None, Some(100), true, &mut even),
        7
    );
    // An eager range map: one share per worker, kept once chosen.
    assert_eq!(
        p.next_chunk(cut(None, true, true), None, Some(100), true, &mut even),
        50
    );
    assert_eq!(
        p.next_chunk(cut(None, true, true), None, Some(10), true, &mut even),
        50
    );
    // An ordered imap of a range is cut from the front, one item first.
    let mut even = None;
    assert_eq!(
        p.next_chunk(cut(None, true, false), None, Some(100), true, &mut even),
        1
    );
    // An unordered one gets fair shares the workers cut to their budget.
    assert_eq!(
        p.next_chunk(cut(None, false, false), None, Some(100), true, &mut even),
        25
    );
    assert_eq!(even, None);
}

#[test]
fn budget_only_for_unmeasured_probing_ranges() {
    let mut t = range_task(1, 0, 100);
    assert_eq!(Policy::budget(None, &t), 0);
    t.probe = true;
    assert_eq!(Policy::budget(None, &t), PROBE_NS);
    assert_eq!(Policy::budget(Some(est(1.0, 0.0, 1.0)), &t), PROBE_NS);
    assert_eq!(Policy::budget(Some(est(1.0, 0.0, 1_000.0)), &t), 0);
    let mut s = seq_task(1, 0, 3);
    s.probe = true;
    assert_eq!(Policy::budget(None, &s), 0);
}

#[test]
fn pick_prefers_the_least_loaded_available_worker() {
    let p = Policy::new(3, None);
    let busy = |batches| Load { batches, ..idle() };
    let front = seq_task(1, 0, 1);
    let loads = [busy(1), busy(0), busy(0)];
    assert_eq!(p.pick(Some(&front), loads.into_iter(), DEPTH), Some(1));
    let gone = Load {
        available: false,
        ..idle()
    };
    let loads = [busy(1), gone, busy(2)];
    assert_eq!(p.pick(Some(&front), loads.into_iter(), DEPTH), Some(0));
    let loads = [busy(2), gone, busy(2)];
    assert_eq!(p.pick(Some(&front), loads.into_iter(), DEPTH), None);
    // A map's part of a range waits for an idle worker.
    let mut part = range_task(1, 0, 1000);
    part.adaptive = true;
    let loads = [busy(1), busy(1)];
    assert_eq!(p.pick(Some(&part), loads.into_iter(), DEPTH), None);
    part.probe = true;
    assert_eq!(p.pick(Some(&part), loads.into_iter(), DEPTH), Some(0));
    // A worker at its task budget gets nothing more.
    let p = Policy::new(2, Some(10));
    let spent = Load {
        assigned: 10,
        ..idle()
    };
    assert_eq!(p.pick(None, [spent, busy(1)].into_iter(), DEPTH), Some(1));
    assert_eq!(p.pick(None, [spent].into_iter(), DEPTH), None);
}

#[test]
fn take_batch_groups_small_measured_tasks() {
    let p = Policy::new(2, None);
    let mut pending: VecDeque<Task> = (0..10).map(|k| seq_task(1, k, 1)).collect();
    // Unmeasured: one task.
    let batch = p.take_batch(&mut pending, 0, &HashMap::new());
    assert_eq!(batch.len(), 1);
    assert_eq!(pending.len(), 9);
    // Measured and small: a fair share of the queue ((9 + 1) / 2).
    let estimates = HashMap::from([(1, est(1_000.0, 0.0, 1_000.0))]);
    let batch = p.take_batch(&mut pending, 0, &estimates);
    assert_eq!(
        batch.iter().map(|t| t.first).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // Measured but long: one.
    let estimates = HashMap::from([(1, est(1e9, 0.0, 1_000.0))]);
    assert_eq!(p.take_batch(&mut pending, 0, &estimates).len(), 1);
    // Tasks of an unmeasured function do not join a batch.
    let mut pending: VecDeque<Task> = [seq_task(1, 0, 1), seq_task(2, 0, 1)].into();
    let estimates = HashMap::from([(1, est(1.0, 0.0, 1_000.0))]);
    assert_eq!(p.take_batch(&mut pending, 0, &estimates).len(), 1);
    assert!(p.take_batch(&mut VecDeque::new(), 0, &estimates).is_empty());
}

#[test]
fn take_batch_respects_max_tasks_per_child() {
    let p = Policy::new(2, Some(10));
    let mut pending: VecDeque<Task> = [range_task(1, 0, 25)].into();
    let batch = p.take_batch(&mut pending, 4, &HashMap::new());
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].first, batch[0].count), (0, 6));
    assert_eq!((pending[0].first, pending[0].count), (6, 19));
    assert_eq!(items_of(&pending[0]), (6..25).collect::<Vec<u64>>());
}

#[test]
fn split_worth() {
    let long = Duration::from_secs(1);
    // Nothing to split.
    assert_eq!(Policy::split_worth(1, 10, 0.0, long), None);
    // Unmeasured: by items left.
    assert_eq!(Policy::split_worth(5, 10, 0.0, Duration::ZERO), Some(5.0));
    // Measured: by work left, unless it is too little...
    assert_eq!(
        Policy::split_worth(1_000, 1_000, 1_000.0, Duration::ZERO),
        Some(1e6)
    );
    assert_eq!(
        Policy::split_worth(10, 1_000, 1_000.0, Duration::ZERO),
        None
    );
    // ... and the batch is not overdue (its items cost more than measured).
    assert_eq!(
        Policy::split_worth(10, 1_000, 1_000.0, long),
        Some(10_000.0)
    );
}

#[test]
fn splittable_tasks() {
    let mut r = range_task(1, 0, 10);
    assert!(!r.splittable());
    r.adaptive = true;
    assert!(r.splittable());
    let mut s = seq_task(1, 0, 10);
    s.adaptive = true;
    assert!(s.splittable());
}

/// Cuts `task` at `cuts` (sorted, within it) into consecutive slices.
fn cut_at(task: &Task, cuts: &[usize]) -> Vec<Task> {
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied());
    bounds.push(task.count);
    bounds
        .windows(2)
        .map(|w| {
            task.slice(w[0], w[1])
                .expect("a task without descriptors slices")
        })
        .collect()
}

fn cuts_within(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=len, 0..6).prop_map(|mut v| {
        v.sort_unstable();
        v
    })
}

/// Every item of `n`, in `chunks`, once and in order.
fn assert_covers(chunks: &[Task], first: usize, n: usize) {
    let mut next = first;
    for c in chunks {
        assert_eq!(c.first, next);
        assert_eq!(
            items_of(c),
            (next as u64..(next + c.count) as u64).collect::<Vec<_>>()
        );
        next += c.count;
    }
    assert_eq!(next, first + n);
}

proptest! {
    /// Slices of a task hold its items exactly once, in order, whatever
    /// its encoding.
    #[test]
    fn slices_cover_a_task(first in 0usize..1000, n in 1usize..60, cuts in cuts_within(60)) {
        let cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(n)).collect();
        for t in [range_task(3, first, n), seq_task(3, first, n)] {
            let parts = cut_at(&t, &cuts);
            assert_covers(&parts, first, n);
        }
    }

    /// However the policy sizes chunks, a map's input is cut into chunks
    /// that hold every item exactly once, in order, none empty, none
    /// larger than asked (nor than `max_tasks_per_child`), and an eager
    /// range map into at most one chunk per worker.
    #[test]
    fn chunks_cover_the_input(
        n in 0usize..5_000,
        procs in 1usize..9,
        max_items in proptest::option::of(1u64..300),
        ns in proptest::option::of(0.0f64..5e6),
        weight in 1.0f64..1_000.0,
        chunksize in proptest::option::of(1usize..500),
        ordered: bool,
        eager: bool,
        vec_input: bool,
    ) {
        let p = Policy::new(procs, max_items);
        let est = ns.map(|ns| est(ns, 8.0, weight));
        let cut = Cutting { chunksize, ordered, eager };
        let mut prod = if vec_input {
            producer::<mproc_shm::codec::Postcard, u64, _>((0..n as u64).collect::<Vec<u64>>())
        } else {
            producer::<mproc_shm::codec::Postcard, u64, _>(0..n as u64)
        };
        let mut even = None;
        let mut chunks = Vec::new();
        loop {
            let size = p.next_chunk(cut, est, prod.remaining(), prod.free(), &mut even);
            prop_assert!(size >= 1);
            if chunksize.is_none() {
                prop_assert!(size <= MAX_CHUNK);
                prop_assert!(max_items.is_none_or(|m| size as u64 <= m));
            }
            let Some(Produced::Chunk { kind, count, payload }) = prod.next_chunk(size) else {
                break;
            };
            prop_assert!(count >= 1 && count <= size);
            let first = chunks.iter().map(|t: &Task| t.count).sum();
            chunks.push(Task::new(Arc::new(NoJob), 1, kind, first, count, payload));
        }
        assert_covers(&chunks, 0, n);
        if eager && chunksize.is_none() && !vec_input && max_items.is_none() {
            prop_assert!(chunks.len() <= procs);
        }
    }

    /// A chunk size is at least one item and within its bounds.
    #[test]
    fn chunk_size_is_within_bounds(
        procs in 1usize..64,
        max_items in proptest::option::of(1u64..10_000),
        ns in proptest::option::of(0.0f64..1e10),
        bytes in 0.0f64..1e7,
        weight in 1.0f64..1e6,
        remaining in proptest::option::of(0usize..1 << 40),
        free: bool,
    ) {
        let p = Policy::new(procs, max_items);
        let n = p.chunk_size(ns.map(|ns| est(ns, bytes, weight)), remaining, free);
        prop_assert!((1..=MAX_CHUNK).contains(&n));
        prop_assert!(max_items.is_none_or(|m| n as u64 <= m));
    }
}

#[test]
fn an_unmeasured_map_async_cuts_four_chunks_per_worker() {
    assert_eq!(unmeasured_chunk_size(Some(100), 2), 13);
    assert_eq!(unmeasured_chunk_size(Some(8), 2), 1);
    assert_eq!(unmeasured_chunk_size(Some(0), 2), 1);
    // An input of unknown length.
    assert_eq!(unmeasured_chunk_size(None, 2), 64);
}
