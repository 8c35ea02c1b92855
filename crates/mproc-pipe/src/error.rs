//! The errors of mproc-pipe: one enum per operation family.

use std::error::Error;
use std::fmt;
use std::io;

use crate::codec::CodecError;
use crate::frame::FrameError;

/// Defines a receive error enum: the variants every receive shares, plus
/// those of its operation (as mproc-queue's `GetError` family).
macro_rules! recv_error {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $msg:literal,)* }) => {
        $(#[$m])*
        pub enum $name {
            $($(#[$vm])* $v,)*
            /// The peer closed the connection and every message was received
            /// (Python's `EOFError`).
            Eof,
            /// The peer closed the connection in the middle of a message
            /// (Python's `OSError("got end of file during message")`).
            Truncated,
            /// This end of a one-way pipe is write-only.
            NotReadable,
            /// A message exceeded the maximum length, so its bytes were left
            /// unread and the connection can no longer be read (Python's
            /// `OSError("bad message length")`); it may still be written.
            TooLarge {
                /// The announced length.
                len: u64,
                /// The largest accepted.
                max: u64,
            },
            /// `recv_bytes_into` was given a buffer too small; the whole
            /// message, consumed from the connection, is here (Python's
            /// `BufferTooShort`).
            BufferTooShort(Vec<u8>),
            /// An earlier error (an oversized or malformed message) left the
            /// connection unreadable.
            Broken,
            /// The peer sent bytes that are not a valid message.
            Protocol(&'static str),
            /// The message did not decode as the requested type.
            Decode(CodecError),
            /// The operating system reported an error.
            Io(io::Error),
        }

        impl $name {
            /// Whether this is the end of file (`Eof`).
            pub fn is_eof(&self) -> bool {
                matches!(self, Self::Eof)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$v => f.write_str(stringify!($v)),)*
                    Self::Eof => f.write_str("Eof"),
                    Self::Truncated => f.write_str("Truncated"),
                    Self::NotReadable => f.write_str("NotReadable"),
                    Self::TooLarge { len, max } => f
                        .debug_struct("TooLarge")
                        .field("len", len)
                        .field("max", max)
                        .finish(),
                    Self::BufferTooShort(m) => write!(f, "BufferTooShort({} bytes)", m.len()),
                    Self::Broken => f.write_str("Broken"),
                    Self::Protocol(s) => f.debug_tuple("Protocol").field(s).finish(),
                    Self::Decode(e) => f.debug_tuple("Decode").field(e).finish(),
                    Self::Io(e) => f.debug_tuple("Io").field(e).finish(),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$v => f.write_str($msg),)*
                    Self::Eof => f.write_str("connection is closed by the peer (end of file)"),
                    Self::Truncated => f.write_str("got end of file during message"),
                    Self::NotReadable => f.write_str("connection is write-only"),
                    Self::TooLarge { len, max } => write!(
                        f,
                        "bad message length: {len} bytes exceeds the maximum of {max}"
                    ),
                    Self::BufferTooShort(m) => {
                        write!(f, "buffer too short for a message of {} bytes", m.len())
                    }
                    Self::Broken => {
                        f.write_str("connection is unreadable after an earlier bad message")
                    }
                    Self::Protocol(s) => write!(f, "protocol error: {s}"),
                    Self::Decode(e) => write!(f, "failed to decode the message: {e}"),
                    Self::Io(_) => f.write_str("failed to read from the connection"),
                }
            }
        }

        impl Error for $name {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                match self {
                    // The codec's reason is part of the message.
                    Self::Io(e) => Some(e),
                    _ => None,
                }
            }
        }
    };
}

recv_error! {
    /// Why a blocking receive (`recv`, `recv_bytes`, `recv_bytes_max`,
    /// `recv_bytes_into`) or a `poll` failed.
    RecvError {}
}

recv_error! {
    /// Why a receive without waiting (`try_recv`, `try_recv_bytes`) failed.
    TryRecvError {
        /// No message is waiting (a partly received one is kept, and the
        /// next call continues it).
        Empty => "no message is waiting",
    }
}

recv_error! {
    /// Why a receive with a time limit (`recv_timeout`, `recv_deadline`,
    /// `recv_bytes_timeout`, `recv_bytes_deadline`) failed.
    RecvTimeoutError {
        /// Nothing arrived in time. A partly received message is kept, and
        /// the next call continues it.
        Timeout => "timed out waiting for a message",
    }
}

