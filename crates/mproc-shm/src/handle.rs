//! Handles that travel between processes as file descriptors.
//!
//! An mproc handle (a segment, a lock, a queue, a connection) is, underneath, a
//! file descriptor plus some plain data. Plain data serializes with serde as
//! usual; the descriptor cannot, because its number means nothing in another
//! process. This module is the one mechanism every mproc crate uses for that:
//!
//! * While a value is serialized inside [`collect_fds`], each [`HandleFd`] it
//!   contains duplicates its descriptor into a side table and writes only its
//!   index in that table.
//! * The side table travels beside the bytes: as `SCM_RIGHTS` ancillary data
//!   over a Unix socket ([`send_with_fds`], [`recv_with_fds`]), or by
//!   inheritance when a process is forked.
//! * On the receiving side the value is deserialized inside [`provide_fds`],
//!   and each [`HandleFd`] takes its descriptor back out of the table by index.
//!
//! Serializing a [`HandleFd`] outside [`collect_fds`] (for example with plain
//! `postcard::to_vec`, or into a shared-memory queue that cannot carry
//! descriptors) is an error, not a silent dangling number.
//!
//! # Examples
//!
//! ```
//! use mproc_shm::handle::{self, HandleFd};
//! use std::os::fd::AsFd;
//!
//! let file = std::fs::File::open("/dev/null")?;
//! let h = HandleFd::new(file.as_fd().try_clone_to_owned()?);
//! let (bytes, fds) = handle::to_bytes_with_fds(&h)?;
//! assert_eq!(fds.len(), 1);
//! let back: HandleFd = handle::from_bytes_with_fds(&bytes, fds)?;
//! # let _ = back;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest number of descriptors one `SCM_RIGHTS` message may carry on
/// Linux (`SCM_MAX_FD`).
pub const MAX_FDS_PER_MESSAGE: usize = crate::sys::MAX_FDS_PER_MESSAGE;

thread_local! {
    static SINK: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static SOURCE: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Runs `f` (which serializes something) and returns its result together
/// with every descriptor that [`HandleFd`]s serialized during `f` put aside.
///
/// The descriptors are duplicates: the originals stay open and owned by their
/// handles. Calls nest; an inner call collects only its own descriptors.
pub fn collect_fds<R>(f: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let outer = SINK.with(|s| s.borrow_mut().replace(Vec::new()));
    let r = f();
    let fds = SINK.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
    (r, fds.unwrap_or_default())
}

/// Whether a [`collect_fds`] side table is open on this thread, so that a
/// handle serialized now would put its descriptor there.
pub fn collecting() -> bool {
    SINK.with(|s| s.borrow().is_some())
}

/// Runs `f` (which deserializes something) with `fds` available to the
/// [`HandleFd`]s it meets, by index.
///
/// Descriptors that `f` did not claim are closed when this returns.
pub fn provide_fds<R>(fds: Vec<OwnedFd>, f: impl FnOnce() -> R) -> R {
    let table = fds.into_iter().map(Some).collect();
    let outer = SOURCE.with(|s| s.borrow_mut().replace(table));
    let r = f();
    SOURCE.with(|s| *s.borrow_mut() = outer);
    r
}

/// Serializes `value` with postcard, collecting the descriptors of the
/// handles it contains.
///
/// # Errors
/// Returns postcard's error if `value` cannot be serialized.
pub fn to_bytes_with_fds<T: Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<OwnedFd>), postcard::Error> {
    let (bytes, fds) = collect_fds(|| postcard::to_stdvec(value));
    Ok((bytes?, fds))
}

/// Deserializes a postcard message made by [`to_bytes_with_fds`], giving the
/// handles it contains their descriptors back.
///
/// # Errors
/// Returns postcard's error if the bytes do not decode as `T`, or if they
/// name a descriptor that `fds` does not hold.
pub fn from_bytes_with_fds<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, postcard::Error> {
    provide_fds(fds, || postcard::from_bytes(bytes))
}

/// An owned file descriptor that serializes as a reference into the side
/// table of [`collect_fds`] / [`provide_fds`].
///
/// mproc's handle types embed one of these and derive `Serialize` and
/// `Deserialize`.
pub struct HandleFd(OwnedFd);

impl HandleFd {
    /// Wraps an owned descriptor.
    pub fn new(fd: OwnedFd) -> Self {
        Self(fd)
    }

    /// Returns the descriptor.
    pub fn into_inner(self) -> OwnedFd {
        self.0
    }

