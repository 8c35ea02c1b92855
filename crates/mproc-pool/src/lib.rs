//! A process pool for mproc: Python's `multiprocessing.Pool` (`map`, `imap`,
//! `imap_unordered`, `starmap`, `apply`, `apply_async`, `map_async`,
//! `starmap_async`) and `concurrent.futures.ProcessPoolExecutor`, fast for
//! tiny tasks and never hanging when a worker dies.
//!
//! # Hello, world!
//!
//! ```
//! use mproc_pool::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(2)?;
//! assert_eq!(pool.map(square, 0..5u64)?, [0, 1, 4, 9, 16]);
//! let r = pool.apply_async(square, 12)?;
//! assert_eq!(r.get()?, 144);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Tasks
//!
//! A task is a `fn` item or a non-capturing closure `Fn(A) -> R`; `A` and
//! `R` travel in the pool's codec (`C: Codec<A> + Codec<R>`): by default
//! [`Postcard`], for any serde value (`Serialize + DeserializeOwned`);
//! [`PoolBuilder::codec`] picks another ([`Pod`] for plain-data structs
//! copied as they are, [`Bytes`] for byte vectors, or a codec of your own;
//! see [`mproc_shm::codec`]). Plain numbers and integer ranges take their
//! fast paths (below) whatever the codec. Functions reach
//! the workers by reference (the workers run the same executable), so a
//! capturing closure is a compile-time error. mproc handles inside
//! arguments and results (shared memory, connections, …) travel as file
//! descriptors (with [`Postcard`]). Workers are started by mproc-process
//! (the fork server by default), so a pool can be made from a program with
//! busy threads and from `cargo test`.
//!
//! # Chunking
//!
//! `map` and `imap` send items in chunks sized from the measured time per
//! item (aiming at about 2 ms of work per chunk; the first chunks, before
//! anything is measured, hold one item), with a bounded number of chunks in
//! flight and the input consumed lazily. Integer ranges travel as ranges
//! and `Vec`s of plain numbers as bytes. `map` over an integer range gives
//! each worker an equal part at once; a worker that runs out of work takes
//! half of what another has left (the busy one stops there), so
//! `pool.map(f, 0..40_000_000)` ships a handful of small messages and the
//! workers finish together whatever each item costs. `imap_unordered` over
//! a range of a function not measured yet sends large chunks that the
//! workers cut after about 1 ms of work, the rest being queued again; an
//! ordered `imap` cuts every input from the front of the order, so its
//! results stream steadily from the first (a progress bar moves), and
//! [`Imap`] is an `ExactSizeIterator` when the input's length is known
//! (ranges, `Vec`s, `ExactSizeIterator`s), for progress bars. An explicit chunk
//! size ([`Pool::map_chunked`]) of 0 is an error, not CPython's silent list
//! of `None`s. Large arguments and results (MiBs) go through the connection's
//! shared-memory path.
//!
//! # Failures
//!
//! A panicking task fails that item with [`TaskError::Panicked`] (the panic
//! message, what the payload was, where it panicked and, where
//! `RUST_BACKTRACE` asks, the worker's backtrace). A worker
//! that dies fails only the item it was running with
//! [`TaskError::WorkerLost`] and its exit status, is replaced, and the pool
//! stays usable (CPython's pool hangs for ever here). Workers are started
//! in the background (build returns before they exist, unless there is an
//! initializer): one that cannot be started is replaced like a dead one,
//! and if none can, the work fails with [`TaskError::WorkerStart`]. An
//! initializer that fails makes [`PoolBuilder::build`] fail. An input
//! iterator that fails surfaces where it failed, after the results before
//! it: its panic goes on from [`Imap`]'s `next` (or from `map`), and an
//! `Err` of an input of `Result`s ([`Pool::try_imap`]) is yielded as
//! [`TryImapError::Input`]. Workers ignore SIGINT; with
//! [`PoolBuilder::cancel_on_ctrl_c`], Ctrl-C cancels the outstanding work
//! (every pending [`AsyncResult`] resolves to [`TaskError::Cancelled`]), and
//! [`Pool::cancel`] does the same from code. [`Pool::terminate`] escalates
//! SIGTERM to SIGKILL. Dropping a pool closes it and joins with a deadline,
//! then terminates.
//!
//! # Futures
//!
//! [`ProcessPoolExecutor`] is Python's `concurrent.futures` executor on the
//! same engine: [`ProcessPoolExecutor::submit`] returns a [`Future`];
//! [`ProcessPoolExecutor::map`], [`wait`] (with [`ReturnWhen`]) and
//! [`as_completed`] work as in Python, and a dead worker fails only the
//! future of its task.
//!
//! # Waiting on results, and async
//!
//! [`AsyncResult`] is [`Waitable`](mproc_shm::ready::Waitable) and
//! [`AsFd`](std::os::fd::AsFd): `mproc_pipe::wait` takes it beside
//! connections, queues and process handles, and reports it once the result
//! is there. Its descriptor (an eventfd) is made on the first `as_fd`, so
//! results nobody polls cost nothing.
//!
//! # Features
//!
//! * `tokio`: `AsyncResult` is [`IntoFuture`]
//!   (`result.await`, see `AsyncResultFuture`), through tokio's reactor
//!   (no thread per waiter).
//! * `tracing`: `tracing` events: a worker replaced (`info`: the old pid,
//!   how it ended, the new pid and name), a task run again after its worker
//!   died (`warn`: the attempt, the dead worker's pid, the task's first item
//!   and item count).
//!
//! # Differences from CPython
//!
//! * `map` is not materialised first and does not use `len/(4·procs)`
//!   chunks (unless asked through `map_chunked`); `map_async` does use
//!   CPython's formula until it has measured the function.
//! * `max_tasks_per_child` counts items, not chunks.
//! * `AsyncResult::get` consumes the result; `get_timeout` hands it back on
//!   timeout.
//! * Callbacks receive `Result<&R, &PoolError>` (callback and
//!   error_callback in one).
//! * Building a pool (without an initializer) does not wait for the workers
//!   to be created: the first operation sends its work first (it waits for
//!   the workers in their sockets), then waits for them. [`Pool::pids`]
//!   waits for them too.

