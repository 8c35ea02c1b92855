//! The scheduling policy: how large a chunk is, which worker gets the next
//! batch and what goes in it, and when running work is worth splitting.
//! Pure functions of the state they are given (no locks, no I/O), so they
//! are tested here on their own; the engine calls them under its lock.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::task::Task;
use crate::wire::Kind;

/// Batches a worker may hold: one running, one waiting, so it never idles
/// for a round trip.
pub(crate) const DEPTH: usize = 2;
/// Work per chunk the adaptive sizing aims at.
pub(crate) const TARGET_NS: f64 = 2_000_000.0;
/// The smallest chunk duration worth splitting a known-length input into.
const MIN_CHUNK_NS: f64 = 200_000.0;
/// Items an estimate must stand for before chunks may exceed a fair share
/// of what is left to reach [`MIN_CHUNK_NS`].
const CONFIDENT_ITEMS: f64 = 100.0;
/// The time budget of a range chunk of an unmeasured function: the worker
/// stops there and the rest is queued again, so the first chunks are as
/// large as this whatever the function costs.
const PROBE_NS: u64 = 1_000_000;
/// The most bytes (arguments plus results) a chunk should ship.
const MAX_CHUNK_BYTES: f64 = (1 << 20) as f64;
/// The largest chunk, in items (ranges of functions returning `()` ship
/// no bytes per item, so only this and the time bound them).
const MAX_CHUNK: usize = 1 << 26;
/// The least work left in a running range task worth splitting off half
/// of for an idle worker (it costs a few messages).
const MIN_SPLIT_NS: f64 = 100_000.0;

/// The chunk size of a `map_async` whose function was not measured yet:
/// CPython's rule, four chunks per worker, or 64 items for an input of
/// unknown length. mproc-mpi's `map_async` follows it too.
#[inline]
pub(crate) fn unmeasured_chunk_size(remaining: Option<usize>, workers: usize) -> usize {
    match remaining {
        Some(n) => n.div_ceil(4 * workers.max(1)).max(1),
        None => 64,
    }
}

/// What was measured of a function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Estimate {
    /// Nanoseconds per item in the worker.
    pub(crate) ns: f64,
    /// Bytes per item shipped (argument plus result).
    pub(crate) bytes: f64,
    /// How many items the estimate stands for (recent, larger samples
    /// outweigh the first one-item tasks, whose time is mostly overhead).
    pub(crate) weight: f64,
}

impl Estimate {
    /// One measurement: `count` items (`count > 0`) that took `nanos` in the
    /// worker and shipped `bytes` (arguments plus results).
    pub(crate) fn sample(count: usize, nanos: u64, bytes: f64) -> Self {
        let n = count as f64;
        Self {
            ns: nanos as f64 / n,
            bytes: bytes / n,
            weight: n,
        }
    }

    /// Folds a new measurement in: weighted by items, with the old weight
    /// capped at the new sample's, so the estimate follows change.
    pub(crate) fn update(&mut self, m: Estimate) {
        let n = m.weight;
        let w = self.weight.min(n);
        self.ns = (self.ns * w + m.ns * n) / (w + n);
        self.bytes = (self.bytes * w + m.bytes * n) / (w + n);
        self.weight = w + n;
    }

    /// Whether it stands for enough items to be relied on.
    pub(crate) fn trusted(self) -> bool {
        self.weight >= CONFIDENT_ITEMS
    }
}

/// How a map's input is cut into chunks (see [`Policy::next_chunk`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cutting {
    /// Chosen by the caller (`map_chunked`, `imap_chunked`).
    pub(crate) chunksize: Option<usize>,
    /// Results are yielded in input order (`imap`, not `imap_unordered`).
    pub(crate) ordered: bool,
    /// For `map`: results are not streamed, so an integer range is cut
    /// into one chunk per worker (split further while running, to balance).
    pub(crate) eager: bool,
}

/// What the policy knows of a worker when picking one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    /// Alive, ready, connected, and not told to exit.
    pub(crate) available: bool,
    /// Batches it holds.
    pub(crate) batches: usize,
    /// Items sent to it so far (for `max_tasks_per_child`).
    pub(crate) assigned: u64,
}

