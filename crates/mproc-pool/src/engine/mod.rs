//! The parent side of the pool: the engine that queues tasks, feeds them
//! to the workers, collects their results and replaces the dead.
//!
//! Its state ([`State`]) sits behind one mutex that only the engine's own
//! files lock; the pool calls [`Engine`]'s methods. By concern:
//!
//! * this file: the state, submission, and the two background threads;
//! * [`policy`]: chunk sizes, which worker gets which batch, when running
//!   work is worth splitting (pure functions, unit-tested);
//! * [`lifecycle`]: starting workers, their death (which item failed, what
//!   runs again), replacing them, cancel and terminate;
//! * [`feeder`]: sending batches (the feeder thread, and idle workers fed
//!   from other threads) and asking busy workers to split;
//! * [`collector`]: receiving results and splits, watching the workers.
//!
//! Sending and receiving happen on different threads, so a worker blocked
//! writing a large result can never deadlock with the parent writing it a
//! large task. The parent knows which batches each worker holds (at most
//! [`DEPTH`]), and a shared-memory progress slot per worker says which item
//! it was running, so a worker's death fails exactly that item.
//!
//! Start-up, in order: build sends every worker's start request to the fork
//! server without waiting ([`Engine::start`]), then makes the progress
//! segment and sends it as each worker's first message
//! ([`ToWorker::Setup`](crate::wire::ToWorker::Setup)); the first operation
//! sends its work (it waits in the sockets, so a worker computes from the
//! moment it exists), then sleeps until the server answered, and only then
//! creates the threads ([`Engine::ensure_threads`] says why).

mod collector;
mod feeder;
mod lifecycle;
mod policy;

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

use mproc_pipe::Connection;
use mproc_process::{ExitStatus, PendingStart, ProcessHandle, StartMethod};
use mproc_shm::Segment;

use crate::error::{BuildError, PoolError, TaskError};
use crate::job::lock;
use crate::sys;
use crate::task::Task;

use policy::Policy;
pub(crate) use policy::{Cutting, DEPTH, Estimate, unmeasured_chunk_size};

/// How often a task may be re-run after its worker died under it (while
/// running another item of the same batch).
const MAX_ATTEMPTS: u32 = 3;

struct InFlight {
    seq: u64,
    tasks: Vec<Task>,
    /// When it was sent.
    sent: Instant,
}

