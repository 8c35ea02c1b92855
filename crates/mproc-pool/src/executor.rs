//! [`ProcessPoolExecutor`]: Python's `concurrent.futures` on the pool's
//! engine.
//!
//! Every `submit` is a one-item task of the engine (as `apply_async`)
//! whose sink is the future's [`Core`]: the collector thread resolves it,
//! wakes the threads blocked in [`Future::result`] (its condition
//! variable) and those blocked in [`wait`] or [`as_completed`] (each of
//! those registers a [`Waiter`] with the futures it watches, so a wake-up
//! costs nothing per future not finished, and nobody polls). Three small
//! engine hooks serve it: [`Sink::dispatched`] (a task left the queue: the
//! future is running), [`Sink::rerun_lost`] (at most once, on request) and
//! `Shared::cancel_queued` (cancel a task not dispatched yet).

use std::collections::VecDeque;
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use mproc_process::{Context, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::Shared;
use crate::error::{BuildError, NextTimeoutError, PoolError, TaskError};
use crate::job::{Sink, decode_one, lock};
use crate::pool::{Pool, PoolBuilder, entry_of};
use crate::wire::TaskOut;

// ----- the executor -----

/// Builds a [`ProcessPoolExecutor`] (Python's `ProcessPoolExecutor(
/// max_workers, mp_context, initializer, initargs, max_tasks_per_child)`).
///
/// The options are the [`PoolBuilder`]'s, which this wraps.
#[must_use = "a builder does nothing until build() is called"]
pub struct ExecutorBuilder {
    pool: PoolBuilder,
    rerun_lost: bool,
}

impl fmt::Debug for ExecutorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorBuilder")
            .field("pool", &self.pool)
            .field("rerun_lost", &self.rerun_lost)
            .finish()
    }
}

impl ExecutorBuilder {
    /// How many worker processes (default: [`cpu_count`](crate::cpu_count)).
    pub fn max_workers(mut self, n: usize) -> Self {
        self.pool = self.pool.processes(n);
        self
    }

    /// How workers are started (see [`PoolBuilder::start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.pool = self.pool.start_method(method);
        self
    }

    /// Uses a context's start method (Python's `mp_context=`).
    pub fn context(mut self, ctx: Context) -> Self {
        self.pool = self.pool.context(ctx);
        self
    }

    /// Runs `f(args)` once in every worker before it takes tasks (Python's
    /// `initializer`/`initargs`; see [`PoolBuilder::initializer`]).
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Fn(A) + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        self.pool = self.pool.initializer(f, args);
        self
    }

    /// Replaces each worker after it ran `n` tasks (Python's
    /// `max_tasks_per_child`).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.pool = self.pool.max_tasks_per_child(n);
        self
    }

    /// How long dropping the executor waits for its outstanding work
    /// before it terminates the workers (default 10 s; see
    /// [`ProcessPoolExecutor`]'s `Drop`).
    pub fn drop_timeout(mut self, t: Duration) -> Self {
        self.pool = self.pool.drop_timeout(t);
        self
    }

    /// What happens to a task that ran in a worker that then died before
    /// it sent the task's result (small tasks travel in batches, and a
    /// batch's results travel together). With `true` (the default) it runs
    /// again elsewhere, so the only future that fails is the one whose task
    /// was running when the worker died; a task may then run twice. With
    /// `false` no task ever runs twice: those futures fail with
    /// [`TaskError::WorkerLost`] too (Python's executor fails every
    /// outstanding future with `BrokenProcessPool` instead).
    pub fn rerun_lost(mut self, on: bool) -> Self {
        self.rerun_lost = on;
        self
    }

    /// Starts the workers (see [`PoolBuilder::build`]).
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn build(self) -> Result<ProcessPoolExecutor, BuildError> {
        Ok(ProcessPoolExecutor {
            pool: self.pool.build()?,
            open: RwLock::new(true),
            rerun_lost: self.rerun_lost,
        })
    }
}

