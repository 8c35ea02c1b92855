//! [`wait`] and [`as_completed`]: each call registers a [`Waiter`] with the
//! futures it watches, which they tell when they resolve.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::future::{CANCELLED, Core, FAILED, Future, RUNNING, SUCCEEDED};
use crate::error::NextTimeoutError;
use crate::job::lock;

/// A [`Future`] or a reference to one, of any value type: what [`wait`]
/// and [`as_completed`] take, so they work on `&[Future<R>]`, on
/// `Vec<Future<R>>`, and on futures of different types as
/// `&dyn AsFuture` (`[&a as &dyn AsFuture, &b]`).
pub trait AsFuture {
    /// The future, its value type erased.
    fn as_future_ref(&self) -> FutureRef<'_>;
}

impl<R> AsFuture for Future<R> {
    fn as_future_ref(&self) -> FutureRef<'_> {
        FutureRef(&*self.core)
    }
}

impl<T: AsFuture + ?Sized> AsFuture for &T {
    fn as_future_ref(&self) -> FutureRef<'_> {
        (**self).as_future_ref()
    }
}

/// A [`Future`] of any value type (from [`AsFuture`]): its state.
#[derive(Clone, Copy)]
pub struct FutureRef<'a>(&'a dyn Watchable);

impl fmt::Debug for FutureRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FutureRef")
            .field("done", &self.done())
            .finish_non_exhaustive()
    }
}

impl FutureRef<'_> {
    /// As [`Future::done`].
    pub fn done(&self) -> bool {
        self.0.phase() >= SUCCEEDED
    }

    /// As [`Future::running`].
    pub fn running(&self) -> bool {
        self.0.phase() == RUNNING
    }

    /// As [`Future::cancelled`].
    pub fn cancelled(&self) -> bool {
        self.0.phase() == CANCELLED
    }

    /// Whether it failed (not counting cancellation).
    pub fn failed(&self) -> bool {
        self.0.phase() == FAILED
    }
}

/// What `wait` and `as_completed` need of a future, whatever its type.
trait Watchable {
    fn phase(&self) -> u8;
    /// Has `w` told (index `i`) when it resolves, at once if it is.
    fn watch(&self, w: &Arc<Waiter>, i: usize);
    fn unwatch(&self, w: &Arc<Waiter>);
}

impl<R> Watchable for Core<R> {
    fn phase(&self) -> u8 {
        Core::phase(self)
    }

    fn watch(&self, w: &Arc<Waiter>, i: usize) {
        let mut g = lock(&self.inner);
        // Under the lock: `resolve` sets the phase and takes the waiters
        // under it too, so no resolution is missed.
        if self.phase() >= SUCCEEDED {
            drop(g);
            w.push(i);
        } else {
            g.waiters.push((w.clone(), i));
        }
    }

    fn unwatch(&self, w: &Arc<Waiter>) {
        lock(&self.inner)
            .waiters
            .retain(|(x, _)| !Arc::ptr_eq(x, w));
    }
}

/// One `wait` or `as_completed` call: the futures it watches push their
/// index here when they resolve.
#[derive(Default)]
pub(super) struct Waiter {
    done: Mutex<VecDeque<usize>>,
    cv: Condvar,
}

impl Waiter {
    pub(super) fn push(&self, i: usize) {
        lock(&self.done).push_back(i);
        self.cv.notify_one();
    }

    /// The next index, waiting until `deadline`; `None` on timeout.
    fn pop(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut q = lock(&self.done);
        loop {
            if let Some(i) = q.pop_front() {
                return Some(i);
            }
            q = match deadline {
                None => mproc_shm::local::wait(&self.cv, q),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    mproc_shm::local::wait_for(&self.cv, q, d - now)
                }
            };
        }
    }
}

/// Futures watched by one [`Waiter`].
struct Watch<F: AsFuture> {
    items: Vec<Option<F>>,
    waiter: Arc<Waiter>,
}

impl<F: AsFuture> Watch<F> {
    fn new(fs: impl IntoIterator<Item = F>) -> Self {
        let waiter = Arc::new(Waiter::default());
        let items: Vec<Option<F>> = fs.into_iter().map(Some).collect();
        for (i, f) in items.iter().enumerate() {
            if let Some(f) = f {
                f.as_future_ref().0.watch(&waiter, i);
            }
        }
        Self { items, waiter }
    }

    /// Stops watching the futures not taken out.
    fn unwatch(&self) {
        for f in self.items.iter().flatten() {
            f.as_future_ref().0.unwatch(&self.waiter);
        }
    }
}

impl<F: AsFuture> Drop for Watch<F> {
    fn drop(&mut self) {
        self.unwatch();
    }
}

/// When [`wait`] returns (Python's `return_when`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future is done (or cancelled).
    FirstCompleted,
    /// As soon as any future fails (not counting cancelled ones), or when
    /// all are done.
    FirstException,
    /// When all are done.
    AllCompleted,
}

