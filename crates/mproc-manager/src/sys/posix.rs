//! The POSIX calls of mproc-manager (Linux and macOS alike).

use std::os::fd::{AsRawFd, BorrowedFd};

/// Stops a listening socket: a thread blocked in `accept` on it returns
/// (`EINVAL`) and no further connection is accepted.
pub(crate) fn shutdown_listener(fd: BorrowedFd<'_>) {
    // SAFETY: `fd` is a valid socket for the duration of the call.
    let _ = unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Enables TCP keep-alive probes so a vanished peer host is noticed.
pub(crate) fn keepalive(fd: BorrowedFd<'_>) {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is a valid socket; the option value is a c_int of the size passed.
    let _ = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}
