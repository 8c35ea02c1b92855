//! Where results land: the per-call sinks the collector thread delivers to,
//! and [`AsyncResult`].

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mproc_shm::codec::{Bytes, Codec, Pod, Postcard};

use crate::error::{PoolError, TaskError};
use crate::fast_path::{is_pod, pod_from_bytes};
use crate::wire::TaskOut;

pub(crate) use mproc_shm::local::lock;

/// Receives the outcome of a job's tasks (called by the collector thread).
pub(crate) trait Sink: Send + Sync {
    /// Items `first..first + count` ran; decode their values.
    fn deliver(&self, first: usize, count: usize, out: &TaskOut, bytes: &[u8], fds: Vec<OwnedFd>);
    /// Items `first..first + count` failed with `err`.
    fn fail(&self, first: usize, count: usize, err: TaskError);
    /// The task left the queue for a worker (called with the pool's state
    /// locked: it must not take the pool's locks).
    fn dispatched(&self) {}
    /// Whether the task runs again if its worker dies after it ran (its
    /// result was lost), or fails with `WorkerLost` (at most once).
    fn rerun_lost(&self) -> bool {
        true
    }
}

/// Values of a task, and its failed items (index within the task).
type Decoded<R> = (Vec<R>, Vec<(usize, TaskError)>);
/// Where a `map_async` result goes.
type Finish<R> = Box<dyn FnOnce(Result<Vec<R>, PoolError>) + Send>;

/// How a job decodes its tasks' values: [`decode`] for the job's codec (a
/// job is not generic in it: one indirect call per task).
pub(crate) type DecodeFn<R> =
    fn(usize, &TaskOut, &[u8], Vec<OwnedFd>) -> Result<Decoded<R>, String>;