struct Worker {
    conn: Option<Arc<Connection>>,
    handle: Option<ProcessHandle<()>>,
    /// Asked of the fork server, not yet answered (see
    /// [`Engine::settle_starts`]): `handle` is `None` and `pid` 0 until then,
    /// but work may be sent already (it waits in the socket).
    starting: Option<PendingStart<()>>,
    /// Why it could not be started (it is then treated as dead).
    start_failed: Option<String>,
    pid: i32,
    /// Its number among the pool's workers (`PoolWorker-n`).
    n: usize,
    inflight: VecDeque<InFlight>,
    /// Items sent to it (for `max_tasks_per_child`).
    assigned: u64,
    ready: bool,
    exiting: bool,
    dead: bool,
    init_failed: Option<String>,
    /// The batch it was asked to split (until it answers or finishes).
    split_asked: Option<u64>,
    /// Its time per item of a function, as last measured (entry,
    /// nanoseconds): what a busy worker it takes work from is told.
    pace: Option<(i64, f64)>,
    /// Held while a batch is sent to it (see [`Engine::dispatch`]).
    send_lock: Arc<Mutex<()>>,
    /// The pid of the worker it replaces and how that one ended, until its
    /// own pid is known (then reported: see [`Engine::settle_starts`]).
    replaces: Option<(i32, ExitStatus)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Run {
    Running,
    Closed,
    Terminated,
}

/// What the pool was built with.
pub(crate) struct Config {
    pub(crate) processes: usize,
    pub(crate) method: StartMethod,
    pub(crate) max_items: Option<u64>,
    pub(crate) init: Option<(i64, Vec<u8>, Vec<OwnedFd>)>,
}

struct State {
    run: Run,
    pending: VecDeque<Task>,
    workers: Vec<Worker>,
    next_seq: u64,
    /// Measured nanoseconds per item, per function.
    estimates: HashMap<i64, Estimate>,
    /// Why nothing can run any more (tasks fail with this).
    broken: Option<TaskError>,
    /// Jobs whose callers may still submit (imap/map in progress).
    active_jobs: usize,
    shutdown: bool,
    /// Build waits for the first workers' initializers ([`Engine::start`]).
    building: bool,
    /// Why a first worker never became ready, while `building`: kept here
    /// for build (the death handler, which may run first, leaves it, and
    /// does not replace the worker).
    startup_failure: Option<BuildError>,
    init_failures: u32,
    /// Consecutive workers that could not be started.
    start_failures: u32,
    feeder_idle: bool,
    spawned: usize,
    /// Bumped by `cancel`: jobs started before stop submitting.
    epoch: u64,
    sigint_seen: u64,
    cancel_on_sigint: bool,
}

impl State {
    /// Closed, every worker gone and no work left: nothing can happen any
    /// more, so the threads end without waiting for `join` to stop them.
    /// (A closed pool replaces a dead worker only while there is work.)
    fn finished(&self) -> bool {
        self.run == Run::Closed
            && self.pending.is_empty()
            && self.active_jobs == 0
            && self.workers.iter().all(|w| w.dead)
    }
}

pub(crate) struct Engine {
    st: Mutex<State>,
    feeder_cv: Condvar,
    /// Signalled when workers become ready or die (build, join wait on it).
    state_cv: Condvar,
    wake: OwnedFd,
    cfg: Config,
    /// The scheduling policy, for `cfg`'s sizes.
    policy: Policy,
    /// Where the workers say what they run (see [`Progress`](crate::worker::Progress)); made once
    /// the first workers were asked for ([`Engine::start`]).
    progress: OnceLock<Segment>,
    /// Held while waiting for the fork server's answers to start requests
    /// (see [`Engine::settle_starts`]); taken before `st`, never while
    /// holding it.
    start_lock: Mutex<()>,
    /// The feeder and the collector (see [`Engine::ensure_threads`]).
    threads: Mutex<ThreadState>,
    /// Set once `threads` left [`ThreadState::NotYet`] (a lock-free check).
    threads_settled: AtomicBool,
}

/// The two background threads.
struct Threads {
    feeder: Option<JoinHandle<()>>,
    collector: Option<JoinHandle<()>>,
}

/// Whether the background threads run.
enum ThreadState {
    /// Not started yet: nothing was asked of the pool since it was built.
    NotYet,
    Running(Threads),
    /// Stopped (or they could not be started).
    Stopped,
}

impl Engine {
    pub(crate) fn new(cfg: Config, cancel_on_sigint: bool) -> Result<Arc<Self>, BuildError> {
        let wake = sys::eventfd().map_err(BuildError::Io)?;
        let st = State {
            run: Run::Running,
            pending: VecDeque::new(),
            workers: Vec::new(),
            next_seq: 1,
            estimates: HashMap::new(),
            broken: None,
            active_jobs: 0,
            shutdown: false,
            building: cfg.init.is_some(),
            startup_failure: None,
            init_failures: 0,
            start_failures: 0,
            feeder_idle: false,
            spawned: 0,
            epoch: 0,
            sigint_seen: sys::sigint_count(),
            cancel_on_sigint,
        };
        Ok(Arc::new(Self {
            st: Mutex::new(st),
            feeder_cv: Condvar::new(),
            state_cv: Condvar::new(),
            wake,
            policy: Policy::new(cfg.processes, cfg.max_items),
            cfg,
            progress: OnceLock::new(),
            start_lock: Mutex::new(()),
            threads: Mutex::new(ThreadState::NotYet),
            threads_settled: AtomicBool::new(false),
        }))
    }

    pub(crate) fn processes(&self) -> usize {
        self.cfg.processes
    }

    pub(crate) fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Starts the threads if nothing did yet. Called by every operation on
    /// the pool (after it sent its work): they receive results, watch the
    /// workers and feed them. If they cannot be started, nothing can run:
    /// the pool stops and its work fails.
    ///
    /// The first call waits until the fork server answered every start
    /// request (the workers exist) before it creates the threads. Not for
    /// the handles (the collector would learn them): a thread that keeps a
    /// CPU busy while the server forks makes the kernel place a new worker
    /// on the CPU another one is already computing on, where it waits for
    /// milliseconds (a fifth of the starts of a two-worker pool on a
    /// two-CPU machine did) while the other CPU idles. Asleep here, this
    /// thread leaves the CPUs to the server and the workers.
    pub(crate) fn ensure_threads(self: &Arc<Self>) {
        // Acquire: pairs with the Release store below, after which the
        // state is settled.
        if self.threads_settled.load(Ordering::Acquire) {
            return;
        }
        // Failures are recorded for the collector (`start_failed`).
        let _ = self.settle_starts();
        if let Err(e) = self.start_threads() {
            let m = format!("the pool's threads could not be started: {e}");
            self.break_down(TaskError::WorkerStart(m));
        }
    }

    /// Starts the threads unless they were started (or stopped) before.
    fn start_threads(self: &Arc<Self>) -> std::io::Result<()> {
        let mut t = lock(&self.threads);
        if !matches!(*t, ThreadState::NotYet) {
            return Ok(());
        }
        // The collector cancels on a Ctrl-C seen after this (none before
        // counts: no work was outstanding).
        lock(&self.st).sigint_seen = sys::sigint_count();
        let s1 = self.clone();
        let s2 = self.clone();
        let feeder = std::thread::Builder::new()
            .name("mproc-pool-feeder".into())
            .spawn(move || s1.feeder());
        let collector = std::thread::Builder::new()
            .name("mproc-pool-collector".into())
            .spawn(move || s2.collector());
        let r = match (feeder, collector) {
            (Ok(f), Ok(c)) => {
                *t = ThreadState::Running(Threads {
                    feeder: Some(f),
                    collector: Some(c),
                });
                Ok(())
            }
            (f, c) => {
                let e = match (&f, &c) {
                    (Err(e), _) | (_, Err(e)) => std::io::Error::new(e.kind(), e.to_string()),
                    _ => std::io::Error::other("failed to start the pool's threads"),
                };
                *t = ThreadState::Running(Threads {
                    feeder: f.ok(),
                    collector: c.ok(),
                });
                drop(t);
                self.stop_threads();
                Err(e)
            }
        };
        // Release: see `ensure_threads`.
        self.threads_settled.store(true, Ordering::Release);
        r
    }