#![doc(test(attr(deny(warnings))))]

mod builder;
mod engine;
mod error;
mod executor;
mod fast_path;
mod forms;
mod imap;
mod input;
mod job;
mod pool;
mod ready;
mod star;
mod sys;
mod task;
mod wire;
mod worker;

/// Internals for mproc's fuzz targets. Not a stable API.
#[doc(hidden)]
pub mod __private {
    /// Parses `data` as a worker's reply header and a parent's batch header,
    /// and decodes it as task values of a few types (the parsers that see
    /// bytes from another process). Never panics.
    pub fn pool_message(data: &[u8]) {
        crate::wire::fuzz_headers(data);
        crate::job::fuzz_decode(data);
    }

    /// If `input` is a `Range` or `RangeInclusive` of a primitive integer:
    /// its first item (as `i128`) and its length; otherwise `input` back.
    /// For mproc-mpi, which ships ranges the same way.
    pub fn int_range<I>(input: I) -> Result<(i128, u128), I> {
        crate::fast_path::as_int_range(input).map(|r| (r.start, r.len))
    }

    /// The chunk size of a `*_chunked` call (`Some`), or
    /// [`PoolError::ZeroChunksize`](crate::PoolError::ZeroChunksize) for 0:
    /// the rule mproc-mpi's `MpiPool` shares.
    #[inline]
    pub fn fixed_chunksize(chunksize: usize) -> Result<Option<usize>, crate::PoolError> {
        crate::pool::fixed_chunksize(chunksize)
    }

    /// The chunk size of a `map_async` whose function was not measured yet
    /// (CPython's rule), shared with mproc-mpi's `MpiPool`.
    #[inline]
    pub fn unmeasured_chunk_size(remaining: Option<usize>, workers: usize) -> usize {
        crate::engine::unmeasured_chunk_size(remaining, workers)
    }

    /// Whether values of `T` travel as their bytes (plain numbers, with a
    /// size: `()` has its own path), as the local pool ships them; shared
    /// with mproc-mpi's `MpiPool`.
    #[inline]
    pub fn is_plain<T>() -> bool {
        crate::fast_path::is_pod::<T>() && size_of::<T>() > 0
    }

    /// The bytes of `values` if [`is_plain`]`::<T>()`.
    #[inline]
    pub fn plain_bytes<T>(values: &[T]) -> Option<&[u8]> {
        // SAFETY: `is_plain` says `T` is a plain number (`is_pod`).
        is_plain::<T>().then(|| unsafe { crate::fast_path::pod_bytes(values) })
    }

    /// `bytes` (from another process: any length) as values of `T`, if
    /// [`is_plain`]`::<T>()` and the length is a whole number of them.
    #[inline]
    pub fn plain_from_bytes<T>(bytes: &[u8]) -> Option<Vec<T>> {
        if !is_plain::<T>() || bytes.len() % size_of::<T>() != 0 {
            return None;
        }
        let n = bytes.len() / size_of::<T>();
        // SAFETY: `T` is a plain number (`is_pod`) and `bytes` holds exactly
        // `n` of them.
        Some(unsafe { crate::fast_path::pod_from_bytes(bytes, n) })
    }

