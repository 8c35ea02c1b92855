//! The errors of manager operations.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::proto::{Kind, RemoteError};

/// Why a manager operation failed.
///
/// Every proxy call can fail the same basic ways (the server is gone, the
/// request could not be encoded), so proxies share this one type instead of
/// one enum per method; the variants a method can return are listed in its
/// docs. A failed [`Queue::put`](crate::Queue::put) hands its item back
/// through [`PutError`].
///
/// CPython mapping: [`Error::KeyMissing`] is `KeyError`,
/// [`Error::IndexOutOfRange`] is `IndexError`, [`Error::ValueMissing`] is
/// `ValueError`, [`Error::Remote`] is `RemoteError`, [`Error::Auth`] is
/// `AuthenticationError`.
#[non_exhaustive]
pub enum Error {
    /// The server is dead, unreachable, or did not answer within the call
    /// timeout ([`ManagerBuilder::call_timeout`](crate::ManagerBuilder::call_timeout)).
    /// The connection used is discarded; the next call reconnects.
    Disconnected(io::Error),
    /// The server refused the authkey (or the client refused the server's).
    Auth(mproc_pipe::AuthError),
    /// The key is not in the dict (`KeyError`).
    KeyMissing,
    /// The index is outside the list (`IndexError`).
    IndexOutOfRange {
        /// The index asked for.
        index: i64,
        /// The list's length then.
        len: u64,
    },
    /// The value is not in the list (`ValueError` of `list.remove`/`index`).
    ValueMissing,
    /// The dict changed size while an iterator went through it (CPython's
    /// `RuntimeError("dictionary changed size during iteration")`).
    ChangedSize,
    /// A slice assignment of the wrong length: to an extended slice (step
    /// other than 1) of a list, or to any slice of an [`Array`](crate::Array),
    /// whose length is fixed (CPython's `ValueError`).
    SizeMismatch {
        /// The slice's length.
        expected: u64,
        /// The number of items given.
        found: u64,
    },
    /// The object is of another kind than the proxy expects (a named object
    /// looked up with the wrong proxy type).
    WrongKind {
        /// The kind the proxy is for.
        expected: Kind,
        /// The kind the object is.
        found: Kind,
    },
    /// The object id is unknown to the server (released, or another server's).
    NoSuchObject,
    /// No object is registered under this name.
    NoSuchName(String),
    /// The name is already registered.
    NameTaken(String),
    /// The queue is empty (`queue.Empty`).
    Empty,
    /// The queue is full (`queue.Full`).
    Full,
    /// A wait timed out.
    Timeout,
    /// The lock is held by someone else (an RLock or Condition released, or
    /// a Condition waited on or notified, by a non-owner).
    NotOwner,
    /// Releasing a lock that is not held (`RuntimeError("release unlocked lock")`).
    Unlocked,
    /// A bounded semaphore released more often than acquired (`ValueError`).
    OverRelease,
    /// The barrier is broken (aborted, reset, or a waiter timed out).
    BrokenBarrier,
    /// `task_done` called more often than items were put (`ValueError`).
    TooManyTaskDone,
    /// Server-side updates need the client and the server to run the same
    /// executable file; this client does not.
    ForeignExecutable,
    /// A value could not be encoded (serde/postcard). Its `Display` is the
    /// reason the value's `Serialize` impl gave to
    /// `serde::ser::Error::custom`, when it gave one.
    Encode(mproc_shm::codec_error::PostcardError),
    /// A value from the server did not decode as the proxy's type.
    Decode(postcard::Error),
    /// A server-side update function failed before running (the stored value
    /// or the argument did not decode as its types).
    Update(String),
    /// A server-side update function panicked (the value is unchanged).
    Panicked(String),
    /// Any other failure inside the server (CPython's `RemoteError`).
    Remote(String),
    /// The server could not be started.
    Start(mproc_process::StartError),
    /// A local operating-system error.
    Io(io::Error),
}

impl Error {
    /// Whether the server is gone or unreachable.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }

    /// Whether this is [`Error::KeyMissing`].
    pub fn is_key_missing(&self) -> bool {
        matches!(self, Self::KeyMissing)
    }