/// A pool of worker processes that runs tasks as [`Future`]s (Python's
/// `concurrent.futures.ProcessPoolExecutor`), on the same engine as
/// [`Pool`].
///
/// Tasks are `fn` items or non-capturing closures, their arguments and
/// results serde values, as for [`Pool::apply_async`]. Methods take `&self`;
/// an executor may be shared between threads.
///
/// # Failures
///
/// A task that panics fails its future with [`TaskError::Panicked`]; a
/// worker that dies fails only the future of the task it was running, with
/// [`TaskError::WorkerLost`], is replaced, and the other futures complete
/// (see [`ExecutorBuilder::rerun_lost`]). CPython's executor instead breaks
/// for good and fails every outstanding future.
///
/// # Shutting down
///
/// [`shutdown`](Self::shutdown) as in Python. **Dropping** the executor is
/// Python's `with` block: `shutdown(wait = true, cancel_futures = false)`,
/// except that it waits at most [`ExecutorBuilder::drop_timeout`] (10 s by
/// default); then it terminates the workers, and futures still outstanding
/// resolve to [`TaskError::Cancelled`]. Futures may outlive their executor.
///
/// # Examples
///
/// ```
/// use mproc_pool::{ProcessPoolExecutor, ReturnWhen, as_completed, wait};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
///
/// let ex = ProcessPoolExecutor::new(2)?;
/// let futs = (0..4u64).map(|x| ex.submit(square, x)).collect::<Result<Vec<_>, _>>()?;
/// let (done, not_done) = wait(&futs, ReturnWhen::AllCompleted);
/// assert_eq!((done.len(), not_done.len()), (4, 0));
/// let mut all: Vec<u64> = as_completed(&futs).map(|f| f.result().unwrap()).collect();
/// all.sort();
/// assert_eq!(all, [0, 1, 4, 9]);
/// let squares: Vec<u64> = ex.map(square, 0..4u64)?.collect::<Result<_, _>>()?;
/// assert_eq!(squares, [0, 1, 4, 9]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct ProcessPoolExecutor {
    pool: Pool,
    /// Whether it takes new work: read-held by `submit` while it queues,
    /// write-held by `shutdown` to close it.
    open: RwLock<bool>,
    rerun_lost: bool,
}

impl fmt::Debug for ProcessPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessPoolExecutor")
            .field("max_workers", &self.pool.processes())
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

/// Futures a [`ProcessPoolExecutor::map`] keeps submitted ahead of the one
/// it waits for, per worker.
const MAP_AHEAD_PER_WORKER: usize = 64;

