//! Worker lifecycle: asking the fork server for workers, the progress
//! segment they report in, a worker's death (which item failed, what runs
//! again, whether it is replaced), and stopping work and workers (cancel,
//! terminate, break down).

use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mproc_pipe::Connection;
use mproc_process::{ExitStatus, PendingStart, Process, StartError};
use mproc_shm::Segment;
use mproc_shm::handle::HandleFd;

use super::{Engine, MAX_ATTEMPTS, Run, Worker};
use crate::error::{BuildError, TaskError};
use crate::job::lock;
use crate::sys;
use crate::task::Task;
use crate::wire::{Bytes, ToWorker, send_header};
use crate::worker::{self, BLOCK, FINISHED, InitSpec, NOT_STARTED, Progress, WorkerArgs};

/// Consecutive initializer failures of replacement workers before the pool
/// gives up.
const MAX_INIT_FAILURES: u32 = 3;
/// Consecutive workers that could not be started before the pool stops
/// trying (for that slot).
const MAX_START_FAILURES: u32 = 3;

impl Engine {
    /// The progress slot of worker `slot` (`None` before the segment
    /// exists: no worker ran anything yet).
    pub(super) fn progress_of(&self, slot: usize) -> Option<&Progress> {
        self.progress
            .get()?
            .get::<Progress>(worker::progress_offset(slot))
            .ok()
    }

    /// Makes the progress segment (every slot: no batch) and gives it to the
    /// workers asked for so far.
    pub(super) fn make_progress(&self) -> Result<(), BuildError> {
        let io = |e: mproc_shm::SegmentError| BuildError::Io(e.into());
        let seg = Segment::anonymous(worker::progress_size(self.cfg.processes)).map_err(io)?;
        let size = seg.len() as u64;
        seg.header().map_err(io)?.init(
            worker::PROGRESS_LAYOUT,
            size,
            [self.cfg.processes as u64, 0, 0, 0],
        );
        for slot in 0..self.cfg.processes {
            if let Ok(p) = seg.get::<Progress>(worker::progress_offset(slot)) {
                p.item.store(NOT_STARTED, Ordering::Relaxed);
            }
        }
        let _ = self.progress.set(seg);
        let conns: Vec<Arc<Connection>> = lock(&self.st)
            .workers
            .iter()
            .filter_map(|w| w.conn.clone())
            .collect();
        for c in conns {
            // A worker that cannot be told is gone: the collector sees it.
            let _ = self.send_setup(&c);
        }
        Ok(())
    }

    /// Sends a new worker its first message, with the progress segment.
    pub(super) fn send_setup(&self, conn: &Connection) -> std::io::Result<()> {
        let seg = self
            .progress
            .get()
            .ok_or_else(|| std::io::Error::other("no progress segment yet"))?;
        let fd = seg.as_fd().try_clone_to_owned()?;
        send_header(conn, &ToWorker::Setup, vec![fd]).map_err(std::io::Error::other)
    }

    /// Asks for the worker for `slot` to be started, without waiting for
    /// it to exist (see [`Worker::starting`]).
    pub(super) fn spawn(&self, slot: usize, n: usize) -> Result<Worker, BuildError> {
        let (mine, theirs) = mproc_pipe::pipe(true).map_err(BuildError::Io)?;
        let init = match &self.cfg.init {
            Some((entry, args, fds)) => {
                let fds = fds
                    .iter()
                    .map(|f| f.try_clone().map(HandleFd::new))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(BuildError::Io)?;
                Some(InitSpec {
                    entry: *entry,
                    args: Bytes(args.clone()),
                    fds,
                })
            }
            None => None,
        };
        // Reset before the worker can see it (its slot may have served a
        // worker that died).
        if let Some(p) = self.progress_of(slot) {
            p.seq.store(0, Ordering::Relaxed);
            p.item.store(NOT_STARTED, Ordering::Relaxed);
            p.split.store(0, Ordering::Relaxed);
            p.peer_ns.store(0, Ordering::Relaxed);
            p.end.store(0, Ordering::Relaxed);
        }
        let args = WorkerArgs {
            conn: theirs,
            slot: slot as u32,
            init,
            max_items: self.cfg.max_items,
        };
        let starting = Process::new(worker::worker_main, args)
            .name(format!("PoolWorker-{n}"))
            .daemon(true)
            .start_method(self.cfg.method)
            .start_pending()
            .map_err(BuildError::Start)?;
        if self.progress.get().is_some() {
            // A replacement: its first message can leave at once (the
            // first workers get theirs from `make_progress`).
            let _ = self.send_setup(&mine);
        }
        Ok(Worker {
            conn: Some(Arc::new(mine)),
            pid: 0,
            n,
            handle: None,
            starting: Some(starting),
            start_failed: None,
            inflight: VecDeque::new(),
            assigned: 0,
            ready: self.cfg.init.is_none(),
            exiting: false,
            dead: false,
            init_failed: None,
            split_asked: None,
            pace: None,
            send_lock: Arc::default(),
            replaces: None,
        })
    }