    /// Whether a wait timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    pub(crate) fn from_remote(e: RemoteError) -> Self {
        match e {
            RemoteError::KeyMissing => Self::KeyMissing,
            RemoteError::IndexOutOfRange { index, len } => Self::IndexOutOfRange { index, len },
            RemoteError::ValueMissing => Self::ValueMissing,
            RemoteError::WrongKind { expected, found } => Self::WrongKind { expected, found },
            RemoteError::NoSuchObject(_) => Self::NoSuchObject,
            RemoteError::NoSuchName(n) => Self::NoSuchName(n),
            RemoteError::NameTaken(n) => Self::NameTaken(n),
            RemoteError::NoSuchTransfer(t) => Self::Remote(format!(
                "the reference sent with this proxy (token {t}) was adopted already, or never existed"
            )),
            RemoteError::Empty => Self::Empty,
            RemoteError::Full => Self::Full,
            RemoteError::Timeout => Self::Timeout,
            RemoteError::NotOwner => Self::NotOwner,
            RemoteError::Unlocked => Self::Unlocked,
            RemoteError::OverRelease => Self::OverRelease,
            RemoteError::BrokenBarrier => Self::BrokenBarrier,
            RemoteError::TooManyTaskDone => Self::TooManyTaskDone,
            RemoteError::ForeignExecutable => Self::ForeignExecutable,
            RemoteError::BadFunction => {
                Self::Remote("the server found no update function at the offset sent".into())
            }
            RemoteError::Decode(m) => Self::Update(m),
            RemoteError::Panicked(m) => Self::Panicked(m),
            RemoteError::Malformed(m) => Self::Remote(format!("malformed request: {m}")),
            RemoteError::NotAllowed(m) => Self::Remote(m),
            RemoteError::ChangedSize => Self::ChangedSize,
            RemoteError::SizeMismatch { expected, found } => Self::SizeMismatch { expected, found },
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected(e) => f.debug_tuple("Disconnected").field(e).finish(),
            Self::Auth(e) => f.debug_tuple("Auth").field(e).finish(),
            Self::IndexOutOfRange { index, len } => f
                .debug_struct("IndexOutOfRange")
                .field("index", index)
                .field("len", len)
                .finish(),
            Self::WrongKind { expected, found } => f
                .debug_struct("WrongKind")
                .field("expected", expected)
                .field("found", found)
                .finish(),
            Self::SizeMismatch { expected, found } => f
                .debug_struct("SizeMismatch")
                .field("expected", expected)
                .field("found", found)
                .finish(),
            Self::NoSuchName(n) => f.debug_tuple("NoSuchName").field(n).finish(),
            Self::NameTaken(n) => f.debug_tuple("NameTaken").field(n).finish(),
            Self::Encode(e) => f.debug_tuple("Encode").field(e).finish(),
            Self::Decode(e) => f.debug_tuple("Decode").field(e).finish(),
            Self::Update(m) => f.debug_tuple("Update").field(m).finish(),
            Self::Panicked(m) => f.debug_tuple("Panicked").field(m).finish(),
            Self::Remote(m) => f.debug_tuple("Remote").field(m).finish(),
            Self::Start(e) => f.debug_tuple("Start").field(e).finish(),
            Self::Io(e) => f.debug_tuple("Io").field(e).finish(),
            other => f.write_str(other.unit_name()),
        }
    }
}

impl Error {
    fn unit_name(&self) -> &'static str {
        match self {
            Self::KeyMissing => "KeyMissing",
            Self::ValueMissing => "ValueMissing",
            Self::ChangedSize => "ChangedSize",
            Self::NoSuchObject => "NoSuchObject",
            Self::Empty => "Empty",
            Self::Full => "Full",
            Self::Timeout => "Timeout",
            Self::NotOwner => "NotOwner",
            Self::Unlocked => "Unlocked",
            Self::OverRelease => "OverRelease",
            Self::BrokenBarrier => "BrokenBarrier",
            Self::TooManyTaskDone => "TooManyTaskDone",
            Self::ForeignExecutable => "ForeignExecutable",
            _ => "Error",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Disconnected(e) => write!(f, "the manager server is disconnected or unreachable: {e}"),
            Self::Auth(e) => write!(f, "manager authentication failed: {e}"),
            Self::KeyMissing => f.write_str("key not found"),
            Self::IndexOutOfRange { index, len } => write!(f, "index {index} out of range for a list of length {len}"),
            Self::ValueMissing => f.write_str("value not in list"),
            Self::ChangedSize => f.write_str("dictionary changed size during iteration"),
            Self::SizeMismatch { expected, found } => write!(f, "attempt to assign a sequence of size {found} to a slice of size {expected}"),
            Self::WrongKind { expected, found } => write!(f, "the shared object is a {found}, not a {expected}"),
            Self::NoSuchObject => f.write_str("the manager has no such object"),
            Self::NoSuchName(n) => write!(f, "no shared object is registered as {n:?}"),
            Self::NameTaken(n) => write!(f, "a shared object is already registered as {n:?}"),
            Self::Empty => f.write_str("the queue is empty"),
            Self::Full => f.write_str("the queue is full"),
            Self::Timeout => f.write_str("timed out"),
            Self::NotOwner => f.write_str("the lock is not held by the caller"),
            Self::Unlocked => f.write_str("release unlocked lock"),
            Self::OverRelease => f.write_str("semaphore released too many times"),
            Self::BrokenBarrier => f.write_str("the barrier is broken"),
            Self::TooManyTaskDone => f.write_str("task_done() called too many times"),
            Self::ForeignExecutable => f.write_str(
                "server-side updates need the client and the manager server to run the same executable",
            ),
            Self::Encode(e) => write!(f, "failed to encode a value for the manager: {e}"),
            Self::Decode(e) => write!(f, "a value from the manager did not decode as the proxy's type: {e}"),
            Self::Update(m) => write!(f, "the server-side update failed: {m}"),
            Self::Panicked(m) => write!(f, "the server-side update panicked: {m}"),
            Self::Remote(m) => write!(f, "the manager server failed: {m}"),
            Self::Start(_) => f.write_str("failed to start the manager server"),
            Self::Io(_) => f.write_str("manager i/o failed"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Start(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A failed [`Queue::put`](crate::Queue::put): the item, and why.
pub struct PutError<T> {
    /// The item that was not put.
    pub item: T,
    /// Why ([`Error::Full`] when the queue stayed full).
    pub error: Error,
}

impl<T> PutError<T> {
    /// The item back.
    pub fn into_inner(self) -> T {
        self.item
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "put failed: {}", self.error)
    }
}

impl<T> StdError for PutError<T> {}
