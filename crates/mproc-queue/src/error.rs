//! Errors of mproc-queue: one enum per operation.

use std::error::Error;
use std::fmt;
use std::io;

use mproc_shm::SegmentError;
use mproc_shm::codec::CodecError;

/// Why a queue could not be created.
#[derive(Debug)]
#[non_exhaustive]
pub enum CreateError {
    /// The ring capacity asked for is outside the supported range.
    InvalidCapacity(usize),
    /// The maxsize asked for is larger than the queue can count.
    InvalidMaxsize(usize),
    /// The overflow log size asked for is larger than supported.
    InvalidOverflow(usize),
    /// The shared memory segment could not be made.
    Segment(SegmentError),
    /// The side channel for large messages could not be made.
    Io(io::Error),
    /// The number of leases asked for is outside the supported range (1 to 65536).
    InvalidLeases(usize),
    /// The lease item size asked for is larger than supported (1 GiB).
    InvalidItemSize(usize),
}

impl fmt::Display for CreateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCapacity(n) => write!(
                f,
                "ring capacity {n} is outside the supported range ({} to {} bytes)",
                crate::ring::MIN_CAPACITY,
                crate::ring::MAX_CAPACITY
            ),
            Self::InvalidMaxsize(n) => write!(f, "maxsize {n} is too large"),
            Self::InvalidOverflow(n) => write!(
                f,
                "overflow size {n} is larger than the supported {} bytes",
                crate::overflow::MAX_OVERFLOW
            ),
            Self::Segment(_) => f.write_str("failed to create the queue's shared memory"),
            Self::Io(_) => f.write_str("failed to create the queue's side channel"),
            Self::InvalidLeases(n) => {
                write!(f, "{n} leases is outside the supported range (1 to 65536)")
            }
            Self::InvalidItemSize(n) => {
                write!(f, "lease item size {n} is larger than the supported 1 GiB")
            }
        }
    }
}

impl Error for CreateError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Segment(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum EncodeKind {
    Handle,
    TooLarge(usize),
    Custom(Box<dyn Error + Send + Sync>),
}

/// An item could not be encoded for the queue.
#[derive(Debug)]
pub struct EncodeError(EncodeKind);

impl EncodeError {
    /// Wraps a codec's own error (for [`Codec`](crate::Codec) implementations).
    pub fn custom<E: Into<Box<dyn Error + Send + Sync>>>(e: E) -> Self {
        Self(EncodeKind::Custom(e.into()))
    }

    pub(crate) fn handle() -> Self {
        Self(EncodeKind::Handle)
    }

    pub(crate) fn too_large(n: usize) -> Self {
        Self(EncodeKind::TooLarge(n))
    }

    /// Whether the item contained an mproc handle (a queue, lock, segment,
    /// connection…), which cannot travel through shared memory.
    pub fn is_handle(&self) -> bool {
        matches!(self.0, EncodeKind::Handle)
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            EncodeKind::Handle => f.write_str(
                "the item contains an mproc handle, which cannot be sent through a queue \
                 (pass it as a process argument or over a Connection instead)",
            ),
            EncodeKind::TooLarge(n) => {
                write!(f, "an encoded item of {n} bytes is too large for a queue")
            }
            EncodeKind::Custom(e) => write!(f, "failed to encode the item: {e}"),
        }
    }
}

/// The codec's reason is part of the message, not a `source`.
impl Error for EncodeError {}

impl From<CodecError> for EncodeError {
    fn from(e: CodecError) -> Self {
        if e.is_handle() {
            Self::handle()
        } else {
            Self::custom(e)
        }
    }
}

/// An item taken from the queue could not be decoded (it is lost).
#[derive(Debug)]
pub struct DecodeError(Box<dyn Error + Send + Sync>);

impl DecodeError {
    /// Wraps a codec's own error (for [`Codec`](crate::Codec) implementations).
    pub fn custom<E: Into<Box<dyn Error + Send + Sync>>>(e: E) -> Self {
        Self(e.into())
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "failed to decode an item taken from the queue: {}",
            self.0
        )
    }
}