    /// Waits for the answers to every start request still pending and
    /// records the workers' handles and pids; a worker that could not be
    /// started gets `start_failed` (the collector then handles it as a
    /// dead one, see [`settle_and_replace`](Self::settle_and_replace)).
    /// Returns the first failure. A worker started after the pool was
    /// stopped is killed.
    ///
    /// Whoever needs a handle or a pid calls this first; a second caller
    /// waits until the first is done (`start_lock`).
    pub(super) fn settle_starts(&self) -> Option<StartError> {
        let _g = lock(&self.start_lock);
        let pending: Vec<(usize, PendingStart<()>)> = lock(&self.st)
            .workers
            .iter_mut()
            .enumerate()
            .filter_map(|(i, w)| Some((i, w.starting.take()?)))
            .collect();
        let mut first = None;
        for (slot, p) in pending {
            match p.wait() {
                Ok(mut h) => {
                    let mut st = lock(&self.st);
                    st.start_failures = 0;
                    let w = &mut st.workers[slot];
                    w.pid = h.pid().as_raw();
                    if let Some((old_pid, status)) = w.replaces.take() {
                        mproc_shm::trace_event!(
                            info,
                            old_pid = old_pid,
                            status = %status,
                            new_pid = w.pid,
                            worker = %format_args!("PoolWorker-{}", w.n),
                            "pool worker replaced"
                        );
                    }
                    if w.dead {
                        // Stopped meanwhile (terminate, failed build).
                        drop(st);
                        let _ = h.kill();
                        let _ = h.join_timeout(Duration::from_secs(5));
                    } else {
                        w.handle = Some(h);
                    }
                }
                Err(e) => {
                    lock(&self.st).workers[slot].start_failed = Some(error_chain(&e));
                    if first.is_none() {
                        first = Some(e);
                    }
                }
            }
        }
        if first.is_some() {
            // The collector handles the failures (if this is not it).
            sys::notify(self.wake.as_fd());
        }
        first
    }

    /// The collector's [`settle_starts`](Self::settle_starts): workers that
    /// could not be started are handled as dead ones (their work runs
    /// elsewhere; they are replaced if there is work).
    pub(super) fn settle_and_replace(&self) {
        let _ = self.settle_starts();
        let failed: Vec<usize> = lock(&self.st)
            .workers
            .iter()
            .enumerate()
            .filter(|(_, w)| w.start_failed.is_some() && !w.dead)
            .map(|(i, _)| i)
            .collect();
        for slot in failed {
            self.on_death(slot);
        }
    }

