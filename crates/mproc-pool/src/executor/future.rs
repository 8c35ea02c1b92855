//! [`Future`]: the handle of a submitted task, and its state shared with
//! the engine (the task's sink).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use mproc_shm::ready::{Doorbell, Waitable};

use super::wait::Waiter;
use crate::engine::Engine;
use crate::error::TaskError;
use crate::job::{DecodeFn, Sink, decode_one, lock};
use crate::wire::TaskOut;

/// Not dispatched yet: it can be cancelled.
pub(super) const PENDING: u8 = 0;
/// Dispatched to a worker (Python's `RUNNING`, which starts when the task
/// enters the call queue).
pub(super) const RUNNING: u8 = 1;
pub(super) const SUCCEEDED: u8 = 2;
pub(super) const FAILED: u8 = 3;
pub(super) const CANCELLED: u8 = 4;

/// A callback run with a future's outcome.
type DoneCallback<R> = Box<dyn FnOnce(Result<&R, &TaskError>) + Send>;

pub(super) struct Inner<R> {
    /// `Some` once resolved (until `into_result` takes it).
    outcome: Option<Result<R, TaskError>>,
    /// Threads blocked on `Core::cv`.
    sleepers: usize,
    callbacks: Vec<DoneCallback<R>>,
    /// `wait`/`as_completed` calls watching, with this future's index there.
    pub(super) waiters: Vec<(Arc<Waiter>, usize)>,
}

/// A future's shared state: what the engine resolves (the task's sink).
pub(super) struct Core<R> {
    /// PENDING, RUNNING, then SUCCEEDED, FAILED or CANCELLED, set with
    /// `inner` locked (and, past RUNNING, after `outcome`).
    phase: AtomicU8,
    pub(super) inner: Mutex<Inner<R>>,
    cv: Condvar,
    engine: Weak<Engine>,
    rerun_lost: bool,
    /// Made by the first `as_fd` (see `Future`'s `AsFd`), rung by
    /// `resolve`; both look at it with `inner` locked.
    bell: OnceLock<Doorbell>,
    /// How the value is decoded (the executor's codec).
    decode: DecodeFn<R>,
}

impl<R> Core<R> {
    pub(super) fn new(engine: Weak<Engine>, rerun_lost: bool, decode: DecodeFn<R>) -> Self {
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
            bell: OnceLock::new(),
            decode,
        }
    }

    pub(super) fn phase(&self) -> u8 {
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
        if let Some(b) = self.bell.get() {
            b.ring();
        }
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
    fn wait_until(&self, deadline: Option<Instant>) -> (MutexGuard<'_, Inner<R>>, bool) {
        let mut g = lock(&self.inner);
        while self.phase() < SUCCEEDED {
            g.sleepers += 1;
            g = match deadline {
                None => mproc_shm::local::wait(&self.cv, g),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        g.sleepers -= 1;
                        return (g, false);
                    }
                    mproc_shm::local::wait_for(&self.cv, g, d - now)
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

impl<R: Send + 'static> Sink for Core<R> {
    fn deliver(&self, _first: usize, count: usize, out: &TaskOut, bytes: &[u8], fds: Vec<OwnedFd>) {
        self.resolve(decode_one(self.decode, count, out, bytes, fds));
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

/// The eventual result of [`ProcessPoolExecutor::submit`](crate::ProcessPoolExecutor::submit) (Python's
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
    pub(super) core: Arc<Core<R>>,
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
    pub(super) fn new(core: Arc<Core<R>>) -> Self {
        Self { core }
    }

    /// A future cancelled from the start.
    pub(super) fn cancelled_now() -> Self {
        // Resolved here, so nothing is ever decoded.
        let core = Core::new(Weak::new(), true, |_, _, _, _| Err("cancelled".into()));
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

impl<R> AsFd for Future<R> {
    /// A descriptor that turns readable once the future is resolved (and
    /// stays so), for `wait` beside other mproc objects or an async
    /// reactor. Made on the first call, so futures nobody polls cost none.
    ///
    /// # Panics
    /// If the process is out of descriptors on the first call.
    fn as_fd(&self) -> BorrowedFd<'_> {
        let core = &*self.core;
        if let Some(b) = core.bell.get() {
            return b.as_fd();
        }
        // Under the lock `resolve` rings with: either it finds the doorbell
        // or this finds the future resolved.
        let g = lock(&core.inner);
        let bell = core
            .bell
            .get_or_init(|| Doorbell::new().expect("an eventfd for Future::as_fd"));
        if core.phase() >= SUCCEEDED {
            bell.ring();
        }
        drop(g);
        bell.as_fd()
    }
}

/// Ready once resolved (finished, failed or cancelled).
impl<R> Waitable for Future<R> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn ready_now(&self) -> bool {
        self.done()
    }
}

#[cfg(feature = "tokio")]
pub use self::awaiting::FutureResult;

#[cfg(feature = "tokio")]
mod awaiting {
    use super::{Future, FutureError};
    use crate::ready::{Awaiting, Resolving, awaitable};

    impl<R> Resolving for Future<R> {
        type Output = Result<R, FutureError>;
        const FUTURE: &'static str = "FutureResult";

        fn take_blocking(self) -> Self::Output {
            self.into_result()
        }
    }

    awaitable! {
        /// What `future.await` runs: resolves to [`Future::into_result`]'s
        /// value without blocking a thread (the tokio runtime's reactor
        /// watches the future's doorbell). Dropping it drops the future; the
        /// task still runs (cancel it first to stop it).
        pub struct FutureResult for Future<R> -> Result<_, FutureError>, "future";
        /// `future.await` (needs a tokio runtime with I/O enabled; outside one
        /// it blocks its thread in [`Future::into_result`]).
        impl IntoFuture;
    }
}