impl ProcessPoolExecutor {
    /// A builder with the defaults.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder {
            pool: Pool::builder(),
            rerun_lost: true,
        }
    }

    /// An executor of `max_workers` workers with the default options.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(max_workers: usize) -> Result<Self, BuildError> {
        Self::builder().max_workers(max_workers).build()
    }

    /// The number of workers.
    pub fn max_workers(&self) -> usize {
        self.pool.processes()
    }

    /// The process ids of the current workers.
    pub fn pids(&self) -> Vec<i32> {
        self.pool.pids()
    }

    fn is_open(&self) -> bool {
        *self.open.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Schedules `f(args)` and returns its [`Future`] at once (Python's
    /// `submit`).
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after [`shutdown`](Self::shutdown)
    /// (Python's `RuntimeError`).
    pub fn submit<F, A, R>(&self, f: F, args: A) -> Result<Future<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let _ = f;
        let entry = entry_of::<F, A, R>();
        let open = self.open.read().unwrap_or_else(|e| e.into_inner());
        if !*open {
            return Err(PoolError::NotRunning);
        }
        let core = Arc::new(Core::new(
            Arc::downgrade(self.pool.shared()),
            self.rerun_lost,
        ));
        self.pool.submit_one(entry, &args, core.clone());
        drop(open);
        Ok(Future { core })
    }

    /// Applies `f` to every item, yielding the results in input order
    /// (Python's `map`), each as it is ready.
    ///
    /// Unlike Python's, the input is consumed lazily: a window of
    /// `64 × max_workers` tasks is kept submitted ahead of the result being
    /// waited for (so an endless input works). Dropping the iterator
    /// cancels the tasks not yet dispatched; those running finish and
    /// their results are dropped.
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after [`shutdown`](Self::shutdown).
    pub fn map<'e, F, A, R, I>(&'e self, f: F, iterable: I) -> Result<Map<'e, R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'e,
    {
        self.map_inner(f, iterable, None)
    }

    /// [`map`](Self::map) with Python's `timeout`: every result must be
    /// ready within `timeout` of this call. Past it the iterator yields
    /// [`FutureError::Timeout`] once, cancels what it had submitted and
    /// ends.
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after [`shutdown`](Self::shutdown).
    pub fn map_timeout<'e, F, A, R, I>(
        &'e self,
        f: F,
        iterable: I,
        timeout: Duration,
    ) -> Result<Map<'e, R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'e,
    {
        self.map_inner(f, iterable, Instant::now().checked_add(timeout))
    }

    fn map_inner<'e, F, A, R, I>(
        &'e self,
        f: F,
        iterable: I,
        deadline: Option<Instant>,
    ) -> Result<Map<'e, R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: 'e,
    {
        if !self.is_open() {
            return Err(PoolError::NotRunning);
        }
        let mut input = iterable.into_iter();
        let feed = move || {
            let a = input.next()?;
            // Shut down meanwhile: the rest is cancelled.
            Some(
                self.submit(f, a)
                    .unwrap_or_else(|_| Future::cancelled_now()),
            )
        };
        let mut m = Map {
            feed: Box::new(feed),
            window: VecDeque::new(),
            ahead: MAP_AHEAD_PER_WORKER * self.max_workers().max(1),
            deadline,
            finished: false,
        };
        m.top_up();
        Ok(m)
    }

    /// Takes no new work (Python's `shutdown(wait, cancel_futures)`):
    /// with `cancel_futures`, cancels the futures not dispatched to a
    /// worker yet; the others complete, then the workers exit. With `wait`,
    /// returns once they did.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        *self.open.write().unwrap_or_else(|e| e.into_inner()) = false;
        if cancel_futures {
            self.pool.shared().cancel_queued(None);
        }
        self.pool.close();
        if wait {
            // Closed just above, so `join` cannot fail.
            let _ = self.pool.join();
        }
    }
}

// ----- the future -----

/// Not dispatched yet: it can be cancelled.
const PENDING: u8 = 0;
/// Dispatched to a worker (Python's `RUNNING`, which starts when the task
/// enters the call queue).
const RUNNING: u8 = 1;
const SUCCEEDED: u8 = 2;
const FAILED: u8 = 3;
const CANCELLED: u8 = 4;

/// A callback run with a future's outcome.
type DoneCallback<R> = Box<dyn FnOnce(Result<&R, &TaskError>) + Send>;

struct Inner<R> {
    /// `Some` once resolved (until `into_result` takes it).
    outcome: Option<Result<R, TaskError>>,
    /// Threads blocked on `Core::cv`.
    sleepers: usize,
    callbacks: Vec<DoneCallback<R>>,
    /// `wait`/`as_completed` calls watching, with this future's index there.
    waiters: Vec<(Arc<Waiter>, usize)>,
}

/// A future's shared state: what the engine resolves (the task's sink).
struct Core<R> {
    /// PENDING, RUNNING, then SUCCEEDED, FAILED or CANCELLED, set with
    /// `inner` locked (and, past RUNNING, after `outcome`).
    phase: AtomicU8,
    inner: Mutex<Inner<R>>,
    cv: Condvar,
    engine: Weak<Shared>,
    rerun_lost: bool,
}

impl<R> Core<R> {
    fn new(engine: Weak<Shared>, rerun_lost: bool) -> Self {
        Self {
            phase: AtomicU8::new(PENDING),
            inner: Mutex::new(Inner {
                outcome: None,
                sleepers: 0,
                callbacks: Vec::new(),
                waiters: Vec::new(),
            }),
            cv: Condvar::new(),
            engine,
            rerun_lost,
        }
    }

