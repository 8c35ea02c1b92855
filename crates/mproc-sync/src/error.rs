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

/// The lock-acquisition errors are mproc-shm's, so that `Value`, `Array` and
/// every mproc-sync primitive report a dead holder with the same types.
pub use mproc_shm::{LockError, LockTimeoutError, TryLockError};

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
