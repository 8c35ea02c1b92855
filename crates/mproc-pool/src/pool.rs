//! `Pool`, its builder, and the `imap` iterators.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mproc_process::{Context, StartMethod, cpu_count};
use mproc_shm::codec_error::PostcardError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::{Config, Payload, Run, Shared, Task};
use crate::error::{BuildError, NextTimeoutError, PoolError, TaskError, TryImapError};
use crate::input::{Produced, Producer, UntilErr, producer};
use crate::job::{ApplyJob, AsyncResult, Callback, Chunk, MapJob, Sink, Slot, assemble, lock};
use crate::sys;
use crate::wire::Kind;
use crate::worker::{InitFn, TaskFn, run_init, run_task};

pub(crate) fn entry_of<F, A, R>() -> i64
where
    F: Fn(A) -> R + Copy + Send + 'static,
    A: DeserializeOwned,
    R: Serialize,
{
    mproc_fnref::assert_zst::<F>();
    let f: TaskFn = run_task::<F, A, R>;
    mproc_fnref::offset_of(f as *const ())
}

/// An initializer's entry, encoded arguments and their descriptors.
type InitTemplate = (i64, Vec<u8>, Vec<std::os::fd::OwnedFd>);

/// Builds a [`Pool`] (Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild, context)`).
///
/// # Examples
///
/// ```
/// use mproc_pool::Pool;
///
/// fn setup(tag: String) {
///     assert_eq!(tag, "ready");
/// }
///
/// let pool = Pool::builder().processes(2).initializer(setup, "ready".to_string()).max_tasks_per_child(100).build()?;
/// assert_eq!(pool.map(|x: u32| x + 1, vec![1, 2, 3])?, [2, 3, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    /// `None`: the process-wide default, resolved by `build`.
    method: Option<StartMethod>,
    max_tasks: Option<u64>,
    init: Option<Result<InitTemplate, String>>,
    cancel_on_ctrl_c: bool,
    drop_timeout: Duration,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("method", &self.method)
            .field("max_tasks_per_child", &self.max_tasks)
            .field("initializer", &self.init.is_some())
            .field("cancel_on_ctrl_c", &self.cancel_on_ctrl_c)
            .finish_non_exhaustive()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            processes: None,
            method: None,
            max_tasks: None,
            init: None,
            cancel_on_ctrl_c: false,
            drop_timeout: Duration::from_secs(10),
        }
    }
}

impl PoolBuilder {
    /// How many worker processes (default: [`cpu_count`], which honours the
    /// affinity mask, cgroup quotas and SLURM/PBS allocations).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// How workers are started (default: the process-wide
    /// [`get_start_method`](mproc_process::get_start_method), read when the
    /// pool is built, as CPython's `Pool` takes its context).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Uses a context's start method (Python's `context=`).
    pub fn context(self, ctx: Context) -> Self {
        self.start_method(ctx.start_method())
    }