/// Decodes a task's values with the codec `C`: the values in order, and
/// the failed items (index within the task) with their errors.
pub(crate) fn decode<C: Codec<R>, R>(
    count: usize,
    out: &TaskOut,
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<Decoded<R>, String> {
    let mut failed: Vec<(usize, TaskError)> = out
        .failures
        .iter()
        .map(|(k, p)| (*k as usize, TaskError::from_panic(p.clone())))
        .chain(out.encode_failures.iter().map(|(k, m)| {
            (
                *k as usize,
                TaskError::Encode(format!("the task's result: {m}")),
            )
        }))
        .collect();
    failed.sort_by_key(|(k, _)| *k);
    // A worker reports each index once; a duplicate is not trusted twice.
    failed.dedup_by_key(|(k, _)| *k);
    if failed.iter().any(|(k, _)| *k >= count) {
        return Err("a failure index beyond the task".into());
    }
    let values = if is_pod::<R>() {
        if bytes.len() != count * size_of::<R>() {
            return Err("plain-data results of the wrong size".into());
        }
        // SAFETY: `R` is a plain number and `bytes` holds exactly `count` of them.
        let mut v: Vec<R> = unsafe { pod_from_bytes(bytes, count) };
        if !out.failures.is_empty() {
            // Placeholders of failed items go; the rest keep their order.
            let mut k = 0;
            let mut fi = failed.iter().map(|(i, _)| *i).peekable();
            v.retain(|_| {
                let keep = fi.peek() != Some(&k);
                if !keep {
                    fi.next();
                }
                k += 1;
                keep
            });
        }
        v
    } else {
        let n = count - failed.len();
        mproc_shm::handle::provide_fds(fds, || {
            let mut v = Vec::with_capacity(n);
            let mut rest = bytes;
            for _ in 0..n {
                let (r, tail) = C::decode_item(rest).map_err(|e| e.to_string())?;
                v.push(r);
                rest = tail;
            }
            Ok::<_, String>(v)
        })?
    };
    Ok((values, failed))
}

/// Decodes the value of a one-item task (`apply_async`, an executor's
/// `submit`) with `decode`, or its failure.
pub(crate) fn decode_one<R>(
    decode: DecodeFn<R>,
    count: usize,
    out: &TaskOut,
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<R, TaskError> {
    match decode(count, out, bytes, fds) {
        Ok((mut v, mut failed)) => match (failed.pop(), v.pop()) {
            (Some((_, e)), _) => Err(e),
            (None, Some(v)) => Ok(v),
            (None, None) => Err(TaskError::Decode("no result".into())),
        },
        Err(m) => Err(TaskError::Decode(m)),
    }
}

/// Fuzzing entry: decoding task values (with failures) of a few types.
pub(crate) fn fuzz_decode(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(n % 16);
    let failures = rest
        .iter()
        .take(2)
        .map(|&b| (u64::from(b % 20), crate::wire::Panic::default()))
        .collect();
    let out = TaskOut {
        failures,
        len: rest.len() as u64,
        ..TaskOut::default()
    };
    let _ = decode::<Postcard, u64>(count, &out, rest, Vec::new());
    let _ = decode::<Postcard, String>(count, &out, rest, Vec::new());
    let _ = decode::<Postcard, (u8, Vec<i32>)>(count, &out, rest, Vec::new());
    let _ = decode::<Postcard, ()>(count, &out, rest, Vec::new());
    let _ = decode::<Bytes, Vec<u8>>(count, &out, rest, Vec::new());
    let _ = decode::<Pod, [u32; 3]>(count, &out, rest, Vec::new());
}

// ----- map, imap, imap_unordered, map_async -----

/// The finished items of `first..first + count`.
pub(crate) struct Chunk<R> {
    pub(crate) first: usize,
    pub(crate) count: usize,
    pub(crate) values: std::vec::IntoIter<R>,
    /// Failed items (absolute index), ascending.
    pub(crate) failures: VecDeque<(usize, TaskError)>,
}

impl<R> Chunk<R> {
    /// The item at absolute index `i` (items must be taken in order).
    pub(crate) fn take(&mut self, i: usize) -> Option<Result<R, TaskError>> {
        if self.failures.front().is_some_and(|(k, _)| *k == i) {
            return self.failures.pop_front().map(|(_, e)| Err(e));
        }
        self.values.next().map(Ok)
    }
}

pub(crate) struct MapState<R> {
    pub(crate) done: BTreeMap<usize, Chunk<R>>,
    /// Items submitted and not yet delivered or failed.
    pub(crate) outstanding: usize,
    /// Tasks submitted and not yet resolved (approximate: a task split
    /// after a worker died resolves in several pieces; used only to bound
    /// the window, while completion is decided by `outstanding`).
    pub(crate) outstanding_tasks: usize,
    /// No more items will be submitted.
    pub(crate) sealed: bool,
    /// Total items submitted (when sealed: the length of the input).
    pub(crate) submitted: usize,
    /// For `map_async`: where the assembled result goes.
    pub(crate) finish: Option<Finish<R>>,
}

/// A `map`-family job: chunks of one function over one input.
pub(crate) struct MapJob<R> {
    pub(crate) st: Mutex<MapState<R>>,
    pub(crate) cv: Condvar,
    decode: DecodeFn<R>,
}

impl<R: Send> MapJob<R> {
    /// A job whose values travel in the codec `C`.
    pub(crate) fn new<C: Codec<R>>() -> Self {
        Self {
            st: Mutex::new(MapState {
                done: BTreeMap::new(),
                outstanding: 0,
                outstanding_tasks: 0,
                sealed: false,
                submitted: 0,
                finish: None,
            }),
            cv: Condvar::new(),
            decode: decode::<C, R>,
        }
    }

    /// Records the submission of `count` items (one task).
    pub(crate) fn submitted(&self, count: usize) {
        let mut st = lock(&self.st);
        st.outstanding += count;
        st.outstanding_tasks += 1;
        st.submitted += count;
    }

    /// No more submissions; completes a `map_async` whose work is all done.
    pub(crate) fn seal(&self) {
        let mut st = lock(&self.st);
        st.sealed = true;
        self.maybe_finish(st);
    }

    fn put(&self, chunk: Chunk<R>) {
        let mut st = lock(&self.st);
        st.outstanding = st.outstanding.saturating_sub(chunk.count);
        st.outstanding_tasks = st.outstanding_tasks.saturating_sub(1);
        if chunk.count > 0 {
            st.done.insert(chunk.first, chunk);
        }
        self.cv.notify_all();
        self.maybe_finish(st);
    }

    /// Records items that failed outright (never submitted, e.g. encode errors).
    pub(crate) fn put_failed(&self, first: usize, count: usize, err: TaskError) {
        let failures = (first..first + count).map(|i| (i, err.clone())).collect();
        let mut st = lock(&self.st);
        st.done.insert(
            first,
            Chunk {
                first,
                count,
                values: Vec::new().into_iter(),
                failures,
            },
        );
        st.submitted += count;
        self.cv.notify_all();
    }

    fn maybe_finish(&self, mut st: MutexGuard<'_, MapState<R>>) {
        if !(st.sealed && st.outstanding == 0) {
            return;
        }
        let Some(finish) = st.finish.take() else {
            return;
        };
        let chunks = std::mem::take(&mut st.done);
        drop(st);
        finish(assemble(chunks.into_values()));
    }
}

/// Concatenates chunks (in order) into the values, or the first failure.
pub(crate) fn assemble<R>(chunks: impl Iterator<Item = Chunk<R>>) -> Result<Vec<R>, PoolError> {
    let mut out = Vec::new();
    let mut first_err = None;
    for mut c in chunks {
        if first_err.is_none() {
            if let Some((i, e)) = c.failures.pop_front() {
                first_err = Some(PoolError::Task { index: i, error: e });
            } else {
                if out.is_empty() {
                    out = c.values.collect();
                } else {
                    out.extend(c.values);
                }
                continue;
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

impl<R: Send> Sink for MapJob<R> {
    fn deliver(&self, first: usize, count: usize, out: &TaskOut, bytes: &[u8], fds: Vec<OwnedFd>) {
        match (self.decode)(count, out, bytes, fds) {
            Ok((values, failed)) => {
                let failures = failed.into_iter().map(|(k, e)| (first + k, e)).collect();
                self.put(Chunk {
                    first,
                    count,
                    values: values.into_iter(),
                    failures,
                });
            }
            Err(m) => self.fail(first, count, TaskError::Decode(m)),
        }
    }

    fn fail(&self, first: usize, count: usize, err: TaskError) {
        let failures = (first..first + count).map(|i| (i, err.clone())).collect();
        self.put(Chunk {
            first,
            count,
            values: Vec::new().into_iter(),
            failures,
        });
    }
}

// ----- AsyncResult -----

pub(crate) struct Slot<T> {
    st: Mutex<Option<Result<T, PoolError>>>,
    cv: Condvar,
    /// Made by the first `as_fd` (see `ready`), rung by `set`.
    pub(crate) bell: std::sync::OnceLock<mproc_shm::ready::Doorbell>,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            st: Mutex::new(None),
            cv: Condvar::new(),
            bell: std::sync::OnceLock::new(),
        })
    }

    /// Rings the doorbell if the result is there (called once the
    /// doorbell exists: `set` rings it from then on, under the same lock).
    pub(crate) fn ring_if_done(&self, bell: &mproc_shm::ready::Doorbell) {
        if lock(&self.st).is_some() {
            bell.ring();
        }
    }

    pub(crate) fn set(&self, r: Result<T, PoolError>) {
        let mut st = lock(&self.st);
        if st.is_none() {
            *st = Some(r);
            self.cv.notify_all();
            // Under the lock: see `Slot::ring_if_done`.
            if let Some(b) = self.bell.get() {
                b.ring();
            }
        }
    }
}

/// The result of [`Pool::apply_async`](crate::Pool::apply_async) or
/// [`Pool::map_async`](crate::Pool::map_async) (Python's `AsyncResult`).
///
/// It resolves exactly once: to the value, to the task's error, or to
/// [`TaskError::Cancelled`] if the pool was cancelled, terminated or dropped
/// first. It never hangs on a dead worker. It may outlive its pool.
#[must_use = "an AsyncResult does nothing unless waited on"]
pub struct AsyncResult<T> {
    pub(crate) slot: Arc<Slot<T>>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_async_result(f, self.ready())
    }
}

/// How an `AsyncResult` shows itself (the pool's, and mproc-mpi's through
/// `__private`): whether it is ready, and nothing it holds.
pub(crate) fn fmt_async_result(f: &mut fmt::Formatter<'_>, ready: bool) -> fmt::Result {
    f.debug_struct("AsyncResult")
        .field("ready", &ready)
        .finish_non_exhaustive()
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>) -> Self {
        Self { slot }
    }

    /// Whether the result is there (Python's `ready()`).
    pub fn ready(&self) -> bool {
        lock(&self.slot.st).is_some()
    }

    /// `None` while not ready, then whether the work succeeded (Python's
    /// `successful()`, which raises instead of returning `None`).
    pub fn successful(&self) -> Option<bool> {
        lock(&self.slot.st).as_ref().map(Result::is_ok)
    }

    /// Waits until the result is there.
    pub fn wait(&self) {
        let mut st = lock(&self.slot.st);
        while st.is_none() {
            st = mproc_shm::local::wait(&self.slot.cv, st);
        }
    }

    /// Waits at most `timeout`; returns whether the result is there.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.wait_deadline(d),
            None => {
                self.wait();
                true
            }
        }
    }

    /// Waits until `deadline`; returns whether the result is there.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        let mut st = lock(&self.slot.st);
        while st.is_none() {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = mproc_shm::local::wait_for(&self.slot.cv, st, deadline - now);
        }
        true
    }

    /// Waits for and returns the value (Python's `get()`).
    ///
    /// # Errors
    /// [`PoolError::Task`] with the task's error (a panic, a lost worker,
    /// cancellation).
    pub fn get(self) -> Result<T, PoolError> {
        self.wait();
        self.take()
    }

    /// Returns the value if it is there, without waiting.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`] (handing `self` back) if not ready;
    /// [`GetTimeoutError::Failed`] if the work failed.
    pub fn try_get(self) -> Result<T, GetTimeoutError<T>> {
        self.get_deadline(Instant::now())
    }

    /// Waits at most `timeout` for the value (Python's `get(timeout)`).
    ///
    /// # Errors
    /// As [`AsyncResult::try_get`].
    pub fn get_timeout(self, timeout: Duration) -> Result<T, GetTimeoutError<T>> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.get_deadline(d),
            None => self.get().map_err(GetTimeoutError::Failed),
        }
    }

    /// Waits until `deadline` for the value.
    ///
    /// # Errors
    /// As [`AsyncResult::try_get`].
    pub fn get_deadline(self, deadline: Instant) -> Result<T, GetTimeoutError<T>> {
        if self.wait_deadline(deadline) {
            self.take().map_err(GetTimeoutError::Failed)
        } else {
            Err(GetTimeoutError::Timeout(self))
        }
    }

    fn take(self) -> Result<T, PoolError> {
        lock(&self.slot.st).take().unwrap_or(Err(PoolError::Task {
            index: 0,
            error: TaskError::Cancelled,
        }))
    }
}

