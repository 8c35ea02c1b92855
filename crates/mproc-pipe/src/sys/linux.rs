//! The Linux-only calls of mproc-pipe: the peer's credentials (`SO_PEERCRED`), and the epoll set and timer the async handshakes wait on.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
#[cfg(feature = "tokio")]
use std::os::fd::{FromRawFd, OwnedFd};
#[cfg(feature = "tokio")]
use std::time::{Duration, Instant};

use mproc_shm::sys::cvt;

/// A new epoll descriptor (close-on-exec).
#[cfg(feature = "tokio")]
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked before use.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `fd` to the epoll set `ep`, for `events`.
#[cfg(feature = "tokio")]
pub(crate) fn epoll_add(ep: BorrowedFd<'_>, fd: std::os::fd::RawFd, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: 0 };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call.
    cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
    Ok(())
}

/// A timer descriptor that turns readable at `at` (at once if it passed).
#[cfg(feature = "tokio")]
pub(crate) fn timer_at(at: Instant) -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the result is checked before use.
    let fd = cvt(unsafe {
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
    cvt(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
    Ok(fd)
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
    cvt(unsafe {
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