/// The shared variants of a blocking receive's error, in another receive's.
macro_rules! from_recv_error {
    ($($name:ident),*) => {$(
        impl From<RecvError> for $name {
            fn from(e: RecvError) -> Self {
                match e {
                    RecvError::Eof => Self::Eof,
                    RecvError::Truncated => Self::Truncated,
                    RecvError::NotReadable => Self::NotReadable,
                    RecvError::TooLarge { len, max } => Self::TooLarge { len, max },
                    RecvError::BufferTooShort(m) => Self::BufferTooShort(m),
                    RecvError::Broken => Self::Broken,
                    RecvError::Protocol(s) => Self::Protocol(s),
                    RecvError::Decode(e) => Self::Decode(e),
                    RecvError::Io(e) => Self::Io(e),
                }
            }
        }
    )*};
}

from_recv_error!(TryRecvError, RecvTimeoutError);

impl RecvTimeoutError {
    /// Whether this is [`RecvTimeoutError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    pub(crate) fn from_frame(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { len, max } => Self::TooLarge { len, max },
            FrameError::BadLength(_) => Self::Protocol("bad message length"),
            FrameError::Failed => Self::Broken,
        }
    }

    /// The error of a receive that could not time out (no deadline).
    pub(crate) fn untimed(self) -> RecvError {
        match self {
            // Only a deadline ends a wait with `Timeout`.
            Self::Timeout => RecvError::Io(io::ErrorKind::TimedOut.into()),
            Self::Eof => RecvError::Eof,
            Self::Truncated => RecvError::Truncated,
            Self::NotReadable => RecvError::NotReadable,
            Self::TooLarge { len, max } => RecvError::TooLarge { len, max },
            Self::BufferTooShort(m) => RecvError::BufferTooShort(m),
            Self::Broken => RecvError::Broken,
            Self::Protocol(s) => RecvError::Protocol(s),
            Self::Decode(e) => RecvError::Decode(e),
            Self::Io(e) => RecvError::Io(e),
        }
    }

    /// The error of a receive that did not wait: a timeout means empty.
    pub(crate) fn untried(self) -> TryRecvError {
        match self {
            Self::Timeout => TryRecvError::Empty,
            other => other.untimed().into(),
        }
    }
}

impl TryRecvError {
    /// Whether this is [`TryRecvError::Empty`].
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }
}

/// Why `send_bytes` failed (and, inside [`SendError`], why `send` failed).
#[non_exhaustive]
pub enum SendBytesError {
    /// This end of a one-way pipe is read-only.
    NotWritable,
    /// The peer has closed the connection.
    Disconnected,
    /// `send_bytes_range` was given an offset or size outside the buffer.
    OutOfRange {
        /// The offset asked for.
        offset: usize,
        /// The size asked for.
        size: usize,
        /// The buffer's length.
        len: usize,
    },
    /// The value contains mproc handles (descriptors) but this connection
    /// cannot carry descriptors (TCP, a plain pipe).
    CannotPassHandles,
    /// The value could not be encoded.
    Encode(CodecError),
    /// The operating system reported an error.
    Io(io::Error),
}

impl SendBytesError {
    pub(crate) fn from_io(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EPIPE) | Some(libc::ECONNRESET) | Some(libc::ENOTCONN) => Self::Disconnected,
            _ => Self::Io(e),
        }
    }
}

impl fmt::Debug for SendBytesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotWritable => f.write_str("NotWritable"),
            Self::Disconnected => f.write_str("Disconnected"),
            Self::OutOfRange { offset, size, len } => f
                .debug_struct("OutOfRange")
                .field("offset", offset)
                .field("size", size)
                .field("len", len)
                .finish(),
            Self::CannotPassHandles => f.write_str("CannotPassHandles"),
            Self::Encode(e) => f.debug_tuple("Encode").field(e).finish(),
            Self::Io(e) => f.debug_tuple("Io").field(e).finish(),
        }
    }
}

impl fmt::Display for SendBytesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotWritable => f.write_str("connection is read-only"),
            Self::Disconnected => f.write_str("connection is closed by the peer"),
            Self::OutOfRange { offset, size, len } => {
                write!(
                    f,
                    "offset {offset} and size {size} do not fit in a buffer of {len} bytes"
                )
            }
            Self::CannotPassHandles => {
                f.write_str("this connection cannot carry mproc handles (file descriptors)")
            }
            Self::Encode(e) => write!(f, "failed to encode the message: {e}"),
            Self::Io(_) => f.write_str("failed to write to the connection"),
        }
    }
}

