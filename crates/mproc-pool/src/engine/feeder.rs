//! Sending work: the feeder thread, idle workers fed at once from the
//! thread that queued or freed work, and asking a busy worker to give up
//! half of its running range for an idle one.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;
use std::time::Instant;

use mproc_pipe::Connection;

use super::policy::{DEPTH, Load, Policy};
use super::{Engine, InFlight, Run, State};
use crate::job::lock;
use crate::sys;
use crate::task::{Payload, Task};
use crate::wire::{Bytes, PACK_MAX, TaskDesc, ToWorker, send_header, should_pack};
use crate::worker::{BLOCK, FINISHED, NOT_STARTED};

impl Engine {
    pub(super) fn feeder(self: Arc<Self>) {
        let mut st = lock(&self.st);
        loop {
            if st.shutdown || st.finished() {
                return;
            }
            // A closed pool with no work left lets its workers go.
            let (guard, released) = self.release_idle(st);
            st = guard;
            if released {
                continue;
            }
            let pick = self.pick(&st, DEPTH);
            let (Some(slot), false) = (pick, st.pending.is_empty()) else {
                if pick.is_some_and(|s| st.workers[s].inflight.is_empty()) {
                    // A worker is idle and nothing is queued: take work
                    // from a busy one.
                    self.ask_split(&mut st);
                }
                st.feeder_idle = true;
                st = mproc_shm::local::wait(&self.feeder_cv, st);
                continue;
            };
            let batch = self.take_batch(&mut st, slot);
            st = self.dispatch(st, slot, batch);
        }
    }

    /// If the pool is closed and has no work left, tells its idle workers
    /// to exit (from the calling thread: `close` and the feeder). Returns
    /// whether it told any.
    pub(super) fn release_idle<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> (MutexGuard<'a, State>, bool) {
        if !(st.run == Run::Closed && st.pending.is_empty() && st.active_jobs == 0) {
            return (st, false);
        }
        let idle: Vec<Arc<Connection>> = st
            .workers
            .iter_mut()
            .filter(|w| !w.dead && !w.exiting && w.inflight.is_empty())
            .filter_map(|w| {
                w.exiting = true;
                w.conn.clone()
            })
            .collect();
        if idle.is_empty() {
            return (st, false);
        }
        drop(st);
        for c in idle {
            let _ = send_header(&c, &ToWorker::Exit, Vec::new());
        }
        (lock(&self.st), true)
    }

    /// The worker the next queued batch should go to (see
    /// [`Policy::pick`]).
    pub(super) fn pick(&self, st: &State, depth: usize) -> Option<usize> {
        let loads = st.workers.iter().map(|w| Load {
            available: !w.dead && !w.exiting && w.ready && w.conn.is_some(),
            batches: w.inflight.len(),
            assigned: w.assigned,
        });
        self.policy.pick(st.pending.front(), loads, depth)
    }

