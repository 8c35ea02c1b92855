//! The OS calls of mproc-pipe. The helpers every mproc crate shares come
//! from mproc-shm's OS layer (`mproc_shm::sys`); `posix.rs` holds this
//! crate's own POSIX calls (Linux and macOS alike), `linux.rs` the
//! Linux-only ones and `unsupported.rs` their stand-ins elsewhere.

use std::os::fd::BorrowedFd;

pub(crate) use mproc_shm::sys::{cannot_shrink, random, socketpair};

mod posix;
pub(crate) use posix::*;

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "unsupported.rs")]
mod platform;
pub(crate) use platform::*;

/// Whether the peer of a socket has hung up (`POLLHUP`/`POLLERR`), without
/// waiting. A one-way pipe's reader shuts down its writing side: that is
/// not gone.
pub(crate) fn peer_gone(fd: BorrowedFd<'_>) -> bool {
    mproc_shm::sys::peer_gone(fd, mproc_shm::sys::PeerGone::HungUp)
}
