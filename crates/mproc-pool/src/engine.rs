//! The parent side: shared state, the feeder thread (sends batches to
//! workers) and the collector thread (receives results, watches workers,
//! replaces the dead).
//!
//! Sending and receiving happen on different threads, so a worker blocked
//! writing a large result can never deadlock with the parent writing it a
//! large task. The parent knows which batches each worker holds (at most
//! [`DEPTH`]), and a shared-memory progress slot per worker says which item
//! it was running, so a worker's death fails exactly that item.
//!
//! Start-up, in order: build sends every worker's start request to the fork
//! server without waiting ([`Shared::start`]), then makes the progress
//! segment and sends it as each worker's first message
//! ([`ToWorker::Setup`]); the first operation sends its work (it waits in
//! the sockets, so a worker computes from the moment it exists), then
//! sleeps until the server answered, and only then creates the threads
//! ([`Shared::ensure_threads`] says why).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mproc_pipe::{Connection, RecvError, Waitable};
use mproc_process::{ExitStatus, PendingStart, Process, ProcessHandle, StartError, StartMethod};
use mproc_shm::Segment;
use mproc_shm::handle::HandleFd;

use crate::error::{BuildError, TaskError};
use crate::job::{Sink, lock};
use crate::sys;
use crate::wire::{
    Bytes, FromWorker, Kind, Msg, PACK_MAX, Parsed, TaskDesc, ToWorker, send_header, should_pack,
    unpack,
};
use crate::worker::{self, BLOCK, FINISHED, InitSpec, NOT_STARTED, Progress, WorkerArgs};

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
/// How often a task may be re-run after its worker died under it (while
/// running another item of the same batch).
const MAX_ATTEMPTS: u32 = 3;
/// Consecutive initializer failures of replacement workers before the pool
/// gives up.
const MAX_INIT_FAILURES: u32 = 3;
/// Consecutive workers that could not be started before the pool stops
/// trying (for that slot).
const MAX_START_FAILURES: u32 = 3;
/// How long the collector waits for the payloads that follow a result
/// header (they are sent right after it).
const PAYLOAD_WAIT: Duration = Duration::from_secs(10);
/// How often the collector checks worker processes even without events.
const WATCH_PERIOD: Duration = Duration::from_millis(20);

/// Bytes another owner keeps alive (a caller's `Vec` of plain numbers,
/// shipped without a copy).
pub(crate) trait ByteSource: Send + Sync {
    fn bytes(&self) -> &[u8];
}

/// A task's encoded bytes: its own, or a range of a shared source.
pub(crate) enum Data {
    Owned(Vec<u8>),
    Shared {
        src: Arc<dyn ByteSource>,
        start: usize,
        end: usize,
    },
}

impl Data {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Shared { src, start, end } => src.bytes().get(*start..*end).unwrap_or_default(),
        }
    }
}

/// A task's encoded items.
pub(crate) struct Payload {
    pub(crate) bytes: Data,
    pub(crate) fds: Vec<OwnedFd>,
    /// `Seq`: where each item starts (`count + 1` entries).
    pub(crate) offsets: Vec<usize>,
    /// `Pod`: bytes per item.
    pub(crate) elem: usize,
    /// `Range`: the first item.
    pub(crate) start: i128,
}

/// `count` items of one job for one function.
pub(crate) struct Task {
    pub(crate) job: Arc<dyn Sink>,
    pub(crate) entry: i64,
    pub(crate) kind: Kind,
    pub(crate) first: usize,
    pub(crate) count: usize,
    pub(crate) payload: Arc<Payload>,
    pub(crate) attempts: u32,
    /// Sized by the pool (no explicit chunk size): a range task may be
    /// split while it runs, to keep every worker busy.
    pub(crate) adaptive: bool,
    /// While its function is unmeasured, a range task travels with a time
    /// budget and the worker cuts it to size.
    pub(crate) probe: bool,
    /// Items among which a worker died: run one by one, so that if one
    /// kills its worker again, it is known (see `TaskDesc::careful`).
    pub(crate) careful: bool,
}