    /// Asks for every worker to be started. With an initializer, waits
    /// until every worker ran it (the threads are started for that).
    ///
    /// Without one, returns at once: the fork server creates the workers
    /// while the caller goes on, and work sent meanwhile waits in their
    /// sockets (a worker that then cannot be started is handled as a dead
    /// one). The threads are started by the first operation on the pool,
    /// after it sent its work ([`ensure_threads`](Self::ensure_threads)):
    /// creating them takes a while, and the workers need not wait for it.
    pub(crate) fn start(self: &Arc<Self>) -> Result<(), BuildError> {
        // The requests first; the rest is done while the server forks.
        if let Err(e) = self.request_all().and_then(|()| self.make_progress()) {
            self.kill_all();
            return Err(e);
        }
        if self.cfg.init.is_none() {
            return Ok(());
        }
        // Build waits for the initializers anyway, so it waits for the
        // workers to exist too: one that cannot be started fails it.
        if let Some(e) = self.settle_starts() {
            self.kill_all();
            return Err(BuildError::Start(e));
        }
        if let Err(e) = self.start_threads() {
            self.kill_all();
            return Err(BuildError::Io(e));
        }
        // Wait until every worker ran its initializer (or one failed).
        let mut st = lock(&self.st);
        loop {
            let failed = match (st.startup_failure.take(), st.broken.clone()) {
                (Some(e), _) => Some(e),
                (None, Some(TaskError::InitializerFailed(m))) => {
                    Some(BuildError::Initializer { message: m })
                }
                (None, Some(e)) => Some(BuildError::Initializer {
                    message: e.to_string(),
                }),
                (None, None) => None,
            };
            if let Some(e) = failed {
                drop(st);
                self.kill_all();
                self.stop_threads();
                return Err(e);
            }
            if st.workers.iter().all(|w| w.ready) {
                st.building = false;
                return Ok(());
            }
            st = mproc_shm::local::wait_for(&self.state_cv, st, Duration::from_millis(50));
        }
    }

    /// Asks for every worker to be started, without waiting for any: the
    /// fork server creates them one after the other.
    pub(super) fn request_all(&self) -> Result<(), BuildError> {
        for slot in 0..self.cfg.processes {
            let w = self.spawn(slot, slot + 1)?;
            let mut st = lock(&self.st);
            st.workers.push(w);
            st.spawned += 1;
        }
        Ok(())
    }

    /// Kills every worker and waits for them (no escalation needed: SIGKILL).
    pub(super) fn kill_all(&self) {
        // Workers whose start is pending are killed once they exist.
        let _ = self.settle_starts();
        let handles: Vec<_> = {
            let mut st = lock(&self.st);
            st.workers
                .iter_mut()
                .filter_map(|w| {
                    w.dead = true;
                    w.conn = None;
                    w.handle.take()
                })
                .collect()
        };
        for mut h in handles {
            let _ = h.kill();
            let _ = h.join_timeout(Duration::from_secs(5));
        }
    }

    /// Nothing can run any more: fails every task with `err` (and every
    /// later one), and kills the workers.
    pub(super) fn break_down(&self, err: TaskError) {
        let tasks: Vec<Task> = {
            let mut st = lock(&self.st);
            st.broken = Some(err.clone());
            let mut tasks: Vec<Task> = st.pending.drain(..).collect();
            for w in &mut st.workers {
                tasks.extend(w.inflight.drain(..).flat_map(|i| i.tasks));
            }
            tasks
        };
        self.kill_all();
        for t in tasks {
            t.job.fail(t.first, t.count, err.clone());
        }
        self.state_cv.notify_all();
    }

