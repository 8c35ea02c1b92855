//! `MpiPool`, its builder and the `imap` iterator.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use mproc_pool::__private::{fixed_chunksize, star, task_forms, unmeasured_chunk_size};
use mproc_pool::{PoolError, StarFn, TaskError};
use mproc_shm::codec::{Codec, Encode, Postcard};

use crate::comm::{self, Chunk, Cmd, Launch, Master};
use crate::decode::{
    ChunkOut, DecodeFn, Decoded, append_plain, collect_map, decode_chunk, decode_one,
};
use crate::error::MpiError;
use crate::job::{AsyncResult, Finish, Sink};
use crate::worker::entry_of;
use crate::{chunk, wire};

/// Builds an [`MpiPool`].
///
/// # Examples
///
/// ```no_run
/// use mproc_mpi::MpiPool;
///
/// // Under `mpirun -n 5 prog`: rank 0 gets the pool, ranks 1..5 serve in
/// // here, each running its chunks on 8 local processes.
/// let pool = MpiPool::builder().local_processes(8).build()?;
/// println!("{} ranks x {} processes", pool.workers(), pool.local_processes());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The codec `C` is how items and results travel ([`Postcard`] unless
/// [`codec`](MpiPoolBuilder::codec) picks another).
#[must_use = "a builder does nothing until build() is called"]
pub struct MpiPoolBuilder<C = Postcard> {
    local: Option<usize>,
    spawn: Option<usize>,
    codec: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for MpiPoolBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiPoolBuilder")
            .field("local", &self.local)
            .field("spawn", &self.spawn)
            .field("codec", &std::any::type_name::<C>())
            .finish()
    }
}

impl<C> Clone for MpiPoolBuilder<C> {
    fn clone(&self) -> Self {
        self.retyped()
    }
}

impl Default for MpiPoolBuilder {
    fn default() -> Self {
        Self {
            local: None,
            spawn: None,
            codec: PhantomData,
        }
    }
}

impl<C> MpiPoolBuilder<C> {
    /// The same builder, for a pool whose items and results travel in the
    /// codec `C2` (see [`mproc_shm::codec`]): [`Postcard`] (the default) for
    /// any serde type, [`Pod`](mproc_shm::codec::Pod) for plain data copied
    /// as it is, [`Bytes`](mproc_shm::codec::Bytes) for byte vectors, or a
    /// codec of your own. Plain numbers (`u64`, `f64`, ...) and integer
    /// ranges travel as their bytes whatever the codec. Every rank runs the
    /// same executable, so the worker ranks need not be told.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use mproc_mpi::{MpiPool, Pod};
    ///
    /// fn norm(v: [f64; 4]) -> f64 {
    ///     v.iter().map(|x| x * x).sum::<f64>().sqrt()
    /// }
    ///
    /// // `mpirun -n 3 prog`: the arrays travel as their 32 bytes each.
    /// let pool = MpiPool::builder().codec::<Pod>().build()?;
    /// assert_eq!(pool.map(norm, vec![[1.0, 1.0, 1.0, 1.0]; 8])?, [2.0; 8]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn codec<C2>(self) -> MpiPoolBuilder<C2> {
        self.retyped()
    }

    /// The same settings with codec `C2` (for `C2 = C`, a clone: every
    /// setting is `Copy`, and the codec is only a type).
    fn retyped<C2>(&self) -> MpiPoolBuilder<C2> {
        MpiPoolBuilder {
            local: self.local,
            spawn: self.spawn,
            codec: PhantomData,
        }
    }

    mproc_shm::builder_setters! {
        /// How many processes each worker rank runs its chunks on (default
        /// [`cpu_count`](mproc_process::cpu_count) of that rank, which honours
        /// the rank's CPU binding and SLURM/PBS allocations). With more than one,
        /// a worker rank starts a local mproc [`Pool`](mproc_pool::Pool): one
        /// rank per node, one process per core, and MPI messages per chunk.
        local_processes(k: usize) => local = Some(k);
        /// Spawns `n` workers (`MPI_Comm_spawn` of this executable) instead of
        /// using the ranks of a static job.
        spawn_workers(n: usize) => spawn = Some(n);
    }

    /// Initialises MPI and makes the pool.
    ///
    /// In a static job (`mpirun -n N prog`, `srun prog`), rank 0 gets the
    /// pool; on every other rank this call serves tasks until rank 0's pool
    /// closes, then **exits the process** (status 0). With
    /// [`spawn_workers`](Self::spawn_workers), this process gets the pool and
    /// the workers are new processes of the same executable, dispatched
    /// before their `main`.
    ///
    /// # Errors
    /// [`MpiError::AlreadyInitialized`] for a second pool in one process;
    /// [`MpiError::NoWorkers`] for a static job of one rank;
    /// [`MpiError::Spawn`], [`MpiError::Init`], [`MpiError::NoLocalProcesses`].
    pub fn build(self) -> Result<MpiPool<C>, MpiError> {
        crate::keep_constructor();
        let local = self.local.unwrap_or_else(mproc_process::cpu_count);
        if local == 0 {
            return Err(MpiError::NoLocalProcesses);
        }
        let launch = match self.spawn {
            Some(n) => Launch::Spawn(n),
            None => Launch::Static,
        };
        let master = comm::start(launch, local)?;
        Ok(MpiPool {
            master,
            state: AtomicU8::new(RUNNING),
            codec: PhantomData,
        })
    }
}