impl Task {
    /// Items `a..b` of this task as a task of their own, if the encoding
    /// allows (items with descriptors cannot be split).
    fn slice(&self, a: usize, b: usize) -> Option<Task> {
        if a == 0 && b == self.count {
            return Some(self.clone_ref());
        }
        let p = &self.payload;
        if !p.fds.is_empty() {
            return None;
        }
        let payload = match self.kind {
            Kind::Range => {
                let start = p.start.wrapping_add(a as i128);
                Payload {
                    bytes: Data::Owned(postcard::to_stdvec(&start).ok()?),
                    fds: Vec::new(),
                    offsets: Vec::new(),
                    elem: 0,
                    start,
                }
            }
            Kind::Pod => Payload {
                bytes: Data::Owned(p.bytes.as_slice().get(a * p.elem..b * p.elem)?.to_vec()),
                fds: Vec::new(),
                offsets: Vec::new(),
                elem: p.elem,
                start: 0,
            },
            Kind::Seq => {
                let (s, e) = (*p.offsets.get(a)?, *p.offsets.get(b)?);
                Payload {
                    bytes: Data::Owned(p.bytes.as_slice().get(s..e)?.to_vec()),
                    fds: Vec::new(),
                    offsets: p.offsets[a..=b].iter().map(|o| o - s).collect(),
                    elem: 0,
                    start: 0,
                }
            }
        };
        Some(Task {
            job: self.job.clone(),
            entry: self.entry,
            kind: self.kind,
            first: self.first + a,
            count: b - a,
            payload: Arc::new(payload),
            attempts: self.attempts,
            adaptive: self.adaptive,
            probe: self.probe,
            careful: self.careful,
        })
    }

    fn clone_ref(&self) -> Task {
        Task {
            job: self.job.clone(),
            entry: self.entry,
            kind: self.kind,
            first: self.first,
            count: self.count,
            payload: self.payload.clone(),
            attempts: self.attempts,
            adaptive: self.adaptive,
            probe: self.probe,
            careful: self.careful,
        }
    }
}

struct InFlight {
    seq: u64,
    tasks: Vec<Task>,
    /// When it was sent.
    sent: Instant,
}

pub(crate) struct Worker {
    conn: Option<Arc<Connection>>,
    handle: Option<ProcessHandle<()>>,
    /// Asked of the fork server, not yet answered (see
    /// [`Shared::settle_starts`]): `handle` is `None` and `pid` 0 until then,
    /// but work may be sent already (it waits in the socket).
    starting: Option<PendingStart<()>>,
    /// Why it could not be started (it is then treated as dead).
    start_failed: Option<String>,
    pub(crate) pid: i32,
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
    /// Held while a batch is sent to it (see [`Shared::dispatch`]).
    send_lock: Arc<Mutex<()>>,
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

/// What was measured of a function.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Estimate {
    /// Nanoseconds per item in the worker.
    pub(crate) ns: f64,
    /// Bytes per item shipped (argument plus result).
    pub(crate) bytes: f64,
    /// How many items the estimate stands for (recent, larger samples
    /// outweigh the first one-item tasks, whose time is mostly overhead).
    pub(crate) weight: f64,
}

/// Whether the rest of a running task may be split off for another worker:
/// an adaptive range, or adaptive encoded items without descriptors (a
/// slice of plain numbers would be cheap too, but their chunks are small).
fn splittable(t: &Task) -> bool {
    t.adaptive
        && match t.kind {
            Kind::Range => true,
            Kind::Seq => t.payload.fds.is_empty(),
            Kind::Pod => false,
        }
}

/// Whether an estimate stands for enough items to be relied on.
fn trusted(e: Estimate) -> bool {
    e.weight >= CONFIDENT_ITEMS
}

