//! Errors of mproc-sync: one type per operation.

use std::error::Error;
use std::fmt;

use mproc_shm::SegmentError;

/// Why a primitive could not be created.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError {
    /// An argument is out of range (a barrier of zero parties, a semaphore
    /// value above the maximum).
    InvalidArgument(&'static str),
    /// The shared memory segment could not be made.
    Segment(SegmentError),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Self::Segment(_) => {
                f.write_str("failed to create the shared memory of a synchronisation primitive")
            }
        }
    }
}

impl Error for CreateError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Segment(e) => Some(e),
            Self::InvalidArgument(_) => None,
        }
    }
}

impl From<SegmentError> for CreateError {
    fn from(e: SegmentError) -> Self {
        Self::Segment(e)
    }
}

/// Why a segment could not be opened as a primitive (received from another
/// process, or passed to a `from_segment` constructor).
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The segment holds something else, or its header is corrupt.
    Segment(SegmentError),
    /// A parameter recorded in the header is impossible.
    Corrupt(&'static str),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Segment(SegmentError::Layout(l)) => {
                write!(
                    f,
                    "segment is not the expected synchronisation primitive: {l}"
                )
            }
            Self::Segment(e) => write!(
                f,
                "segment is not the expected synchronisation primitive: {e}"
            ),
            Self::Corrupt(what) => write!(f, "synchronisation primitive is corrupt: {what}"),
        }
    }
}

impl Error for OpenError {}

impl From<SegmentError> for OpenError {
    fn from(e: SegmentError) -> Self {
        Self::Segment(e)
    }
}

/// The error of a blocking acquisition (`lock`, `acquire`): the previous
/// holder died while holding it.
///
/// The guard is handed over anyway (like std's `PoisonError`): the caller
/// holds the lock and should repair the data it protects.
pub enum LockError<G> {
    /// The previous holder process died while holding it; the guard inside
    /// holds the lock now.
    OwnerDied(G),
}

impl<G> LockError<G> {
    /// The guard: the lock is held.
    pub fn into_inner(self) -> G {
        match self {
            Self::OwnerDied(g) => g,
        }
    }

    /// A reference to the guard.
    pub fn get_ref(&self) -> &G {
        match self {
            Self::OwnerDied(g) => g,
        }
    }
}

/// The error of a non-blocking acquisition (`try_lock`, `try_acquire`).
pub enum TryLockError<G> {
    /// Someone else holds it.
    WouldBlock,
    /// The previous holder died while holding it; the guard inside holds it now.
    OwnerDied(G),
}

impl<G> TryLockError<G> {
    /// The guard, if the lock was taken (over from a dead holder).
    pub fn into_inner(self) -> Option<G> {
        match self {
            Self::OwnerDied(g) => Some(g),
            Self::WouldBlock => None,
        }
    }

    /// Whether this is [`TryLockError::OwnerDied`].
    pub fn is_owner_died(&self) -> bool {
        matches!(self, Self::OwnerDied(_))
    }
}

impl<G> From<LockError<G>> for TryLockError<G> {
    fn from(e: LockError<G>) -> Self {
        Self::OwnerDied(e.into_inner())
    }
}

/// The error of a bounded acquisition (`lock_timeout`, `acquire_deadline`, …).
pub enum LockTimeoutError<G> {
    /// The time ran out before it could be taken.
    Timeout,
    /// The previous holder died while holding it; the guard inside holds it now.
    OwnerDied(G),
}

impl<G> LockTimeoutError<G> {
    /// The guard, if the lock was taken (over from a dead holder).
    pub fn into_inner(self) -> Option<G> {
        match self {
            Self::OwnerDied(g) => Some(g),
            Self::Timeout => None,
        }
    }

    /// Whether this is [`LockTimeoutError::OwnerDied`].
    pub fn is_owner_died(&self) -> bool {
        matches!(self, Self::OwnerDied(_))
    }

    /// Whether this is [`LockTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

impl<G> From<LockError<G>> for LockTimeoutError<G> {
    fn from(e: LockError<G>) -> Self {
        Self::OwnerDied(e.into_inner())
    }
}

const OWNER_DIED: &str = "the previous holder died while holding it";

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerDied(..)")
    }
}
impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(OWNER_DIED)
    }
}
impl<G> Error for LockError<G> {}

impl<G> fmt::Debug for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("WouldBlock"),
            Self::OwnerDied(_) => f.write_str("OwnerDied(..)"),
        }
    }
}
impl<G> fmt::Display for TryLockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WouldBlock => f.write_str("it is held by someone else"),
            Self::OwnerDied(_) => f.write_str(OWNER_DIED),
        }
    }
}
impl<G> Error for TryLockError<G> {}

impl<G> fmt::Debug for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("Timeout"),
            Self::OwnerDied(_) => f.write_str("OwnerDied(..)"),
        }
    }
}
impl<G> fmt::Display for LockTimeoutError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out waiting for it"),
            Self::OwnerDied(_) => f.write_str(OWNER_DIED),
        }
    }
}
impl<G> Error for LockTimeoutError<G> {}

/// Releasing a `Lock` that is not locked, or a `BoundedSemaphore` (or a
/// `Semaphore` at its maximum) past its bound.
///
/// CPython: `ValueError("semaphore or lock released too many times")`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverRelease;

impl fmt::Display for OverRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("semaphore or lock released too many times")
    }
}
impl Error for OverRelease {}

/// An `RLock` (or a `Condition`'s lock) used by a thread that does not own it.
///
/// CPython: `AssertionError("attempt to release recursive lock not owned by
/// thread")`, or for a Condition "must acquire() condition before using wait()".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOwner;

impl fmt::Display for NotOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the lock is not owned by this thread")
    }
}
impl Error for NotOwner {}

/// Why `Condition::wait` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitError {
    /// The calling thread does not hold the condition's lock.
    NotOwner,
    /// The wait ended (`notified` says whether by a notification) and the
    /// lock was re-acquired, but its previous holder had died holding it:
    /// the protected data may be inconsistent. The lock is held again.
    OwnerDied {
        /// Whether the waiter was notified (rather than timed out).
        notified: bool,
    },
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOwner => f.write_str("must hold the condition's lock before using wait"),
            Self::OwnerDied { .. } => f.write_str(
                "re-acquired the condition's lock after its previous holder died holding it",
            ),
        }
    }
}
impl Error for WaitError {}

impl From<NotOwner> for WaitError {
    fn from(_: NotOwner) -> Self {
        Self::NotOwner
    }
}

/// The barrier is broken: aborted, reset while waiting, timed out, its action
/// panicked, or a party died.
///
/// CPython: `threading.BrokenBarrierError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokenBarrier;

impl fmt::Display for BrokenBarrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("barrier is broken")
    }
}
impl Error for BrokenBarrier {}