/// The pool's sizes the policy works with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// How many workers (at least 1 for the arithmetic).
    processes: usize,
    /// `max_tasks_per_child`.
    max_items: Option<u64>,
}

impl Policy {
    pub(crate) fn new(processes: usize, max_items: Option<u64>) -> Self {
        Self {
            processes: processes.max(1),
            max_items,
        }
    }

    /// The most items one chunk may hold for `max_tasks_per_child`.
    fn cap(&self) -> usize {
        self.max_items.map_or(usize::MAX, |m| m as usize).max(1)
    }

    /// One chunk per worker of `remaining` items (which ship for free).
    pub(crate) fn even_share(&self, remaining: Option<usize>) -> usize {
        remaining
            .unwrap_or(1)
            .div_ceil(self.processes)
            .clamp(1, MAX_CHUNK)
            .min(self.cap())
    }

    /// The adaptive chunk size for the next chunk of a job whose function
    /// was measured as `est`. `free`: its items cost nothing to ship (an
    /// integer range's).
    pub(crate) fn chunk_size(
        &self,
        est: Option<Estimate>,
        remaining: Option<usize>,
        free: bool,
    ) -> usize {
        let procs = self.processes;
        let cap = self.cap();
        if let (true, Some(rem), false) = (free, remaining, est.is_some_and(Estimate::trusted)) {
            // An unmeasured function over a range: a fair share of what is
            // left, which the worker cuts to its time budget (see `budget`).
            return rem.div_ceil(2 * procs).clamp(1, MAX_CHUNK).min(cap);
        }
        let Some(est) = est else {
            return 1;
        };
        let ns = est.ns.max(0.05);
        // About TARGET_NS of work, and few enough bytes that a chunk stays in
        // memory the allocator reuses (large fresh buffers cost page faults
        // that dwarf tiny tasks).
        // Items that ship next to nothing (a range's items, `()` results)
        // are not bounded by bytes.
        let by_bytes = (MAX_CHUNK_BYTES / est.bytes.max(1e-3)) as usize;
        let mut n = ((TARGET_NS / ns) as usize)
            .min(by_bytes)
            .clamp(1, MAX_CHUNK);
        if let Some(rem) = remaining {
            // Balance the tail: no chunk larger than a share of what is left,
            // but not so small that per-chunk costs dominate.
            let share = rem.div_ceil(2 * procs);
            // The floor trusts the estimate, so only one measured on enough
            // items (a few warm-up calls with other arguments may be far off).
            let floor = if est.trusted() {
                ((MIN_CHUNK_NS / ns) as usize).min(by_bytes).max(1)
            } else {
                1
            };
            n = n.min(share.max(floor));
            // Never more than one worker's part of what is left, floor or
            // not: an estimate learned on cheaper arguments must not send
            // 12 of 16 long items to one worker. Unless what is left is
            // worth less than a floor per worker: halving it further would
            // only add round trips (each chunk costs one).
            if !(est.trusted() && rem as f64 * ns <= MIN_CHUNK_NS * procs as f64) {
                n = n.min(rem.div_ceil(procs).max(1));
            }
        }
        if let Some(m) = self.max_items {
            n = n.min(m as usize);
        }
        n.max(1)
    }

    /// The size of the next chunk a map cuts from its input, as `cut` asks
    /// (`remaining` and `free` as in [`chunk_size`](Self::chunk_size)).
    /// `even` keeps an eager range map's share once it was chosen, so that
    /// every worker gets the same.
    pub(crate) fn next_chunk(
        &self,
        cut: Cutting,
        est: Option<Estimate>,
        remaining: Option<usize>,
        free: bool,
        even: &mut Option<usize>,
    ) -> usize {
        match cut.chunksize {
            Some(c) => c,
            None if cut.eager && free => *even.get_or_insert_with(|| self.even_share(remaining)),
            // An ordered imap's consumer waits for the front of the order:
            // a range is cut like any input, into chunks of about TARGET_NS
            // of work from the front (the first of one item), not into
            // shares far ahead that its workers would run side by side with
            // the front.
            None => self.chunk_size(est, remaining, free && (cut.eager || !cut.ordered)),
        }
    }

