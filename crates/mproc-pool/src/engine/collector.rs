//! Receiving: the collector thread waits on every worker's socket, handles
//! results, splits and initializer reports, and notices deaths.

use std::borrow::Cow;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use mproc_pipe::{Connection, TryRecvError, Waitable};

use super::policy::Estimate;
use super::{Engine, MAX_ATTEMPTS, Run};
use crate::error::{BuildError, TaskError};
use crate::job::lock;
use crate::sys;
use crate::task::Task;
use crate::wire::{FromWorker, Msg, Parsed, unpack};

/// How long the collector waits for the payloads that follow a result
/// header (they are sent right after it).
const PAYLOAD_WAIT: Duration = Duration::from_secs(10);
/// How often the collector checks worker processes even without events.
const WATCH_PERIOD: Duration = Duration::from_millis(20);

impl Engine {
    pub(super) fn collector(self: Arc<Self>) {
        // The answers to the first start requests (the workers may be
        // running work already).
        self.settle_and_replace();
        loop {
            // Replacements started since (their handles watch them), and
            // workers another thread found could not be started.
            if lock(&self.st)
                .workers
                .iter()
                .any(|w| w.starting.is_some() || (w.start_failed.is_some() && !w.dead))
            {
                self.settle_and_replace();
            }
            let conns: Vec<(usize, Arc<Connection>)> = {
                let mut st = lock(&self.st);
                if st.shutdown || st.finished() {
                    return;
                }
                if st.cancel_on_sigint {
                    let n = sys::sigint_count();
                    if n != st.sigint_seen {
                        st.sigint_seen = n;
                        drop(st);
                        self.cancel();
                        continue;
                    }
                }
                st.workers
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| !w.dead)
                    .filter_map(|(i, w)| Some((i, w.conn.clone()?)))
                    .collect()
            };
            let mut objs: Vec<&dyn Waitable> = Vec::with_capacity(conns.len() + 1);
            objs.push(&self.wake);
            for (_, c) in &conns {
                objs.push(&**c);
            }
            let ready = mproc_pipe::wait_timeout(&objs, WATCH_PERIOD).unwrap_or_default();
            drop(objs);
            for i in ready {
                if i == 0 {
                    sys::drain(self.wake.as_fd());
                    continue;
                }
                let (slot, conn) = &conns[i - 1];
                if !self.drain_conn(*slot, conn) {
                    self.on_death(*slot);
                }
            }
            // Deaths that closed no socket yet (or whose EOF we missed).
            let dead: Vec<usize> = {
                let st = lock(&self.st);
                st.workers
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| !w.dead && w.handle.as_ref().is_some_and(|h| !h.is_alive()))
                    .map(|(i, _)| i)
                    .collect()
            };
            for slot in dead {
                self.on_death(slot);
            }
            // A split not worth asking for earlier may be now.
            let mut st = lock(&self.st);
            if st.pending.is_empty()
                && self
                    .pick(&st, 1)
                    .is_some_and(|s| st.workers[s].inflight.is_empty())
            {
                self.ask_split(&mut st);
            }
        }
    }

    /// Handles every message waiting on a worker's connection. Returns
    /// `false` if the connection is finished (the worker is gone).
    pub(super) fn drain_conn(&self, slot: usize, conn: &Connection) -> bool {
        loop {
            match conn.try_recv::<Msg>() {
                Ok(msg) => {
                    if !self.on_message(slot, msg, conn) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Returns `false` on a protocol violation.
    pub(super) fn on_message(&self, slot: usize, msg: Msg, conn: &Connection) -> bool {
        let Ok(mut parsed) = Parsed::<FromWorker>::new(msg) else {
            return false;
        };
        match std::mem::replace(&mut parsed.header, FromWorker::Ready) {
            FromWorker::Ready => {
                let mut st = lock(&self.st);
                st.workers[slot].ready = true;
                st.init_failures = 0;
                self.state_cv.notify_all();
                if st.feeder_idle {
                    st.feeder_idle = false;
                    self.feeder_cv.notify_one();
                }
                true
            }
            FromWorker::Split { seq, at } => {
                let mut guard = lock(&self.st);
                let st = &mut *guard;
                let w = &mut st.workers[slot];
                if w.split_asked == Some(seq) {
                    w.split_asked = None;
                }
                let Some(t) = w
                    .inflight
                    .front_mut()
                    .filter(|f| f.seq == seq)
                    .and_then(|f| f.tasks.last_mut())
                else {
                    return false;
                };
                let Ok(at) = usize::try_from(at) else {
                    return false;
                };
                if !(t.splittable() && at > 0 && at < t.count) {
                    return false;
                }
                let (Some(a), Some(b)) = (t.slice(0, at), t.slice(at, t.count)) else {
                    return false;
                };
                w.assigned = w.assigned.saturating_sub(b.count as u64);
                *t = a;
                st.pending.push_front(b);
                st.feeder_idle = false;
                self.feeder_cv.notify_one();
                drop(guard);
                self.dispatch_to_idle();
                true
            }
            FromWorker::InitFailed(m) => {
                let mut st = lock(&self.st);
                if st.building && st.startup_failure.is_none() {
                    st.startup_failure = Some(BuildError::Initializer { message: m.clone() });
                }
                st.workers[slot].init_failed = Some(m);
                self.state_cv.notify_all();
                true
            }
            FromWorker::Results {
                seq,
                tasks: outs,
                packed,
            } => {
                let tasks = {
                    let mut st = lock(&self.st);
                    let w = &mut st.workers[slot];
                    match w.inflight.front() {
                        Some(f)
                            if f.seq == seq
                                && f.tasks.len() == outs.len()
                                && f.tasks
                                    .iter()
                                    .zip(&outs)
                                    .all(|(t, o)| o.cut.is_none_or(|c| c <= t.count as u64)) => {}
                        _ => return false,
                    }
                    let Some(inf) = w.inflight.pop_front() else {
                        return false;
                    };
                    if w.split_asked == Some(seq) {
                        w.split_asked = None;
                    }
                    // Tasks the worker cut short: the rest runs elsewhere.
                    let mut rest = Vec::new();
                    let mut tasks = Vec::with_capacity(inf.tasks.len());
                    for (t, o) in inf.tasks.into_iter().zip(&outs) {
                        let done = o.cut.map_or(t.count, |c| c as usize);
                        if done == t.count {
                            tasks.push(t);
                            continue;
                        }
                        w.assigned = w.assigned.saturating_sub((t.count - done) as u64);
                        match (t.slice(0, done), t.slice(done, t.count)) {
                            (Some(a), Some(b)) => {
                                tasks.push(a);
                                rest.push(b);
                            }
                            // Only range tasks are cut, and they always split.
                            _ => tasks.push(t),
                        }
                    }
                    for t in rest.into_iter().rev() {
                        st.pending.push_front(t);
                    }
                    for (t, o) in tasks.iter().zip(&outs) {
                        // Long enough to be this worker's pace, not overhead.
                        if o.error.is_none() && o.nanos >= 200_000 && t.count > 0 {
                            st.workers[slot].pace =
                                Some((t.entry, o.nanos as f64 / t.count as f64));
                        }
                        if o.error.is_none() && t.count > 0 {
                            let bytes = t.payload.bytes.as_slice().len() as f64 + o.len as f64;
                            let m = Estimate::sample(t.count, o.nanos, bytes);
                            st.estimates.entry(t.entry).or_insert(m).update(m);
                        }
                    }
                    if st.pending.is_empty() && st.workers[slot].inflight.is_empty() {
                        // Idle with nothing queued: ask a busy worker for
                        // work now rather than after waking the feeder.
                        self.ask_split(&mut st);
                    }
                    // The feeder only has work if some is queued (this
                    // worker can take more), or to let a closed pool's
                    // workers go: waking it for nothing costs a thread
                    // wake-up per result, on the path of every round trip.
                    if st.feeder_idle && (!st.pending.is_empty() || st.run != Run::Running) {
                        st.feeder_idle = false;
                        self.feeder_cv.notify_one();
                    }
                    tasks
                };
                let mut intact = true;
                let mut parts = match &packed {
                    Some(b) => match unpack(&b.0, outs.iter().map(|o| o.len)) {
                        Some(p) => Some(p.into_iter()),
                        None => {
                            intact = false;
                            None
                        }
                    },
                    None => None,
                };
                // Tasks whose values were lost on the way (the worker died
                // while sending them): they run again, like the rest of a
                // dead worker's batch.
                let mut lost: Vec<(Task, String)> = Vec::new();
                for (t, o) in tasks.into_iter().zip(outs) {
                    let fds = parsed.take_fds(o.nfds);
                    if o.error.is_none() && o.len > 0 && parts.is_none() && intact {
                        if let Some((_, e)) = lost.last() {
                            // The connection broke before this one's turn.
                            let e = e.clone();
                            lost.push((t, e));
                            continue;
                        }
                    }
                    // The payloads are packed in the header, or follow it at
                    // once (the worker sends them together); a worker that
                    // dies in between breaks the connection, and the wait ends.
                    let bytes: Result<Cow<'_, [u8]>, String> = if let Some(p) = parts.as_mut() {
                        Ok(Cow::Borrowed(p.next().unwrap_or_default()))
                    } else if o.len == 0 || !intact {
                        Ok(Cow::Borrowed(&[]))
                    } else {
                        match conn.recv_bytes_timeout(PAYLOAD_WAIT) {
                            Ok(b) => Ok(Cow::Owned(b)),
                            Err(e) if o.error.is_none() => {
                                lost.push((t, format!("the result did not arrive: {e}")));
                                continue;
                            }
                            Err(e) => Err(format!("the result did not arrive: {e}")),
                        }
                    };
                    match (bytes, fds, &o.error) {
                        (_, _, Some(e)) => {
                            t.job.fail(t.first, t.count, TaskError::Decode(e.clone()))
                        }
                        (Ok(b), Ok(fds), None) if b.len() as u64 == o.len && intact => {
                            t.job.deliver(t.first, t.count, &o, &b, fds)
                        }
                        (Err(e), _, None) | (_, Err(e), None) => {
                            intact = false;
                            t.job.fail(t.first, t.count, TaskError::Decode(e))
                        }
                        (Ok(_), Ok(_), None) => {
                            intact = false;
                            t.job.fail(
                                t.first,
                                t.count,
                                TaskError::Decode("a result of the wrong length".into()),
                            )
                        }
                    }
                }
                if !lost.is_empty() {
                    let mut failed = Vec::new();
                    {
                        let mut st = lock(&self.st);
                        for (mut t, e) in lost.into_iter().rev() {
                            t.attempts += 1;
                            if t.attempts > MAX_ATTEMPTS || !t.job.rerun_lost() {
                                failed.push((t, e));
                            } else {
                                st.pending.push_front(t);
                            }
                        }
                    }
                    for (t, e) in failed {
                        t.job.fail(t.first, t.count, TaskError::Decode(e));
                    }
                    // The connection is broken: the worker is handled as
                    // a dead one.
                    return false;
                }
                if !intact {
                    return false;
                }
                self.dispatch_to_idle();
                // A closed pool may now let its workers go.
                let mut st = lock(&self.st);
                if st.feeder_idle && st.run != Run::Running {
                    st.feeder_idle = false;
                    self.feeder_cv.notify_one();
                }
                true
            }
        }
    }
}
