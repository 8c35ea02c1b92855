//! Linux system calls used by mproc-pipe. Every `unsafe` call of the crate
//! that talks to the OS sits here.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// The largest number of descriptors one message may carry (`SCM_MAX_FD`).
pub(crate) const MAX_FDS: usize = mproc_shm::handle::MAX_FDS_PER_MESSAGE;

/// Size in u64 words of a control buffer that holds [`MAX_FDS`] descriptors:
/// CMSG_SPACE(253 * 4) = 16 + 1012 rounded up to 8 = 1032 bytes.
const CBUF_WORDS: usize = 130;

/// Messages up to this size (header included) are sent from one stack buffer.
const SMALL_SEND: usize = 512;

fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn cvt_int(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A connected pair of Unix stream sockets, close-on-exec.
pub(crate) fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints.
    cvt_int(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded and returned two fresh descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Shuts down one direction of a socket (`libc::SHUT_RD` or `SHUT_WR`).
pub(crate) fn shutdown(fd: BorrowedFd<'_>, how: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is a valid descriptor for the duration of the call.
    cvt_int(unsafe { libc::shutdown(fd.as_raw_fd(), how) })?;
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
    cvt_int(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Ok(FdKind::Other);
    }
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `domain` and `len` are valid, writable and sized as the call expects.
    cvt_int(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(if domain == libc::AF_UNIX {
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
            let r = cvt(unsafe {
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
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2];
    let mut n_iov = 0;
    for p in parts.iter().filter(|p| !p.is_empty()) {
        iov[n_iov] = libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        };
        n_iov += 1;
    }
    let mut cbuf = [0u64; CBUF_WORDS];
    let mut first = true;
    let mut start = 0;
    while start < n_iov {
        let n = if kind == FdKind::Other {
            // SAFETY: iov[start..n_iov] describe live, readable buffers borrowed from `parts`.
            cvt(unsafe {
                libc::writev(
                    fd.as_raw_fd(),
                    iov[start..].as_ptr(),
                    (n_iov - start) as libc::c_int,
                )
            })
        } else {
            // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov[start..].as_mut_ptr();
            msg.msg_iovlen = n_iov - start;
            if first && !fds.is_empty() {
                fill_rights(&mut msg, &mut cbuf, fds);
            }
            // SAFETY: `msg` points to valid iovecs and a control buffer that outlive the call.
            cvt(unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) })
        };
        let mut n = match n {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        first = false;
        while start < n_iov && n >= iov[start].iov_len {
            n -= iov[start].iov_len;
            start += 1;
        }
        if start < n_iov {
            // SAFETY: `n < iov_len`, so the advanced pointer stays inside the same buffer.
            iov[start].iov_base = unsafe { iov[start].iov_base.cast::<u8>().add(n) }.cast();
            iov[start].iov_len -= n;
        }
    }
    Ok(())
}

/// Fills `msg`'s control data with an `SCM_RIGHTS` message holding `fds`.
fn fill_rights(msg: &mut libc::msghdr, cbuf: &mut [u64; CBUF_WORDS], fds: &[BorrowedFd<'_>]) {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(cbuf));
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points to `space` writable, aligned bytes, enough for one header.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    // SAFETY: `cmsg` is non-null (the buffer holds a header) and points into `cbuf`.
    unsafe {
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
    }
    // SAFETY: CMSG_DATA points inside `cbuf`, with room for `fds.len()` c_ints (checked by `space`).
    let data = unsafe { libc::CMSG_DATA(cmsg) }.cast::<libc::c_int>();
    for (i, f) in fds.iter().enumerate() {
        // SAFETY: `i < fds.len()`, within the data area; it may be unaligned.
        unsafe { data.add(i).write_unaligned(f.as_raw_fd()) };
    }
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
                cvt(unsafe { libc::read(fd.as_raw_fd(), buf.cast(), len) })
            }
            FdKind::OtherSocket => {
                let flags = if nonblock { libc::MSG_DONTWAIT } else { 0 };
                // SAFETY: the caller guarantees `buf` is writable for `len` bytes.
                cvt(unsafe { libc::recv(fd.as_raw_fd(), buf.cast(), len, flags) })
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

/// `poll(2)` over `fds`, retrying on `EINTR` until `deadline` (`None`: no
/// limit). Returns how many entries have events.
pub(crate) fn poll(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> io::Result<usize> {
    loop {
        let timeout = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Round up so that a wait never ends before the deadline.
                let ms = left.as_nanos().div_ceil(1_000_000);
                ms.min(i32::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: `fds` is a valid, writable array of `fds.len()` pollfd structures.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if r == 0 {
            if let Some(d) = deadline {
                // poll's millisecond clock may wake a little early; sleep the rest.
                if Instant::now() < d {
                    continue;
                }
            }
        }
        // A closed descriptor is reported as POLLNVAL: an error, not readiness.
        if r > 0 && fds.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        return Ok(r as usize);
    }
}

/// Whether `fd` is readable (or hung up, or in error) right now; never
/// waits. Errors count as ready: the read that follows reports them.
pub(crate) fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
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
    loop {
        // SAFETY: `buf` is initialised and readable for `buf.len()` bytes.
        let r = cvt(unsafe {
            libc::send(
                fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Receives at most `buf.len()` bytes from a socket without waiting
/// (`WouldBlock` if none; 0 at end of file). Descriptors sent along are
/// discarded by the kernel. Retries on `EINTR`.
pub(crate) fn recv_nonblock(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes.
        let r = cvt(unsafe {
            libc::recv(
                fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        });
        match r {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Whether `fd` can be written (or is hung up, or in error) right now;
/// never waits.
#[cfg(feature = "tokio")]
pub(crate) fn writable_now(fd: BorrowedFd<'_>) -> bool {
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    }];
    // SAFETY: `p` is a valid, writable array of one pollfd structure.
    let r = unsafe { libc::poll(p.as_mut_ptr(), 1, 0) };
    r != 0
}

/// A new epoll descriptor (close-on-exec).
#[cfg(feature = "tokio")]
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked before use.
    let fd = cvt_int(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `fd` to the epoll set `ep`, for `events`.
#[cfg(feature = "tokio")]
pub(crate) fn epoll_add(ep: BorrowedFd<'_>, fd: std::os::fd::RawFd, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: 0 };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    cvt_int(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
    Ok(())
}

/// A timer descriptor that turns readable at `at` (at once if it passed).
#[cfg(feature = "tokio")]
pub(crate) fn timer_at(at: Instant) -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked before use.
    let fd = cvt_int(unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A relative time: zero would disarm the timer, so at least 1 ns.
    let left = at
        .saturating_duration_since(Instant::now())
        .max(Duration::from_nanos(1));
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
        },
    };
    // SAFETY: `spec` is a valid itimerspec; a null old value is allowed.
    cvt_int(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
    Ok(fd)
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

/// Whether the process at the other end of a Unix socket runs as our
/// effective user (or as root, whom file permissions do not stop either).
pub(crate) fn peer_is_same_user(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid, writable and sized as SO_PEERCRED expects.
    cvt_int(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    Ok(cred.uid == me || cred.uid == 0)
}

/// Whether the peer of a socket has gone away (`POLLHUP`/`POLLERR`), without waiting.
pub(crate) fn peer_gone(fd: BorrowedFd<'_>) -> bool {
    let mut p = [libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    }];
    match poll(&mut p, Some(Instant::now())) {
        Ok(_) => p[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
        Err(_) => true,
    }
}

/// A deadline `d` from now, saturating instead of overflowing.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// Fills `buf` from the OS random source.
pub(crate) fn random(buf: &mut [u8]) -> io::Result<()> {
    getrandom::fill(buf).map_err(|e| io::Error::other(e.to_string()))
}

/// Whether `fd` is a memory file that can no longer shrink.
pub(crate) fn cannot_shrink(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: F_GET_SEALS only reads the descriptor's seals; it fails (EINVAL)
    // on descriptors that are not memfds.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_SHRINK != 0
}
