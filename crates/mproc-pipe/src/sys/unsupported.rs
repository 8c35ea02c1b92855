//! Stand-ins for the Linux-only calls of mproc-pipe on other targets.

use std::io;
use std::os::fd::BorrowedFd;

/// Unknown here (the macOS port reads `LOCAL_PEERCRED` / `getpeereid`):
/// an error, which a listener that admits only its own user treats as a
/// stranger.
pub(crate) fn peer_is_same_user(_fd: BorrowedFd<'_>) -> io::Result<bool> {
    mproc_shm::sys::unsupported("reading a socket peer's credentials")
}
