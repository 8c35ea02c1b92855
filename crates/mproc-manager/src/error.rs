//! The errors of manager operations.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use crate::proto::{Kind, RemoteError, Reply};

/// Why a proxy call failed: the error every manager operation can return.
///
/// The manager's errors come in three layers, as mproc-queue's do:
///
/// * [`ConnectError`]: starting a server or connecting to one
///   ([`Manager::start`](crate::Manager::start),
///   [`Manager::connect`](crate::Manager::connect)).
/// * `Error` (this type): a call through a proxy. Every call can fail the
///   same basic ways (the server is gone, a value does not encode), and
///   each object's own refusals (a missing key, an index out of range, a
///   release by a non-owner) come back here too, typed; the variants a
///   method can return are listed in its docs.
/// * Per-operation errors where an operation has an outcome of its own:
///   the four lock forms ([`LockError`], [`TryLockError`],
///   [`LockTimeoutError`]: owner death and busy locks, with the guard),
///   the queue's `try_`/`_timeout` forms ([`TryGetError`],
///   [`GetTimeoutError`], [`TryPutError`], [`PutTimeoutError`], and
///   [`PutError`], which hand the item back) and
///   [`JoinableQueue::join_timeout`](crate::JoinableQueue::join_timeout)
///   ([`JoinTimeoutError`]). Each has a `Call(Error)` variant for the
///   failures above and `From<Error>`, so `?` works inside them, and each
///   implements `std::error::Error`, so `?` into `Box<dyn Error>` works.
///
/// CPython mapping: [`Error::KeyMissing`] is `KeyError`,
/// [`Error::IndexOutOfRange`] is `IndexError`, [`Error::ValueMissing`] is
/// `ValueError`, [`Error::Remote`] is `RemoteError`, [`Error::Auth`] is
/// `AuthenticationError`; `queue.Empty` and `queue.Full` are
/// [`TryGetError::Empty`] and [`TryPutError::Full`].
#[derive(Debug)]
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
    /// A value could not be encoded by the proxy's codec. Its `Display` is
    /// the codec's reason: for postcard, the reason the value's `Serialize`
    /// impl gave to `serde::ser::Error::custom`, when it gave one.
    Encode(mproc_shm::codec::CodecError),
    /// A value from the server did not decode as the proxy's type (with the
    /// proxy's codec).
    Decode(mproc_shm::codec::CodecError),
    /// A server-side update function failed before running (the stored value
    /// or the argument did not decode as its types).
    Update(String),
    /// A server-side update function panicked (the value is unchanged).
    Panicked(String),
    /// Any other failure inside the server (CPython's `RemoteError`).
    Remote(String),
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
            // Outcomes of waiting operations, which turn them into their
            // own errors before this; anywhere else they are a server bug.
            e @ (RemoteError::Empty | RemoteError::Full | RemoteError::Timeout) => {
                Self::Remote(format!("unexpected outcome {e:?}"))
            }
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
            Self::Io(_) => f.write_str("manager i/o failed"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConnectError> for Error {
    /// A failed (re)connection as a call's failure: a server that could
    /// not be started or reached is [`Error::Disconnected`] or
    /// [`Error::Io`] (with the [`mproc_process::StartError`] as the
    /// `io::Error`'s payload), a refused authkey [`Error::Auth`].
    fn from(e: ConnectError) -> Self {
        match e {
            ConnectError::Disconnected(e) => Self::Disconnected(e),
            ConnectError::Auth(e) => Self::Auth(e),
            ConnectError::Io(e) => Self::Io(e),
            ConnectError::Start(e) => Self::Io(io::Error::other(e)),
            ConnectError::Protocol(m) => Self::Remote(m),
        }
    }
}

/// Why a manager could not be started or connected to
/// ([`ManagerBuilder::start`](crate::ManagerBuilder::start),
/// [`ManagerBuilder::connect`](crate::ManagerBuilder::connect),
/// [`ManagerBuilder::serve`](crate::ManagerBuilder::serve)).
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server process could not be started.
    Start(mproc_process::StartError),
    /// Nothing answers at the address, or the server went away during the
    /// handshake.
    Disconnected(io::Error),
    /// The server refused the authkey (or the client refused the server's):
    /// CPython's `AuthenticationError`.
    Auth(mproc_pipe::AuthError),
    /// The server answered the hello with something else than a manager of
    /// this protocol version would.
    Protocol(String),
    /// A local operating-system error (binding the address, the authkey's
    /// segment, the pipe to the server process), or the server reported
    /// that it could not bind its address (the message says why).
    Io(io::Error),
}

