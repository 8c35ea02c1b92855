//! The typed queues: [`Queue`], [`JoinableQueue`] and [`SimpleQueue`].

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Codec, Postcard, with_scratch};
use crate::core::{Core, DEFAULT_CAPACITY, GetFail, PutFail};
use crate::error::{
    CreateError, EncodeError, GetError, GetTimeoutError, JoinTimeoutError, PutError,
    PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
use crate::layout::{KIND_JOINABLE, KIND_QUEUE, KIND_SIMPLE};
use crate::overflow::DEFAULT_OVERFLOW;
use crate::wait::Deadline;

mod batch;

/// What a queue wrapper (a [`Queue`] in `q` with a kind of its own) has in
/// common: `Clone`, and serde as a handle of that kind.
macro_rules! wrapper_impls {
    ($name:ident, $kind:ident) => {
        impl<T, C> Clone for $name<T, C> {
            fn clone(&self) -> Self {
                Self { q: self.q.clone() }
            }
        }

        impl<T, C: Codec<T>> Serialize for $name<T, C> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.q.core.serialize(s)
            }
        }

        impl<'de, T, C: Codec<T>> Deserialize<'de> for $name<T, C> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self {
                    q: Queue::deserialize_kind(d, $kind)?,
                })
            }
        }
    };
}

/// Methods of a queue wrapper that only hand the call to its [`Queue`]
/// (`self.q`): `fn name(&self, arg: Type) -> Ret;`, with its own doc
/// text, becomes `pub fn name(&self, arg: Type) -> Ret { self.q.name(arg) }`.
macro_rules! forward_to_queue {
    ($($(#[doc = $doc:literal])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) $(-> $ret:ty)?;)*) => {$(
        $(#[doc = $doc])*
        pub fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
            self.q.$name($($arg),*)
        }
    )*};
}

pub(crate) fn fingerprint<T, C: Codec<T>>() -> u64 {
    mproc_shm::fingerprint_of::<T>(C::TAG)
}

/// Configuration for a queue: its maxsize, ring capacity and overflow size.
///
/// ```
/// use mproc_queue::{Queue, QueueBuilder};
///
/// let q: Queue<String> = QueueBuilder::new().maxsize(100).capacity(64 * 1024).build()?;
/// q.put("hi".to_owned())?;
/// assert_eq!(q.get()?, "hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct QueueBuilder {
    maxsize: usize,
    capacity: usize,
    overflow: usize,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueBuilder {
    /// A queue with no item limit (maxsize 0), a 1 MiB ring and a 16 GiB
    /// overflow log.
    pub fn new() -> Self {
        Self {
            maxsize: 0,
            capacity: DEFAULT_CAPACITY,
            overflow: DEFAULT_OVERFLOW,
        }
    }

    mproc_shm::builder_setters! {
        /// The most items the queue holds; 0 (the default) means no item limit
        /// (CPython's `maxsize <= 0`). The limit counts items, as in CPython.
        maxsize(n: usize) => maxsize = n;
        /// The size in bytes of the shared ring that holds small items
        /// (256 B to 1 GiB; default 1 MiB). Items larger than a quarter of it
        /// travel in a dedicated segment each. When the ring is full, items go
        /// to the overflow log (see [`QueueBuilder::overflow`]).
        capacity(bytes: usize) => capacity = bytes;
        /// The size in bytes of the overflow log (at most and by default 16 GiB):
        /// the shared memory that takes items while the ring is full, so that a
        /// producer does not wait for consumers until the queue reaches its
        /// maxsize. Its memory is only used while items are in it, and given
        /// back once consumers drain it; until then it costs address space only.
        /// With 0, a full ring makes producers wait, as a full pipe would.
        overflow(bytes: usize) => overflow = bytes;
    }

    /// Creates the untyped queue of a queue of `kind`.
    pub(crate) fn build_core(self, kind: u32, fingerprint: u64) -> Result<Core, CreateError> {
        Core::create(
            kind,
            fingerprint,
            self.maxsize,
            self.capacity,
            self.overflow,
        )
    }

    /// Creates a [`Queue`].
    ///
    /// # Errors
    /// [`CreateError`] for an out-of-range capacity or maxsize, or when the
    /// shared memory or side channel cannot be made.
    pub fn build<T, C: Codec<T>>(self) -> Result<Queue<T, C>, CreateError> {
        self.build_kind(KIND_QUEUE)
    }

    /// Creates the [`Queue`] of a queue of `kind`.
    fn build_kind<T, C: Codec<T>>(self, kind: u32) -> Result<Queue<T, C>, CreateError> {
        Ok(Queue::from_core(
            self.build_core(kind, fingerprint::<T, C>())?,
        ))
    }

    /// Creates a [`JoinableQueue`].
    ///
    /// # Errors
    /// As [`QueueBuilder::build`].
    pub fn build_joinable<T, C: Codec<T>>(self) -> Result<JoinableQueue<T, C>, CreateError> {
        Ok(JoinableQueue {
            q: self.build_kind(KIND_JOINABLE)?,
        })
    }

    /// Creates a [`SimpleQueue`] (the maxsize is ignored).
    ///
    /// # Errors
    /// As [`QueueBuilder::build`].
    pub fn build_simple<T, C: Codec<T>>(self) -> Result<SimpleQueue<T, C>, CreateError> {
        let unlimited = Self { maxsize: 0, ..self };
        Ok(SimpleQueue {
            q: unlimited.build_kind(KIND_SIMPLE)?,
        })
    }
}

/// A multi-producer multi-consumer FIFO queue in shared memory, usable from
/// any number of processes (CPython's `multiprocessing.Queue`).
///
/// * `put` encodes the item and writes it into shared memory before it
///   returns: there is no feeder thread, encode errors reach the caller, and
///   a process that exits right after `put` loses nothing.
/// * Items up to a quarter of the ring go into the ring; larger ones into a
///   dedicated memory segment each, so a producer never blocks on an OS pipe
///   buffer and joining a producer before draining the queue cannot deadlock.
/// * It is crash-consistent: a producer killed in the middle of `put` leaves
///   neither a torn item nor a locked queue, and a consumer killed in the
///   middle of `get` loses at most that one item.
/// * Items of one producer arrive in the order it put them.
///
/// A queue is a handle: clones share it in-process, and serializing it (as a
/// process argument, or over a Connection) lets another process open the
/// same queue. `C` chooses the [`Codec`]: [`Postcard`] by default,
/// [`Pod`](crate::Pod) for plain data.
///
/// # Examples
///
/// ```
/// use mproc_queue::{Queue, TryGetError};
///
/// let q: Queue<(u32, String)> = Queue::new(0)?;
/// q.put((1, "one".to_owned()))?;
/// assert_eq!(q.qsize(), 1);
/// assert_eq!(q.get()?, (1, "one".to_owned()));
/// assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T, C = Postcard> {
    pub(crate) core: Arc<Core>,
    /// The largest encoded item `put` accepts.
    max_item: usize,
    _marker: PhantomData<fn(T) -> T>,
    _codec: PhantomData<fn() -> C>,
}