    /// Replaces each worker after it ran `n` items (Python's
    /// `maxtasksperchild`; here every item counts, whatever the chunking).
    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// Runs `f(args)` once in every worker before it takes tasks
    /// (Python's `initializer`/`initargs`). If it fails (panics, or ends
    /// the process) in any worker started by [`build`](Self::build),
    /// `build` fails; if it keeps failing in replacement workers, the pool
    /// stops and fails queued tasks with [`TaskError::InitializerFailed`]
    /// instead of respawning for ever.
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Fn(A) + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        mproc_fnref::assert_zst::<F>();
        let _ = f;
        let run: InitFn = run_init::<F, A>;
        let entry = mproc_fnref::offset_of(run as *const ());
        self.init = Some(
            mproc_shm::handle::to_bytes_with_fds(&args)
                .map(|(b, fds)| (entry, b, fds))
                .map_err(|e| PostcardError::encode(&args, e).to_string()),
        );
        self
    }

    /// Makes Ctrl-C (SIGINT) in this process cancel the pool's work: every
    /// pending result resolves to [`TaskError::Cancelled`] and blocked calls
    /// return. The handler is process-wide; a second Ctrl-C ends the program
    /// as usual. Off by default (then Ctrl-C ends the program, and the
    /// workers, which are daemons, end with it). Workers always ignore
    /// SIGINT themselves.
    pub fn cancel_on_ctrl_c(mut self, on: bool) -> Self {
        self.cancel_on_ctrl_c = on;
        self
    }

    /// How long dropping the pool waits for queued work before it
    /// terminates the workers (default 10 s).
    pub fn drop_timeout(mut self, t: Duration) -> Self {
        self.drop_timeout = t;
        self
    }

    /// Starts the workers.
    ///
    /// Without an initializer this returns once the workers are asked for,
    /// before they exist: the fork server creates them while the caller goes
    /// on. The first operation on the pool sends its work (which waits in
    /// the workers' sockets) and then waits until the workers exist. A
    /// worker that then cannot be started is handled like one that died:
    /// its work runs in the others, and it is replaced (a few times at
    /// most); if no worker can be started at all, the work fails with
    /// [`TaskError::WorkerStart`]. With an initializer, this waits until
    /// every worker ran it.
    ///
    /// # Errors
    /// [`BuildError::NoProcesses`], [`BuildError::ZeroMaxTasks`],
    /// [`BuildError::Start`] if a worker cannot be asked for (the fork
    /// server cannot be started or reached; those already asked for are
    /// killed), or, with an initializer, cannot be started;
    /// [`BuildError::Initializer`] with the panic message if the
    /// initializer panicked in a worker, [`BuildError::WorkerLost`] if a
    /// worker ended while running it.
    pub fn build(self) -> Result<Pool, BuildError> {
        let processes = self.processes.unwrap_or_else(cpu_count);
        if processes == 0 {
            return Err(BuildError::NoProcesses);
        }
        if self.max_tasks == Some(0) {
            return Err(BuildError::ZeroMaxTasks);
        }
        let init = match self.init {
            None => None,
            Some(Ok(i)) => Some(i),
            Some(Err(m)) => {
                return Err(BuildError::Initializer {
                    message: format!("its arguments did not serialize: {m}"),
                });
            }
        };
        let method = match self.method {
            Some(m) => m,
            None => mproc_process::get_start_method().map_err(|e| BuildError::Start(e.into()))?,
        };
        let cfg = Config {
            processes,
            method,
            max_items: self.max_tasks,
            init,
        };
        let shared = Shared::new(cfg, self.cancel_on_ctrl_c)?;
        shared.start()?;
        let sigint_slot = if self.cancel_on_ctrl_c {
            sys::register_sigint(shared.wake_fd())
        } else {
            None
        };
        Ok(Pool {
            shared,
            sigint_slot,
            drop_timeout: self.drop_timeout,
        })
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Tasks are `fn` items or non-capturing closures; arguments and results are
/// serde values (mproc handles inside them travel as descriptors). Methods
/// take `&self`, and a pool may be shared between threads.
///
/// # Failures
///
/// * A task that panics fails that item ([`TaskError::Panicked`] with the
///   message); the worker lives on.
/// * A worker that dies (killed, aborted, out of memory) fails only the
///   item it was running, with [`TaskError::WorkerLost`] and its exit
///   status; the other items it held are re-run elsewhere (so items before
///   it in the same chunk may run twice), it is replaced at once, and the
///   pool stays usable. Detection takes milliseconds: the parent watches
///   every worker's socket and process. Tiny items of an integer range run
///   in blocks of a few microseconds that are tracked as a whole: a worker
///   that dies in one has the block run again item by item, so an item
///   that kills its worker again fails, and the others succeed.
/// * [`Pool::cancel`] (or Ctrl-C with
///   [`PoolBuilder::cancel_on_ctrl_c`]) resolves everything outstanding to
///   [`TaskError::Cancelled`].
///
/// # Shutting down
///
/// [`close`](Pool::close) then [`join`](Pool::join) finishes the queued work
/// and lets the workers exit; [`terminate`](Pool::terminate) stops them at
/// once (SIGTERM, then SIGKILL after a grace period) and resolves pending
/// results to `Cancelled`. **Dropping a pool** closes it and joins with a
/// deadline ([`PoolBuilder::drop_timeout`], 10 s by default), then
/// terminates: unlike CPython's `with Pool()`, leaving a scope does not kill
/// work in progress, and never hangs.
pub struct Pool {
    shared: Arc<Shared>,
    sigint_slot: Option<usize>,
    drop_timeout: Duration,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.shared.st);
        f.debug_struct("Pool")
            .field("processes", &self.shared.processes())
            .field("state", &st.run)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A builder with the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// A pool of `processes` workers with the default options.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Self, BuildError> {
        Self::builder().processes(processes).build()
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.shared.processes()
    }

    /// The process ids of the current workers (they change when workers
    /// are replaced).
    pub fn pids(&self) -> Vec<i32> {
        self.shared.pids()
    }

    /// The engine (for the executor's hooks).
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn check_running(&self) -> Result<(), PoolError> {
        match lock(&self.shared.st).run {
            Run::Running => Ok(()),
            _ => Err(PoolError::NotRunning),
        }
    }

    // ----- apply -----

    /// Runs `f(args)` in a worker and waits for the value (Python's `apply`).
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate;
    /// [`PoolError::Task`] if the task failed.
    pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Submits `f(args)` and returns at once (Python's `apply_async`).
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate.
    pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_inner(f, args, None)
    }

    /// [`apply_async`](Pool::apply_async) with a callback, run with the
    /// value or the error (Python's `callback` and `error_callback` in one)
    /// on the pool's result thread, before the result becomes ready. It
    /// must not block.
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate.
    pub fn apply_async_callback<F, A, R, C>(
        &self,
        f: F,
        args: A,
        callback: C,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        C: FnOnce(Result<&R, &PoolError>) + Send + 'static,
    {
        self.apply_inner(f, args, Some(Box::new(callback)))
    }

    fn apply_inner<F, A, R>(
        &self,
        f: F,
        args: A,
        cb: Option<Callback<R>>,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let _ = f;
        self.check_running()?;
        let entry = entry_of::<F, A, R>();
        let slot = Slot::new();
        let job = Arc::new(ApplyJob {
            slot: slot.clone(),
            callback: Mutex::new(cb),
        });
        self.submit_one(entry, &args, job);
        Ok(AsyncResult::new(slot))
    }

    /// Queues the one-item task `entry(args)` for `job` (or fails it there
    /// if `args` does not serialize).
    pub(crate) fn submit_one<A: Serialize>(&self, entry: i64, args: &A, job: Arc<dyn Sink>) {
        match mproc_shm::handle::to_bytes_with_fds(args) {
            Ok((bytes, fds)) => {
                let offsets = vec![0, bytes.len()];
                let payload = Payload {
                    bytes: crate::engine::Data::Owned(bytes),
                    fds,
                    offsets,
                    elem: 0,
                    start: 0,
                };
                let task = Task {
                    job,
                    entry,
                    kind: Kind::Seq,
                    first: 0,
                    count: 1,
                    payload: Arc::new(payload),
                    attempts: 0,
                    adaptive: false,
                    probe: false,
                    careful: false,
                };
                self.shared.submit(vec![task]);
                self.shared.ensure_threads();
            }
            Err(e) => {
                let e = PostcardError::encode(args, e);
                let e = TaskError::Encode(format!("the task's argument: {e}"));
                job.fail(0, 1, e)
            }
        }
    }

    // ----- map -----

    /// Applies `f` to every item and returns the values in input order
    /// (Python's `map`).
    ///
    /// Chunks are sized adaptively from the measured time per item (a few
    /// milliseconds of work each), so maps of tiny functions beat a serial
    /// loop. The input is consumed lazily, a bounded window at a time. An
    /// integer range (`0..n`, `a..=b`) travels as ranges, never as items,
    /// one part per worker, split again while running so that no worker
    /// idles while another has work left; a `Vec` of plain numbers travels
    /// as bytes.
    ///
    /// If the input iterator panics, the items before it still run, then
    /// the panic goes on from `map` (CPython's `map` reads the whole input
    /// first, so the iterable's exception comes from `map` too). An input
    /// of `Result`s is best collected first (`collect::<Result<Vec<_>,
    /// _>>()?`), or streamed with [`try_imap`](Pool::try_imap).
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate; otherwise every item
    /// runs, and the first failure in input order is returned
    /// ([`PoolError::Task`] with its index).
    pub fn map<F, A, R, I>(&self, f: F, iterable: I) -> Result<Vec<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let _ = f;
        self.map_inner::<F, A, R, I>(iterable, None)
    }

    /// [`map`](Pool::map) with a fixed chunk size.
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`] for 0; otherwise as [`map`](Pool::map).
    pub fn map_chunked<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<Vec<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let _ = f;
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.map_inner::<F, A, R, I>(iterable, Some(chunksize))
    }

    fn map_inner<F, A, R, I>(
        &self,
        iterable: I,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let mut it = self.imap_inner::<F, A, R, I>(iterable, chunksize, true)?;
        // The whole result is wanted at once: no need to stream it.
        it.eager = true;
        let mut chunks = Vec::new();
        while let Some(c) = it.next_chunk(None).unwrap_or(None) {
            chunks.push(c);
        }
        assemble(chunks.into_iter())
    }

    /// Applies `f` to argument tuples (Python's `starmap`): `f` takes the
    /// tuple's fields as separate arguments.
    ///
    /// # Errors
    /// As [`map`](Pool::map).
    ///
    /// # Examples
    ///
    /// ```
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// let pool = mproc_pool::Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn starmap<F, Args, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        mproc_fnref::assert_zst::<F>();
        let _ = f;
        self.map(|args: Args| call_star::<F, Args>(args), iterable)
    }

    /// Submits a [`starmap`](Pool::starmap) and returns at once (Python's
    /// `starmap_async`), as [`map_async`](Pool::map_async).
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate.
    ///
    /// # Examples
    ///
    /// ```
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// let pool = mproc_pool::Pool::new(2)?;
    /// let r = pool.starmap_async(add, vec![(1, 2), (3, 4)])?;
    /// assert_eq!(r.get()?, [3, 7]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn starmap_async<F, Args, I>(
        &self,
        f: F,
        iterable: I,
    ) -> Result<AsyncResult<Vec<F::Output>>, PoolError>
    where
        F: StarFn<Args>,
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        mproc_fnref::assert_zst::<F>();
        let _ = f;
        self.map_async(|args: Args| call_star::<F, Args>(args), iterable)
    }

    /// Submits a map and returns at once (Python's `map_async`). The input is
    /// encoded now (a panic of its iterator goes on from here, and nothing
    /// is submitted); the result resolves to the whole vector or the first
    /// failure.
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate.
    pub fn map_async<F, A, R, I>(&self, f: F, iterable: I) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async_callback(f, iterable, |_| {})
    }

    /// [`map_async`](Pool::map_async) with a fixed chunk size (Python's
    /// `map_async(f, it, chunksize)`).
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`] for 0; [`PoolError::NotRunning`] after
    /// close/terminate.
    pub fn map_async_chunked<F, A, R, I>(
        &self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        let _ = f;
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.map_async_inner::<F, A, R, I, _>(iterable, Some(chunksize), |_| {})
    }

    /// [`map_async`](Pool::map_async) with a callback run with the result on
    /// the pool's result thread (Python's `callback`/`error_callback`).
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate.
    pub fn map_async_callback<F, A, R, I, C>(
        &self,
        f: F,
        iterable: I,
        callback: C,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        C: FnOnce(Result<&Vec<R>, &PoolError>) + Send + 'static,
    {
        let _ = f;
        self.map_async_inner::<F, A, R, I, C>(iterable, None, callback)
    }

    fn map_async_inner<F, A, R, I, C>(
        &self,
        iterable: I,
        chunksize: Option<usize>,
        callback: C,
    ) -> Result<AsyncResult<Vec<R>>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        C: FnOnce(Result<&Vec<R>, &PoolError>) + Send + 'static,
    {
        self.check_running()?;
        let entry = entry_of::<F, A, R>();
        let job = Arc::new(MapJob::<R>::new());
        let slot = Slot::new();
        {
            let slot = slot.clone();
            lock(&job.st).finish = Some(Box::new(move |r: Result<Vec<R>, PoolError>| {
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(r.as_ref())));
                slot.set(r);
            }));
        }
        let mut prod = producer::<A, I>(iterable);
        let procs = self.processes();
        let size = match (chunksize, self.shared.estimate(entry), prod.remaining()) {
            (Some(c), _, _) => c,
            (None, Some(_), rem) => self.shared.chunk_size(entry, rem, false),
            // CPython's default: four chunks per worker.
            (None, None, Some(n)) => n.div_ceil(4 * procs).max(1),
            (None, None, None) => 64,
        };
        let mut next = 0;
        let mut tasks = Vec::new();
        while let Some(p) = prod.next_chunk(size) {
            match p {
                Produced::EncodeFailed(m) => {
                    job.put_failed(next, 1, TaskError::Encode(m));
                    next += 1;
                }
                Produced::Chunk {
                    kind,
                    count,
                    payload,
                } => {
                    job.submitted(count);
                    let j: Arc<dyn crate::job::Sink> = job.clone();
                    tasks.push(Task {
                        job: j,
                        entry,
                        kind,
                        first: next,
                        count,
                        payload: Arc::new(payload),
                        attempts: 0,
                        adaptive: false,
                        probe: false,
                        careful: false,
                    });
                    next += count;
                }
            }
        }
        if let Some(p) = prod.take_panic() {
            // The input's panic goes on from here; nothing was submitted.
            std::panic::resume_unwind(p);
        }
        self.shared.submit(tasks);
        self.shared.ensure_threads();
        job.seal();
        Ok(AsyncResult::new(slot))
    }

    // ----- imap -----

    /// Applies `f` to every item and yields the results in input order as
    /// they finish (Python's `imap`). The input is consumed lazily with a
    /// bounded number of chunks in flight; chunk sizes adapt as in
    /// [`map`](Pool::map). Each item is `Ok(value)` or the task's error, and
    /// iteration goes on after an error.
    ///
    /// If the input iterator panics, the results of the items before it
    /// come first, then the panic goes on from [`next`](Iterator::next) at
    /// its position (as CPython raises the iterable's exception there), and
    /// nothing follows. For an input of `Result`s, see
    /// [`try_imap`](Pool::try_imap).
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate.
    pub fn imap<'p, F, A, R, I>(&'p self, f: F, iterable: I) -> Result<Imap<'p, R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        A: 'p,
        I: 'p,
    {
        let _ = f;
        self.imap_inner::<F, A, R, I>(iterable, None, true)
    }

    /// [`imap`](Pool::imap) with a fixed chunk size.
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`] for 0; [`PoolError::NotRunning`].
    pub fn imap_chunked<'p, F, A, R, I>(
        &'p self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<Imap<'p, R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        A: 'p,
        I: 'p,
    {
        let _ = f;
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.imap_inner::<F, A, R, I>(iterable, Some(chunksize), true)
    }

    /// Like [`imap`](Pool::imap), but yields results in the order they
    /// finish (Python's `imap_unordered`); each item's result comes exactly
    /// once.
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate.
    pub fn imap_unordered<'p, F, A, R, I>(
        &'p self,
        f: F,
        iterable: I,
    ) -> Result<Imap<'p, R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        A: 'p,
        I: 'p,
    {
        let _ = f;
        self.imap_inner::<F, A, R, I>(iterable, None, false)
    }

    /// [`imap`](Pool::imap) over an input of `Result`s: the results of the
    /// `Ok` items, in order, and at the first `Err` (as CPython raises the
    /// iterable's exception at its position)
    /// [`TryImapError::Input`] with it, after which the input is not read
    /// and the iterator ends. A failed task is [`TryImapError::Task`].
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate.
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc_pool::{Pool, TryImapError};
    ///
    /// let pool = Pool::new(2)?;
    /// let input = ["1", "2", "x", "4"].map(str::parse::<u32>);
    /// let mut it = pool.try_imap(|x: u32| x * 10, input)?;
    /// assert_eq!(it.next(), Some(Ok(10)));
    /// assert_eq!(it.next(), Some(Ok(20)));
    /// assert!(matches!(it.next(), Some(Err(TryImapError::Input(_)))));
    /// assert_eq!(it.next(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_imap<'p, F, A, R, E, I>(
        &'p self,
        f: F,
        iterable: I,
    ) -> Result<TryImap<'p, R, E>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Result<A, E>>,
        A: 'p,
        E: 'p,
        I: 'p,
    {
        let _ = f;
        self.try_imap_inner::<F, A, R, E, I>(iterable, None, true)
    }

    /// [`try_imap`](Pool::try_imap) with a fixed chunk size.
    ///
    /// # Errors
    /// [`PoolError::ZeroChunksize`] for 0; [`PoolError::NotRunning`].
    pub fn try_imap_chunked<'p, F, A, R, E, I>(
        &'p self,
        f: F,
        iterable: I,
        chunksize: usize,
    ) -> Result<TryImap<'p, R, E>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Result<A, E>>,
        A: 'p,
        E: 'p,
        I: 'p,
    {
        let _ = f;
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        self.try_imap_inner::<F, A, R, E, I>(iterable, Some(chunksize), true)
    }

    /// [`try_imap`](Pool::try_imap) yielding results in the order they
    /// finish (as [`imap_unordered`](Pool::imap_unordered)); the input's
    /// error comes after the results of every item before it.
    ///
    /// # Errors
    /// [`PoolError::NotRunning`] after close/terminate.
    pub fn try_imap_unordered<'p, F, A, R, E, I>(
        &'p self,
        f: F,
        iterable: I,
    ) -> Result<TryImap<'p, R, E>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Result<A, E>>,
        A: 'p,
        E: 'p,
        I: 'p,
    {
        let _ = f;
        self.try_imap_inner::<F, A, R, E, I>(iterable, None, false)
    }

    fn try_imap_inner<'p, F, A, R, E, I>(
        &'p self,
        iterable: I,
        chunksize: Option<usize>,
        ordered: bool,
    ) -> Result<TryImap<'p, R, E>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Result<A, E>>,
        A: 'p,
        E: 'p,
        I: 'p,
    {
        let error = Rc::new(RefCell::new(None));
        let input = UntilErr {
            it: iterable.into_iter(),
            error: error.clone(),
            failed: false,
        };
        let inner = self.imap_inner::<F, A, R, _>(input, chunksize, ordered)?;
        Ok(TryImap { inner, error })
    }

    fn imap_inner<'p, F, A, R, I>(
        &'p self,
        iterable: I,
        chunksize: Option<usize>,
        ordered: bool,
    ) -> Result<Imap<'p, R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        A: 'p,
        I: 'p,
    {
        let entry = entry_of::<F, A, R>();
        let epoch = {
            let mut st = lock(&self.shared.st);
            if st.run != Run::Running {
                return Err(PoolError::NotRunning);
            }
            st.active_jobs += 1;
            st.epoch
        };
        let prod: Box<dyn Producer + 'p> = producer::<A, I>(iterable);
        let job = Arc::new(MapJob::<R>::new());
        Ok(Imap {
            pool: self,
            job,
            prod,
            entry,
            chunksize,
            // Every worker's batches, and one more chunk each waiting, so
            // a worker's next batch leaves as soon as its results arrive
            // (without waiting for this thread to cut it).
            window: (crate::engine::DEPTH + 1) * self.processes().max(1),
            next_index: 0,
            exhausted: false,
            epoch,
            ordered,
            eager: false,
            even: None,
            pos: 0,
            current: None,
            yielded: 0,
        })
    }

    // ----- lifecycle -----

    /// Takes no new work; queued and running work finishes, then the
    /// workers exit (Python's `close`).
    pub fn close(&self) {
        self.shared.close();
        // The collector sees the workers go.
        self.shared.ensure_threads();
    }

    /// Resolves every queued and running task to [`TaskError::Cancelled`]
    /// at once, and stops `map`/`imap` calls in progress from submitting
    /// more. Workers that were running cancelled tasks are killed and
    /// replaced; the pool stays usable.
    pub fn cancel(&self) {
        self.shared.cancel();
        self.shared.ensure_threads();
    }

    /// Stops the workers now: SIGTERM, then SIGKILL to those still alive
    /// after 1 s (Python's `terminate`, which never escalates). Pending
    /// results resolve to [`TaskError::Cancelled`].
    pub fn terminate(&self) {
        self.terminate_timeout(Duration::from_secs(1));
    }

    /// [`terminate`](Pool::terminate) with a chosen grace period before SIGKILL.
    pub fn terminate_timeout(&self, grace: Duration) {
        self.shared.terminate(grace);
        self.shared.stop_threads();
    }

    /// Waits for the workers to exit after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) (Python's `join`).
    ///
    /// # Errors
    /// [`PoolError::StillRunning`] if the pool was neither closed nor
    /// terminated.
    pub fn join(&self) -> Result<(), PoolError> {
        self.join_inner(None).map(|_| ())
    }

    /// [`join`](Pool::join) for at most `timeout`; `Ok(false)` if workers
    /// were still running then.
    ///
    /// # Errors
    /// As [`join`](Pool::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, PoolError> {
        self.join_inner(Instant::now().checked_add(timeout))
    }

    fn join_inner(&self, deadline: Option<Instant>) -> Result<bool, PoolError> {
        if lock(&self.shared.st).run == Run::Running {
            return Err(PoolError::StillRunning);
        }
        self.shared.ensure_threads();
        self.shared.poke();
        if !self.shared.wait_workers(deadline) {
            return Ok(false);
        }
        self.shared.stop_threads();
        Ok(true)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Some(slot) = self.sigint_slot {
            sys::unregister_sigint(slot);
        }
        let terminated = lock(&self.shared.st).run == Run::Terminated;
        if !terminated {
            self.close();
            if !matches!(self.join_timeout(self.drop_timeout), Ok(true)) {
                self.terminate();
            }
        }
        self.shared.stop_threads();
    }
}

