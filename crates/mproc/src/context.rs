//! Python's context objects: one value that fixes the start method of
//! everything made through it.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use mproc_process::{
    ProcessInfo, StartMethod, StartMethodError, active_children, current_process, parent_process,
};

use crate::{
    Array, Barrier, BoundedSemaphore, Condition, Connection, Event, JoinableQueue, Lock, Process,
    Queue, RLock, RawArray, RawValue, Semaphore, SimpleQueue, Value,
};

/// The whole API behind one start method (Python's
/// `multiprocessing.get_context(method)`): processes, pools and managers
/// made through it start with its method; queues, locks, shared values and
/// pipes start nothing and are the same as the free constructors (mproc's
/// are context-agnostic: they live in shared memory and travel as
/// descriptors under every start method, so unlike CPython's they may be
/// shared with processes of any context).
///
/// It wraps the process crate's [`mproc_process::Context`], which has only
/// [`process`](Self::process): the pool, the manager and the queues are
/// built on `mproc-process`, so the context that knows them all lives here,
/// in the facade.
///
/// # Examples
///
/// ```
/// use mproc::{get_context, StartMethod};
///
/// fn worker((q, n): (mproc::Queue<u64>, u64)) {
///     q.put(n * n).unwrap();
/// }
///
/// let ctx = get_context(StartMethod::Spawn);
/// let q = ctx.queue::<u64>(0)?;
/// let mut child = ctx.process(worker, (q.clone(), 7)).start()?;
/// child.join()?;
/// assert_eq!(q.get()?, 49);
///
/// let pool = ctx.pool().processes(2).build()?;
/// assert_eq!(pool.map(|x: u64| x + 1, vec![1, 2])?, [2, 3]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Context {
    inner: mproc_process::Context,
}

/// As the process crate's context: `Context { method: … }`.
impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

/// The context of a start method (Python's `get_context(method)`).
pub fn get_context(method: StartMethod) -> Context {
    Context::from(mproc_process::get_context(method))
}

/// The context of the process-wide default start method (Python's
/// `get_context()`), which this fixes as
/// [`get_start_method`](crate::get_start_method) does.
///
/// # Errors
/// As [`get_start_method`](crate::get_start_method).
pub fn default_context() -> Result<Context, StartMethodError> {
    crate::get_start_method().map(get_context)
}

impl From<mproc_process::Context> for Context {
    fn from(inner: mproc_process::Context) -> Self {
        Self { inner }
    }
}

impl From<Context> for mproc_process::Context {
    fn from(c: Context) -> Self {
        c.inner
    }
}

impl Context {
    /// The context of a start method.
    pub fn new(method: StartMethod) -> Self {
        get_context(method)
    }

    /// Its start method (Python's `ctx.get_start_method()`).
    pub fn start_method(&self) -> StartMethod {
        self.inner.start_method()
    }

    /// A process builder with this context's start method (`ctx.Process`),
    /// with the [`Postcard`](crate::codec::Postcard) codec
    /// ([`Process::codec`] chooses another).
    ///
    /// Like [`Process::new`], a function with captured state (or a fn
    /// pointer) is a compile error at this call:
    ///
    /// ```compile_fail,E0080
    /// let n = 5u64;
    /// let _ = mproc::get_context(mproc::StartMethod::Spawn).process(move |x: u64| x + n, 1u64);
    /// ```
    pub fn process<F, A, R>(&self, f: F, args: A) -> Process<F, A>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
    {
        // Here too, so that a wrong function is reported at the caller's line.
        const { mproc_fnref::assert_zst::<F>() };
        self.inner.process(f, args)
    }

    /// A pool builder whose workers start with this context's method
    /// (`ctx.Pool`).
    pub fn pool(&self) -> mproc_pool::PoolBuilder {
        crate::Pool::builder().start_method(self.start_method())
    }

    /// A manager builder whose server starts with this context's method
    /// (`ctx.Manager`).
    pub fn manager(&self) -> mproc_manager::ManagerBuilder {
        crate::Manager::builder().start_method(self.start_method())
    }

