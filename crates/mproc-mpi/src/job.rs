//! Where results land: a [`Sink`] per operation, filled by the MPI thread
//! and drained by the caller's thread, and [`AsyncResult`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mproc_pool::PoolError;

use crate::decode::ChunkOut;

pub(crate) use mproc_shm::local::lock;

/// The chunks of one operation that came back, in arrival order.
#[derive(Default)]
pub(crate) struct Sink {
    done: Mutex<Vec<(usize, ChunkOut)>>,
    cv: Condvar,
    /// Chunks delivered so far (read without the lock while spinning).
    count: AtomicUsize,
    /// Threads asleep on `cv` (changed only under the lock): a delivery
    /// with none skips the wake-up system call.
    sleepers: AtomicUsize,
}

impl Sink {
    /// Called by the MPI thread.
    pub(crate) fn deliver(&self, seq: usize, out: ChunkOut) {
        let mut g = lock(&self.done);
        g.push((seq, out));
        // Release: pairs with the Acquire loads of the spinning waiter.
        self.count.fetch_add(1, Ordering::Release);
        // A sleeper registers under the lock before it waits, so reading
        // the count under the lock misses none.
        let wake = self.sleepers.load(Ordering::Relaxed) > 0;
        drop(g);
        if wake {
            self.cv.notify_all();
        }
    }

    /// Sleeps on the condition variable (registered as a sleeper) until
    /// woken or `deadline`.
    fn sleep<'a>(
        &self,
        g: MutexGuard<'a, Vec<(usize, ChunkOut)>>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, Vec<(usize, ChunkOut)>> {
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        let g = match deadline {
            None => mproc_shm::local::wait(&self.cv, g),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                mproc_shm::local::wait_for(&self.cv, g, left)
            }
        };
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        g
    }

    /// How many chunks came back so far.
    pub(crate) fn delivered(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until at least one chunk is there (or the deadline passes) and
    /// takes all that are.
    pub(crate) fn take(&self, deadline: Option<Instant>) -> Vec<(usize, ChunkOut)> {
        // No polling before the wait: on rank 0 the MPI thread polls for the
        // result, and on a small machine a polling caller takes its core
        // (apply's round trip was about a fifth slower, with outliers of
        // many times, than with the caller asleep).
        let mut g = lock(&self.done);
        while g.is_empty() {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            g = self.sleep(g, deadline);
        }
        std::mem::take(&mut *g)
    }

    /// Waits until `n` chunks in all have been delivered (or the deadline).
    pub(crate) fn wait_count(&self, n: usize, deadline: Option<Instant>) -> bool {
        // No polling first (see `take`).
        let mut g = lock(&self.done);
        while self.delivered() < n {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            g = self.sleep(g, deadline);
        }
        true
    }
}

/// Every chunk of a map, in order, to its value.
type FinishChunks<T> = Box<dyn FnOnce(Vec<(usize, ChunkOut)>) -> Result<T, PoolError> + Send>;

/// How the chunks that came back become the value.
pub(crate) enum Finish<T> {
    /// Every chunk of a map, in order.
    Chunks(FinishChunks<T>),
    /// The one chunk of an `apply` (no `Vec` and no sort on its round trip).
    One(fn(ChunkOut) -> Result<T, PoolError>),
}

/// The result of [`MpiPool::apply_async`](crate::MpiPool::apply_async) or
/// [`MpiPool::map_async`](crate::MpiPool::map_async) (Python's
/// `AsyncResult`).
#[must_use = "an AsyncResult does nothing unless waited on"]
pub struct AsyncResult<T> {
    pub(crate) sink: Arc<Sink>,
    chunks: usize,
    finish: Finish<T>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        mproc_pool::__private::fmt_async_result(f, self.ready())
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(sink: Arc<Sink>, chunks: usize, finish: Finish<T>) -> Self {
        Self {
            sink,
            chunks,
            finish,
        }
    }

    /// Whether the result has arrived (Python's `ready()`).
    pub fn ready(&self) -> bool {
        self.sink.delivered() >= self.chunks
    }

    /// Blocks until the result has arrived.
    pub fn wait(&self) {
        self.sink.wait_count(self.chunks, None);
    }

    /// Blocks until the result has arrived or `timeout` passed; returns
    /// whether it arrived.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.sink
            .wait_count(self.chunks, Instant::now().checked_add(timeout))
    }

    /// Waits for the result and returns it (Python's `get()`).
    ///
    /// # Errors
    /// [`PoolError::Task`] if the task (for a map: the first failed item in
    /// input order) failed.
    pub fn get(self) -> Result<T, PoolError> {
        self.wait();
        match self.finish {
            Finish::One(finish) => {
                let (_, out) = self.sink.take(None).pop().expect("the one chunk arrived");
                finish(out)
            }
            Finish::Chunks(finish) => {
                let mut all = Vec::with_capacity(self.chunks);
                while all.len() < self.chunks {
                    all.extend(self.sink.take(None));
                }
                all.sort_by_key(|(seq, _)| *seq);
                finish(all)
            }
        }
    }
}