/// A function taking a tuple's fields as separate arguments, for
/// [`Pool::starmap`]. Implemented for `fn` items and non-capturing closures
/// of 1 to 6 arguments.
pub trait StarFn<Args>: Copy + Send + 'static {
    /// What the function returns.
    type Output;
    /// Calls the function with the tuple's fields.
    fn call(&self, args: Args) -> Self::Output;
}

/// Calls a [`StarFn`] with a tuple, for the tasks of [`Pool::starmap`] and
/// [`Pool::starmap_async`] (non-capturing closures calling this, which
/// unlike this function's type need not be `'static` in `Args`).
fn call_star<F: StarFn<Args>, Args>(args: Args) -> F::Output {
    mproc_fnref::assert_zst::<F>();
    // SAFETY: `F` is zero-sized (asserted just above) and `Copy`: its one
    // value has no bytes, so conjuring it is copying it.
    let f: F = unsafe { std::mem::zeroed() };
    f.call(args)
}

macro_rules! star_fn {
    ($($a:ident),*) => {
        impl<Func, Ret, $($a),*> StarFn<($($a,)*)> for Func
        where
            Func: Fn($($a),*) -> Ret + Copy + Send + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case)]
            fn call(&self, ($($a,)*): ($($a,)*)) -> Ret {
                self($($a),*)
            }
        }
    };
}
star_fn!(A1);
star_fn!(A1, A2);
star_fn!(A1, A2, A3);
star_fn!(A1, A2, A3, A4);
star_fn!(A1, A2, A3, A4, A5);
star_fn!(A1, A2, A3, A4, A5, A6);

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`].
///
/// A plain `Iterator`, so adapters (and progress bars such as indicatif's
/// `ProgressIterator`) work on it. Dropping it early stops submitting; work
/// already in flight finishes and is discarded.
pub struct Imap<'p, R> {
    pool: &'p Pool,
    job: Arc<MapJob<R>>,
    prod: Box<dyn Producer + 'p>,
    entry: i64,
    chunksize: Option<usize>,
    window: usize,
    next_index: usize,
    exhausted: bool,
    epoch: u64,
    ordered: bool,
    /// For `map`: results are not streamed, so an integer range is cut
    /// into one chunk per worker (split further while running, to balance).
    eager: bool,
    /// The chunk size of an eager range map.
    even: Option<usize>,
    /// Ordered: the index of the next item to yield.
    pos: usize,
    current: Option<(Chunk<R>, usize)>,
    yielded: usize,
}

impl<R> fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("ordered", &self.ordered)
            .field("submitted", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned + Send + 'static> Imap<'_, R> {
    /// Submits chunks until the window is full or the input is done.
    fn top_up(&mut self) {
        while !self.exhausted {
            if lock(&self.job.st).outstanding_tasks >= self.window {
                return;
            }
            let cancelled = lock(&self.pool.shared.st).epoch != self.epoch;
            let max = match (cancelled, self.chunksize) {
                (true, _) => 0,
                (false, Some(c)) => c,
                (false, None) if self.eager && self.prod.free() => {
                    let shared = &self.pool.shared;
                    let rem = self.prod.remaining();
                    *self.even.get_or_insert_with(|| shared.even_share(rem))
                }
                // An ordered imap's consumer waits for the front of the
                // order: a range is cut like any input, into chunks of about
                // TARGET_NS of work from the front (the first of one item),
                // not into shares far ahead that its workers would run
                // side by side with the front.
                (false, None) => self.pool.shared.chunk_size(
                    self.entry,
                    self.prod.remaining(),
                    self.prod.free() && (self.eager || !self.ordered),
                ),
            };
            let next = if max == 0 {
                None
            } else {
                self.prod.next_chunk(max)
            };
            match next {
                None => self.finish_input(),
                Some(Produced::EncodeFailed(m)) => {
                    self.job
                        .put_failed(self.next_index, 1, TaskError::Encode(m));
                    self.next_index += 1;
                }
                Some(Produced::Chunk {
                    kind,
                    count,
                    payload,
                }) => {
                    self.job.submitted(count);
                    let job: Arc<dyn crate::job::Sink> = self.job.clone();
                    let task = Task {
                        job,
                        entry: self.entry,
                        kind,
                        first: self.next_index,
                        count,
                        payload: Arc::new(payload),
                        attempts: 0,
                        adaptive: self.chunksize.is_none(),
                        probe: self.chunksize.is_none() && !self.eager,
                        careful: false,
                    };
                    self.next_index += count;
                    self.pool.shared.submit(vec![task]);
                }
            }
        }
    }

    fn finish_input(&mut self) {
        if !self.exhausted {
            self.exhausted = true;
            self.job.seal();
            lock(&self.pool.shared.st).active_jobs -= 1;
            self.pool.shared.poke();
        }
    }

    /// The next finished chunk (in order, or any for unordered);
    /// `Ok(None)` at the end, `Err` at the deadline.
    fn next_chunk(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Chunk<R>>, NextTimeoutError> {
        loop {
            self.top_up();
            // After the first chunks left: the workers need not wait.
            self.pool.shared.ensure_threads();
            let job = self.job.clone();
            let mut st = lock(&job.st);
            loop {
                let c = if self.ordered {
                    st.done.remove(&self.pos).or_else(|| {
                        // Nothing can fill a gap once all is resolved.
                        if self.exhausted && st.outstanding == 0 {
                            st.done.pop_first().map(|(_, c)| c)
                        } else {
                            None
                        }
                    })
                } else {
                    st.done.pop_first().map(|(_, c)| c)
                };
                if let Some(c) = c {
                    self.pos = c.first + c.count;
                    return Ok(Some(c));
                }
                if self.exhausted && st.outstanding == 0 {
                    drop(st);
                    // Every item before the input's panic was delivered:
                    // the panic goes on from here, at its position.
                    if let Some(p) = self.prod.take_panic() {
                        std::panic::resume_unwind(p);
                    }
                    return Ok(None);
                }
                if !self.exhausted && st.outstanding_tasks < self.window {
                    break;
                }
                match deadline {
                    None => st = job.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            return Err(NextTimeoutError::Timeout);
                        }
                        st = job
                            .cv
                            .wait_timeout(st, d - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                }
            }
        }
    }

    /// The next result, waiting at most until `deadline` (Python's
    /// `next(timeout)`); `Ok(None)` at the end.
    ///
    /// # Errors
    /// [`NextTimeoutError::Timeout`] if no result was ready in time (the
    /// iterator stays usable).
    pub fn next_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Result<R, TaskError>>, NextTimeoutError> {
        self.next_inner(Some(deadline))
    }

    /// [`next_deadline`](Imap::next_deadline) with a timeout.
    ///
    /// # Errors
    /// [`NextTimeoutError::Timeout`] if no result was ready in time (the
    /// iterator stays usable).
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<R, TaskError>>, NextTimeoutError> {
        self.next_inner(Instant::now().checked_add(timeout))
    }

    fn next_inner(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<R, TaskError>>, NextTimeoutError> {
        loop {
            if let Some((c, i)) = &mut self.current {
                if *i < c.first + c.count {
                    let k = *i;
                    *i += 1;
                    if let Some(r) = c.take(k) {
                        self.yielded += 1;
                        return Ok(Some(r));
                    }
                }
                self.current = None;
            }
            match self.next_chunk(deadline)? {
                Some(c) => {
                    let first = c.first;
                    self.current = Some((c, first));
                }
                None => return Ok(None),
            }
        }
    }
}

impl<R: DeserializeOwned + Send + 'static> Iterator for Imap<'_, R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_inner(None).unwrap_or(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let rem = if self.exhausted {
            Some(0)
        } else {
            self.prod.remaining()
        };
        match rem {
            Some(rem) => {
                let left = self.next_index + rem - self.yielded;
                (left, Some(left))
            }
            None => (0, None),
        }
    }
}

/// Exact when the input's length is known: integer ranges, `Vec`s, slices
/// and every input whose `size_hint` is exact (an `ExactSizeIterator`), so
/// progress bars such as indicatif's `.progress()` show the total. For an
/// input of unknown length, `len` panics, as the trait's contract has it.
impl<R: DeserializeOwned + Send + 'static> ExactSizeIterator for Imap<'_, R> {}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        if !self.exhausted {
            self.exhausted = true;
            lock(&self.pool.shared.st).active_jobs -= 1;
            self.pool.shared.poke();
        }
    }
}

/// The iterator of [`Pool::try_imap`] and its chunked and unordered forms:
/// as [`Imap`], and at the input's first `Err`, [`TryImapError::Input`]
/// with it as the last item.
pub struct TryImap<'p, R, E> {
    inner: Imap<'p, R>,
    /// The input's error, once it was read (shared with the input adapter).
    error: Rc<RefCell<Option<E>>>,
}

impl<R, E> fmt::Debug for TryImap<'_, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryImap")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<R: DeserializeOwned + Send + 'static, E> TryImap<'_, R, E> {
    /// The next item, waiting at most until `deadline` (as
    /// [`Imap::next_deadline`]).
    ///
    /// # Errors
    /// [`NextTimeoutError::Timeout`] if no item was ready in time (the
    /// iterator stays usable).
    #[allow(clippy::type_complexity)]
    pub fn next_deadline(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<Result<R, TryImapError<E>>>, NextTimeoutError> {
        self.inner
            .next_deadline(deadline)
            .map(|r| self.with_input_error(r))
    }

    /// [`next_deadline`](TryImap::next_deadline) with a timeout.
    ///
    /// # Errors
    /// [`NextTimeoutError::Timeout`] if no item was ready in time (the
    /// iterator stays usable).
    #[allow(clippy::type_complexity)]
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<R, TryImapError<E>>>, NextTimeoutError> {
        self.inner
            .next_timeout(timeout)
            .map(|r| self.with_input_error(r))
    }

    /// An item of the inner iterator; at its end, the input's error.
    fn with_input_error(
        &self,
        r: Option<Result<R, TaskError>>,
    ) -> Option<Result<R, TryImapError<E>>> {
        match r {
            Some(r) => Some(r.map_err(TryImapError::Task)),
            None => self
                .error
                .borrow_mut()
                .take()
                .map(|e| Err(TryImapError::Input(e))),
        }
    }
}

impl<R: DeserializeOwned + Send + 'static, E> Iterator for TryImap<'_, R, E> {
    type Item = Result<R, TryImapError<E>>;

    fn next(&mut self) -> Option<Self::Item> {
        let r = self.inner.next();
        self.with_input_error(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let (lo, hi) = self.inner.size_hint();
        let error = usize::from(self.error.borrow().is_some());
        (lo + error, hi.and_then(|h| h.checked_add(error)))
    }
}