impl<T, C> Clone for Queue<T, C> {
    fn clone(&self) -> Self {
        Self {
            core: self.core.clone(),
            max_item: self.max_item,
            _marker: PhantomData,
            _codec: PhantomData,
        }
    }
}

impl<T, C> fmt::Debug for Queue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.core, f)
    }
}

impl<T, C: Codec<T>> Queue<T, C> {
    /// Creates a queue that holds at most `maxsize` items (0: no item limit),
    /// with a 1 MiB ring. See [`QueueBuilder`] for the ring size.
    ///
    /// # Errors
    /// [`CreateError`] when the shared memory or side channel cannot be made
    /// or `maxsize` exceeds `i32::MAX`.
    pub fn new(maxsize: usize) -> Result<Self, CreateError> {
        QueueBuilder::new().maxsize(maxsize).build()
    }

    fn from_core(core: Core) -> Self {
        Self::from_core_limited(core, (isize::MAX as usize) - mproc_shm::HEADER_SIZE)
    }

    /// A queue whose puts refuse items that encode to more than `max_item`
    /// bytes (leases keep a copy of each item in a slot of that size).
    pub(crate) fn from_core_limited(core: Core, max_item: usize) -> Self {
        Self {
            core: Arc::new(core),
            max_item,
            _marker: PhantomData,
            _codec: PhantomData,
        }
    }