    fn phase(&self) -> u8 {
        // Acquire: pairs with the Release store in `resolve`, after which
        // the outcome is there.
        self.phase.load(Ordering::Acquire)
    }

    /// Records the outcome (once), runs the callbacks, and wakes whoever
    /// waits.
    fn resolve(&self, r: Result<R, TaskError>) {
        let phase = match &r {
            Ok(_) => SUCCEEDED,
            Err(TaskError::Cancelled) => CANCELLED,
            Err(_) => FAILED,
        };
        let mut g = lock(&self.inner);
        if self.phase() >= SUCCEEDED {
            return;
        }
        let Inner {
            outcome, callbacks, ..
        } = &mut *g;
        let out = outcome.insert(r);
        // Release: see `phase`.
        self.phase.store(phase, Ordering::Release);
        for cb in std::mem::take(callbacks) {
            run_callback(cb, out.as_ref());
        }
        if g.sleepers > 0 {
            self.cv.notify_all();
        }
        let waiters = std::mem::take(&mut g.waiters);
        drop(g);
        for (w, i) in waiters {
            w.push(i);
        }
    }

    /// Blocks until resolved or `deadline`; returns the lock and whether
    /// it is resolved.
    fn wait_until(&self, deadline: Option<Instant>) -> (std::sync::MutexGuard<'_, Inner<R>>, bool) {
        let mut g = lock(&self.inner);
        while self.phase() < SUCCEEDED {
            g.sleepers += 1;
            g = match deadline {
                None => self.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        g.sleepers -= 1;
                        return (g, false);
                    }
                    self.cv
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            g.sleepers -= 1;
        }
        (g, true)
    }
}

/// Runs a done-callback; a panicking one must not take the caller (the
/// pool's result thread) down.
fn run_callback<R>(cb: DoneCallback<R>, r: Result<&R, &TaskError>) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(r)));
}

impl<R: DeserializeOwned + Send + 'static> Sink for Core<R> {
    fn deliver(&self, _first: usize, count: usize, out: &TaskOut, bytes: &[u8], fds: Vec<OwnedFd>) {
        self.resolve(decode_one(count, out, bytes, fds));
    }

    fn fail(&self, _first: usize, _count: usize, err: TaskError) {
        self.resolve(Err(err));
    }

    fn dispatched(&self) {
        // Relaxed: only this flag changes (the outcome is published by
        // `resolve`'s Release store, which this never overwrites).
        let _ = self
            .phase
            .compare_exchange(PENDING, RUNNING, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn rerun_lost(&self) -> bool {
        self.rerun_lost
    }
}

/// Why a [`Future`] has no value to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FutureError {
    /// Not resolved in time (Python's `TimeoutError`); the future is
    /// unchanged.
    Timeout,
    /// The task failed: it panicked, its worker died, it was cancelled
    /// ([`TaskError::Cancelled`], Python's `CancelledError`), …
    Task(TaskError),
}

impl FutureError {
    /// Whether the wait timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// Whether the future was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Task(TaskError::Cancelled))
    }

    /// The task's error, if the task failed.
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            Self::Task(e) => Some(e),
            Self::Timeout => None,
        }
    }
}

impl fmt::Display for FutureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out waiting for the future"),
            Self::Task(_) => f.write_str("the future's task failed"),
        }
    }
}

impl std::error::Error for FutureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Task(e) => Some(e),
            Self::Timeout => None,
        }
    }
}

impl From<TaskError> for FutureError {
    fn from(e: TaskError) -> Self {
        Self::Task(e)
    }
}

/// The eventual result of [`ProcessPoolExecutor::submit`] (Python's
/// `concurrent.futures.Future`).
///
/// It resolves exactly once: to the value, to the task's error, or to
/// [`TaskError::Cancelled`]. It is pending until the task is dispatched to
/// a worker, then running (as in Python, where a task is running once it
/// is in the call queue), then done; only a pending one can be cancelled.
/// It never hangs on a dead worker, and it may outlive its executor.
/// [`result`](Self::result) clones the value (any number of times, as in
/// Python); [`into_result`](Self::into_result) moves it out.
#[must_use = "a Future does nothing unless waited on"]
pub struct Future<R> {
    core: Arc<Core<R>>,
}

