//! The POSIX system calls of mproc-pipe, shared by Linux and macOS: stream
//! I/O with descriptors attached, `poll`, non-blocking socket I/O.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use mproc_shm::sys::{cvt, cvt_retry};

/// The largest number of descriptors one message may carry (`SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = mproc_shm::handle::MAX_FDS_PER_MESSAGE;

/// Messages up to this size (header included) are sent from one stack buffer.
const SMALL_SEND: usize = 512;

/// [`cvt`] for calls that return a byte count.
fn cvt_len(r: isize) -> io::Result<usize> {
    cvt(r).map(|n| n as usize)
}

/// Shuts down one direction of a socket (`libc::SHUT_RD` or `SHUT_WR`).
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is a valid descriptor for the duration of the call.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) })?;
    Ok(())
}

/// What kind of descriptor a connection wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FdKind {
    /// An `AF_UNIX` socket: can carry descriptors.
    Unix,
    /// Another socket (TCP): `send`/`recv`, no descriptors.
    OtherSocket,
    /// A pipe or anything else: `read`/`write`.
    Other,
}

/// Classifies a descriptor.
pub(crate) fn fd_kind(fd: BorrowedFd<'_>) -> io::Result<FdKind> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `fd` is valid and `st` points to writable memory of the right size.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Ok(FdKind::Other);
    }
    let mut addr = std::mem::MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `addr` is writable for `len` bytes, as getsockname expects.
    cvt(unsafe { libc::getsockname(fd.as_raw_fd(), addr.as_mut_ptr().cast(), &mut len) })?;
    // SAFETY: zero-initialised, and getsockname wrote at most `len` bytes of
    // an address into it: every byte is initialised.
    let family = unsafe { addr.assume_init() }.ss_family;
    Ok(if libc::c_int::from(family) == libc::AF_UNIX {
        FdKind::Unix
    } else {
        FdKind::OtherSocket
    })
}

