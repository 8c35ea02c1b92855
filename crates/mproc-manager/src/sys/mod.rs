//! The OS calls of mproc-manager. The helpers every mproc crate shares come
//! from mproc-shm's OS layer (`mproc_shm::sys`); `posix.rs` holds this
//! crate's own, all plain POSIX, so there is no Linux-only part.

use std::os::fd::BorrowedFd;

pub(crate) use mproc_shm::sys::{exit_now, getpid, ignore_signal, random};

mod posix;
pub(crate) use posix::*;

/// Whether the peer of a stream socket has closed or reset it, or shut down
/// its writing side (a closed TCP peer shows only that), without consuming
/// anything.
pub(crate) fn peer_gone(fd: BorrowedFd<'_>) -> bool {
    mproc_shm::sys::peer_gone(fd, mproc_shm::sys::PeerGone::StoppedSending)
}

/// Whether the system has more than one CPU online.
pub(crate) fn several_cpus_online() -> bool {
    mproc_shm::sys::online_cpus().is_none_or(|n| n > 1)
}

/// The process id, cached (`getpid` is a system call); the cache is
/// cleared in a forked child.
pub(crate) fn pid() -> i32 {
    mproc_shm::mutex::current_pid() as i32
}