/// Blocks until the futures are done as `when` says, and returns them as
/// `(done, not_done)`, each in input order (Python's
/// `concurrent.futures.wait`). Takes `&[Future<R>]`/`&Vec<…>` (and gives
/// references back) or owned futures.
pub fn wait<F: AsFuture>(fs: impl IntoIterator<Item = F>, when: ReturnWhen) -> (Vec<F>, Vec<F>) {
    wait_inner(fs, None, when)
}

/// [`wait`] for at most `timeout` (Python's `wait(fs, timeout)`): then
/// returns what is done so far.
pub fn wait_timeout<F: AsFuture>(
    fs: impl IntoIterator<Item = F>,
    timeout: Duration,
    when: ReturnWhen,
) -> (Vec<F>, Vec<F>) {
    wait_inner(fs, Instant::now().checked_add(timeout), when)
}

fn wait_inner<F: AsFuture>(
    fs: impl IntoIterator<Item = F>,
    deadline: Option<Instant>,
    when: ReturnWhen,
) -> (Vec<F>, Vec<F>) {
    let mut w = Watch::new(fs);
    let n = w.items.len();
    let mut done = 0;
    let mut failed = false;
    loop {
        let enough = match when {
            ReturnWhen::FirstCompleted => done > 0 || n == 0,
            ReturnWhen::FirstException => failed || done == n,
            ReturnWhen::AllCompleted => done == n,
        };
        if enough {
            break;
        }
        let Some(i) = w.waiter.pop(deadline) else {
            break;
        };
        done += 1;
        if let Some(f) = &w.items[i] {
            failed |= f.as_future_ref().failed();
        }
    }
    w.unwatch();
    let items: Vec<F> = std::mem::take(&mut w.items).into_iter().flatten().collect();
    items.into_iter().partition(|f| f.as_future_ref().done())
}

/// The futures in the order they resolve (Python's
/// `concurrent.futures.as_completed`): those already done first, in input
/// order, then each as it resolves. Takes `&[Future<R>]`/`&Vec<…>` (and
/// yields references) or owned futures. For Python's `timeout`, see
/// [`as_completed_timeout`] (or [`AsCompleted::next_deadline`]).
pub fn as_completed<F: AsFuture>(fs: impl IntoIterator<Item = F>) -> AsCompleted<F> {
    let watch = Watch::new(fs);
    let left = watch.items.len();
    AsCompleted { watch, left }
}

/// [`as_completed`] with Python's `timeout`: the futures as they resolve,
/// then, if they did not all resolve within `timeout` of this call,
/// [`NextTimeoutError::Timeout`] once, and the end.
pub fn as_completed_timeout<F: AsFuture>(
    fs: impl IntoIterator<Item = F>,
    timeout: Duration,
) -> impl Iterator<Item = Result<F, NextTimeoutError>> {
    let deadline = Instant::now().checked_add(timeout);
    let mut it = as_completed(fs);
    let mut timed_out = false;
    std::iter::from_fn(move || {
        if timed_out {
            return None;
        }
        match it.next_inner(deadline) {
            Ok(f) => f.map(Ok),
            Err(e) => {
                timed_out = true;
                Some(Err(e))
            }
        }
    })
}

/// The iterator of [`as_completed`].
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct AsCompleted<F: AsFuture> {
    watch: Watch<F>,
    left: usize,
}

impl<F: AsFuture> fmt::Debug for AsCompleted<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl<F: AsFuture> AsCompleted<F> {
    /// The next future to resolve, waiting at most until `deadline`;
    /// `Ok(None)` once all were yielded.
    ///
    /// # Errors
    /// [`NextTimeoutError::Timeout`] if none resolved in time (the
    /// iterator stays usable).
    pub fn next_deadline(&mut self, deadline: Instant) -> Result<Option<F>, NextTimeoutError> {
        self.next_inner(Some(deadline))
    }

    /// [`next_deadline`](Self::next_deadline) with a timeout.
    ///
    /// # Errors
    /// As [`next_deadline`](Self::next_deadline).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<F>, NextTimeoutError> {
        self.next_inner(Instant::now().checked_add(timeout))
    }

    fn next_inner(&mut self, deadline: Option<Instant>) -> Result<Option<F>, NextTimeoutError> {
        while self.left > 0 {
            let i = self
                .watch
                .waiter
                .pop(deadline)
                .ok_or(NextTimeoutError::Timeout)?;
            if let Some(f) = self.watch.items.get_mut(i).and_then(Option::take) {
                self.left -= 1;
                return Ok(Some(f));
            }
        }
        Ok(None)
    }
}

impl<F: AsFuture> Iterator for AsCompleted<F> {
    type Item = F;

    fn next(&mut self) -> Option<F> {
        self.next_inner(None).unwrap_or(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<F: AsFuture> ExactSizeIterator for AsCompleted<F> {}