const RUNNING: u8 = 0;
const CLOSED: u8 = 1;
const TERMINATED: u8 = 2;

/// Python's `multiprocessing.Pool`, with its workers on MPI ranks: other
/// cores, other nodes.
///
/// Arguments and results travel in the codec `C`: by default [`Postcard`],
/// for serde values; another one is chosen with [`MpiPoolBuilder::codec`].
/// See the [crate docs](crate) for launching, tasks and failures.
pub struct MpiPool<C = Postcard> {
    master: Master,
    state: AtomicU8,
    codec: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for MpiPool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MpiPool")
            .field("workers", &self.master.workers)
            .field("local_processes", &self.master.local)
            .field("codec", &std::any::type_name::<C>())
            .finish_non_exhaustive()
    }
}

impl MpiPool {
    /// A pool on the ranks of a static MPI job (`mpirun -n N prog`): see
    /// [`MpiPoolBuilder::build`].
    ///
    /// # Errors
    /// As [`MpiPoolBuilder::build`].
    pub fn new() -> Result<Self, MpiError> {
        Self::builder().build()
    }

    /// The same as [`new`](Self::new) (mpi4py's `MPICommExecutor` style:
    /// the workers are the other ranks of `MPI_COMM_WORLD`).
    ///
    /// # Errors
    /// As [`MpiPoolBuilder::build`].
    pub fn from_world() -> Result<Self, MpiError> {
        Self::new()
    }

    /// A pool on `n` workers spawned with `MPI_Comm_spawn` (mpi4py's
    /// `MPIPoolExecutor` style); the program runs as a plain `prog` (or
    /// `mpirun -n 1 prog`).
    ///
    /// # Errors
    /// As [`MpiPoolBuilder::build`].
    pub fn spawn(n: usize) -> Result<Self, MpiError> {
        Self::builder().spawn_workers(n).build()
    }

    /// A builder for the options.
    pub fn builder() -> MpiPoolBuilder {
        MpiPoolBuilder::default()
    }
}

impl<C> MpiPool<C> {
    /// The number of worker ranks.
    pub fn workers(&self) -> usize {
        self.master.workers
    }

    /// The number of processes per worker rank (the largest, if they
    /// differ).
    pub fn local_processes(&self) -> usize {
        self.master.local
    }

    fn check_running(&self) -> Result<(), PoolError> {
        if self.state.load(Ordering::Acquire) == RUNNING {
            Ok(())
        } else {
            Err(PoolError::NotRunning)
        }
    }

    fn submit(&self, chunks: Vec<Chunk>) -> Result<(), PoolError> {
        submit(&self.master, chunks)
    }

    // ----- apply -----

