//! [`ProcessPoolExecutor`]: Python's `concurrent.futures` on the pool's
//! engine.
//!
//! Every `submit` is a one-item task of the engine (as `apply_async`)
//! whose sink is the future's [`Core`]: the collector thread resolves it,
//! wakes the threads blocked in [`Future::result`] (its condition
//! variable) and those blocked in [`wait`] or [`as_completed`] (each of
//! those registers a [`Waiter`] with the futures it watches, so a wake-up
//! costs nothing per future not finished, and nobody polls). Three small
//! engine hooks serve it: `Sink::dispatched` (a task left the queue: the
//! future is running), `Sink::rerun_lost` (at most once, on request) and
//! `Shared::cancel_queued` (cancel a task not dispatched yet).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use mproc_process::{Context, StartMethod};
use mproc_shm::codec::Postcard;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::builder::PoolBuilder;
use crate::error::{BuildError, PoolError};
use crate::job::decode;
use crate::pool::Pool;
use crate::worker::entry_of;

mod future;
mod wait;

#[cfg(feature = "tokio")]
pub use self::future::FutureResult;
pub use self::future::{Future, FutureError};
pub use self::wait::{
    AsCompleted, AsFuture, FutureRef, ReturnWhen, as_completed, as_completed_timeout, wait,
    wait_timeout,
};

// ----- the executor -----

/// Builds a [`ProcessPoolExecutor`] (Python's `ProcessPoolExecutor(
/// max_workers, mp_context, initializer, initargs, max_tasks_per_child)`).
///
/// The options are the [`PoolBuilder`]'s, which this wraps, the codec `C`
/// of arguments and results among them ([`codec`](Self::codec)).
#[must_use = "a builder does nothing until build() is called"]
pub struct ExecutorBuilder<C = Postcard> {
    pool: PoolBuilder<C>,
    rerun_lost: bool,
}

impl<C> fmt::Debug for ExecutorBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorBuilder")
            .field("pool", &self.pool)
            .field("rerun_lost", &self.rerun_lost)
            .finish()
    }
}

impl<C> ExecutorBuilder<C> {
    /// Sets an option of the pool underneath.
    fn with_pool(mut self, set: impl FnOnce(PoolBuilder<C>) -> PoolBuilder<C>) -> Self {
        self.pool = set(self.pool);
        self
    }