    /// A worker died (or finished): fail the item it was running, re-queue
    /// the rest of its batches, and replace it if there is still work.
    pub(super) fn on_death(&self, slot: usize) {
        let (n, starting) = {
            let st = lock(&self.st);
            let w = &st.workers[slot];
            (w.n, w.starting.is_some())
        };
        if starting {
            // A worker not known to exist yet: learn its fate first. One
            // that could not be started is handled (and maybe replaced)
            // there; one that started and died is handled here.
            self.settle_and_replace();
            let st = lock(&self.st);
            if st.workers[slot].n != n {
                return;
            }
        }
        let (conn, handle) = {
            let mut st = lock(&self.st);
            let w = &mut st.workers[slot];
            if w.dead {
                return;
            }
            (w.conn.clone(), w.handle.take())
        };
        // Whatever it sent before dying is still in the socket.
        if let Some(c) = &conn {
            let _ = self.drain_conn(slot, c);
        }
        let (idle, ready) = {
            let st = lock(&self.st);
            let w = &st.workers[slot];
            (w.inflight.is_empty(), w.ready)
        };
        let status = match handle {
            // Nothing of it can fail, so only its end matters, not how it
            // ended: no need to wait for a fork server to tell. (One that
            // died in its initializer is reported with how it ended.)
            Some(h) if idle && ready => {
                if !h.wait_ended_timeout(Duration::from_millis(500)) {
                    // Its socket broke but it lives on: it is of no use now.
                    let _ = h.kill();
                    let _ = h.wait_ended_timeout(Duration::from_secs(5));
                }
                ended_status(h)
            }
            Some(mut h) => match h.join_timeout(Duration::from_millis(500)) {
                Ok(()) => ExitStatus::Exited(0),
                Err(e) if e.is_timeout() => {
                    // Its socket broke but it lives on: it is of no use now.
                    let _ = h.kill();
                    match h.join_timeout(Duration::from_secs(5)) {
                        Ok(()) => ExitStatus::Exited(0),
                        Err(e) => join_status(&e).unwrap_or(ExitStatus::Signaled(libc::SIGKILL)),
                    }
                }
                Err(e) => join_status(&e).unwrap_or(ExitStatus::Exited(255)),
            },
            None => ExitStatus::Exited(255),
        };
        let (seq, item, end) = match self.progress_of(slot) {
            // Acquire: pairs with the worker's Release stores of `seq` and
            // (block) `item`, after which it stored `end`.
            Some(p) => (
                p.seq.load(Ordering::Acquire),
                p.item.load(Ordering::Acquire),
                p.end.load(Ordering::Relaxed),
            ),
            None => (0, NOT_STARTED, 0),
        };
        // The items it was running: one, or a block of small ones.
        let running = match item {
            NOT_STARTED | FINISHED => None,
            i if i & BLOCK != 0 => {
                let first = (i & !BLOCK) as usize;
                Some(first..(end as usize).max(first + 1))
            }
            i => Some(i as usize..i as usize + 1),
        };
        let mut failed: Vec<(Task, TaskError)> = Vec::new();
        let mut requeue: Vec<Task> = Vec::new();
        let (pid, respawn, init_failed) = {
            let mut st = lock(&self.st);
            let w = &mut st.workers[slot];
            w.dead = true;
            w.conn = None;
            let pid = w.pid;
            let start_failed = w.start_failed.take();
            // A worker that ended in its initializer without a panic to
            // report failed it too.
            let init_failed = w.init_failed.take().or_else(|| {
                (self.cfg.init.is_some() && !w.ready && start_failed.is_none())
                    .then(|| format!("a worker {status} while running it"))
            });
            if st.building && st.startup_failure.is_none() && init_failed.is_some() {
                st.startup_failure = Some(BuildError::WorkerLost { status });
            }
            let w = &mut st.workers[slot];
            let inflight = std::mem::take(&mut w.inflight);
            let lost = TaskError::WorkerLost { pid, status };
            for inf in inflight {
                let started = inf.seq == seq && item != NOT_STARTED;
                let culprit = running.clone().filter(|_| inf.seq == seq);
                let mut base = 0usize;
                for mut t in inf.tasks {
                    let range = base..base + t.count;
                    base += t.count;
                    // Only items that ran count as an attempt: not those of
                    // batches still queued, nor those after the culprit.
                    let ran = started && culprit.as_ref().is_none_or(|c| range.start <= c.start);
                    if ran {
                        t.attempts += 1;
                    }
                    let rerun = t.job.rerun_lost();
                    match culprit.clone().filter(|c| range.contains(&c.start)) {
                        Some(c) => {
                            let k = c.start - range.start;
                            let k2 = (c.end - range.start).clamp(k + 1, t.count);
                            match (t.slice(0, k), t.slice(k, k2), t.slice(k2, t.count)) {
                                (Some(a), Some(mut x), Some(mut b)) => {
                                    if a.count > 0 && !rerun {
                                        failed.push((a, lost.clone()));
                                    } else if a.count > 0 {
                                        requeue.push(a);
                                    }
                                    if x.count == 1 {
                                        failed.push((x, lost.clone()));
                                    } else {
                                        // Small items of one block: which
                                        // one was running is not known. Run
                                        // them again one by one: if one
                                        // kills its worker again, it fails.
                                        x.careful = true;
                                        requeue.push(x);
                                    }
                                    if b.count > 0 {
                                        b.attempts = b.attempts.saturating_sub(1);
                                        requeue.push(b);
                                    }
                                }
                                _ => failed.push((t, lost.clone())),
                            }
                        }
                        None if t.attempts > MAX_ATTEMPTS || (ran && !rerun) => {
                            failed.push((t, lost.clone()))
                        }
                        None => requeue.push(t),
                    }
                }
            }
            for t in requeue.drain(..).rev() {
                if t.attempts > 0 {
                    // It ran (and lost its worker) `attempts` times.
                    mproc_shm::trace_event!(
                        warn,
                        attempt = t.attempts + 1,
                        worker_pid = pid,
                        status = %status,
                        first = t.first,
                        count = t.count,
                        "pool task retried after its worker died"
                    );
                }
                st.pending.push_front(t);
            }
            if init_failed.is_some() {
                st.init_failures += 1;
            }
            if let (Some(m), true) = (&init_failed, st.init_failures >= MAX_INIT_FAILURES) {
                let e = TaskError::InitializerFailed(m.clone());
                st.broken = Some(e.clone());
                failed.extend(st.pending.drain(..).map(|t| (t, e.clone())));
            }
            // A worker that could not be started is tried again a bounded
            // number of times; then its slot stays empty, and once no worker
            // is left nothing can run.
            let mut give_up = false;
            if let Some(m) = &start_failed {
                st.start_failures += 1;
                give_up = st.start_failures >= MAX_START_FAILURES;
                if give_up && st.workers.iter().all(|w| w.dead) {
                    let e = TaskError::WorkerStart(m.clone());
                    st.broken = Some(e.clone());
                    failed.extend(st.pending.drain(..).map(|t| (t, e.clone())));
                }
            }
            let has_work = !st.pending.is_empty()
                || st.active_jobs > 0
                || st.workers.iter().any(|w| !w.inflight.is_empty());
            let respawn = !st.shutdown
                && !give_up
                && st.broken.is_none()
                // Build fails anyway.
                && (!st.building || st.startup_failure.is_none())
                && (st.run == Run::Running || (st.run == Run::Closed && has_work));
            self.state_cv.notify_all();
            (pid, respawn, init_failed)
        };
        let _ = (pid, init_failed);
        for (t, e) in failed {
            t.job.fail(t.first, t.count, e);
        }
        if respawn {
            let n = {
                let mut st = lock(&self.st);
                st.spawned += 1;
                st.spawned
            };
            match self.spawn(slot, n) {
                Ok(w) => {
                    let mut st = lock(&self.st);
                    if st.shutdown || st.run == Run::Terminated {
                        drop(st);
                        if let Some(Ok(mut h)) = w.starting.map(PendingStart::wait) {
                            let _ = h.kill();
                            let _ = h.join_timeout(Duration::from_secs(5));
                        }
                    } else {
                        st.workers[slot] = Worker {
                            replaces: Some((pid, status)),
                            ..w
                        };
                    }
                }
                Err(e) => {
                    let mut st = lock(&self.st);
                    if st.workers.iter().all(|w| w.dead) {
                        // Nothing can run any more: fail what is queued.
                        let m = match &e {
                            BuildError::Start(e) => error_chain(e),
                            e => error_chain(e),
                        };
                        let err = TaskError::WorkerStart(m);
                        st.broken = Some(err.clone());
                        let tasks: Vec<Task> = st.pending.drain(..).collect();
                        drop(st);
                        for t in tasks {
                            t.job.fail(t.first, t.count, err.clone());
                        }
                    }
                }
            }
        }
        let mut st = lock(&self.st);
        self.state_cv.notify_all();
        if st.feeder_idle {
            st.feeder_idle = false;
        }
        self.feeder_cv.notify_one();
    }