    task_forms! {
        pool_task;

        /// Runs `f(args)` on a worker rank and waits for the value (Python's
        /// `apply`).
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate; [`PoolError::Task`]
        /// if the task failed.
        pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R, PoolError>
        {
            let (chunk, result) = self.apply_job(f, args)?;
            // The caller waits at once: it may drive MPI itself (no hand-off to
            // the MPI thread and back for a short task).
            if !self.master.submit_waiting(chunk, &result.sink) {
                return Err(PoolError::NotRunning);
            }
            result.get()
        }

        /// Submits `f(args)` and returns at once (Python's `apply_async`).
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate; [`PoolError::Task`]
        /// with [`TaskError::Encode`] if `args` does not serialize.
        pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>, PoolError>
        {
            let (chunk, result) = self.apply_job(f, args)?;
            self.submit(vec![chunk])?;
            Ok(result)
        }

        /// The chunk of one `apply` and the result it will fill.
        fn apply_job<F, A, R>(&self, _f: F, args: A) -> Result<(Chunk, AsyncResult<R>), PoolError>
        {
            self.check_running()?;
            let entry = entry_of::<C, F, A, R>();
            // A plain number goes as its bytes (cheaper to read on the worker).
            let mut one = std::iter::once(args);
            let msg = match wire::task_plain_iter(entry, 1, &mut one) {
                Some((msg, _)) => msg,
                None => wire::task_items_iter::<C, A>(entry, 1, one).0.map_err(|e| {
                    PoolError::Task {
                        index: 0,
                        error: TaskError::Encode(e),
                    }
                })?,
            };
            let sink = Arc::new(Sink::default());
            let chunk = Chunk {
                msg,
                sink: sink.clone(),
                seq: 0,
                entry,
                items: 1,
            };
            let result = AsyncResult::new(
                sink,
                1,
                Finish::One(|out| {
                    decode_one::<C, R>(out).map_err(|error| PoolError::Task { index: 0, error })
                }),
            );
            Ok((chunk, result))
        }
    }

    // ----- map -----

    task_forms! {
        pool_task;

        /// Applies `f` to every item and returns the values in input order
        /// (Python's `map`). Chunks are sized from the measured time per item
        /// and go to whichever worker rank is free; the input is consumed
        /// lazily, a bounded window at a time; an integer range travels as
        /// ranges, never as items.
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate; otherwise every item
        /// runs and the first failure in input order is returned.
        pub fn map<F, A, R, I>(&self, f: F, iterable: I) -> Result<Vec<R>, PoolError>
        where { I: IntoIterator<Item = A> }
        {
            self.imap_inner(f, iterable, None, true)?.collect_all()
        }

        /// [`map`](Self::map) with a fixed chunk size.
        ///
        /// # Errors
        /// [`PoolError::ZeroChunksize`] for 0; otherwise as [`map`](Self::map).
        pub fn map_chunked<F, A, R, I>(
            &self,
            f: F,
            iterable: I,
            chunksize: usize,
        ) -> Result<Vec<R>, PoolError>
        where { I: IntoIterator<Item = A> }
        {
            self.imap_inner(f, iterable, fixed_chunksize(chunksize)?, true)?
                .collect_all()
        }
    }

    /// Applies `f` to argument tuples (Python's `starmap`).
    ///
    /// # Errors
    /// As [`map`](Self::map).
    pub fn starmap<F, Args, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: StarFn<Args>,
        C: Codec<Args> + Codec<F::Output>,
        I: IntoIterator<Item = Args>,
    {
        self.map(star(f), iterable)
    }

    task_forms! {
        pool_task;

        /// Submits a map and returns at once (Python's `map_async`). The input
        /// is read and encoded now, in chunks of about a quarter of each
        /// worker's share (CPython's rule) until the function has been measured.
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        pub fn map_async<F, A, R, I>(&self, f: F, iterable: I) -> Result<AsyncResult<Vec<R>>, PoolError>
        where { I: IntoIterator<Item = A> }
        {
            let _ = f;
            self.check_running()?;
            let entry = entry_of::<C, F, A, R>();
            let mut input = Input::<_, C>::new(iterable);
            let workers = self.workers();
            let size = match (self.master.est.get(entry), input.remaining()) {
                (Some(ns), rem) => chunk::chunk_size(Some(ns), 0, rem, workers, self.master.local),
                (None, rem) => unmeasured_chunk_size(rem, workers),
            };
            let sink = Arc::new(Sink::default());
            let mut chunks = Vec::new();
            let mut sizes = Vec::new();
            while let Some((msg, n)) = input.next_chunk(entry, size) {
                sizes.push(n);
                match msg {
                    Ok(msg) => chunks.push(Chunk {
                        msg,
                        sink: sink.clone(),
                        seq: sizes.len() - 1,
                        entry,
                        items: n,
                    }),
                    Err(e) => sink.deliver(sizes.len() - 1, Err(TaskError::Encode(e))),
                }
            }
            let n_chunks = sizes.len();
            self.submit(chunks)?;
            Ok(AsyncResult::new(
                sink,
                n_chunks,
                Finish::Chunks(Box::new(move |all: Vec<(usize, ChunkOut)>| {
                    collect_map(
                        all.into_iter()
                            .flat_map(|(seq, out)| decode_chunk::<C, R>(out, sizes[seq])),
                    )
                })),
            ))
        }
    }

