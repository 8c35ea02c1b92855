//! Stand-ins for the Linux-only calls of mproc-process on other targets:
//! the crate builds, and what needs pidfds, `PR_SET_PDEATHSIG`, signalfd or
//! `/proc` returns `Unsupported` (the fork server and the `Fork` start
//! method need them, so starting a process fails with that error).
//! `ARCHITECTURE.md` ("macOS port") says what replaces each call.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use mproc_shm::sys::{cvt, getpid, set_cloexec, set_nonblocking, unsupported};

use super::posix::{RawPid, own};

/// The running executable, as `posix_spawn` can start it again.
pub(crate) fn self_exe() -> io::Result<CString> {
    let path = std::env::current_exe()?;
    CString::new(path.into_os_string().into_encoded_bytes())
        .map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// A close-on-exec, non-blocking pipe: (read end, write end). Without
/// `pipe2` the flags are set right after creation (a concurrent fork+exec
/// in this window may leak the pipe into that program).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two c_ints.
    cvt(unsafe { libc::pipe(fds.as_mut_ptr()) })?;
    let pair = (own(fds[0]), own(fds[1]));
    for fd in [&pair.0, &pair.1] {
        set_cloexec(fd.as_fd())?;
        set_nonblocking(fd.as_fd(), true)?;
    }
    Ok(pair)
}

/// No pidfds here (the macOS port uses kqueue `EVFILT_PROC`).
pub(crate) fn pidfd_open(_pid: RawPid) -> io::Result<OwnedFd> {
    unsupported("a process descriptor (pidfd)")
}

/// No pidfds here ([`pidfd_open`]).
pub(crate) fn pidfd_send_signal(_fd: BorrowedFd<'_>, _sig: libc::c_int) -> io::Result<()> {
    unsupported("signalling through a pidfd")
}

/// Does nothing: the process keeps its name.
pub(crate) fn set_name_from_argv0() {}

/// The process id stands in for the thread id (used only to name threads
/// of a process that cannot start children here).
pub(crate) fn gettid() -> RawPid {
    getpid()
}

/// No `PR_SET_PDEATHSIG` here (the macOS port watches the parent with
/// kqueue).
pub(crate) fn set_parent_death_signal() -> io::Result<()> {
    unsupported("dying with the parent process (PR_SET_PDEATHSIG)")
}

/// No `/proc/self/task` here.
pub(crate) fn thread_count() -> io::Result<usize> {
    unsupported("counting this process's threads")
}

/// No `/proc/self/task` here.
pub(crate) fn single_threaded() -> io::Result<bool> {
    unsupported("counting this process's threads")
}

/// No memfd here (the macOS port uses `shm_open` of a random name).
pub(crate) fn memfd_with(_data: &[u8]) -> io::Result<OwnedFd> {
    unsupported("an anonymous memory file")
}

/// No signalfd here (the macOS port uses a self-pipe).
pub(crate) fn signalfd_sigchld() -> io::Result<OwnedFd> {
    unsupported("a signal descriptor (signalfd)")
}