    /// `ctx.Queue(maxsize)`: see [`Queue::new`].
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn queue<T>(&self, maxsize: usize) -> Result<Queue<T>, mproc_queue::CreateError>
    where
        T: Serialize + DeserializeOwned,
    {
        Queue::new(maxsize)
    }

    /// `ctx.JoinableQueue(maxsize)`: see [`JoinableQueue::new`].
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn joinable_queue<T>(
        &self,
        maxsize: usize,
    ) -> Result<JoinableQueue<T>, mproc_queue::CreateError>
    where
        T: Serialize + DeserializeOwned,
    {
        JoinableQueue::new(maxsize)
    }

    /// `ctx.SimpleQueue()`: see [`SimpleQueue::new`].
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn simple_queue<T>(&self) -> Result<SimpleQueue<T>, mproc_queue::CreateError>
    where
        T: Serialize + DeserializeOwned,
    {
        SimpleQueue::new()
    }

    /// `ctx.Lock()`.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn lock(&self) -> Result<Lock, mproc_sync::CreateError> {
        Lock::new()
    }

    /// `ctx.RLock()`.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn rlock(&self) -> Result<RLock, mproc_sync::CreateError> {
        RLock::new()
    }

    /// `ctx.Semaphore(value)`.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn semaphore(&self, value: usize) -> Result<Semaphore, mproc_sync::CreateError> {
        Semaphore::new(value)
    }

    /// `ctx.BoundedSemaphore(value)`.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn bounded_semaphore(
        &self,
        value: usize,
    ) -> Result<BoundedSemaphore, mproc_sync::CreateError> {
        BoundedSemaphore::new(value)
    }

    /// `ctx.Condition()`.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn condition(&self) -> Result<Condition, mproc_sync::CreateError> {
        Condition::new()
    }

    /// `ctx.Event()`.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn event(&self) -> Result<Event, mproc_sync::CreateError> {
        Event::new()
    }

    /// `ctx.Barrier(parties)`.
    ///
    /// # Errors
    /// As [`Barrier::new`].
    pub fn barrier(&self, parties: usize) -> Result<Barrier, mproc_sync::CreateError> {
        Barrier::new(parties)
    }

    /// `ctx.Value(typecode, v)`: a value behind a lock in shared memory.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn value<T: mproc_shm::Pod + Send>(
        &self,
        v: T,
    ) -> Result<Value<T>, mproc_shm::SegmentError> {
        Value::new(v)
    }

    /// `ctx.RawValue(typecode, v)`.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn raw_value<T: mproc_shm::Pod + Send>(
        &self,
        v: T,
    ) -> Result<RawValue<T>, mproc_shm::SegmentError> {
        RawValue::new(v)
    }

    /// `ctx.Array(typecode, len)`: `len` zeros behind a lock.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn array<T: mproc_shm::Pod + Send>(
        &self,
        len: usize,
    ) -> Result<Array<T>, mproc_shm::SegmentError> {
        Array::new(len)
    }

    /// `ctx.RawArray(typecode, len)`.
    ///
    /// # Errors
    /// If the shared memory cannot be created.
    pub fn raw_array<T: mproc_shm::Pod + Send>(
        &self,
        len: usize,
    ) -> Result<RawArray<T>, mproc_shm::SegmentError> {
        RawArray::new(len)
    }

    /// `ctx.Pipe(duplex)`.
    ///
    /// # Errors
    /// If the OS cannot create the socket pair or pipe.
    pub fn pipe(&self, duplex: bool) -> std::io::Result<(Connection, Connection)> {
        crate::pipe(duplex)
    }

    /// `ctx.current_process()`.
    pub fn current_process(&self) -> ProcessInfo {
        current_process()
    }

    /// `ctx.parent_process()`.
    pub fn parent_process(&self) -> Option<ProcessInfo> {
        parent_process()
    }

    /// `ctx.active_children()`.
    pub fn active_children(&self) -> Vec<ProcessInfo> {
        active_children()
    }

    /// `ctx.cpu_count()`.
    pub fn cpu_count(&self) -> usize {
        crate::cpu_count()
    }
}