    // ----- imap -----

    task_forms! {
        pool_task;

        /// Applies `f` to every item and yields the results in input order as
        /// they arrive (Python's `imap`); the input is read lazily with a
        /// bounded number of chunks out. Each item is `Ok(value)` or its
        /// task's error, and iteration goes on after an error.
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        pub fn imap<'p, F, A, R, I>(&'p self, f: F, iterable: I) -> Result<Imap<'p, R>, PoolError>
        where { I: IntoIterator<Item = A> + 'p }
        {
            self.imap_inner(f, iterable, None, true)
        }

        /// Like [`imap`](Self::imap), but yields results as they finish
        /// (Python's `imap_unordered`), each exactly once.
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        pub fn imap_unordered<'p, F, A, R, I>(
            &'p self,
            f: F,
            iterable: I,
        ) -> Result<Imap<'p, R>, PoolError>
        where { I: IntoIterator<Item = A> + 'p }
        {
            self.imap_inner(f, iterable, None, false)
        }

        fn imap_inner<'p, F, A, R, I>(
            &'p self,
            _f: F,
            iterable: I,
            chunksize: Option<usize>,
            ordered: bool,
        ) -> Result<Imap<'p, R>, PoolError>
        where { I: IntoIterator<Item = A> + 'p }
        {
            self.check_running()?;
            let entry = entry_of::<C, F, A, R>();
            let source: Box<dyn ChunkSource + 'p> = Box::new(Input::<_, C>::new(iterable));
            Ok(Imap {
                master: &self.master,
                source,
                decode: decode_chunk::<C, R>,
                entry,
                chunksize,
                ordered,
                sink: Arc::new(Sink::default()),
                sizes: Vec::new(),
                probes: 0,
                exhausted: false,
                next_seq: 0,
                arrived: BTreeMap::new(),
                current: None,
                consumed: 0,
                _r: std::marker::PhantomData,
            })
        }
    }

    // ----- lifecycle -----

    /// Takes no new work; queued work finishes, then the workers stop
    /// (Python's `close`).
    pub fn close(&self) {
        if self
            .state
            .compare_exchange(RUNNING, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.master.send(Cmd::Close);
        }
    }

    /// Drops queued work (those results fail with
    /// [`TaskError::Cancelled`]); chunks already running on a worker rank
    /// finish there and are discarded, then the workers stop. MPI cannot
    /// kill a remote rank without ending the whole job, so this waits for
    /// the running chunks.
    pub fn terminate(&self) {
        if self.state.swap(TERMINATED, Ordering::AcqRel) != TERMINATED {
            self.master.send(Cmd::Terminate);
        }
        self.master.join();
    }

    /// Waits until the workers have stopped and MPI is finalised (after
    /// [`close`](Self::close) or [`terminate`](Self::terminate)).
    ///
    /// # Errors
    /// [`PoolError::StillRunning`] if the pool was neither closed nor
    /// terminated.
    pub fn join(&self) -> Result<(), PoolError> {
        if self.state.load(Ordering::Acquire) == RUNNING {
            return Err(PoolError::StillRunning);
        }
        self.master.join();
        Ok(())
    }

    /// Times `rounds` raw 8-byte MPI round trips between rank 0 and the
    /// first worker rank, on the pool's own MPI thread once it is idle: the
    /// floor under [`apply`](Self::apply)'s round trip, measured in the same
    /// run. Returns the mean round trip, or `None` if the pool is not
    /// running.
    #[doc(hidden)]
    pub fn raw_round_trip(&self, rounds: u64) -> Option<std::time::Duration> {
        self.check_running().ok()?;
        let (tx, rx) = std::sync::mpsc::channel();
        if !self.master.send(Cmd::Echo(rounds.max(1), tx)) {
            return None;
        }
        rx.recv().ok().map(|d| d / rounds.max(1) as u32)
    }

