//! `apply` and the `*_async` forms: work whose value arrives in an
//! [`AsyncResult`].

use std::sync::{Arc, Mutex};

use mproc_shm::codec_error::PostcardError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Pool, fixed_chunksize};
use crate::engine::unmeasured_chunk_size;
use crate::error::{PoolError, TaskError};
use crate::input::{Produced, producer};
use crate::job::{ApplyJob, AsyncResult, Callback, MapJob, Sink, Slot, lock};
use crate::star::{StarFn, star};
use crate::task::{Data, Payload, Task};
use crate::wire::Kind;
use crate::worker::entry_of;

impl Pool {
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
        _f: F,
        args: A,
        cb: Option<Callback<R>>,
    ) -> Result<AsyncResult<R>, PoolError>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
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
                let e = PostcardError::encode(args, e);
                let e = TaskError::Encode(format!("the task's argument: {e}"));
                job.fail(0, 1, e)
            }
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
        Args: Serialize + DeserializeOwned,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.map_async(star(f), iterable)
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
        self.map_async_inner(f, iterable, fixed_chunksize(chunksize)?, |_| {})
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
        self.map_async_inner(f, iterable, None, callback)
    }

    fn map_async_inner<F, A, R, I, C>(
        &self,
        _f: F,
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