    fn put_inner(&self, item: T, deadline: Deadline) -> Result<(), (T, PutFailure)> {
        let r = C::encode_with(&item, |bytes| {
            if bytes.len() > self.max_item {
                return Err(PutFailure::Encode(EncodeError::too_large(bytes.len())));
            }
            self.core
                .put_bytes(bytes, deadline)
                .map_err(PutFailure::Fail)
        });
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err((item, e)),
            Err(e) => Err((item, PutFailure::Encode(e.into()))),
        }
    }

    /// Puts `item` at the back of the queue, waiting while the queue is full.
    ///
    /// Wakes when a consumer takes an item or the queue is closed.
    ///
    /// # Errors
    /// [`PutError::Closed`] if the queue is closed, [`PutError::Encode`] if
    /// the item cannot be encoded (for example, it holds an mproc handle),
    /// [`PutError::Broken`] if the shared state is corrupted. The item is
    /// handed back in every case.
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.put_inner(item, Deadline::Never)
            .map_err(|(t, e)| e.into_error(t, PutError::Closed))
    }

    /// Puts `item` if there is room right now (CPython's `put_nowait`).
    ///
    /// # Errors
    /// [`TryPutError::Full`] if the queue is full, otherwise as [`Queue::put`].
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.put_inner(item, Deadline::Now)
            .map_err(|(t, e)| e.into_error(t, TryPutError::Full))
    }

    /// Puts `item`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PutTimeoutError::Timeout`] if the queue stayed full, otherwise as
    /// [`Queue::put`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.put_with(item, Deadline::after(timeout))
    }

    /// Puts `item`, waiting until `deadline` at most for room.
    ///
    /// # Errors
    /// As [`Queue::put_timeout`].
    pub fn put_deadline(&self, item: T, deadline: Instant) -> Result<(), PutTimeoutError<T>> {
        self.put_with(item, Deadline::At(deadline))
    }

    fn put_with(&self, item: T, deadline: Deadline) -> Result<(), PutTimeoutError<T>> {
        self.put_inner(item, deadline)
            .map_err(|(t, e)| e.into_error(t, PutTimeoutError::Timeout))
    }

    fn get_inner(&self, deadline: Deadline) -> Result<T, GetFailure> {
        with_scratch(|buf| {
            self.core
                .get_decoded(buf, deadline, C::decode)
                .map_err(GetFailure::Fail)?
                .map_err(|e| GetFailure::Decode(e.into()))
        })
    }

    /// Removes and returns the item at the front, waiting while the queue
    /// is empty.
    ///
    /// Wakes when a producer puts an item or the queue is closed.
    ///
    /// # Errors
    /// [`GetError::Closed`] once the queue is closed and drained,
    /// [`GetError::Decode`] if the item taken cannot be decoded (it is lost),
    /// [`GetError::Broken`] if the shared state is corrupted.
    pub fn get(&self) -> Result<T, GetError> {
        self.get_inner(Deadline::Never)
            .map_err(|e| e.into_error(GetError::Closed))
    }

    /// Takes an item if one is there right now (CPython's `get_nowait`).
    ///
    /// # Errors
    /// [`TryGetError::Empty`] if the queue is empty, otherwise as [`Queue::get`].
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.get_inner(Deadline::Now)
            .map_err(|e| e.into_error(TryGetError::Empty))
    }

    /// Takes an item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`] if the queue stayed empty, otherwise as
    /// [`Queue::get`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.get_with(Deadline::after(timeout))
    }

    /// Takes an item, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`Queue::get_timeout`].
    pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetTimeoutError> {
        self.get_with(Deadline::At(deadline))
    }

    fn get_with(&self, deadline: Deadline) -> Result<T, GetTimeoutError> {
        self.get_inner(deadline)
            .map_err(|e| e.into_error(GetTimeoutError::Timeout))
    }
}

impl<T, C> Queue<T, C> {
    /// The number of items in the queue, from shared counters: exact when
    /// nobody is putting or getting, a snapshot otherwise. Works on every
    /// platform (CPython's raises on macOS).
    pub fn qsize(&self) -> usize {
        self.core.len()
    }

    /// Whether the queue holds no items (a snapshot, as [`Queue::qsize`]).
    pub fn is_empty(&self) -> bool {
        self.core.len() == 0
    }

    /// Whether the queue holds `maxsize` items (a snapshot); always false for
    /// a queue without an item limit.
    pub fn is_full(&self) -> bool {
        self.core.is_full()
    }

    /// The item limit (0: none).
    pub fn maxsize(&self) -> usize {
        self.core.maxsize()
    }

    /// Closes the queue for every process that shares it: later puts fail
    /// with `Closed`, consumers take what is left and then get `Closed`, and
    /// everyone blocked in `put`, `get` or `join` wakes up. Idempotent.
    pub fn close(&self) {
        self.core.close();
    }

    /// Whether [`Queue::close`] was called (by any process).
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }
}

enum PutFailure {
    Encode(EncodeError),
    Fail(PutFail),
}

enum GetFailure {
    Decode(crate::DecodeError),
    Fail(GetFail),
}

