//! `apply` and the `*_async` forms: work whose value arrives in an
//! [`AsyncResult`].

use std::sync::{Arc, Mutex};

use mproc_shm::codec::{Codec, Encode};

use super::{Pool, fixed_chunksize};
use crate::engine::unmeasured_chunk_size;
use crate::error::{PoolError, TaskError};
use crate::input::{Produced, producer};
use crate::job::{ApplyJob, AsyncResult, Callback, MapJob, Sink, Slot, decode, lock};
use crate::star::{StarFn, star};
use crate::task::{Data, Payload, Task};
use crate::wire::Kind;
use crate::worker::entry_of;

impl<C> Pool<C> {
    crate::__task_forms! {
        pool_task;

        /// Runs `f(args)` in a worker and waits for the value (Python's `apply`).
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate;
        /// [`PoolError::Task`] if the task failed.
        pub fn apply<F, A, R>(&self, f: F, args: A) -> Result<R, PoolError>
        {
            self.apply_async(f, args)?.get()
        }

        /// Submits `f(args)` and returns at once (Python's `apply_async`).
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        pub fn apply_async<F, A, R>(&self, f: F, args: A) -> Result<AsyncResult<R>, PoolError>
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
        pub fn apply_async_callback<F, A, R, Cb>(
            &self,
            f: F,
            args: A,
            callback: Cb,
        ) -> Result<AsyncResult<R>, PoolError>
        where { Cb: FnOnce(Result<&R, &PoolError>) + Send + 'static }
        {
            self.apply_inner(f, args, Some(Box::new(callback)))
        }

        fn apply_inner<F, A, R>(
            &self,
            _f: F,
            args: A,
            cb: Option<Callback<R>>,
        ) -> Result<AsyncResult<R>, PoolError>
        {
            self.check_running()?;
            let entry = entry_of::<C, F, A, R>();
            let slot = Slot::new();
            let job = Arc::new(ApplyJob {
                slot: slot.clone(),
                callback: Mutex::new(cb),
                decode: decode::<C, R>,
            });
            self.submit_one(entry, &args, job);
            Ok(AsyncResult::new(slot))
        }
    }

    /// Queues the one-item task `entry(args)` for `job`, `args` encoded
    /// with the pool's codec (or fails it there if `args` does not encode).
    pub(crate) fn submit_one<A>(&self, entry: i64, args: &A, job: Arc<dyn Sink>)
    where
        C: Encode<A>,
    {
        let mut bytes = Vec::new();
        let (encoded, fds) = mproc_shm::handle::collect_fds(|| C::encode_item(args, &mut bytes));
        match encoded {
            Ok(()) => {
                let offsets = vec![0, bytes.len()];
                let payload = Payload {
                    bytes: Data::Owned(bytes),
                    fds,
                    offsets,
                    elem: 0,
                    start: 0,
                };
                let task = Task::new(job, entry, Kind::Seq, 0, 1, payload);
                self.engine.submit(vec![task]);
                self.engine.ensure_threads();
            }
            Err(e) => {
                let e = TaskError::Encode(format!("the task's argument: {e}"));
                job.fail(0, 1, e)
            }
        }
    }

    crate::__task_forms! {
        pool_task;

        /// Submits a map and returns at once (Python's `map_async`). The input is
        /// encoded now (a panic of its iterator goes on from here, and nothing
        /// is submitted); the result resolves to the whole vector or the first
        /// failure.
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        pub fn map_async<F, A, R, I>(&self, f: F, iterable: I) -> Result<AsyncResult<Vec<R>>, PoolError>
        where { I: IntoIterator<Item = A> }
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
        where { I: IntoIterator<Item = A> }
        {
            self.map_async_inner(f, iterable, fixed_chunksize(chunksize)?, |_| {})
        }

        /// [`map_async`](Pool::map_async) with a callback run with the result on
        /// the pool's result thread (Python's `callback`/`error_callback`).
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        pub fn map_async_callback<F, A, R, I, Cb>(
            &self,
            f: F,
            iterable: I,
            callback: Cb,
        ) -> Result<AsyncResult<Vec<R>>, PoolError>
        where {
            I: IntoIterator<Item = A>,
            Cb: FnOnce(Result<&Vec<R>, &PoolError>) + Send + 'static,
        }
        {
            self.map_async_inner(f, iterable, None, callback)
        }

        fn map_async_inner<F, A, R, I, Cb>(
            &self,
            _f: F,
            iterable: I,
            chunksize: Option<usize>,
            callback: Cb,
        ) -> Result<AsyncResult<Vec<R>>, PoolError>
        where {
            I: IntoIterator<Item = A>,
            Cb: FnOnce(Result<&Vec<R>, &PoolError>) + Send + 'static,
        }
        {
            self.check_running()?;
            let entry = entry_of::<C, F, A, R>();
            let job = Arc::new(MapJob::<R>::new::<C>());
            let slot = Slot::new();
            {
                let slot = slot.clone();
                lock(&job.st).finish = Some(Box::new(move |r: Result<Vec<R>, PoolError>| {
                    let _ =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| callback(r.as_ref())));
                    slot.set(r);
                }));
            }
            let mut prod = producer::<C, A, I>(iterable);
            let size = match (chunksize, self.engine.estimate(entry), prod.remaining()) {
                (Some(c), _, _) => c,
                (None, Some(_), rem) => self.engine.chunk_size(entry, rem, false),
                (None, None, rem) => unmeasured_chunk_size(rem, self.processes()),
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
                        let j: Arc<dyn Sink> = job.clone();
                        tasks.push(Task::new(j, entry, kind, next, count, payload));
                        next += count;
                    }
                }
            }
            if let Some(p) = prod.take_panic() {
                // The input's panic goes on from here; nothing was submitted.
                std::panic::resume_unwind(p);
            }
            self.engine.submit(tasks);
            self.engine.ensure_threads();
            job.seal();
            Ok(AsyncResult::new(slot))
        }
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
        C: Codec<Args> + Codec<F::Output>,
        I: IntoIterator<Item = Args>,
    {
        self.map_async(star(f), iterable)
    }
}