impl<R> fmt::Debug for Future<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.core.phase() {
            PENDING => "pending",
            RUNNING => "running",
            SUCCEEDED => "finished",
            FAILED => "failed",
            _ => "cancelled",
        };
        f.debug_struct("Future")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<R> Future<R> {
    /// A future cancelled from the start.
    fn cancelled_now() -> Self {
        let core = Core::new(Weak::new(), true);
        core.resolve(Err(TaskError::Cancelled));
        Self {
            core: Arc::new(core),
        }
    }

    /// Whether it is resolved (finished, failed or cancelled).
    pub fn done(&self) -> bool {
        self.core.phase() >= SUCCEEDED
    }

    /// Whether its task was dispatched to a worker and is not done.
    pub fn running(&self) -> bool {
        self.core.phase() == RUNNING
    }

    /// Whether it was cancelled.
    pub fn cancelled(&self) -> bool {
        self.core.phase() == CANCELLED
    }

    /// Cancels the task if it was not dispatched to a worker yet, and
    /// returns whether the future is cancelled (Python's `cancel`: `false`
    /// if it is running or done, `true` if it was cancelled before).
    pub fn cancel(&self) -> bool {
        match self.core.phase() {
            PENDING => {}
            CANCELLED => return true,
            _ => return false,
        }
        if let Some(engine) = self.core.engine.upgrade() {
            // It resolves the future (to Cancelled) if it was still queued.
            engine.cancel_queued(Some(Arc::as_ptr(&self.core).cast()));
        }
        self.cancelled()
    }

    /// Blocks until it is resolved.
    pub fn wait(&self) {
        let _ = self.core.wait_until(None);
    }

    /// Blocks at most `timeout`; returns whether it is resolved.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.core.wait_until(Instant::now().checked_add(timeout)).1
    }

    /// Blocks until `deadline`; returns whether it is resolved.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.core.wait_until(Some(deadline)).1
    }

    /// Waits for the value and moves it out (a `result()` that needs no
    /// `Clone`).
    ///
    /// # Errors
    /// [`FutureError::Task`] if the task failed or was cancelled.
    pub fn into_result(self) -> Result<R, FutureError> {
        let (mut g, _) = self.core.wait_until(None);
        take_outcome(&mut g)
    }

    /// [`into_result`](Self::into_result) waiting at most `timeout`; on
    /// timeout the future is handed back.
    ///
    /// # Errors
    /// `Err(Err(self))` on timeout; `Err(Ok(e))` if the task failed.
    pub fn into_result_timeout(self, timeout: Duration) -> Result<R, Result<FutureError, Self>> {
        let d = Instant::now().checked_add(timeout);
        let (mut g, done) = self.core.wait_until(d);
        if !done {
            drop(g);
            return Err(Err(self));
        }
        take_outcome(&mut g).map_err(Ok)
    }

    /// The task's error once it is resolved, `None` if it succeeded
    /// (Python's `exception()`; a cancelled future gives
    /// [`TaskError::Cancelled`]).
    pub fn exception(&self) -> Option<TaskError> {
        let (g, _) = self.core.wait_until(None);
        g.outcome.as_ref().and_then(|r| r.as_ref().err().cloned())
    }

    /// [`exception`](Self::exception) waiting at most `timeout`.
    ///
    /// # Errors
    /// [`FutureError::Timeout`] if it is not resolved in time.
    pub fn exception_timeout(&self, timeout: Duration) -> Result<Option<TaskError>, FutureError> {
        let (g, done) = self.core.wait_until(Instant::now().checked_add(timeout));
        if !done {
            return Err(FutureError::Timeout);
        }
        Ok(g.outcome.as_ref().and_then(|r| r.as_ref().err().cloned()))
    }

    /// Runs `f` with the outcome once the future is resolved (Python's
    /// `add_done_callback`, which passes the future): at once in this
    /// thread if it is, otherwise in the executor's result thread, where
    /// it must not block (nor wait on futures). Callbacks run in the order
    /// they were added; a panicking one is ignored.
    pub fn add_done_callback<C>(&self, f: C)
    where
        C: FnOnce(Result<&R, &TaskError>) + Send + 'static,
    {
        let mut g = lock(&self.core.inner);
        match &g.outcome {
            Some(r) => run_callback(Box::new(f), r.as_ref()),
            None => g.callbacks.push(Box::new(f)),
        }
    }
}