impl PutFailure {
    /// The public error of a form of put, from a failed put of item `t`
    /// (one place for the rules, which `put_many` and its forms share):
    /// `full` makes the form's error for a queue that stayed full (for
    /// [`Queue::put`], which waits without limit, [`PutError::Closed`]: only
    /// closing stops it); the rest is as [`PutError`] converts.
    // `always`: with plain `inline` the generic form stays out of line and
    // `put`/`get` lose a few instructions to moving the failure to memory.
    #[inline(always)]
    fn into_error<T, E: From<PutError<T>>>(self, t: T, full: impl FnOnce(T) -> E) -> E {
        match self {
            PutFailure::Fail(PutFail::Full) => full(t),
            PutFailure::Fail(PutFail::Closed) => PutError::Closed(t).into(),
            PutFailure::Encode(e) => PutError::Encode(t, e).into(),
            PutFailure::Fail(PutFail::Broken(e)) => PutError::Broken(t, e).into(),
        }
    }
}

impl GetFailure {
    /// The public error of a form of get (shared with `get_many` and its
    /// forms): `empty` is the form's error for a queue that stayed empty
    /// (for [`Queue::get`], which waits without limit, [`GetError::Closed`]:
    /// closed and drained); the rest is as [`GetError`] converts.
    // `always`: as for `PutFailure::into_error`.
    #[inline(always)]
    fn into_error<E: From<GetError>>(self, empty: E) -> E {
        match self {
            GetFailure::Fail(GetFail::Empty) => empty,
            GetFailure::Fail(GetFail::Closed) => GetError::Closed.into(),
            GetFailure::Decode(e) => GetError::Decode(e).into(),
            GetFailure::Fail(GetFail::Broken(e)) => GetError::Broken(e).into(),
        }
    }
}

impl<T, C: Codec<T>> Queue<T, C> {
    /// The queue of a handle of `kind` (a [`Queue`]'s, or a wrapper's).
    fn deserialize_kind<'de, D: Deserializer<'de>>(d: D, kind: u32) -> Result<Self, D::Error> {
        Ok(Self::from_core(Core::deserialize(
            d,
            kind,
            fingerprint::<T, C>(),
        )?))
    }
}

impl<T, C: Codec<T>> Serialize for Queue<T, C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.core.serialize(s)
    }
}

impl<'de, T, C: Codec<T>> Deserialize<'de> for Queue<T, C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::deserialize_kind(d, KIND_QUEUE)
    }
}

/// A [`Queue`] that also counts unfinished tasks (CPython's
/// `JoinableQueue`): every put adds one, [`task_done`](Self::task_done)
/// removes one, and [`join`](Self::join) waits until none is left.
///
/// It has the methods of [`Queue`], and [`JoinableQueue::queue`] gives the
/// underlying queue.
///
/// # Examples
///
/// ```
/// use mproc_queue::JoinableQueue;
///
/// let q: JoinableQueue<u32> = JoinableQueue::new(0)?;
/// q.put(7)?;
/// assert_eq!(q.get()?, 7);
/// q.task_done()?;
/// q.join();
/// assert!(q.task_done().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JoinableQueue<T, C = Postcard> {
    pub(crate) q: Queue<T, C>,
}

wrapper_impls!(JoinableQueue, KIND_JOINABLE);

impl<T, C> fmt::Debug for JoinableQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("queue", &self.q)
            .field("unfinished", &self.q.core.unfinished())
            .finish()
    }
}

impl<T, C: Codec<T>> JoinableQueue<T, C> {
    /// Creates a joinable queue holding at most `maxsize` items (0: no limit).
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new(maxsize: usize) -> Result<Self, CreateError> {
        QueueBuilder::new().maxsize(maxsize).build_joinable()
    }

    forward_to_queue! {
        /// As [`Queue::put`]; the item counts as an unfinished task.
        ///
        /// # Errors
        /// As [`Queue::put`].
        fn put(&self, item: T) -> Result<(), PutError<T>>;
        /// As [`Queue::try_put`].
        ///
        /// # Errors
        /// As [`Queue::try_put`].
        fn try_put(&self, item: T) -> Result<(), TryPutError<T>>;
        /// As [`Queue::put_timeout`].
        ///
        /// # Errors
        /// As [`Queue::put_timeout`].
        fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>>;
        /// As [`Queue::put_deadline`].
        ///
        /// # Errors
        /// As [`Queue::put_deadline`].
        fn put_deadline(&self, item: T, deadline: Instant) -> Result<(), PutTimeoutError<T>>;
        /// As [`Queue::get`].
        ///
        /// # Errors
        /// As [`Queue::get`].
        fn get(&self) -> Result<T, GetError>;
        /// As [`Queue::try_get`].
        ///
        /// # Errors
        /// As [`Queue::try_get`].
        fn try_get(&self) -> Result<T, TryGetError>;
        /// As [`Queue::get_timeout`].
        ///
        /// # Errors
        /// As [`Queue::get_timeout`].
        fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError>;
        /// As [`Queue::get_deadline`].
        ///
        /// # Errors
        /// As [`Queue::get_deadline`].
        fn get_deadline(&self, deadline: Instant) -> Result<T, GetTimeoutError>;
    }
}