    /// Whether the workers have stopped and MPI is finalised.
    pub fn is_finished(&self) -> bool {
        self.master.finished()
    }
}

impl<C> Drop for MpiPool<C> {
    /// Closes the pool and waits for queued work, the workers' exit and
    /// MPI's finalisation.
    fn drop(&mut self) {
        self.close();
        self.master.join();
    }
}

/// A map's input, cut into task messages.
trait ChunkSource {
    /// The next chunk of at most `max` items: its message (or why it did not
    /// encode) and its item count; `None` at the end.
    fn next_chunk(&mut self, entry: i64, max: usize) -> Option<(Result<Vec<u8>, String>, usize)>;
    fn remaining(&self) -> Option<usize>;
}

/// Submits `chunks` to the MPI thread.
fn submit(master: &Master, chunks: Vec<Chunk>) -> Result<(), PoolError> {
    if chunks.is_empty() || master.send(Cmd::Submit(chunks)) {
        Ok(())
    } else {
        Err(PoolError::NotRunning)
    }
}

/// The iterator's own type, not a boxed one: cutting a chunk of tiny items
/// is then a copy loop, not a virtual call per item. Items that are not
/// plain numbers are encoded with the codec `C`.
enum Input<I, C> {
    Range { start: i128, left: u128 },
    Iter(I, PhantomData<fn() -> C>),
}

impl<I: Iterator, C> Input<I, C> {
    fn new<T: IntoIterator<IntoIter = I>>(iterable: T) -> Self {
        match mproc_pool::__private::int_range(iterable) {
            Ok((start, left)) => Input::Range { start, left },
            Err(it) => Input::Iter(it.into_iter(), PhantomData),
        }
    }
}

impl<I: Iterator, C: Encode<I::Item>> ChunkSource for Input<I, C> {
    fn next_chunk(&mut self, entry: i64, max: usize) -> Option<(Result<Vec<u8>, String>, usize)> {
        match self {
            Input::Range { start, left } => {
                if *left == 0 {
                    return None;
                }
                let n = (max as u128).min(*left).min(u64::MAX as u128) as u64;
                let msg = wire::task_range(entry, *start, n);
                *start = start.wrapping_add(n as i128);
                *left -= n as u128;
                Some((Ok(msg), n as usize))
            }
            Input::Iter(it, _) => {
                // Plain numbers travel as their bytes, as in the local pool.
                if let Some((msg, n)) = wire::task_plain_iter(entry, max, it) {
                    return (n > 0).then_some((Ok(msg), n));
                }
                if let (lo, Some(hi)) = it.size_hint()
                    && lo == hi
                {
                    // Known length: encode the items as they come.
                    let (msg, n) =
                        wire::task_items_iter::<C, I::Item>(entry, lo.min(max), it.by_ref());
                    return (n > 0).then_some((msg, n));
                }
                let items: Vec<I::Item> = it.by_ref().take(max).collect();
                if items.is_empty() {
                    return None;
                }
                let n = items.len();
                let msg = wire::task_items_from::<C, I::Item>(entry, &items[..]);
                Some((msg, n))
            }
        }
    }

    fn remaining(&self) -> Option<usize> {
        match self {
            Input::Range { left, .. } => Some((*left).min(usize::MAX as u128) as usize),
            Input::Iter(it, _) => match it.size_hint() {
                (lo, Some(hi)) if lo == hi => Some(lo),
                _ => None,
            },
        }
    }
}

/// The iterator of [`MpiPool::imap`] and [`MpiPool::imap_unordered`].
///
/// Dropping it early stops submitting; chunks already out finish and are
/// discarded.
pub struct Imap<'p, R> {
    master: &'p Master,
    source: Box<dyn ChunkSource + 'p>,
    /// [`decode_chunk`] in the pool's codec.
    decode: DecodeFn<R>,
    entry: i64,
    chunksize: Option<usize>,
    ordered: bool,
    sink: Arc<Sink>,
    /// Items per chunk submitted so far.
    sizes: Vec<usize>,
    probes: u32,
    exhausted: bool,
    /// The next chunk to yield (ordered).
    next_seq: usize,
    arrived: BTreeMap<usize, ChunkOut>,
    current: Option<Decoded<R>>,
    /// Chunks taken out of the sink.
    consumed: usize,
    _r: std::marker::PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for Imap<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("ordered", &self.ordered)
            .field("submitted", &self.sizes.len())
            .finish_non_exhaustive()
    }
}