/// The codec's reason is part of the message, not a `source`.
impl Error for DecodeError {}

impl From<CodecError> for DecodeError {
    fn from(e: CodecError) -> Self {
        Self::custom(e)
    }
}

#[derive(Debug)]
enum BrokenKind {
    Corrupted(&'static str),
    Io(io::Error),
}

/// The queue's shared state is impossible (another process wrote over it) or
/// an operating-system call it needs failed.
#[derive(Debug)]
pub struct BrokenError(BrokenKind);

impl BrokenError {
    pub(crate) fn corrupted(what: &'static str) -> Self {
        Self(BrokenKind::Corrupted(what))
    }

    pub(crate) fn io(e: io::Error) -> Self {
        Self(BrokenKind::Io(e))
    }

    /// Whether the shared state was found corrupted (rather than an OS call failing).
    pub fn is_corrupted(&self) -> bool {
        matches!(self.0, BrokenKind::Corrupted(_))
    }
}

impl fmt::Display for BrokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            BrokenKind::Corrupted(what) => write!(f, "queue is corrupted: {what}"),
            BrokenKind::Io(_) => f.write_str("queue operation failed in the operating system"),
        }
    }
}

impl Error for BrokenError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.0 {
            BrokenKind::Io(e) => Some(e),
            BrokenKind::Corrupted(_) => None,
        }
    }
}

impl From<crate::ring::Corrupted> for BrokenError {
    fn from(c: crate::ring::Corrupted) -> Self {
        Self::corrupted(c.0)
    }
}

macro_rules! put_error {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $msg:literal,)* }) => {
        $(#[$m])*
        pub enum $name<T> {
            $($(#[$vm])* $v(T),)*
            /// The queue was closed; the item is handed back.
            Closed(T),
            /// The item could not be encoded; it is handed back.
            Encode(T, EncodeError),
            /// The queue is broken; the item is handed back.
            Broken(T, BrokenError),
        }

        impl<T> $name<T> {
            /// Returns the item that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $(Self::$v(t) => t,)*
                    Self::Closed(t) | Self::Encode(t, _) | Self::Broken(t, _) => t,
                }
            }

            /// Whether the queue was closed.
            pub fn is_closed(&self) -> bool {
                matches!(self, Self::Closed(_))
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$v(_) => f.write_str(concat!(stringify!($v), "(..)")),)*
                    Self::Closed(_) => f.write_str("Closed(..)"),
                    Self::Encode(_, e) => f.debug_tuple("Encode").field(&"..").field(e).finish(),
                    Self::Broken(_, e) => f.debug_tuple("Broken").field(&"..").field(e).finish(),
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$v(_) => f.write_str($msg),)*
                    Self::Closed(_) => f.write_str("queue is closed"),
                    Self::Encode(_, e) => fmt::Display::fmt(e, f),
                    Self::Broken(_, e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl<T> Error for $name<T> {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                match self {
                    Self::Encode(_, e) => e.source(),
                    Self::Broken(_, e) => e.source(),
                    _ => None,
                }
            }
        }
    };
}

put_error! {
    /// Why [`put`](crate::Queue::put) failed; the item is handed back.
    PutError {}
}

put_error! {
    /// Why [`try_put`](crate::Queue::try_put) failed; the item is handed back.
    TryPutError {
        /// The queue is full (CPython's `queue.Full`).
        Full => "queue is full",
    }
}

put_error! {
    /// Why [`put_timeout`](crate::Queue::put_timeout) failed; the item is handed back.
    PutTimeoutError {
        /// The queue stayed full until the deadline (CPython's `queue.Full`).
        Timeout => "timed out waiting for room in the queue",
    }
}

impl<T> From<PutError<T>> for TryPutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(t) => Self::Closed(t),
            PutError::Encode(t, e) => Self::Encode(t, e),
            PutError::Broken(t, e) => Self::Broken(t, e),
        }
    }
}