impl<T, C> JoinableQueue<T, C> {
    /// The underlying queue (sharing the same items).
    pub fn queue(&self) -> &Queue<T, C> {
        &self.q
    }

    forward_to_queue! {
        /// As [`Queue::qsize`].
        fn qsize(&self) -> usize;
        /// As [`Queue::is_empty`].
        fn is_empty(&self) -> bool;
        /// As [`Queue::is_full`].
        fn is_full(&self) -> bool;
        /// As [`Queue::maxsize`].
        fn maxsize(&self) -> usize;
        /// As [`Queue::close`]; also wakes everyone in [`JoinableQueue::join`]
        /// (who go on waiting for unfinished tasks).
        fn close(&self);
        /// As [`Queue::is_closed`].
        fn is_closed(&self) -> bool;
    }

    /// The number of items put and not yet marked done.
    pub fn unfinished_tasks(&self) -> usize {
        self.q.core.unfinished() as usize
    }

    /// Marks one task (an item taken earlier) as done.
    ///
    /// # Errors
    /// [`TaskDoneError::TooManyCalls`] if every item put was already marked
    /// done.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        self.q.core.task_done()
    }

    /// Blocks until every item put has been marked done with
    /// [`JoinableQueue::task_done`]. Wakes on the last `task_done`.
    pub fn join(&self) {
        self.q.core.join(Deadline::Never);
    }

    /// As [`JoinableQueue::join`], waiting at most `timeout`.
    ///
    /// # Errors
    /// [`JoinTimeoutError::Timeout`] if tasks were still unfinished.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        self.join_with(Deadline::after(timeout))
    }

    /// As [`JoinableQueue::join`], waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`JoinTimeoutError::Timeout`] if tasks were still unfinished.
    pub fn join_deadline(&self, deadline: Instant) -> Result<(), JoinTimeoutError> {
        self.join_with(Deadline::At(deadline))
    }

    fn join_with(&self, deadline: Deadline) -> Result<(), JoinTimeoutError> {
        if self.q.core.join(deadline) {
            Ok(())
        } else {
            Err(JoinTimeoutError::Timeout)
        }
    }
}

/// A simpler queue with no item limit and no timeouts (CPython's
/// `SimpleQueue`): `put`, `get`, `is_empty` and `close`.
///
/// # Examples
///
/// ```
/// use mproc_queue::SimpleQueue;
///
/// let q: SimpleQueue<String> = SimpleQueue::new()?;
/// q.put("a".to_owned())?;
/// assert!(!q.is_empty());
/// assert_eq!(q.get()?, "a");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SimpleQueue<T, C = Postcard> {
    pub(crate) q: Queue<T, C>,
}

wrapper_impls!(SimpleQueue, KIND_SIMPLE);

impl<T, C> fmt::Debug for SimpleQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SimpleQueue").field(&self.q).finish()
    }
}

impl<T, C: Codec<T>> SimpleQueue<T, C> {
    /// Creates a simple queue with a 1 MiB ring.
    ///
    /// # Errors
    /// As [`Queue::new`].
    pub fn new() -> Result<Self, CreateError> {
        QueueBuilder::new().build_simple()
    }

    forward_to_queue! {
        /// Puts `item`, waiting only if the ring is full of unread items.
        ///
        /// # Errors
        /// As [`Queue::put`].
        fn put(&self, item: T) -> Result<(), PutError<T>>;
        /// Takes the item at the front, waiting while the queue is empty.
        ///
        /// # Errors
        /// As [`Queue::get`].
        fn get(&self) -> Result<T, GetError>;
        /// Takes an item if one is there right now.
        ///
        /// # Errors
        /// As [`Queue::try_get`].
        fn try_get(&self) -> Result<T, TryGetError>;
    }
}

impl<T, C> SimpleQueue<T, C> {
    forward_to_queue! {
        /// Whether the queue holds no items (a snapshot).
        fn is_empty(&self) -> bool;
        /// As [`Queue::close`]. Idempotent.
        fn close(&self);
        /// As [`Queue::is_closed`].
        fn is_closed(&self) -> bool;
    }
}
