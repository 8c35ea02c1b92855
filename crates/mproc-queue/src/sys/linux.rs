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

/// Gives the whole pages inside `[start, start + len)` of a shared mapping
/// back to the system (`madvise(MADV_REMOVE)`): they read as zeros
/// afterwards and use no memory until written again.
///
/// # Safety
/// The range must lie inside one shared mapping of a memory file, and no one
/// (in any process) may use its bytes until they are written again.
pub(crate) unsafe fn discard(start: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let first = (start as usize).div_ceil(page) * page;
    let end = (start as usize + len) / page * page;
    if end <= first {
        return Ok(());
    }
    // SAFETY: whole pages inside the caller's range, which the caller
    // guarantees is one shared mapping nobody uses.
    let r = unsafe {
        libc::madvise(
            start.wrapping_add(first - start as usize).cast(),
            end - first,
            libc::MADV_REMOVE,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the
/// machine (lease expiry times are compared across processes).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}