impl<T> From<PutError<T>> for PutTimeoutError<T> {
    fn from(e: PutError<T>) -> Self {
        match e {
            PutError::Closed(t) => Self::Closed(t),
            PutError::Encode(t, e) => Self::Encode(t, e),
            PutError::Broken(t, e) => Self::Broken(t, e),
        }
    }
}

/// Why a batched put ([`put_many`](crate::Queue::put_many) and its forms)
/// stopped: the error of the item that was not put (which it hands back),
/// and how many items were put before it.
#[derive(Debug)]
pub struct PutManyError<E> {
    put: usize,
    error: E,
}

impl<E> PutManyError<E> {
    pub(crate) fn new(put: usize, error: E) -> Self {
        Self { put, error }
    }

    /// How many items were put (and are in the queue) before the failure.
    pub fn put(&self) -> usize {
        self.put
    }

    /// Why the item was not put (and the item).
    pub fn error(&self) -> &E {
        &self.error
    }

    /// The error, with the item that was not put.
    pub fn into_error(self) -> E {
        self.error
    }
}

impl<E: fmt::Display> fmt::Display for PutManyError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (after {} items were put)", self.error, self.put)
    }
}

impl<E: Error + 'static> Error for PutManyError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.source()
    }
}

macro_rules! get_error {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $msg:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug)]
        pub enum $name {
            $($(#[$vm])* $v,)*
            /// The queue was closed and is drained.
            Closed,
            /// An item was taken but could not be decoded; it is lost.
            Decode(DecodeError),
            /// The queue is broken.
            Broken(BrokenError),
        }

        impl $name {
            /// Whether the queue was closed and drained.
            pub fn is_closed(&self) -> bool {
                matches!(self, Self::Closed)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$v => f.write_str($msg),)*
                    Self::Closed => f.write_str("queue is closed and empty"),
                    Self::Decode(e) => fmt::Display::fmt(e, f),
                    Self::Broken(e) => fmt::Display::fmt(e, f),
                }
            }
        }

        impl Error for $name {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                match self {
                    Self::Decode(e) => e.source(),
                    Self::Broken(e) => e.source(),
                    _ => None,
                }
            }
        }
    };
}

get_error! {
    /// Why [`get`](crate::Queue::get) failed.
    GetError {}
}

get_error! {
    /// Why [`try_get`](crate::Queue::try_get) failed.
    TryGetError {
        /// The queue is empty (CPython's `queue.Empty`).
        Empty => "queue is empty",
    }
}

get_error! {
    /// Why [`get_timeout`](crate::Queue::get_timeout) failed.
    GetTimeoutError {
        /// The queue stayed empty until the deadline (CPython's `queue.Empty`).
        Timeout => "timed out waiting for an item",
    }
}

impl From<GetError> for TryGetError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Closed => Self::Closed,
            GetError::Decode(e) => Self::Decode(e),
            GetError::Broken(e) => Self::Broken(e),
        }
    }
}

impl From<GetError> for GetTimeoutError {
    fn from(e: GetError) -> Self {
        match e {
            GetError::Closed => Self::Closed,
            GetError::Decode(e) => Self::Decode(e),
            GetError::Broken(e) => Self::Broken(e),
        }
    }
}

/// Why [`task_done`](crate::JoinableQueue::task_done) failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskDoneError {
    /// More `task_done` calls than items put (CPython's
    /// `ValueError("task_done() called too many times")`).
    TooManyCalls,
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called too many times")
    }
}

impl Error for TaskDoneError {}

/// [`join_timeout`](crate::JoinableQueue::join_timeout) gave up before every
/// task was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinTimeoutError {
    /// Tasks were still unfinished at the deadline.
    Timeout,
}

impl fmt::Display for JoinTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for every task to be done")
    }
}

impl Error for JoinTimeoutError {}