impl<R: Clone> Future<R> {
    /// Waits for the value and returns a copy of it (Python's `result()`).
    ///
    /// # Errors
    /// [`FutureError::Task`] if the task failed or was cancelled.
    pub fn result(&self) -> Result<R, FutureError> {
        let (g, _) = self.core.wait_until(None);
        clone_outcome(&g)
    }

    /// [`result`](Self::result) waiting at most `timeout` (Python's
    /// `result(timeout)`).
    ///
    /// # Errors
    /// [`FutureError::Timeout`] if it is not resolved in time;
    /// [`FutureError::Task`] if the task failed or was cancelled.
    pub fn result_timeout(&self, timeout: Duration) -> Result<R, FutureError> {
        let (g, done) = self.core.wait_until(Instant::now().checked_add(timeout));
        if !done {
            return Err(FutureError::Timeout);
        }
        clone_outcome(&g)
    }
}

fn clone_outcome<R: Clone>(g: &Inner<R>) -> Result<R, FutureError> {
    match &g.outcome {
        Some(Ok(v)) => Ok(v.clone()),
        Some(Err(e)) => Err(FutureError::Task(e.clone())),
        // Only `into_result` takes it, and it consumes the future.
        None => Err(FutureError::Task(TaskError::Cancelled)),
    }
}

fn take_outcome<R>(g: &mut Inner<R>) -> Result<R, FutureError> {
    g.outcome
        .take()
        .unwrap_or(Err(TaskError::Cancelled))
        .map_err(FutureError::Task)
}

// ----- map -----

/// The iterator of [`ProcessPoolExecutor::map`]: the results in input
/// order.
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct Map<'e, R> {
    /// Submits the next item; `None` at the end of the input.
    feed: Box<dyn FnMut() -> Option<Future<R>> + 'e>,
    window: VecDeque<Future<R>>,
    ahead: usize,
    deadline: Option<Instant>,
    finished: bool,
}

impl<R> fmt::Debug for Map<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Map")
            .field("submitted", &self.window.len())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<R> Map<'_, R> {
    fn top_up(&mut self) {
        while !self.finished && self.window.len() < self.ahead {
            match (self.feed)() {
                Some(f) => self.window.push_back(f),
                None => break,
            }
        }
    }

    fn cancel_rest(&mut self) {
        self.finished = true;
        for f in self.window.drain(..) {
            f.cancel();
        }
    }
}

impl<R> Iterator for Map<'_, R> {
    type Item = Result<R, FutureError>;

    fn next(&mut self) -> Option<Self::Item> {
        let f = self.window.pop_front()?;
        if let Some(d) = self.deadline {
            if !f.wait_deadline(d) {
                f.cancel();
                self.cancel_rest();
                return Some(Err(FutureError::Timeout));
            }
        }
        // The next task leaves before this one's value is taken.
        self.top_up();
        Some(f.into_result())
    }
}

impl<R> Drop for Map<'_, R> {
    fn drop(&mut self) {
        self.cancel_rest();
    }
}

// ----- wait, as_completed -----

/// A [`Future`] or a reference to one, of any value type: what [`wait`]
/// and [`as_completed`] take, so they work on `&[Future<R>]`, on
/// `Vec<Future<R>>`, and on futures of different types as
/// `&dyn AsFuture` (`[&a as &dyn AsFuture, &b]`).
pub trait AsFuture {
    /// The future, its value type erased.
    fn as_future_ref(&self) -> FutureRef<'_>;
}

