//! The iterators of [`Pool::imap`](crate::Pool::imap) and its forms:
//! [`Imap`] keeps a bounded window of chunks in flight, cutting the input
//! as the engine's policy says, and yields results in order (or as they
//! come); [`TryImap`] stops at an input's first `Err`.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mproc_shm::codec::Codec;

use crate::engine::{Cutting, DEPTH, Engine};
use crate::error::{NextTimeoutError, PoolError, TaskError, TryImapError};
use crate::input::{Produced, Producer};
use crate::job::{Chunk, MapJob, Sink, lock};
use crate::task::Task;

/// The iterator of [`Pool::imap`](crate::Pool::imap) and [`Pool::imap_unordered`](crate::Pool::imap_unordered).
///
/// A plain `Iterator`, so adapters (and progress bars such as indicatif's
/// `ProgressIterator`) work on it. Dropping it early stops submitting; work
/// already in flight finishes and is discarded.
pub struct Imap<'p, R> {
    engine: &'p Arc<Engine>,
    job: Arc<MapJob<R>>,
    prod: Box<dyn Producer + 'p>,
    entry: i64,
    cut: Cutting,
    window: usize,
    next_index: usize,
    exhausted: bool,
    epoch: u64,
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
            .field("ordered", &self.cut.ordered)
            .field("submitted", &self.next_index)
            .finish_non_exhaustive()
    }
}

impl<'p, R: Send> Imap<'p, R> {
    /// Begins a job of `entry` over `prod` on `engine` (see
    /// [`Engine::begin_job`]), its values in the codec `C`.
    pub(crate) fn new<C: Codec<R>>(
        engine: &'p Arc<Engine>,
        prod: Box<dyn Producer + 'p>,
        entry: i64,
        chunksize: Option<usize>,
        ordered: bool,
    ) -> Result<Self, PoolError> {
        let epoch = engine.begin_job()?;
        Ok(Imap {
            engine,
            job: Arc::new(MapJob::new::<C>()),
            prod,
            entry,
            cut: Cutting {
                chunksize,
                ordered,
                eager: false,
            },
            // Every worker's batches, and one more chunk each waiting, so
            // a worker's next batch leaves as soon as its results arrive
            // (without waiting for this thread to cut it).
            window: (DEPTH + 1) * engine.processes().max(1),
            next_index: 0,
            exhausted: false,
            epoch,
            even: None,
            pos: 0,
            current: None,
            yielded: 0,
        })
    }

    /// For `map`: the whole result is wanted at once, so it need not be
    /// streamed (see [`Cutting::eager`]).
    pub(crate) fn set_eager(&mut self) {
        self.cut.eager = true;
    }
}

impl<R: Send + 'static> Imap<'_, R> {
    /// Submits chunks until the window is full or the input is done.
    fn top_up(&mut self) {
        while !self.exhausted {
            if lock(&self.job.st).outstanding_tasks >= self.window {
                return;
            }
            let max = if self.engine.epoch() != self.epoch {
                0 // cancelled
            } else {
                let (rem, free) = (self.prod.remaining(), self.prod.free());
                let even = &mut self.even;
                self.engine
                    .next_chunk(self.cut, self.entry, rem, free, even)
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
                    let job: Arc<dyn Sink> = self.job.clone();
                    let mut task =
                        Task::new(job, self.entry, kind, self.next_index, count, payload);
                    task.adaptive = self.cut.chunksize.is_none();
                    task.probe = self.cut.chunksize.is_none() && !self.cut.eager;
                    self.next_index += count;
                    self.engine.submit(vec![task]);
                }
            }
        }
    }

    fn finish_input(&mut self) {
        if !self.exhausted {
            self.exhausted = true;
            self.job.seal();
            self.engine.end_job();
        }
    }

    /// The next finished chunk (in order, or any for unordered);
    /// `Ok(None)` at the end, `Err` at the deadline.
    pub(crate) fn next_chunk(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Chunk<R>>, NextTimeoutError> {
        loop {
            self.top_up();
            // After the first chunks left: the workers need not wait.
            self.engine.ensure_threads();
            let job = self.job.clone();
            let mut st = lock(&job.st);
            loop {
                let c = if self.cut.ordered {
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
                    None => st = mproc_shm::local::wait(&job.cv, st),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            return Err(NextTimeoutError::Timeout);
                        }
                        st = mproc_shm::local::wait_for(&job.cv, st, d - now);
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

impl<R: Send + 'static> Iterator for Imap<'_, R> {
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
impl<R: Send + 'static> ExactSizeIterator for Imap<'_, R> {}

impl<R> Drop for Imap<'_, R> {
    fn drop(&mut self) {
        if !self.exhausted {
            self.exhausted = true;
            self.engine.end_job();
        }
    }
}

/// The iterator of [`Pool::try_imap`](crate::Pool::try_imap) and its chunked and unordered forms:
/// as [`Imap`], and at the input's first `Err`, [`TryImapError::Input`]
/// with it as the last item.
pub struct TryImap<'p, R, E> {
    pub(crate) inner: Imap<'p, R>,
    /// The input's error, once it was read (shared with the input adapter).
    pub(crate) error: Rc<RefCell<Option<E>>>,
}

impl<R, E> fmt::Debug for TryImap<'_, R, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryImap")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<R: Send + 'static, E> TryImap<'_, R, E> {
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
        self.next_until(Some(deadline))
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
        self.next_until(Instant::now().checked_add(timeout))
    }

    /// The next item, waiting at most until `deadline` (`None`: for good).
    #[allow(clippy::type_complexity)]
    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Result<R, TryImapError<E>>>, NextTimeoutError> {
        self.inner
            .next_inner(deadline)
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

impl<R: Send + 'static, E> Iterator for TryImap<'_, R, E> {
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