impl Error for SendBytesError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            // The codec's reason is part of the message.
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A failed `send`: the reason, and the value handed back.
pub struct SendError<T> {
    value: T,
    error: SendBytesError,
}

impl<T> SendError<T> {
    pub(crate) fn new(value: T, error: SendBytesError) -> Self {
        Self { value, error }
    }

    /// Why the send failed.
    pub fn error(&self) -> &SendBytesError {
        &self.error
    }

    /// Takes the unsent value back.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Splits into the unsent value and the reason.
    pub fn into_parts(self) -> (T, SendBytesError) {
        (self.value, self.error)
    }
}

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<T> Error for SendError<T> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.error.source()
    }
}

/// Why the authkey handshake failed (Python's `AuthenticationError`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// The peer rejected our response: the keys differ
    /// (Python: "digest sent was rejected").
    Rejected,
    /// The peer's response did not match: the keys differ
    /// (Python: "digest received was wrong").
    WrongDigest,
    /// The peer uses legacy HMAC-MD5 authentication (Python 3.11 and older),
    /// which was turned off with `allow_legacy_md5(false)`.
    LegacyMd5Disabled,
    /// The peer asked for a digest mproc does not implement.
    UnsupportedDigest(String),
    /// A challenge shorter than 20 bytes.
    ChallengeTooShort(usize),
    /// A response of the wrong length for its digest.
    DigestLength {
        /// The digest's length.
        expected: usize,
        /// The response's length.
        found: usize,
    },
    /// The peer broke the handshake protocol (for example a message without
    /// the `#CHALLENGE#` prefix, a message over 256 bytes, or a response
    /// without a digest prefix).
    Protocol(&'static str),
    /// The peer closed the connection during the handshake.
    Closed,
    /// The client sent something that is not an answer to our challenge:
    /// it has no authkey, and took the handshake for its conversation.
    AnswerExpected,
    /// The listener sent something that is not a challenge: it has no
    /// authkey, and took the handshake for its conversation.
    ChallengeExpected,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected => f.write_str("authentication failed: digest sent was rejected"),
            Self::WrongDigest => f.write_str("authentication failed: digest received was wrong"),
            Self::LegacyMd5Disabled => f.write_str(
                "authentication failed: the peer uses legacy HMAC-MD5, which is turned off",
            ),
            Self::UnsupportedDigest(d) => {
                write!(f, "authentication failed: unsupported digest {d:?}")
            }
            Self::ChallengeTooShort(n) => {
                write!(f, "authentication failed: challenge too short: {n} bytes")
            }
            Self::DigestLength { expected, found } => {
                write!(
                    f,
                    "authentication failed: expected a digest of {expected} bytes, got {found}"
                )
            }
            Self::Protocol(s) => write!(f, "authentication failed: protocol error: {s}"),
            Self::Closed => {
                f.write_str("authentication failed: connection closed during the handshake")
            }
            Self::AnswerExpected => f.write_str(
                "authentication failed: the client sent data where an authentication answer \
                 was expected: it has no authkey",
            ),
            Self::ChallengeExpected => f.write_str(
                "authentication failed: the listener sent data where a challenge was expected: \
                 it has no authkey",
            ),
        }
    }
}

impl Error for AuthError {}

/// Why `Listener::accept` or `Client::connect` failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectError {
    /// The authkey handshake failed.
    Auth(AuthError),
    /// The operating system reported an error.
    Io(io::Error),
    /// The handshake did not finish within the handshake timeout; the text
    /// says what was awaited, and what usually causes the silence.
    Timeout(&'static str),
}

impl ConnectError {
    /// Whether the handshake failed (Python's `AuthenticationError`).
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Auth(_))
    }

    /// Whether the handshake timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auth(e) => fmt::Display::fmt(e, f),
            Self::Io(_) => f.write_str("failed to establish the connection"),
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl Error for ConnectError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Auth(_) | Self::Timeout(_) => None,
            Self::Io(e) => Some(e),
        }
    }
}

impl From<AuthError> for ConnectError {
    fn from(e: AuthError) -> Self {
        Self::Auth(e)
    }
}

impl From<io::Error> for ConnectError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}
