//! Errors of mproc-shm.

use std::error::Error;
use std::fmt;
use std::io;

/// Why a segment could not be created, opened or accessed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SegmentError {
    /// A size of zero was asked for.
    ZeroSize,
    /// The size is above [`MAX_SEGMENT_SIZE`](crate::MAX_SEGMENT_SIZE).
    TooLarge {
        /// The size asked for or found.
        size: u64,
    },
    /// The name is empty, too long or contains `/` or NUL.
    InvalidName(String),
    /// A segment of that name exists already.
    AlreadyExists(String),
    /// No segment has that name.
    NotFound(String),
    /// The segment is smaller than its sender or header says.
    Truncated {
        /// The size that was expected.
        expected: u64,
        /// The size that was found.
        found: u64,
    },
    /// A byte range lies outside the segment.
    OutOfBounds {
        /// Start of the range.
        offset: usize,
        /// Length of the range.
        len: usize,
        /// Size of the segment.
        size: usize,
    },
    /// The segment's header does not describe what was expected.
    Layout(LayoutError),
    /// The operating system refused.
    Io(io::Error),
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroSize => f.write_str("a shared memory segment cannot have size zero"),
            Self::TooLarge { size } => write!(f, "shared memory segment size {size} is too large"),
            Self::InvalidName(n) => write!(f, "invalid shared memory segment name {n:?}"),
            Self::AlreadyExists(n) => write!(f, "shared memory segment {n:?} already exists"),
            Self::NotFound(n) => write!(f, "no shared memory segment named {n:?}"),
            Self::Truncated { expected, found } => {
                write!(
                    f,
                    "shared memory segment is truncated: expected {expected} bytes, found {found}"
                )
            }
            Self::OutOfBounds { offset, len, size } => write!(
                f,
                "range of {len} bytes at offset {offset} is outside the segment of {size} bytes"
            ),
            Self::Layout(_) => f.write_str("shared memory segment has an unexpected layout"),
            Self::Io(_) => f.write_str("shared memory operation failed"),
        }
    }
}

impl Error for SegmentError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            Self::Layout(e) => Some(e),
            _ => None,
        }
    }
}

impl From<LayoutError> for SegmentError {
    fn from(e: LayoutError) -> Self {
        Self::Layout(e)
    }
}

impl From<SegmentError> for io::Error {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Io(e) => e,
            SegmentError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, e),
            SegmentError::AlreadyExists(_) => io::Error::new(io::ErrorKind::AlreadyExists, e),
            other => io::Error::new(io::ErrorKind::InvalidInput, other),
        }
    }
}

/// How a segment's header disagreed with what the opener expected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LayoutError {
    /// The segment is too small to hold a header.
    TooSmall {
        /// The size found.
        size: usize,
    },
    /// The magic number is not mproc's: a foreign or uninitialised segment.
    BadMagic(u64),
    /// The layout version is not the one this build understands.
    Version {
        /// The version this build writes.
        expected: u32,
        /// The version found.
        found: u32,
    },
    /// The segment holds a different kind of object (a lock, an array, …).
    Kind {
        /// The kind expected.
        expected: u32,
        /// The kind found.
        found: u32,
    },
    /// The segment holds a different element type.
    Fingerprint {
        /// The fingerprint expected.
        expected: u64,
        /// The fingerprint found.
        found: u64,
    },
    /// The size recorded in the header disagrees with the segment.
    Size {
        /// The size the header records.
        recorded: u64,
        /// The size of the mapping.
        actual: u64,
    },
    /// A length or offset recorded in the header is impossible.
    Corrupt(&'static str),
    /// The element type has size zero: there is nothing to share.
    ZeroSizedElement,
    /// The element type needs an alignment above the page size, which a
    /// mapping cannot guarantee.
    Alignment {
        /// The alignment of the element type.
        align: usize,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooSmall { size } => write!(
                f,
                "segment of {size} bytes is too small for an mproc header"
            ),
            Self::BadMagic(m) => write!(f, "segment is not an mproc object (magic {m:#018x})"),
            Self::Version { expected, found } => {
                write!(
                    f,
                    "segment layout version {found} is not the supported version {expected}"
                )
            }
            Self::Kind { expected, found } => {
                write!(
                    f,
                    "segment holds object kind {found:#x}, expected {expected:#x}"
                )
            }
            Self::Fingerprint { expected, found } => {
                write!(
                    f,
                    "segment holds element type {found:#018x}, expected {expected:#018x}"
                )
            }
            Self::Size { recorded, actual } => {
                write!(
                    f,
                    "segment header records {recorded} bytes but the segment has {actual}"
                )
            }
            Self::Corrupt(what) => write!(f, "segment header is corrupt: {what}"),
            Self::ZeroSizedElement => {
                f.write_str("a shared value or array needs an element type of non-zero size")
            }
            Self::Alignment { align } => {
                write!(
                    f,
                    "element alignment {align} is above the page size of a shared mapping"
                )
            }
        }
    }
}

impl Error for LayoutError {}

