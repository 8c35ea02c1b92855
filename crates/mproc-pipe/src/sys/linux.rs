//! The Linux-only calls of mproc-pipe: the peer's credentials (`SO_PEERCRED`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use mproc_shm::sys::cvt;

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
