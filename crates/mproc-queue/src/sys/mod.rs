//! The OS calls of mproc-queue. The helpers every mproc crate shares come
//! from mproc-shm's OS layer (`mproc_shm::sys`); `linux.rs` holds the
//! Linux-only call (giving drained pages back) and `unsupported.rs` its
//! stand-in elsewhere.

use std::io;
use std::os::fd::OwnedFd;

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "unsupported.rs")]
mod platform;
pub(crate) use platform::*;

/// Gives the processor to another runnable thread (`sched_yield`).
pub(crate) use std::thread::yield_now;

/// A non-blocking, close-on-exec `SOCK_SEQPACKET` Unix socket pair: the side
/// channel that carries descriptors of large messages. Message boundaries are
/// kept, so every send is received as one record.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    mproc_shm::sys::socketpair_with(libc::SOCK_SEQPACKET, true)
}