    /// Fails every queued and running task with `Cancelled`; workers that
    /// were running tasks are killed and replaced.
    pub(crate) fn cancel(&self) {
        // Workers being started are killed like the others (once they exist).
        let _ = self.settle_starts();
        let mut tasks = Vec::new();
        {
            let mut st = lock(&self.st);
            st.epoch += 1;
            tasks.extend(st.pending.drain(..));
            for w in st.workers.iter_mut().filter(|w| !w.dead) {
                if !w.inflight.is_empty() {
                    tasks.extend(w.inflight.drain(..).flat_map(|i| i.tasks));
                    if let Some(h) = &w.handle {
                        let _ = h.kill();
                    }
                }
            }
        }
        for t in tasks {
            t.job.fail(t.first, t.count, TaskError::Cancelled);
        }
        sys::notify(self.wake.as_fd());
    }

    /// Takes the queued (not yet dispatched) tasks of `job` out of the
    /// queue, or every queued task if `job` is `None`, and fails them with
    /// `Cancelled`. Returns how many it took. Running tasks are left alone.
    /// (`job` is the address of the tasks' sink.)
    pub(crate) fn cancel_queued(&self, job: Option<*const ()>) -> usize {
        let tasks: Vec<Task> = {
            let mut st = lock(&self.st);
            match job {
                None => st.pending.drain(..).collect(),
                Some(j) => {
                    // One pass, in place: a job's tasks are queued in order.
                    let mut taken = Vec::new();
                    let mut i = 0;
                    while let Some(k) = st
                        .pending
                        .range(i..)
                        .position(|t| std::ptr::addr_eq(Arc::as_ptr(&t.job), j))
                    {
                        i += k;
                        taken.extend(st.pending.remove(i));
                    }
                    taken
                }
            }
        };
        let n = tasks.len();
        for t in tasks {
            t.job.fail(t.first, t.count, TaskError::Cancelled);
        }
        if n > 0 {
            // A closed pool may now let its workers go.
            self.poke();
        }
        n
    }