    /// Stops the threads (for good) and waits for them to end.
    pub(crate) fn stop_threads(&self) {
        let t = std::mem::replace(&mut *lock(&self.threads), ThreadState::Stopped);
        // Release: see `ensure_threads`.
        self.threads_settled.store(true, Ordering::Release);
        lock(&self.st).shutdown = true;
        let ThreadState::Running(mut t) = t else {
            return;
        };
        self.feeder_cv.notify_all();
        sys::notify(self.wake.as_fd());
        if let Some(h) = t.feeder.take() {
            let _ = h.join();
        }
        if let Some(h) = t.collector.take() {
            let _ = h.join();
        }
    }

    // ----- the pool's side -----

    /// How the pool runs (running, closed, terminated).
    pub(crate) fn run(&self) -> Run {
        lock(&self.st).run
    }

    /// A map or imap starts submitting: the pool must be running, and the
    /// workers stay (even when closed) until [`end_job`](Self::end_job).
    /// Returns the cancel epoch it started in (see [`epoch`](Self::epoch)).
    pub(crate) fn begin_job(&self) -> Result<u64, PoolError> {
        let mut st = lock(&self.st);
        if st.run != Run::Running {
            return Err(PoolError::NotRunning);
        }
        st.active_jobs += 1;
        Ok(st.epoch)
    }

    /// A job of [`begin_job`](Self::begin_job) submits no more: wakes the
    /// feeder (a closed pool may let its workers go).
    pub(crate) fn end_job(&self) {
        let mut st = lock(&self.st);
        st.active_jobs -= 1;
        st.feeder_idle = false;
        self.feeder_cv.notify_one();
    }

    /// Bumped by [`cancel`](Self::cancel) and
    /// [`terminate`](Self::terminate): jobs begun before stop submitting.
    pub(crate) fn epoch(&self) -> u64 {
        lock(&self.st).epoch
    }

    /// Queues tasks (or fails them if the pool cannot run them any more).
    pub(crate) fn submit(&self, tasks: Vec<Task>) {
        let mut st = lock(&self.st);
        let err = if st.run == Run::Terminated || st.shutdown {
            Some(TaskError::Cancelled)
        } else {
            st.broken.clone()
        };
        if let Some(e) = err {
            drop(st);
            for t in tasks {
                t.job.fail(t.first, t.count, e.clone());
            }
            return;
        }
        st.pending.extend(tasks);
        // An idle worker gets small work from this thread at once.
        let mut st = self.dispatch_idle(st);
        if st.feeder_idle && !st.pending.is_empty() {
            st.feeder_idle = false;
            self.feeder_cv.notify_one();
        }
    }

    /// What was measured of `entry`, if anything.
    pub(crate) fn estimate(&self, entry: i64) -> Option<Estimate> {
        lock(&self.st).estimates.get(&entry).copied()
    }

    /// The adaptive chunk size for the next chunk of a job of `entry` (see
    /// [`Policy::chunk_size`]).
    pub(crate) fn chunk_size(&self, entry: i64, remaining: Option<usize>, free: bool) -> usize {
        self.policy
            .chunk_size(self.estimate(entry), remaining, free)
    }

    /// The size of the next chunk a map of `entry` cuts from its input (see
    /// [`Policy::next_chunk`]).
    pub(crate) fn next_chunk(
        &self,
        cut: Cutting,
        entry: i64,
        remaining: Option<usize>,
        free: bool,
        even: &mut Option<usize>,
    ) -> usize {
        let est = if cut.chunksize.is_none() {
            self.estimate(entry)
        } else {
            None
        };
        self.policy.next_chunk(cut, est, remaining, free, even)
    }

    /// Closes the pool: no new work; the workers exit once the queued work
    /// is done (idle ones are told at once, by this thread).
    pub(crate) fn close(&self) {
        let mut st = lock(&self.st);
        if st.run == Run::Running {
            st.run = Run::Closed;
        }
        let (mut st, _) = self.release_idle(st);
        st.feeder_idle = false;
        self.feeder_cv.notify_one();
    }

    /// Wakes the feeder (after `close`, or a job finished).
    pub(crate) fn poke(&self) {
        let mut st = lock(&self.st);
        st.feeder_idle = false;
        self.feeder_cv.notify_one();
    }
}