    /// Duplicates the descriptor (`F_DUPFD_CLOEXEC`).
    ///
    /// # Errors
    /// Returns the OS error if the process is out of descriptors.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self(self.0.try_clone()?))
    }
}

impl AsFd for HandleFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for HandleFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl From<OwnedFd> for HandleFd {
    fn from(fd: OwnedFd) -> Self {
        Self(fd)
    }
}

impl fmt::Debug for HandleFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HandleFd")
            .field(&self.0.as_raw_fd())
            .finish()
    }
}

/// The message used when a handle is serialized where no descriptor can go.
const NO_SINK: &str = "an mproc handle can only be sent to another process by mproc itself \
     (process arguments, Connection::send); this channel cannot carry file descriptors";

impl Serialize for HandleFd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let dup = self.0.try_clone().map_err(S::Error::custom)?;
        let index = SINK.with(|sink| {
            let mut sink = sink.borrow_mut();
            let sink = sink.as_mut()?;
            sink.push(dup);
            Some(sink.len() - 1)
        });
        match index {
            Some(i) => {
                let i = u32::try_from(i).map_err(S::Error::custom)?;
                s.serialize_u32(i)
            }
            None => Err(S::Error::custom(NO_SINK)),
        }
    }
}

impl<'de> Deserialize<'de> for HandleFd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let index = u32::deserialize(d)? as usize;
        let fd = SOURCE.with(|src| {
            let mut src = src.borrow_mut();
            let table = src
                .as_mut()
                .ok_or("received an mproc handle without its file descriptor")?;
            let slot = table
                .get_mut(index)
                .ok_or("an mproc handle names a file descriptor that was not sent")?;
            slot.take()
                .ok_or("an mproc handle names a file descriptor that was already taken")
        });
        fd.map(HandleFd).map_err(D::Error::custom)
    }
}

/// Sends `data` and `fds` over a Unix socket in one `sendmsg` call
/// (`SCM_RIGHTS`), retrying on `EINTR`.
///
/// Returns the number of bytes of `data` written, which may be fewer than
/// `data.len()` on a stream socket; the descriptors always go with the first
/// byte. At most [`MAX_FDS_PER_MESSAGE`] descriptors fit in one call.
///
/// # Errors
/// Returns the OS error from `sendmsg`, or `InvalidInput` for too many
/// descriptors or an empty `data` with descriptors.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    crate::sys::send_with_fds(sock, data, fds)
}

/// Receives bytes into `buf` and any descriptors that came with them over a
/// Unix socket, retrying on `EINTR`. Received descriptors are close-on-exec
/// and are appended to `fds`.
///
/// Returns the number of bytes read; 0 means the peer closed.
///
/// # Errors
/// Returns the OS error from `recvmsg`. If the sender attached more
/// descriptors than fit in the control buffer (`MSG_CTRUNC`), the ones that
/// arrived are closed and an `InvalidData` error is returned.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    crate::sys::recv_with_fds(sock, buf, fds)
}

/// [`recv_with_fds`] into raw memory, optionally non-blocking
/// (`MSG_DONTWAIT`: fails with `WouldBlock` instead of sleeping): for
/// callers that read straight into buffers they have not initialised.
///
/// # Errors
/// As [`recv_with_fds`].
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
pub unsafe fn recv_with_fds_raw(
    sock: BorrowedFd<'_>,
    buf: *mut u8,
    len: usize,
    fds: &mut Vec<OwnedFd>,
    nonblock: bool,
) -> io::Result<usize> {
    let flags = if nonblock { libc::MSG_DONTWAIT } else { 0 };
    // SAFETY: forwarded from this function's own contract.
    unsafe { crate::sys::recv_with_fds_raw(sock, buf, len, fds, flags) }
}

/// [`recv_with_fds`] that leaves the message queued (`MSG_PEEK`): the next
/// receive gets it again. The descriptors it carries arrive as duplicates
/// (Linux installs a new descriptor for each one on every peek), so this
/// process owns them whatever happens to the message.
///
/// # Errors
/// As [`recv_with_fds`].
pub fn peek_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
    unsafe { crate::sys::recv_with_fds_raw(sock, buf.as_mut_ptr(), buf.len(), fds, libc::MSG_PEEK) }
}

/// Takes ownership of a raw descriptor number that was inherited from a
/// parent process.
///
/// # Safety
/// `fd` must be an open descriptor that nothing else in this process owns or
/// will close.
pub unsafe fn adopt_raw_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests;