/// Why [`AsyncResult::get_timeout`] returned without a value.
pub enum GetTimeoutError<T> {
    /// Not ready in time: the result is handed back, still usable.
    Timeout(AsyncResult<T>),
    /// The work failed.
    Failed(PoolError),
}

impl<T> GetTimeoutError<T> {
    /// Whether it timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

impl<T> fmt::Debug for GetTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("Timeout(..)"),
            Self::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<T> fmt::Display for GetTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(_) => f.write_str("timed out waiting for the result"),
            Self::Failed(_) => f.write_str("the work failed"),
        }
    }
}

impl<T> std::error::Error for GetTimeoutError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Failed(e) => Some(e),
            Self::Timeout(_) => None,
        }
    }
}

/// A callback run (in the pool's result thread) when a result is ready.
pub(crate) type Callback<T> = Box<dyn FnOnce(Result<&T, &PoolError>) + Send>;

/// An `apply_async` job: one item.
pub(crate) struct ApplyJob<R> {
    pub(crate) slot: Arc<Slot<R>>,
    pub(crate) callback: Mutex<Option<Callback<R>>>,
    /// [`decode`] for the pool's codec.
    pub(crate) decode: DecodeFn<R>,
}

impl<R: Send> ApplyJob<R> {
    fn finish(&self, r: Result<R, PoolError>) {
        if let Some(cb) = lock(&self.callback).take() {
            // A panicking callback must not take the result thread down.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(r.as_ref())));
        }
        self.slot.set(r);
    }
}

impl<R: Send> Sink for ApplyJob<R> {
    fn deliver(&self, _first: usize, count: usize, out: &TaskOut, bytes: &[u8], fds: Vec<OwnedFd>) {
        let r = decode_one(self.decode, count, out, bytes, fds)
            .map_err(|error| PoolError::Task { index: 0, error });
        self.finish(r);
    }

    fn fail(&self, _first: usize, _count: usize, err: TaskError) {
        self.finish(Err(PoolError::Task {
            index: 0,
            error: err,
        }));
    }
}