/// Writes the concatenation of `parts` completely, attaching `fds` to the
/// first byte (`SCM_RIGHTS`, only on a Unix socket). Retries on `EINTR` and
/// short writes. Never raises `SIGPIPE` on sockets.
pub(crate) fn write_all(
    fd: BorrowedFd<'_>,
    kind: FdKind,
    parts: &[&[u8]],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    debug_assert!(parts.len() <= 2);
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if fds.is_empty() && kind != FdKind::Other && total <= SMALL_SEND {
        // Small messages: one contiguous `send`, cheaper than `sendmsg` with iovecs.
        let mut buf = [0u8; SMALL_SEND];
        let mut at = 0;
        for p in parts {
            buf[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        let mut done = 0;
        while done < total {
            // SAFETY: `buf[done..total]` is initialised and readable.
            let r = cvt_len(unsafe {
                libc::send(
                    fd.as_raw_fd(),
                    buf[done..].as_ptr().cast(),
                    total - done,
                    libc::MSG_NOSIGNAL,
                )
            });
            match r {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        return Ok(());
    }
    let mut iov = [IoSlice::new(&[]); 2];
    let mut n_iov = 0;
    for p in parts.iter().filter(|p| !p.is_empty()) {
        iov[n_iov] = IoSlice::new(p);
        n_iov += 1;
    }
    let mut bufs = &mut iov[..n_iov];
    let mut first = true;
    while !bufs.is_empty() {
        let n = if kind == FdKind::Other {
            // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and
            // `bufs` are live, readable buffers borrowed from `parts`.
            cvt_len(unsafe {
                libc::writev(
                    fd.as_raw_fd(),
                    bufs.as_ptr().cast::<libc::iovec>(),
                    bufs.len() as libc::c_int,
                )
            })
        } else {
            let fds = if first { fds } else { &[] };
            mproc_shm::sys::send_vectored_with_fds(fd, bufs, fds)
        };
        let n = match n {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        first = false;
        IoSlice::advance_slices(&mut bufs, n);
    }
    Ok(())
}

/// Reads at most `len` bytes into `buf`, appending any descriptors that came
/// with them (close-on-exec) to `fds`. Returns the byte count; 0 is end of
/// file. `nonblock` makes it fail with `WouldBlock` instead of sleeping.
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
pub(crate) unsafe fn read(
    fd: BorrowedFd<'_>,
    kind: FdKind,
    buf: *mut u8,
    len: usize,
    fds: &mut Vec<OwnedFd>,
    nonblock: bool,
) -> io::Result<usize> {
    loop {
        let r = match kind {
            FdKind::Other => {
                // SAFETY: the caller guarantees `buf` is writable for `len` bytes.
                cvt_len(unsafe { libc::read(fd.as_raw_fd(), buf.cast(), len) })
            }
            FdKind::OtherSocket => {
                let flags = if nonblock { libc::MSG_DONTWAIT } else { 0 };
                // SAFETY: the caller guarantees `buf` is writable for `len` bytes.
                cvt_len(unsafe { libc::recv(fd.as_raw_fd(), buf.cast(), len, flags) })
            }
            FdKind::Unix => {
                // SAFETY: the caller guarantees `buf` is writable for `len` bytes.
                unsafe { mproc_shm::handle::recv_with_fds_raw(fd, buf, len, fds, nonblock) }
            }
        };
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

pub(crate) use mproc_shm::sys::poll;

/// Whether `fd` is readable (or hung up, or in error) right now; never
/// waits. Errors count as ready: the read that follows reports them.
pub(crate) fn readable_now(fd: BorrowedFd<'_>) -> bool {
    ready_now(fd, libc::POLLIN)
}

/// Whether `fd` has one of the poll `events` (or is hung up, or in error)
/// right now; never waits.
#[inline]
fn ready_now(fd: BorrowedFd<'_>, events: libc::c_short) -> bool {
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }];
    // SAFETY: `p` is a valid, writable array of one pollfd structure.
    let r = unsafe { libc::poll(p.as_mut_ptr(), 1, 0) };
    r != 0
}

/// Waits until `fd` is readable (or hung up) or `deadline` passes; returns
/// whether it is ready.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    wait_ready(fd, libc::POLLIN, deadline)
}

/// Waits until `fd` has one of the poll `events` (or is hung up) or
/// `deadline` passes; returns whether it is ready.
pub(crate) fn wait_ready(
    fd: BorrowedFd<'_>,
    events: libc::c_short,
    deadline: Option<Instant>,
) -> io::Result<bool> {
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    }];
    Ok(poll(&mut p, deadline)? > 0)
}

/// Sends what of `buf` a socket takes without waiting (`WouldBlock` if
/// nothing), never raising `SIGPIPE`. Retries on `EINTR`.
pub(crate) fn send_nonblock(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    let flags = libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT;
    // SAFETY: `buf` is initialised and readable for `buf.len()` bytes.
    let n =
        cvt_retry(|| unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), flags) })?;
    Ok(n as usize)
}

/// Receives at most `buf.len()` bytes from a socket without waiting
/// (`WouldBlock` if none; 0 at end of file). Descriptors sent along are
/// discarded by the kernel. Retries on `EINTR`.
pub(crate) fn recv_nonblock(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let (ptr, len) = (buf.as_mut_ptr().cast(), buf.len());
    // SAFETY: `buf` is writable for `buf.len()` bytes.
    let n = cvt_retry(|| unsafe { libc::recv(fd.as_raw_fd(), ptr, len, libc::MSG_DONTWAIT) })?;
    Ok(n as usize)
}

/// A deadline `d` from now, saturating instead of overflowing.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// Whether `fd` can be written (or is hung up, or in error) right now;
/// never waits.
#[cfg(all(feature = "tokio", target_os = "linux"))]
pub(crate) fn writable_now(fd: BorrowedFd<'_>) -> bool {
    ready_now(fd, libc::POLLOUT)
}

/// Whether a socket is at end of file with nothing left to read: peeks
/// without waiting and without consuming anything.
pub(crate) fn at_eof(fd: BorrowedFd<'_>) -> bool {
    let mut b = [0u8; 1];
    loop {
        // SAFETY: `b` is writable for 1 byte; MSG_PEEK leaves the data queued.
        let r = unsafe {
            libc::recv(
                fd.as_raw_fd(),
                b.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match cvt(r) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return e.raw_os_error() == Some(libc::ECONNRESET),
            Ok(n) => return n == 0,
        }
    }
}