pub(crate) struct State {
    pub(crate) run: Run,
    pending: VecDeque<Task>,
    pub(crate) workers: Vec<Worker>,
    next_seq: u64,
    /// Measured nanoseconds per item, per function.
    estimates: HashMap<i64, Estimate>,
    /// Why nothing can run any more (tasks fail with this).
    pub(crate) broken: Option<TaskError>,
    /// Jobs whose callers may still submit (imap/map in progress).
    pub(crate) active_jobs: usize,
    shutdown: bool,
    /// Build waits for the first workers' initializers ([`Shared::start`]).
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
    pub(crate) epoch: u64,
    sigint_seen: u64,
    pub(crate) cancel_on_sigint: bool,
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

pub(crate) struct Shared {
    pub(crate) st: Mutex<State>,
    feeder_cv: Condvar,
    /// Signalled when workers become ready or die (build, join wait on it).
    pub(crate) state_cv: Condvar,
    wake: OwnedFd,
    cfg: Config,
    /// Where the workers say what they run (see [`Progress`]); made once
    /// the first workers were asked for ([`Shared::start`]).
    progress: OnceLock<Segment>,
    /// Held while waiting for the fork server's answers to start requests
    /// (see [`Shared::settle_starts`]); taken before `st`, never while
    /// holding it.
    start_lock: Mutex<()>,
    /// The feeder and the collector (see [`Shared::ensure_threads`]).
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

impl Shared {
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
            cfg,
            progress: OnceLock::new(),
            start_lock: Mutex::new(()),
            threads: Mutex::new(ThreadState::NotYet),
            threads_settled: AtomicBool::new(false),
        }))
    }

    /// The progress slot of worker `slot` (`None` before the segment
    /// exists: no worker ran anything yet).
    fn progress_of(&self, slot: usize) -> Option<&Progress> {
        self.progress
            .get()?
            .get::<Progress>(worker::progress_offset(slot))
            .ok()
    }

    /// Makes the progress segment (every slot: no batch) and gives it to the
    /// workers asked for so far.
    fn make_progress(&self) -> Result<(), BuildError> {
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
    fn send_setup(&self, conn: &Connection) -> std::io::Result<()> {
        let seg = self
            .progress
            .get()
            .ok_or_else(|| std::io::Error::other("no progress segment yet"))?;
        let fd = seg.as_fd().try_clone_to_owned()?;
        send_header(conn, &ToWorker::Setup, vec![fd]).map_err(std::io::Error::other)
    }

    pub(crate) fn processes(&self) -> usize {
        self.cfg.processes
    }

    pub(crate) fn wake_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Asks for the worker for `slot` to be started, without waiting for
    /// it to exist (see [`Worker::starting`]).
    fn spawn(&self, slot: usize, n: usize) -> Result<Worker, BuildError> {
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
    fn settle_starts(&self) -> Option<StartError> {
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
    fn settle_and_replace(&self) {
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
            st = self
                .state_cv
                .wait_timeout(st, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
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

    /// Nothing can run any more: fails every task with `err` (and every
    /// later one), and kills the workers.
    fn break_down(&self, err: TaskError) {
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

    /// Asks for every worker to be started, without waiting for any: the
    /// fork server creates them one after the other.
    fn request_all(&self) -> Result<(), BuildError> {
        for slot in 0..self.cfg.processes {
            let w = self.spawn(slot, slot + 1)?;
            let mut st = lock(&self.st);
            st.workers.push(w);
            st.spawned += 1;
        }
        Ok(())
    }

    /// Kills every worker and waits for them (no escalation needed: SIGKILL).
    fn kill_all(&self) {
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

    // ----- submission -----

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

    /// One chunk per worker of `remaining` items (which ship for free).
    pub(crate) fn even_share(&self, remaining: Option<usize>) -> usize {
        let procs = self.cfg.processes.max(1);
        let cap = self.cfg.max_items.map_or(usize::MAX, |m| m as usize).max(1);
        remaining
            .unwrap_or(1)
            .div_ceil(procs)
            .clamp(1, MAX_CHUNK)
            .min(cap)
    }

    /// The adaptive chunk size for the next chunk of a job. `free`: its
    /// items cost nothing to ship (an integer range's).
    pub(crate) fn chunk_size(&self, entry: i64, remaining: Option<usize>, free: bool) -> usize {
        let procs = self.cfg.processes.max(1);
        let est = self.estimate(entry);
        let cap = self.cfg.max_items.map_or(usize::MAX, |m| m as usize).max(1);
        if let (true, Some(rem), false) = (free, remaining, est.is_some_and(trusted)) {
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
            let floor = if trusted(est) {
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
            if !(trusted(est) && rem as f64 * ns <= MIN_CHUNK_NS * procs as f64) {
                n = n.min(rem.div_ceil(procs).max(1));
            }
        }
        if let Some(m) = self.cfg.max_items {
            n = n.min(m as usize);
        }
        n.max(1)
    }

    /// The time budget of a task about to be sent (see [`TaskDesc::budget`]).
    fn budget(st: &State, t: &Task) -> u64 {
        let measured = st.estimates.get(&t.entry).is_some_and(|e| trusted(*e));
        if t.probe && t.kind == Kind::Range && !measured {
            PROBE_NS
        } else {
            0
        }
    }

    // ----- feeder -----

    fn feeder(self: Arc<Self>) {
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
                st = self.feeder_cv.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let batch = self.take_batch(&mut st, slot);
            st = self.dispatch(st, slot, batch);
        }
    }

    /// If the pool is closed and has no work left, tells its idle workers
    /// to exit (from the calling thread: `close` and the feeder). Returns
    /// whether it told any.
    fn release_idle<'a>(&'a self, mut st: MutexGuard<'a, State>) -> (MutexGuard<'a, State>, bool) {
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

    /// The worker the next queued batch should go to: a live, ready one
    /// holding fewer than `depth` batches (and under its task budget), the
    /// least loaded first.
    fn pick(&self, st: &State, depth: usize) -> Option<usize> {
        let budget = self.cfg.max_items;
        // A map's part of a range (balanced by splitting) waits for an
        // idle worker rather than queueing behind a busy one, where no
        // other worker could take it over.
        let depth = match st.pending.front() {
            Some(t) if t.adaptive && !t.probe && t.kind == Kind::Range => 1,
            _ => depth,
        };
        st.workers
            .iter()
            .enumerate()
            .filter(|(_, w)| {
                !w.dead
                    && !w.exiting
                    && w.ready
                    && w.conn.is_some()
                    && w.inflight.len() < depth
                    && budget.is_none_or(|m| w.assigned < m)
            })
            .min_by_key(|(_, w)| w.inflight.len())
            .map(|(i, _)| i)
    }

    /// Sends `batch` to the worker in `slot`. Its bookkeeping happens under
    /// the state lock, the sending outside it but under the worker's send
    /// lock, taken before the state lock is released: batches reach a
    /// worker in the order they were recorded, whichever thread sends.
    fn dispatch<'a>(
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
                    budget: Self::budget(&st, t),
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
    fn dispatch_to_idle(&self) {
        drop(self.dispatch_idle(lock(&self.st)));
    }

    /// [`dispatch_to_idle`](Self::dispatch_to_idle) with the state locked.
    fn dispatch_idle<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
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
    /// to give up half of it (see [`Progress::split`]); its answer
    /// ([`FromWorker::Split`]) queues that half for an idle worker.
    fn ask_split(&self, st: &mut State) {
        let mut best: Option<(usize, u64, f64)> = None;
        for (i, w) in st.workers.iter().enumerate() {
            if w.dead || w.exiting || w.split_asked.is_some() {
                continue;
            }
            let Some(inf) = w.inflight.front() else {
                continue;
            };
            let Some(t) = inf.tasks.last() else { continue };
            if !splittable(t) || t.count < 2 {
                continue;
            }
            let Some(p) = self.progress_of(i) else {
                continue;
            };
            // Acquire: pairs with the worker's Release store of `seq`.
            if p.seq.load(Ordering::Acquire) != inf.seq {
                continue; // not started yet: the worker could take it whole
            }
            let base: usize = inf.tasks.iter().map(|t| t.count).sum::<usize>() - t.count;
            let done = match p.item.load(Ordering::Relaxed) {
                FINISHED => continue,
                NOT_STARTED => 0,
                item => usize::try_from(item & !BLOCK).map_or(0, |i| i.saturating_sub(base)),
            };
            let left = t.count.saturating_sub(done);
            let ns = st.estimates.get(&t.entry).map_or(0.0, |e| e.ns);
            // Too little left to be worth a split, by the estimate; unless
            // the batch has run far longer than estimated (items differ).
            let batch_ns = inf.tasks.iter().map(|t| t.count).sum::<usize>() as f64 * ns;
            let overdue = inf.sent.elapsed().as_nanos() as f64 > 2.0 * batch_ns + MIN_SPLIT_NS;
            if left < 2 || (ns > 0.0 && left as f64 * ns < MIN_SPLIT_NS && !overdue) {
                continue;
            }
            let worth = if ns > 0.0 {
                left as f64 * ns
            } else {
                left as f64
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

    /// Takes the next batch for the worker in `slot` (which may run only so
    /// many more items, with `max_tasks_per_child`).
    fn take_batch(&self, st: &mut State, slot: usize) -> Vec<Task> {
        let left = self
            .cfg
            .max_items
            .map(|m| m.saturating_sub(st.workers[slot].assigned) as usize);
        let mut first = match st.pending.pop_front() {
            Some(t) => t,
            None => return Vec::new(),
        };
        if let Some(left) = left.filter(|&l| l < first.count) {
            if let (Some(a), Some(b)) = (first.slice(0, left), first.slice(left, first.count)) {
                st.pending.push_front(b);
                first = a;
            }
        }
        let mut items = first.count;
        // Small tasks (apply_async calls, first chunks) travel together,
        // up to about TARGET_NS of measured work and a fair share of the queue.
        let limit = match st.estimates.get(&first.entry) {
            Some(e) => ((TARGET_NS / e.ns.max(1.0)) as usize).clamp(1, 4096),
            None => 1,
        };
        let share = (st.pending.len() + 1).div_ceil(self.cfg.processes.max(1));
        let limit = limit.min(share.max(1)).min(left.unwrap_or(usize::MAX));
        let mut batch = vec![first];
        while items < limit {
            match st.pending.front() {
                Some(t) if items + t.count <= limit && st.estimates.contains_key(&t.entry) => {
                    items += t.count;
                    if let Some(t) = st.pending.pop_front() {
                        batch.push(t);
                    }
                }
                _ => break,
            }
        }
        batch
    }

    // ----- collector -----

    fn collector(self: Arc<Self>) {
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
    fn drain_conn(&self, slot: usize, conn: &Connection) -> bool {
        loop {
            match conn.try_recv::<Msg>() {
                Ok(msg) => {
                    if !self.on_message(slot, msg, conn) {
                        return false;
                    }
                }
                Err(RecvError::Timeout) => return true,
                Err(_) => return false,
            }
        }
    }

    /// Returns `false` on a protocol violation.
    fn on_message(&self, slot: usize, msg: Msg, conn: &Connection) -> bool {
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
                if !(splittable(t) && at > 0 && at < t.count) {
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
                            let n = t.count as f64;
                            let m = Estimate {
                                ns: o.nanos as f64 / n,
                                bytes: (t.payload.bytes.as_slice().len() as f64 + o.len as f64) / n,
                                weight: n,
                            };
                            let e = st.estimates.entry(t.entry).or_insert(m);
                            // Weighted by items, with the old weight capped at
                            // the new sample's, so the estimate follows change.
                            let w = e.weight.min(n);
                            e.ns = (e.ns * w + m.ns * n) / (w + n);
                            e.bytes = (e.bytes * w + m.bytes * n) / (w + n);
                            e.weight = w + n;
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

    /// A worker died (or finished): fail the item it was running, re-queue
    /// the rest of its batches, and replace it if there is still work.
    fn on_death(&self, slot: usize) {
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
                ExitStatus::Exited(0)
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
                        st.workers[slot] = w;
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

    // ----- cancel, terminate -----

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
            st = self
                .state_cv
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wakes the feeder (after `close`, or a job finished).
    pub(crate) fn poke(&self) {
        let mut st = lock(&self.st);
        st.feeder_idle = false;
        self.feeder_cv.notify_one();
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

fn join_status(e: &mproc_process::JoinTimeoutError) -> Option<ExitStatus> {
    match e {
        mproc_process::JoinTimeoutError::Join(j) => j.status(),
        mproc_process::JoinTimeoutError::Timeout => None,
    }
}
