//! Linux system calls used by mproc-queue. Every `unsafe` call sits here.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A non-blocking, close-on-exec `SOCK_SEQPACKET` Unix socket pair: the side
/// channel that carries descriptors of large messages. Message boundaries are
/// kept, so every send is received as one record.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    let ty = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: `fds` is a valid, writable array of two c_ints.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, ty, 0, fds.as_mut_ptr()) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded and returned two fresh descriptors that
    // nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Gives the processor to another runnable thread (`sched_yield`).
pub(crate) fn yield_now() {
    // SAFETY: sched_yield has no preconditions.
    unsafe { libc::sched_yield() };
}

/// The number of CPUs online (`None` if unknown).
pub(crate) fn online_cpus() -> Option<usize> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).ok().filter(|n| *n > 0)
}