impl<R> Imap<'_, R> {
    /// Chunks out at once: as many per worker rank as it holds, and one
    /// more each waiting on rank 0; until the function has been measured,
    /// two each (the probes double in size, and imap must not read far
    /// ahead of its consumer).
    fn window(&self, measured: bool) -> usize {
        let per = if measured { comm::DEPTH + 1 } else { 2 };
        per * self.master.workers
    }

    /// Cuts and submits chunks while the window has room, each as soon as
    /// it is cut: a worker starts on the first while this thread encodes
    /// the next.
    fn refill(&mut self) {
        while !self.exhausted {
            let est = self.master.est.get(self.entry);
            let window = self.window(est.is_some() || self.chunksize.is_some());
            let out = self.sizes.len() - self.sink.delivered();
            let held = self.sizes.len() - self.consumed;
            if out >= window || held >= 4 * window {
                break;
            }
            let size = self.chunksize.unwrap_or_else(|| {
                chunk::chunk_size(
                    est,
                    self.probes,
                    self.source.remaining(),
                    self.master.workers,
                    self.master.local,
                )
            });
            if est.is_none() {
                self.probes += 1;
            }
            let Some((msg, n)) = self.source.next_chunk(self.entry, size) else {
                self.exhausted = true;
                break;
            };
            let seq = self.sizes.len();
            self.sizes.push(n);
            let msg = match msg {
                Ok(msg) => msg,
                Err(e) => {
                    self.sink.deliver(seq, Err(TaskError::Encode(e)));
                    continue;
                }
            };
            let chunk = Chunk {
                msg,
                sink: self.sink.clone(),
                seq,
                entry: self.entry,
                items: n,
            };
            if submit(self.master, vec![chunk]).is_err() {
                // The pool is gone: this chunk fails, and no more are cut.
                self.sink.deliver(seq, Err(TaskError::Cancelled));
                self.exhausted = true;
            }
        }
    }
}

impl<R> Imap<'_, R> {
    /// The next chunk's items (in input order, or as they finish), after
    /// topping up the window, so the workers have work while the caller
    /// goes through this chunk.
    fn next_decoded(&mut self) -> Option<Decoded<R>> {
        self.next_out().map(|(out, n)| (self.decode)(out, n))
    }

    /// The next chunk's outcome and item count (see `next_decoded`).
    fn next_out(&mut self) -> Option<(ChunkOut, usize)> {
        loop {
            self.refill();
            let ready = if self.ordered {
                self.arrived
                    .remove(&self.next_seq)
                    .map(|out| (self.next_seq, out))
            } else {
                self.arrived.pop_first()
            };
            if let Some((seq, out)) = ready {
                self.next_seq += 1;
                return Some((out, self.sizes[seq]));
            }
            if self.next_seq >= self.sizes.len() && self.exhausted {
                return None;
            }
            for (seq, out) in self.sink.take(None) {
                self.consumed += 1;
                self.arrived.insert(seq, out);
            }
        }
    }

    /// Collects everything (for `map`): a chunk without failures is moved
    /// in whole; the first failure in input order ends it.
    fn collect_all(mut self) -> Result<Vec<R>, PoolError> {
        // Sized once when the length is known (no regrowing copies of a
        // large result).
        let mut v = Vec::with_capacity(self.source.remaining().unwrap_or(0).min(1 << 24));
        while let Some((out, n)) = self.next_out() {
            // Plain values without failures: copied straight into `v`.
            let Some(out) = append_plain(out, n, &mut v) else {
                continue;
            };
            let base = v.len();
            match (self.decode)(out, n).into_values() {
                Ok(mut values) => v.append(&mut values),
                Err((k, error)) => {
                    return Err(PoolError::Task {
                        index: base + k,
                        error,
                    });
                }
            }
        }
        Ok(v)
    }
}

impl<R> Iterator for Imap<'_, R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(x) = self.current.as_mut().and_then(Iterator::next) {
                return Some(x);
            }
            self.current = Some(self.next_decoded()?);
        }
    }
}
