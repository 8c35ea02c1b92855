//! Pipes, connections and authenticated listeners for mproc, wire-compatible
//! with CPython's `multiprocessing.connection`.
//!
//! # Hello, world!
//!
//! ```
//! let (parent, child) = mproc_pipe::pipe(true)?;
//! parent.send(&("hello", 42u32))?;
//! let (word, n): (String, u32) = child.recv()?;
//! assert_eq!((word.as_str(), n), ("hello", 42));
//! child.send_bytes(b"world")?;
//! assert_eq!(parent.recv_bytes()?, b"world");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Connections
//!
//! [`pipe`] makes a connected pair of [`Connection`]s (duplex, or a
//! read-only and a write-only end). A connection sends typed values
//! ([`Connection::send`] / [`Connection::recv`], postcard by default, any
//! [`Codec`] pluggable) and raw messages ([`Connection::send_bytes`] /
//! [`Connection::recv_bytes`], [`Connection::recv_bytes_into`]), polls with a
//! timeout, can be cloned ([`Connection::try_clone`]), and is itself a handle: it can be passed to a child process, or
//! sent inside a message on another connection (its descriptor travels with
//! `SCM_RIGHTS`), as can any mproc handle such as a shared-memory segment.
//!
//! # Framing and CPython compatibility
//!
//! Messages are framed exactly as CPython frames them: a 4-byte big-endian
//! signed length, or `-1` and an 8-byte length above 2 GiB − 1, header and
//! payload in one write. Receiving never allocates more than the configured
//! maximum message size (1 GiB by default), nor much more than the bytes
//! that actually arrived. [`FrameDecoder`] is the decoder as a pure function
//! over bytes.
//!
//! # Large messages through shared memory
//!
//! When both ends are mproc ([`Wire::Mproc`]: always for [`pipe`], opt-in for
//! [`Listener`]/[`Client`] via `mproc_peers`/`mproc_peer`), messages of
//! [`DEFAULT_SHM_THRESHOLD`] bytes or more are copied into a shared-memory
//! ring owned by the sender, and the socket carries only a small record;
//! the receiver copies the message out. This path is never used with
//! [`Wire::Cpython`], the default of listeners and clients, so Python peers
//! always see plain frames.
//!
//! # Waiting on many things
//!
//! [`wait`] (and [`wait_timeout`], [`wait_deadline`]) returns which of
//! several connections, listeners, process sentinels or other descriptors
//! are ready, like `multiprocessing.connection.wait`.
//!
//! # Listeners, clients and authkeys
//!
//! [`Listener`] and [`Client`] connect over Unix-domain sockets (filesystem
//! paths or Linux abstract names, see [`Address`]) or TCP. With an authkey
//! both sides run CPython's mutual challenge/response handshake with
//! HMAC-SHA256 (`{sha256}`-prefixed, as CPython 3.12+). As in CPython
//! 3.12+, peers speaking the legacy HMAC-MD5 form of CPython 3.11 and older
//! are accepted and answered; `allow_legacy_md5(false)` refuses them. A listener runs the handshakes of all connecting
//! clients side by side, so a slow or silent client delays nobody.
//! Mismatched settings are named: a client without an authkey is told that
//! the listener requires one, at its first receive, and a listener is told
//! that the client sent data where an answer was expected.
//!
//! # Where mproc differs from CPython
//!
//! * [`pipe`] returns two [`Connection`]s; a one-way pipe is a socket pair
//!   with the unused directions shut (CPython uses `os.pipe()`), so both ends
//!   can still carry handles.
//! * `close` consumes the connection, so "handle is closed" cannot happen.
//! * [`wait`] returns the indices of the ready objects, in increasing order;
//!   it takes connections, listeners, [`BorrowedFd`](std::os::fd::BorrowedFd)s
//!   (process sentinels) and the standard library's descriptor types (other
//!   [`AsFd`](std::os::fd::AsFd) types as `&x.as_fd()`), and a descriptor
//!   that is not open is an error.
//! * [`Connection::try_clone`] shares one end; copies of a writable end in
//!   several processes send each message whole (CPython's writers need a
//!   lock for that). Reading one end from several processes at once is not
//!   supported.
//! * `send(())` and `send_bytes(b"")` are the same empty message: postcard
//!   encodes `()` as nothing (CPython's `send(None)` is a non-empty pickle).
//! * Legacy HMAC-MD5 peers are accepted, as in CPython 3.12+, and can be
//!   refused with `allow_legacy_md5(false)`.
//! * Receives also come as `try_` and `_timeout`/`_deadline` forms; a
//!   timeout in the middle of a message keeps what arrived, and the next call
//!   continues it.
//! * A message longer than `recv_bytes_max`'s limit or the connection's
//!   maximum makes the connection unreadable ([`RecvError::Broken`] after
//!   [`RecvError::TooLarge`]; `readable()` turns false and [`wait`] leaves
//!   it out), like CPython; a read-only end stays open.
//! * Negative lengths other than `-1` are errors (CPython reads them as
//!   empty messages).
//! * Listeners default to a backlog of 128 (CPython: 1), run up to
//!   [`DEFAULT_MAX_PENDING_HANDSHAKES`] handshakes at once (CPython: one at
//!   a time), and give up on a client whose handshake takes over
//!   [`DEFAULT_HANDSHAKE_TIMEOUT`] (CPython waits for ever); all are
//!   configurable.
//! * The automatic address of [`Listener::builder_auto`] is an abstract
//!   name on Linux (CPython: a socket file in a temporary directory).

#![doc(test(attr(deny(warnings))))]

mod address;
mod arena;
mod auth;
mod codec;
mod connection;
mod error;
mod frame;
mod handshake;
mod listener;
#[doc(hidden)]
pub mod __private {
    //! Not public API: fuzz target bodies.
    pub use crate::private::{auth_handshake, frame_decode};
}
mod private;
// The async forms wait on an epoll set for handshakes: Linux only (the
// macOS port would use kqueue; see ARCHITECTURE.md).
#[cfg(all(feature = "tokio", target_os = "linux"))]
mod reactor;
mod sys;
mod wait;
mod wlock;

pub use crate::auth::{
    AuthOptions, CHALLENGE, Digest, FAILURE, MAX_HANDSHAKE_MESSAGE, WELCOME, make_challenge,
    respond_to_challenge, verify_response,
};
pub use crate::codec::{Bytes, Codec, CodecError, Encode, Pod, Postcard};
pub use crate::connection::{Connection, DEFAULT_SHM_THRESHOLD, pipe};
pub use crate::error::{
    AuthError, ConnectError, RecvError, RecvTimeoutError, SendBytesError, SendError, TryRecvError,
};
pub use crate::frame::{
    DEFAULT_MAX_MESSAGE, Frame, FrameDecoder, FrameError, MAX_HEADER_LEN, Wire, encode_frame,
    encode_header,
};
pub use crate::listener::{
    Address, Client, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_PENDING_HANDSHAKES, Listener,
    ListenerBuilder,
};
pub use crate::wait::{Waitable, Watch, wait, wait_deadline, wait_timeout, watch};
