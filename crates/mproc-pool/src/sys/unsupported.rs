//! Stand-ins for the Linux-only calls of mproc-pool on other targets.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

/// No eventfd here (the macOS port uses a pipe): building a pool is
/// `Unsupported`, as starting its workers would be.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    mproc_shm::sys::unsupported("a pool's wake-up descriptor")
}

/// Never reached: there is no wake-up descriptor here ([`eventfd`]).
pub(crate) fn notify(_fd: BorrowedFd<'_>) {}

/// Never reached: there is no wake-up descriptor here ([`eventfd`]).
pub(crate) fn drain(_fd: BorrowedFd<'_>) {}