    /// The same builder, for an executor whose arguments and results travel
    /// in the codec `C2` (see [`PoolBuilder::codec`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc_pool::{Pod, ProcessPoolExecutor};
    ///
    /// fn norm(v: [f32; 2]) -> f32 {
    ///     (v[0] * v[0] + v[1] * v[1]).sqrt()
    /// }
    ///
    /// let ex = ProcessPoolExecutor::builder().max_workers(1).codec::<Pod>().build()?;
    /// assert_eq!(ex.submit(norm, [3.0, 4.0])?.result()?, 5.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn codec<C2>(self) -> ExecutorBuilder<C2> {
        ExecutorBuilder {
            pool: self.pool.codec(),
            rerun_lost: self.rerun_lost,
        }
    }

    /// How many worker processes (default: [`cpu_count`](crate::cpu_count)).
    pub fn max_workers(self, n: usize) -> Self {
        self.with_pool(|p| p.processes(n))
    }

    /// How workers are started (see [`PoolBuilder::start_method`]).
    pub fn start_method(self, method: StartMethod) -> Self {
        self.with_pool(|p| p.start_method(method))
    }

    /// Uses a context's start method (Python's `mp_context=`).
    pub fn context(self, ctx: Context) -> Self {
        self.with_pool(|p| p.context(ctx))
    }

    /// Runs `f(args)` once in every worker before it takes tasks (Python's
    /// `initializer`/`initargs`; see [`PoolBuilder::initializer`]).
    pub fn initializer<F, A>(self, f: F, args: A) -> Self
    where
        F: Fn(A) + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        self.with_pool(|p| p.initializer(f, args))
    }

    /// Replaces each worker after it ran `n` tasks (Python's
    /// `max_tasks_per_child`).
    pub fn max_tasks_per_child(self, n: u64) -> Self {
        self.with_pool(|p| p.max_tasks_per_child(n))
    }

    /// How long dropping the executor waits for its outstanding work
    /// before it terminates the workers (default 10 s; see
    /// [`ProcessPoolExecutor`]'s `Drop`).
    pub fn drop_timeout(self, t: Duration) -> Self {
        self.with_pool(|p| p.drop_timeout(t))
    }

    /// What happens to a task that ran in a worker that then died before
    /// it sent the task's result (small tasks travel in batches, and a
    /// batch's results travel together). With `true` (the default) it runs
    /// again elsewhere, so the only future that fails is the one whose task
    /// was running when the worker died; a task may then run twice. With
    /// `false` no task ever runs twice: those futures fail with
    /// [`TaskError::WorkerLost`](crate::TaskError::WorkerLost) too (Python's executor fails every
    /// outstanding future with `BrokenProcessPool` instead).
    pub fn rerun_lost(mut self, on: bool) -> Self {
        self.rerun_lost = on;
        self
    }

    /// Starts the workers (see [`PoolBuilder::build`]).
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn build(self) -> Result<ProcessPoolExecutor<C>, BuildError> {
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
/// results travel in the codec `C` ([`Postcard`] for serde values unless
/// [`ExecutorBuilder::codec`] picks another), as for [`Pool::apply_async`].
/// Methods take `&self`; an executor may be shared between threads.
///
/// # Failures
///
/// A task that panics fails its future with [`TaskError::Panicked`](crate::TaskError::Panicked); a
/// worker that dies fails only the future of the task it was running, with
/// [`TaskError::WorkerLost`](crate::TaskError::WorkerLost), is replaced, and the other futures complete
/// (see [`ExecutorBuilder::rerun_lost`]). CPython's executor instead breaks
/// for good and fails every outstanding future.
///
/// # Shutting down
///
/// [`shutdown`](Self::shutdown) as in Python. **Dropping** the executor is
/// Python's `with` block: `shutdown(wait = true, cancel_futures = false)`,
/// except that it waits at most [`ExecutorBuilder::drop_timeout`] (10 s by
/// default); then it terminates the workers, and futures still outstanding
/// resolve to [`TaskError::Cancelled`](crate::TaskError::Cancelled). Futures may outlive their executor.
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
pub struct ProcessPoolExecutor<C = Postcard> {
    pool: Pool<C>,
    /// Whether it takes new work: read-held by `submit` while it queues,
    /// write-held by `shutdown` to close it.
    open: RwLock<bool>,
    rerun_lost: bool,
}

impl<C> fmt::Debug for ProcessPoolExecutor<C> {
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
}

impl<C> ProcessPoolExecutor<C> {
    /// The number of workers.
    pub fn max_workers(&self) -> usize {
        self.pool.processes()
    }

    /// The process ids of the current workers.
    pub fn pids(&self) -> Vec<i32> {
        self.pool.pids()
    }

    fn is_open(&self) -> bool {
        *mproc_shm::local::read(&self.open)
    }

    crate::__task_forms! {
        pool_task;

        /// Schedules `f(args)` and returns its [`Future`] at once (Python's
        /// `submit`).
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after [`shutdown`](Self::shutdown)
        /// (Python's `RuntimeError`).
        pub fn submit<F, A, R>(&self, f: F, args: A) -> Result<Future<R>, PoolError>
        {
            let _ = f;
            let entry = entry_of::<C, F, A, R>();
            let open = mproc_shm::local::read(&self.open);
            if !*open {
                return Err(PoolError::NotRunning);
            }
            let core = Arc::new(future::Core::new(
                Arc::downgrade(self.pool.engine()),
                self.rerun_lost,
                decode::<C, R>,
            ));
            self.pool.submit_one(entry, &args, core.clone());
            drop(open);
            Ok(Future::new(core))
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
        where { I: IntoIterator<Item = A>, I::IntoIter: 'e }
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
        where { I: IntoIterator<Item = A>, I::IntoIter: 'e }
        {
            self.map_inner(f, iterable, Instant::now().checked_add(timeout))
        }

        fn map_inner<'e, F, A, R, I>(
            &'e self,
            f: F,
            iterable: I,
            deadline: Option<Instant>,
        ) -> Result<Map<'e, R>, PoolError>
        where { I: IntoIterator<Item = A>, I::IntoIter: 'e }
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
    }

    /// Takes no new work (Python's `shutdown(wait, cancel_futures)`):
    /// with `cancel_futures`, cancels the futures not dispatched to a
    /// worker yet; the others complete, then the workers exit. With `wait`,
    /// returns once they did.
    pub fn shutdown(&self, wait: bool, cancel_futures: bool) {
        *mproc_shm::local::write(&self.open) = false;
        if cancel_futures {
            self.pool.engine().cancel_queued(None);
        }
        self.pool.close();
        if wait {
            // Closed just above, so `join` cannot fail.
            let _ = self.pool.join();
        }
    }
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