    /// The time budget of a task about to be sent, given what was measured
    /// of its function (see [`TaskDesc::budget`](crate::wire::TaskDesc)).
    pub(crate) fn budget(est: Option<Estimate>, t: &Task) -> u64 {
        let measured = est.is_some_and(Estimate::trusted);
        if t.probe && t.kind == Kind::Range && !measured {
            PROBE_NS
        } else {
            0
        }
    }

    /// The worker the next queued batch (`front` first) should go to: an
    /// available one holding fewer than `depth` batches (and under its task
    /// budget), the least loaded first.
    pub(crate) fn pick(
        &self,
        front: Option<&Task>,
        workers: impl Iterator<Item = Load>,
        depth: usize,
    ) -> Option<usize> {
        // A map's part of a range (balanced by splitting) waits for an
        // idle worker rather than queueing behind a busy one, where no
        // other worker could take it over.
        let depth = match front {
            Some(t) if t.adaptive && !t.probe && t.kind == Kind::Range => 1,
            _ => depth,
        };
        workers
            .enumerate()
            .filter(|(_, w)| {
                w.available && w.batches < depth && self.max_items.is_none_or(|m| w.assigned < m)
            })
            .min_by_key(|(_, w)| w.batches)
            .map(|(i, _)| i)
    }

    /// Takes the next batch from `pending` for a worker that was sent
    /// `assigned` items (and may run only so many more, with
    /// `max_tasks_per_child`).
    pub(crate) fn take_batch(
        &self,
        pending: &mut VecDeque<Task>,
        assigned: u64,
        estimates: &HashMap<i64, Estimate>,
    ) -> Vec<Task> {
        let left = self.max_items.map(|m| m.saturating_sub(assigned) as usize);
        let mut first = match pending.pop_front() {
            Some(t) => t,
            None => return Vec::new(),
        };
        if let Some(left) = left.filter(|&l| l < first.count) {
            if let (Some(a), Some(b)) = (first.slice(0, left), first.slice(left, first.count)) {
                pending.push_front(b);
                first = a;
            }
        }
        let mut items = first.count;
        // Small tasks (apply_async calls, first chunks) travel together,
        // up to about TARGET_NS of measured work and a fair share of the queue.
        let limit = match estimates.get(&first.entry) {
            Some(e) => ((TARGET_NS / e.ns.max(1.0)) as usize).clamp(1, 4096),
            None => 1,
        };
        let share = (pending.len() + 1).div_ceil(self.processes);
        let limit = limit.min(share.max(1)).min(left.unwrap_or(usize::MAX));
        let mut batch = vec![first];
        while items < limit {
            match pending.front() {
                Some(t) if items + t.count <= limit && estimates.contains_key(&t.entry) => {
                    items += t.count;
                    if let Some(t) = pending.pop_front() {
                        batch.push(t);
                    }
                }
                _ => break,
            }
        }
        batch
    }

    /// How much a split of the running task of a worker is worth (more is
    /// better), or `None` if it is not worth asking for: `left` of its
    /// items are not done yet, its batch holds `batch_items` items, it was
    /// sent `elapsed` ago, and the function takes `ns` per item (0 if not
    /// measured).
    pub(crate) fn split_worth(
        left: usize,
        batch_items: usize,
        ns: f64,
        elapsed: Duration,
    ) -> Option<f64> {
        // Too little left to be worth a split, by the estimate; unless
        // the batch has run far longer than estimated (items differ).
        let batch_ns = batch_items as f64 * ns;
        let overdue = elapsed.as_nanos() as f64 > 2.0 * batch_ns + MIN_SPLIT_NS;
        if left < 2 || (ns > 0.0 && left as f64 * ns < MIN_SPLIT_NS && !overdue) {
            return None;
        }
        Some(if ns > 0.0 {
            left as f64 * ns
        } else {
            left as f64
        })
    }
}

#[cfg(test)]
mod tests;