    /// Appends the bytes of the next values of `items` (at most `max`) to
    /// `out` if [`is_plain`]`::<T>()`, and returns how many; `None` (and
    /// nothing taken) otherwise.
    #[inline]
    pub fn plain_write<T>(
        out: &mut Vec<u8>,
        items: &mut impl Iterator<Item = T>,
        max: usize,
    ) -> Option<usize> {
        // SAFETY: `is_plain` says `T` is a plain number (`is_pod`).
        is_plain::<T>().then(|| unsafe { crate::fast_path::pod_write(out, items, max) })
    }

    /// The one value of `T` whose bytes `bytes` (from another process: any
    /// length) holds, if [`is_plain`]`::<T>()` and the length is exactly one.
    #[inline]
    pub fn plain_one<T>(bytes: &[u8]) -> Option<T> {
        if !is_plain::<T>() || bytes.len() != size_of::<T>() {
            return None;
        }
        // SAFETY: `T` is a plain number (`is_pod`), so any bytes of its size
        // are a valid `T`; the read is unaligned.
        Some(unsafe { bytes.as_ptr().cast::<T>().read_unaligned() })
    }

    /// Appends `bytes` (from another process: any length) to `values` as
    /// values of `T`, if [`is_plain`]`::<T>()` and the length is a whole
    /// number of them; `false` (and nothing appended) otherwise. One copy,
    /// straight into `values`.
    #[inline]
    pub fn plain_extend<T>(values: &mut Vec<T>, bytes: &[u8]) -> bool {
        if !is_plain::<T>() || bytes.len() % size_of::<T>() != 0 {
            return false;
        }
        // SAFETY: `T` is a plain number (`is_pod`) and `bytes` holds a
        // whole number of them.
        unsafe { crate::fast_path::pod_extend(values, bytes) };
        true
    }

    /// `pool` as a pool whose items and results travel in the codec `C2`:
    /// the same workers, which run each task in the codec it names (a
    /// worker rank of mproc-mpi runs the chunks of its `MpiPool`'s codec on
    /// its one local pool).
    #[inline]
    pub fn as_codec<C, C2>(pool: &crate::Pool<C>) -> &crate::Pool<C2> {
        pool.as_codec()
    }

    /// A byte buffer that postcard writes as one length-prefixed block, in
    /// one copy (the same bytes as a `Vec<u8>`); mproc-mpi's local pools
    /// return encoded results in it.
    pub use crate::wire::Bytes as ByteBlock;

    /// How an `AsyncResult` shows itself in `Debug` (whether it is ready),
    /// the pool's and mproc-mpi's alike.
    #[inline]
    pub fn fmt_async_result(f: &mut std::fmt::Formatter<'_>, ready: bool) -> std::fmt::Result {
        crate::job::fmt_async_result(f, ready)
    }

    /// Methods sharing one set of bounds (the pool's forms): see
    /// `mproc_pool::__task_forms`.
    pub use crate::__task_forms as task_forms;

    /// [`StarFn`](crate::StarFn) `f` as the function of a `map`: the task
    /// of a `starmap`, shared with mproc-mpi's `MpiPool`.
    #[inline]
    pub fn star<F: crate::StarFn<Args>, Args>(
        f: F,
    ) -> impl Fn(Args) -> F::Output + Copy + Send + 'static {
        crate::star::star(f)
    }

    /// Calls `each` with the items `start + k` (`from <= k < len`) as an `A`
    /// if `A` is a primitive integer, and returns `false` (calling nothing)
    /// otherwise; `each` returns `false` to stop early.
    pub fn for_each_in_range<A>(
        start: i128,
        from: u64,
        len: u64,
        each: impl FnMut(u64, A) -> bool,
    ) -> bool {
        crate::fast_path::for_each_in_range(start, from, len, each)
    }
}

pub use crate::builder::PoolBuilder;
pub use crate::error::{
    BuildError, NextTimeoutError, PanicPayload, PoolError, TaskError, TryImapError,
};
#[cfg(feature = "tokio")]
pub use crate::executor::FutureResult;
pub use crate::executor::{
    AsCompleted, AsFuture, ExecutorBuilder, Future, FutureError, FutureRef, Map,
    ProcessPoolExecutor, ReturnWhen, as_completed, as_completed_timeout, wait, wait_timeout,
};
pub use crate::imap::{Imap, TryImap};
pub use crate::job::{AsyncResult, GetTimeoutError};
pub use crate::pool::Pool;
#[cfg(feature = "tokio")]
pub use crate::ready::AsyncResultFuture;
pub use crate::star::StarFn;
pub use mproc_process::{ExitStatus, StartMethod, cpu_count};
pub use mproc_shm::codec::{Bytes, Codec, CodecError, Encode, Pod, Postcard};