impl<R> AsFuture for Future<R> {
    fn as_future_ref(&self) -> FutureRef<'_> {
        FutureRef(&*self.core)
    }
}

impl<T: AsFuture + ?Sized> AsFuture for &T {
    fn as_future_ref(&self) -> FutureRef<'_> {
        (**self).as_future_ref()
    }
}

/// A [`Future`] of any value type (from [`AsFuture`]): its state.
#[derive(Clone, Copy)]
pub struct FutureRef<'a>(&'a dyn Watchable);

impl fmt::Debug for FutureRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutureRef")
            .field("done", &self.done())
            .finish_non_exhaustive()
    }
}

impl FutureRef<'_> {
    /// As [`Future::done`].
    pub fn done(&self) -> bool {
        self.0.phase() >= SUCCEEDED
    }

    /// As [`Future::running`].
    pub fn running(&self) -> bool {
        self.0.phase() == RUNNING
    }

    /// As [`Future::cancelled`].
    pub fn cancelled(&self) -> bool {
        self.0.phase() == CANCELLED
    }

    /// Whether it failed (not counting cancellation).
    pub fn failed(&self) -> bool {
        self.0.phase() == FAILED
    }
}

/// What `wait` and `as_completed` need of a future, whatever its type.
trait Watchable {
    fn phase(&self) -> u8;
    /// Has `w` told (index `i`) when it resolves, at once if it is.
    fn watch(&self, w: &Arc<Waiter>, i: usize);
    fn unwatch(&self, w: &Arc<Waiter>);
}

impl<R> Watchable for Core<R> {
    fn phase(&self) -> u8 {
        Core::phase(self)
    }

    fn watch(&self, w: &Arc<Waiter>, i: usize) {
        let mut g = lock(&self.inner);
        // Under the lock: `resolve` sets the phase and takes the waiters
        // under it too, so no resolution is missed.
        if self.phase() >= SUCCEEDED {
            drop(g);
            w.push(i);
        } else {
            g.waiters.push((w.clone(), i));
        }
    }

    fn unwatch(&self, w: &Arc<Waiter>) {
        lock(&self.inner)
            .waiters
            .retain(|(x, _)| !Arc::ptr_eq(x, w));
    }
}

/// One `wait` or `as_completed` call: the futures it watches push their
/// index here when they resolve.
#[derive(Default)]
struct Waiter {
    done: Mutex<VecDeque<usize>>,
    cv: Condvar,
}

impl Waiter {
    fn push(&self, i: usize) {
        lock(&self.done).push_back(i);
        self.cv.notify_one();
    }