impl ConnectError {
    /// Whether the server is gone or unreachable.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected(_))
    }
}

impl From<Error> for ConnectError {
    /// The first call of a connection (its hello, a ping) as a connect
    /// failure.
    fn from(e: Error) -> Self {
        match e {
            Error::Disconnected(e) => Self::Disconnected(e),
            Error::Auth(e) => Self::Auth(e),
            Error::Io(e) => Self::Io(e),
            other => Self::Protocol(other.to_string()),
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Start(_) => f.write_str("failed to start the manager server"),
            Self::Disconnected(e) => {
                write!(f, "the manager server is disconnected or unreachable: {e}")
            }
            Self::Auth(e) => write!(f, "manager authentication failed: {e}"),
            Self::Protocol(m) => write!(f, "the manager server's answer is not understood: {m}"),
            Self::Io(_) => f.write_str("manager i/o failed"),
        }
    }
}

impl StdError for ConnectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Start(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The lock errors: mproc-sync's shapes (`mproc_sync::LockError`,
/// `TryLockError`, `LockTimeoutError`), each with one more variant,
/// `Call(Error)`, for a call that failed (the lock is then not held).
macro_rules! lock_error {
    (
        $(#[$m:meta])* $name:ident {
            $($(#[$vm:meta])* $v:ident => ($msg:literal, $is:ident),)*
        }
    ) => {
        $(#[$m])*
        pub enum $name<G> {
            $($(#[$vm])* $v,)*
            /// The lock was acquired, but its previous holder's process
            /// disconnected (died) while holding it: the state it protects
            /// may be half-updated. The lock is held: here is its guard.
            OwnerDied(G),
            /// The call failed (the lock is not held).
            Call(Error),
        }

        impl<G> $name<G> {
            /// Whether the lock was acquired from a holder that died.
            pub fn is_owner_died(&self) -> bool {
                matches!(self, Self::OwnerDied(_))
            }

            $(
                #[doc = concat!("Whether this is [`", stringify!($name), "::", stringify!($v), "`].")]
                pub fn $is(&self) -> bool {
                    matches!(self, Self::$v)
                }
            )*

            /// The guard, if the lock was acquired from a holder that died.
            pub fn into_inner(self) -> Option<G> {
                match self {
                    Self::OwnerDied(g) => Some(g),
                    _ => None,
                }
            }
        }

        impl<G> From<Error> for $name<G> {
            fn from(e: Error) -> Self {
                Self::Call(e)
            }
        }

        impl<G> fmt::Debug for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$v => f.write_str(stringify!($v)),)*
                    Self::OwnerDied(_) => f.write_str("OwnerDied(..)"),
                    Self::Call(e) => f.debug_tuple("Call").field(e).finish(),
                }
            }
        }

        impl<G> fmt::Display for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$v => f.write_str($msg),)*
                    Self::OwnerDied(_) => {
                        f.write_str("the previous holder of the lock died while holding it")
                    }
                    Self::Call(e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl<G> StdError for $name<G> {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                match self {
                    Self::Call(e) => e.source(),
                    _ => None,
                }
            }
        }
    };
}

lock_error! {
    /// Why `lock` (or a semaphore's `acquire`) did not give a clean guard.
    LockError {}
}

lock_error! {
    /// Why `try_lock` (or a semaphore's `try_acquire`) did not give a clean
    /// guard.
    TryLockError {
        /// Someone else holds the lock right now.
        WouldBlock => ("the lock is held by someone else", is_would_block),
    }
}

lock_error! {
    /// Why `lock_timeout`/`lock_deadline` (or a semaphore's
    /// `acquire_timeout`/`acquire_deadline`) did not give a clean guard.
    LockTimeoutError {
        /// The lock stayed held until the deadline.
        Timeout => ("timed out waiting for the lock", is_timeout),
    }
}

impl<G> From<LockError<G>> for TryLockError<G> {
    fn from(e: LockError<G>) -> Self {
        match e {
            LockError::OwnerDied(g) => Self::OwnerDied(g),
            LockError::Call(e) => Self::Call(e),
        }
    }
}

impl<G> From<LockError<G>> for LockTimeoutError<G> {
    fn from(e: LockError<G>) -> Self {
        match e {
            LockError::OwnerDied(g) => Self::OwnerDied(g),
            LockError::Call(e) => Self::Call(e),
        }
    }
}

/// A failed [`Queue::put`](crate::Queue::put): the item, and why.
pub struct PutError<T> {
    /// The item that was not put.
    pub item: T,
    /// Why (the server is gone, the item did not encode, …).
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

/// The errors of a queue's `put` forms that may give up: the item back, and
/// why (mproc-queue's shapes, with `Call` for a failed call).
macro_rules! put_error {
    ($(#[$m:meta])* $name:ident { $(#[$vm:meta])* $v:ident => $msg:literal }) => {
        $(#[$m])*
        pub enum $name<T> {
            $(#[$vm])*
            $v(T),
            /// The call failed (the server is gone, the item did not
            /// encode, …); the item and the error.
            Call(PutError<T>),
        }

        impl<T> $name<T> {
            /// The item that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    Self::$v(t) => t,
                    Self::Call(e) => e.item,
                }
            }
        }

        impl<T> From<PutError<T>> for $name<T> {
            fn from(e: PutError<T>) -> Self {
                Self::Call(e)
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::$v(_) => f.write_str(concat!(stringify!($v), "(..)")),
                    Self::Call(e) => f.debug_tuple("Call").field(e).finish(),
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::$v(_) => f.write_str($msg),
                    Self::Call(e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl<T> StdError for $name<T> {}
    };
}

put_error! {
    /// Why [`Queue::try_put`](crate::Queue::try_put) failed; the item is
    /// handed back.
    TryPutError {
        /// The queue is full (CPython's `queue.Full`).
        Full => "the queue is full"
    }
}

put_error! {
    /// Why [`Queue::put_timeout`](crate::Queue::put_timeout) or
    /// `put_deadline` failed; the item is handed back.
    PutTimeoutError {
        /// The queue stayed full until the deadline (CPython's `queue.Full`).
        Timeout => "timed out waiting for room in the queue"
    }
}

/// The errors of the waiting operations without a payload: an outcome of
/// their own, or a failed call.
macro_rules! wait_error {
    ($(#[$m:meta])* $name:ident { $(#[$vm:meta])* $v:ident => $msg:literal }) => {
        $(#[$m])*
        #[derive(Debug)]
        pub enum $name {
            $(#[$vm])*
            $v,
            /// The call failed (the server is gone, the item did not
            /// decode, …).
            Call(Error),
        }

        mproc_shm::own_or_inner_error!($name { $v => $msg, Call(Error) });
    };
}

wait_error! {
    /// Why [`Queue::try_get`](crate::Queue::try_get) failed.
    TryGetError {
        /// The queue is empty (CPython's `queue.Empty`).
        Empty => "the queue is empty"
    }
}

wait_error! {
    /// Why [`Queue::get_timeout`](crate::Queue::get_timeout) or
    /// `get_deadline` failed.
    GetTimeoutError {
        /// The queue stayed empty until the deadline (CPython's `queue.Empty`).
        Timeout => "timed out waiting for an item"
    }
}

wait_error! {
    /// Why [`JoinableQueue::join_timeout`](crate::JoinableQueue::join_timeout)
    /// or `join_deadline` failed.
    JoinTimeoutError {
        /// Tasks were still unfinished at the deadline.
        Timeout => "timed out waiting for every task to be done"
    }
}

/// The error for a reply the server should not have given to this call.
pub(crate) fn unexpected(r: Reply) -> Error {
    Error::Remote(format!(
        "unexpected reply from the server: {}",
        reply_name(&r)
    ))
}

fn reply_name(r: &Reply) -> &'static str {
    match r {
        Reply::Hello { .. } => "hello",
        Reply::Unit => "unit",
        Reply::Bool(_) => "bool",
        Reply::Count(_) => "count",
        Reply::Bytes(_) => "bytes",
        Reply::MaybeBytes(_) => "optional bytes",
        Reply::List(_) => "list",
        Reply::MaybeList(_) => "list of options",
        Reply::Pairs(_) => "pairs",
        Reply::Page { .. } => "page",
        Reply::MaybePair(_) => "optional pair",
        Reply::Names(_) => "names",
        Reply::Object(..) => "object",
        Reply::Token(_) => "token",
        Reply::Acquired(_) => "acquired",
        Reply::Held(..) => "held",
        Reply::Barrier(..) => "barrier",
        Reply::Batch(_) => "batch",
        Reply::Err(_) => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gone() -> io::Error {
        io::Error::new(io::ErrorKind::NotConnected, "gone")
    }

    #[test]
    fn connect_and_call_errors_convert_both_ways_keeping_the_kind() {
        assert!(Error::from(ConnectError::Disconnected(gone())).is_disconnected());
        assert!(ConnectError::from(Error::Disconnected(gone())).is_disconnected());
        assert!(matches!(
            Error::from(ConnectError::Protocol("v9".into())),
            Error::Remote(m) if m == "v9"
        ));
        assert!(matches!(
            ConnectError::from(Error::KeyMissing),
            ConnectError::Protocol(m) if m == "key not found"
        ));
    }

    #[test]
    fn outcomes_of_waits_are_not_call_errors() {
        // A server that answered `Empty` to a call that cannot wait is a bug
        // of the server: it shows as one, not as a typed outcome.
        for e in [RemoteError::Empty, RemoteError::Full, RemoteError::Timeout] {
            assert!(matches!(Error::from_remote(e), Error::Remote(_)));
        }
    }

    #[test]
    fn lock_errors_widen_and_hand_back_the_guard() {
        let died: TryLockError<u8> = LockError::OwnerDied(7).into();
        assert!(died.is_owner_died() && !died.is_would_block());
        assert_eq!(died.into_inner(), Some(7));
        let call: LockTimeoutError<u8> = LockError::Call(Error::KeyMissing).into();
        assert!(matches!(call, LockTimeoutError::Call(Error::KeyMissing)));
        assert_eq!(call.into_inner(), None);
        assert!(LockTimeoutError::<u8>::Timeout.is_timeout());
        assert_eq!(
            TryLockError::<u8>::WouldBlock.to_string(),
            "the lock is held by someone else"
        );
    }

    #[test]
    fn failed_puts_hand_the_item_back() {
        assert_eq!(TryPutError::Full(3).into_inner(), 3);
        let e = PutTimeoutError::from(PutError {
            item: 4,
            error: Error::Disconnected(gone()),
        });
        assert!(matches!(&e, PutTimeoutError::Call(p) if p.error.is_disconnected()));
        assert_eq!(e.into_inner(), 4);
        assert!(matches!(
            TryGetError::from(Error::KeyMissing),
            TryGetError::Call(Error::KeyMissing)
        ));
        assert_eq!(
            JoinTimeoutError::Timeout.to_string(),
            "timed out waiting for every task to be done"
        );
    }
}