    /// Sends `batch` to the worker in `slot`. Its bookkeeping happens under
    /// the state lock, the sending outside it but under the worker's send
    /// lock, taken before the state lock is released: batches reach a
    /// worker in the order they were recorded, whichever thread sends.
    pub(super) fn dispatch<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        slot: usize,
        batch: Vec<Task>,
    ) -> MutexGuard<'a, State> {
        if batch.is_empty() {
            return st;
        }
        let items: usize = batch.iter().map(|t| t.count).sum();
        let seq = st.next_seq;
        st.next_seq += 1;
        let descs: Vec<(TaskDesc, Arc<Payload>)> = batch
            .iter()
            .map(|t| {
                let d = TaskDesc {
                    entry: t.entry,
                    kind: t.kind,
                    count: t.count as u64,
                    len: t.payload.bytes.as_slice().len() as u64,
                    nfds: t.payload.fds.len() as u32,
                    budget: Policy::budget(st.estimates.get(&t.entry).copied(), t),
                    careful: t.careful,
                };
                (d, t.payload.clone())
            })
            .collect();
        for t in &batch {
            t.job.dispatched();
        }
        let w = &mut st.workers[slot];
        w.assigned += items as u64;
        w.inflight.push_back(InFlight {
            seq,
            tasks: batch,
            sent: Instant::now(),
        });
        let Some(conn) = w.conn.clone() else {
            return st;
        };
        let send_lock = w.send_lock.clone();
        let sending = lock(&send_lock);
        drop(st);
        let sent = send_batch(&conn, seq, descs);
        drop(sending);
        let st = lock(&self.st);
        if sent.is_err() {
            // The worker is gone or broken: let the collector handle it.
            if let Some(h) = &st.workers[slot].handle {
                let _ = h.kill();
            }
            sys::notify(self.wake.as_fd());
        }
        st
    }

    /// Hands queued work to idle workers from this thread (the collector's
    /// or a submitter's: the feeder would need waking first), if it is
    /// small enough that sending cannot block for long.
    pub(super) fn dispatch_to_idle(&self) {
        drop(self.dispatch_idle(lock(&self.st)));
    }

    /// [`dispatch_to_idle`](Self::dispatch_to_idle) with the state locked.
    pub(super) fn dispatch_idle<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> MutexGuard<'a, State> {
        while !st.pending.is_empty() {
            let Some(slot) = self
                .pick(&st, 1)
                .filter(|&s| st.workers[s].inflight.is_empty())
            else {
                break;
            };
            let batch = self.take_batch(&mut st, slot);
            let bytes: usize = batch.iter().map(|t| t.payload.bytes.as_slice().len()).sum();
            let small = bytes as u64 <= PACK_MAX && batch.iter().all(|t| t.payload.fds.is_empty());
            if !small {
                for t in batch.into_iter().rev() {
                    st.pending.push_front(t);
                }
                break;
            }
            st = self.dispatch(st, slot, batch);
        }
        st
    }

    /// Asks the worker with the most range work left in its running batch
    /// to give up half of it (see [`Progress::split`](crate::worker::Progress::split)); its answer
    /// ([`FromWorker::Split`](crate::wire::FromWorker::Split)) queues that half for an idle worker.
    pub(super) fn ask_split(&self, st: &mut State) {
        let mut best: Option<(usize, u64, f64)> = None;
        for (i, w) in st.workers.iter().enumerate() {
            if w.dead || w.exiting || w.split_asked.is_some() {
                continue;
            }
            let Some(inf) = w.inflight.front() else {
                continue;
            };
            let Some(t) = inf.tasks.last() else { continue };
            if !t.splittable() || t.count < 2 {
                continue;
            }
            let Some(p) = self.progress_of(i) else {
                continue;
            };
            // Acquire: pairs with the worker's Release store of `seq`.
            if p.seq.load(Ordering::Acquire) != inf.seq {
                continue; // not started yet: the worker could take it whole
            }
            let batch_items = inf.tasks.iter().map(|t| t.count).sum::<usize>();
            let base = batch_items - t.count;
            let done = match p.item.load(Ordering::Relaxed) {
                FINISHED => continue,
                NOT_STARTED => 0,
                item => usize::try_from(item & !BLOCK).map_or(0, |i| i.saturating_sub(base)),
            };
            let left = t.count.saturating_sub(done);
            let ns = st.estimates.get(&t.entry).map_or(0.0, |e| e.ns);
            let Some(worth) = Policy::split_worth(left, batch_items, ns, inf.sent.elapsed()) else {
                continue;
            };
            if best.is_none_or(|(_, _, b)| worth > b) {
                best = Some((i, inf.seq, worth));
            }
        }
        let Some((i, seq, _)) = best else { return };
        // The pace of the worker that will take the work over (an idle one),
        // if measured on this function.
        let entry = st.workers[i]
            .inflight
            .front()
            .and_then(|f| f.tasks.last())
            .map(|t| t.entry);
        let peer_ns = st
            .workers
            .iter()
            .filter(|w| !w.dead && !w.exiting && w.inflight.is_empty())
            .find_map(|w| w.pace.filter(|(e, _)| Some(*e) == entry))
            .map_or(0.0, |(_, ns)| ns);
        if let Some(p) = self.progress_of(i) {
            // Relaxed: published by the Release store of `split` next.
            p.peer_ns.store(peer_ns.to_bits(), Ordering::Relaxed);
            // Release: pairs with the worker's Acquire taking the request.
            p.split.store(seq, Ordering::Release);
            st.workers[i].split_asked = Some(seq);
        }
    }

    /// Takes the next batch for the worker in `slot` (see
    /// [`Policy::take_batch`]).
    pub(super) fn take_batch(&self, st: &mut State, slot: usize) -> Vec<Task> {
        let assigned = st.workers[slot].assigned;
        self.policy
            .take_batch(&mut st.pending, assigned, &st.estimates)
    }
}

fn send_batch(conn: &Connection, seq: u64, descs: Vec<(TaskDesc, Arc<Payload>)>) -> Result<(), ()> {
    let mut fds = Vec::new();
    for (_, p) in &descs {
        for f in &p.fds {
            fds.push(f.try_clone().map_err(|_| ())?);
        }
    }
    let tasks: Vec<TaskDesc> = descs.iter().map(|(d, _)| d.clone()).collect();
    if should_pack(tasks.iter().map(|t| t.len)) {
        // Small payloads (apply_async calls, first chunks) ride along in
        // the header: one write, one wake-up of the worker.
        let mut b = Vec::with_capacity(tasks.iter().map(|t| t.len as usize).sum());
        for (_, p) in &descs {
            b.extend_from_slice(p.bytes.as_slice());
        }
        let packed = Some(Bytes(b));
        return send_header(conn, &ToWorker::Batch { seq, tasks, packed }, fds).map_err(|_| ());
    }
    send_header(
        conn,
        &ToWorker::Batch {
            seq,
            tasks,
            packed: None,
        },
        fds,
    )
    .map_err(|_| ())?;
    // Each payload follows as a message of its own, sent from where it lies.
    for (_, p) in &descs {
        let b = p.bytes.as_slice();
        if !b.is_empty() {
            conn.send_bytes(b).map_err(|_| ())?;
        }
    }
    Ok(())
}