    /// The next index, waiting until `deadline`; `None` on timeout.
    fn pop(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut q = lock(&self.done);
        loop {
            if let Some(i) = q.pop_front() {
                return Some(i);
            }
            q = match deadline {
                None => self.cv.wait(q).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    self.cv
                        .wait_timeout(q, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// Futures watched by one [`Waiter`].
struct Watch<F: AsFuture> {
    items: Vec<Option<F>>,
    waiter: Arc<Waiter>,
}

impl<F: AsFuture> Watch<F> {
    fn new(fs: impl IntoIterator<Item = F>) -> Self {
        let waiter = Arc::new(Waiter::default());
        let items: Vec<Option<F>> = fs.into_iter().map(Some).collect();
        for (i, f) in items.iter().enumerate() {
            if let Some(f) = f {
                f.as_future_ref().0.watch(&waiter, i);
            }
        }
        Self { items, waiter }
    }

    /// Stops watching the futures not taken out.
    fn unwatch(&self) {
        for f in self.items.iter().flatten() {
            f.as_future_ref().0.unwatch(&self.waiter);
        }
    }
}

impl<F: AsFuture> Drop for Watch<F> {
    fn drop(&mut self) {
        self.unwatch();
    }
}

/// When [`wait`] returns (Python's `return_when`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future is done (or cancelled).
    FirstCompleted,
    /// As soon as any future fails (not counting cancelled ones), or when
    /// all are done.
    FirstException,
    /// When all are done.
    AllCompleted,
}

/// Blocks until the futures are done as `when` says, and returns them as
/// `(done, not_done)`, each in input order (Python's
/// `concurrent.futures.wait`). Takes `&[Future<R>]`/`&Vec<…>` (and gives
/// references back) or owned futures.
pub fn wait<F: AsFuture>(fs: impl IntoIterator<Item = F>, when: ReturnWhen) -> (Vec<F>, Vec<F>) {
    wait_inner(fs, None, when)
}

/// [`wait`] for at most `timeout` (Python's `wait(fs, timeout)`): then
/// returns what is done so far.
pub fn wait_timeout<F: AsFuture>(
    fs: impl IntoIterator<Item = F>,
    timeout: Duration,
    when: ReturnWhen,
) -> (Vec<F>, Vec<F>) {
    wait_inner(fs, Instant::now().checked_add(timeout), when)
}

fn wait_inner<F: AsFuture>(
    fs: impl IntoIterator<Item = F>,
    deadline: Option<Instant>,
    when: ReturnWhen,
) -> (Vec<F>, Vec<F>) {
    let mut w = Watch::new(fs);
    let n = w.items.len();
    let mut done = 0;
    let mut failed = false;
    loop {
        let enough = match when {
            ReturnWhen::FirstCompleted => done > 0 || n == 0,
            ReturnWhen::FirstException => failed || done == n,
            ReturnWhen::AllCompleted => done == n,
        };
        if enough {
            break;
        }
        let Some(i) = w.waiter.pop(deadline) else {
            break;
        };
        done += 1;
        if let Some(f) = &w.items[i] {
            failed |= f.as_future_ref().failed();
        }
    }
    w.unwatch();
    let items: Vec<F> = std::mem::take(&mut w.items).into_iter().flatten().collect();
    items.into_iter().partition(|f| f.as_future_ref().done())
}

/// The futures in the order they resolve (Python's
/// `concurrent.futures.as_completed`): those already done first, in input
/// order, then each as it resolves. Takes `&[Future<R>]`/`&Vec<…>` (and
/// yields references) or owned futures. For Python's `timeout`, iterate
/// with [`AsCompleted::next_deadline`] and one deadline.
pub fn as_completed<F: AsFuture>(fs: impl IntoIterator<Item = F>) -> AsCompleted<F> {
    let watch = Watch::new(fs);
    let left = watch.items.len();
    AsCompleted { watch, left }
}

/// The iterator of [`as_completed`].
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct AsCompleted<F: AsFuture> {
    watch: Watch<F>,
    left: usize,
}

impl<F: AsFuture> fmt::Debug for AsCompleted<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl<F: AsFuture> AsCompleted<F> {
    /// The next future to resolve, waiting at most until `deadline`;
    /// `Ok(None)` once all were yielded.
    ///
    /// # Errors
    /// [`NextTimeoutError::Timeout`] if none resolved in time (the
    /// iterator stays usable).
    pub fn next_deadline(&mut self, deadline: Instant) -> Result<Option<F>, NextTimeoutError> {
        self.next_inner(Some(deadline))
    }

    /// [`next_deadline`](Self::next_deadline) with a timeout.
    ///
    /// # Errors
    /// As [`next_deadline`](Self::next_deadline).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<F>, NextTimeoutError> {
        self.next_inner(Instant::now().checked_add(timeout))
    }

    fn next_inner(&mut self, deadline: Option<Instant>) -> Result<Option<F>, NextTimeoutError> {
        while self.left > 0 {
            let i = self
                .watch
                .waiter
                .pop(deadline)
                .ok_or(NextTimeoutError::Timeout)?;
            if let Some(f) = self.watch.items.get_mut(i).and_then(Option::take) {
                self.left -= 1;
                return Ok(Some(f));
            }
        }
        Ok(None)
    }
}

impl<F: AsFuture> Iterator for AsCompleted<F> {
    type Item = F;

    fn next(&mut self) -> Option<F> {
        self.next_inner(None).unwrap_or(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<F: AsFuture> ExactSizeIterator for AsCompleted<F> {}