    /// Stops every worker now (SIGTERM, then SIGKILL after `grace`) and
    /// fails all outstanding work with `Cancelled`.
    pub(crate) fn terminate(&self, grace: Duration) {
        let _ = self.settle_starts();
        let (tasks, handles) = {
            let mut st = lock(&self.st);
            st.run = Run::Terminated;
            st.epoch += 1;
            let mut tasks: Vec<Task> = st.pending.drain(..).collect();
            let mut handles = Vec::new();
            for w in &mut st.workers {
                tasks.extend(w.inflight.drain(..).flat_map(|i| i.tasks));
                w.dead = true;
                w.conn = None;
                handles.extend(w.handle.take());
            }
            (tasks, handles)
        };
        for t in tasks {
            t.job.fail(t.first, t.count, TaskError::Cancelled);
        }
        let deadline = Instant::now() + grace;
        for h in &handles {
            let _ = h.terminate();
        }
        for mut h in handles {
            if h.join_deadline(deadline).is_err() {
                let _ = h.kill();
                let _ = h.join_timeout(Duration::from_secs(5));
            }
        }
        self.state_cv.notify_all();
    }

    /// Waits until every worker has ended, or `deadline`.
    pub(crate) fn wait_workers(&self, deadline: Option<Instant>) -> bool {
        let mut st = lock(&self.st);
        loop {
            if st.workers.iter().all(|w| w.dead) {
                return true;
            }
            let step = Duration::from_millis(50);
            let wait = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return false;
                    }
                    (d - now).min(step)
                }
                None => step,
            };
            st = mproc_shm::local::wait_for(&self.state_cv, st, wait);
        }
    }

    /// Process ids of the live workers.
    pub(crate) fn pids(&self) -> Vec<i32> {
        let _ = self.settle_starts();
        lock(&self.st)
            .workers
            .iter()
            .filter(|w| !w.dead && w.handle.is_some())
            .map(|w| w.pid)
            .collect()
    }
}

/// An error and its sources, as one message.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut m = e.to_string();
    let mut s = e.source();
    while let Some(e) = s {
        m.push_str(": ");
        m.push_str(&e.to_string());
        s = e.source();
    }
    m
}

/// How an idle worker that ended, ended. Only the `tracing` events say it,
/// so without them it is not waited for (`Exited(0)`); with them, the fork
/// server's report is waited for a little.
fn ended_status(mut h: mproc_process::ProcessHandle<()>) -> ExitStatus {
    if cfg!(feature = "tracing") {
        match h.join_timeout(Duration::from_millis(100)) {
            Ok(()) => ExitStatus::Exited(0),
            Err(e) => join_status(&e).unwrap_or(ExitStatus::Exited(0)),
        }
    } else {
        ExitStatus::Exited(0)
    }
}

fn join_status(e: &mproc_process::JoinTimeoutError) -> Option<ExitStatus> {
    match e {
        mproc_process::JoinTimeoutError::Join(j) => j.status(),
        mproc_process::JoinTimeoutError::Timeout => None,
    }
}