/// A lock whose previous holder died while holding it was acquired.
///
/// The error carries the guard: the lock *is* held, and the data it protects
/// is as the dead holder left it, perhaps half-updated. Repair or inspect it
/// through [`LockError::into_inner`], as with std's `PoisonError`.
pub enum LockError<G> {
    /// The previous holder died while holding the lock.
    OwnerDied(G),
}

impl<G> LockError<G> {
    /// The guard of the now-held lock.
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

    /// Always `true`: the only way `lock` fails.
    pub fn is_owner_died(&self) -> bool {
        true
    }
}

impl<G> MapGuard<G> for LockError<G> {
    type Map<H> = LockError<H>;

    fn map_guard<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        LockError::OwnerDied(f(self.into_inner()))
    }
}

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

/// A lock error that may carry the guard of the lock it acquired:
/// [`LockError`], [`TryLockError`] and [`LockTimeoutError`].
///
/// A locked type whose guard wraps the guard of another lock (a condition
/// over a lock, say) turns that lock's errors into its own with it.
///
/// # Examples
///
/// ```
/// use mproc_shm::{MapGuard, TryLockError};
///
/// let died: TryLockError<u8> = TryLockError::OwnerDied(7);
/// assert_eq!(died.map_guard(|g| u32::from(g) * 2).into_inner(), Some(14));
/// let busy: TryLockError<u8> = TryLockError::WouldBlock;
/// assert!(busy.map_guard(u32::from).is_would_block());
/// ```
pub trait MapGuard<G> {
    /// The same error over guards of type `H`.
    type Map<H>;

    /// The same error, with the guard it carries (if any) passed through
    /// `f`.
    fn map_guard<H>(self, f: impl FnOnce(G) -> H) -> Self::Map<H>;
}

/// What every lock error says for [`LockError::OwnerDied`].
const OWNER_DIED: &str = "the previous holder of the lock died while holding it";

/// Why a `try_lock` did not give a clean guard.
pub enum TryLockError<G> {
    /// Another holder has the lock right now.
    WouldBlock,
    /// The lock was acquired, but its previous holder died while holding it.
    OwnerDied(G),
}

/// What [`TryLockError`] and [`LockTimeoutError`] share: a variant
/// `$other` for the lock not taken (`$is_other` asks for it, `$other_msg`
/// says it) beside `OwnerDied(G)`, with the accessors, `MapGuard`,
/// `From<LockError>`, `Debug`, `Display` and `Error`.
macro_rules! lock_not_clean {
    ($ty:ident, $other:ident, $is_other:ident, $is_other_doc:literal, $other_msg:literal) => {
        impl<G> $ty<G> {
            #[doc = $is_other_doc]
            pub fn $is_other(&self) -> bool {
                matches!(self, Self::$other)
            }

            /// Whether the lock was acquired from a dead holder.
            pub fn is_owner_died(&self) -> bool {
                matches!(self, Self::OwnerDied(_))
            }

            /// The guard, if the lock was acquired from a dead holder.
            pub fn into_inner(self) -> Option<G> {
                match self {
                    Self::$other => None,
                    Self::OwnerDied(g) => Some(g),
                }
            }
        }

        impl<G> MapGuard<G> for $ty<G> {
            type Map<H> = $ty<H>;

            fn map_guard<H>(self, f: impl FnOnce(G) -> H) -> $ty<H> {
                match self {
                    Self::$other => $ty::$other,
                    Self::OwnerDied(g) => $ty::OwnerDied(f(g)),
                }
            }
        }

        impl<G> From<LockError<G>> for $ty<G> {
            fn from(e: LockError<G>) -> Self {
                Self::OwnerDied(e.into_inner())
            }
        }

        impl<G> fmt::Debug for $ty<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    Self::$other => stringify!($other),
                    Self::OwnerDied(_) => "OwnerDied(..)",
                })
            }
        }

        impl<G> fmt::Display for $ty<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    Self::$other => $other_msg,
                    Self::OwnerDied(_) => OWNER_DIED,
                })
            }
        }

        impl<G> Error for $ty<G> {}
    };
}

lock_not_clean!(
    TryLockError,
    WouldBlock,
    is_would_block,
    "Whether the lock was busy.",
    "the lock is held by someone else"
);

/// Why a `lock_timeout` or `lock_deadline` did not give a clean guard.
pub enum LockTimeoutError<G> {
    /// The lock stayed busy until the deadline.
    Timeout,
    /// The lock was acquired, but its previous holder died while holding it.
    OwnerDied(G),
}

lock_not_clean!(
    LockTimeoutError,
    Timeout,
    is_timeout,
    "Whether the wait timed out.",
    "timed out waiting for the lock"
);

/// An index or element range outside a shared array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeError {
    /// The first index of the range.
    pub start: usize,
    /// The number of elements in the range.
    pub len: usize,
    /// The length of the array.
    pub array_len: usize,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 1 {
            write!(
                f,
                "index {} is out of range for an array of length {}",
                self.start, self.array_len
            )
        } else {
            write!(
                f,
                "range of {} elements at index {} is out of range for an array of length {}",
                self.len, self.start, self.array_len
            )
        }
    }
}

impl Error for RangeError {}
