//! Stand-ins for the Linux-only calls on every other target (macOS first):
//! the crate builds, anonymous segments and the tracker are `Unsupported`,
//! and what has a trivially correct POSIX form uses it (named segments,
//! fd passing and sockets come from `posix.rs` unchanged).

use std::ffi::CStr;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::posix::process_exists;
use super::{Liveness, unsupported};

/// No atomic close-on-exec socket type here: `socketpair` uses `fcntl`.
pub(super) const SOCK_CLOEXEC: libc::c_int = 0;
/// No atomic non-blocking socket type here: `socketpair` uses `fcntl`.
pub(super) const SOCK_NONBLOCK: libc::c_int = 0;
/// No `MSG_CMSG_CLOEXEC` here: received descriptors get `FD_CLOEXEC` by `fcntl`.
pub(super) const MSG_CMSG_CLOEXEC: libc::c_int = 0;
/// No `POLLRDHUP` here: [`super::peer_gone`] peeks instead.
pub(super) const POLLRDHUP: libc::c_short = 0;

/// Anonymous memory files are Linux's (`memfd_create`); the macOS port uses
/// `shm_open` of a random name, unlinked at once.
pub(crate) fn memfd_create(_name: &str) -> io::Result<OwnedFd> {
    unsupported("an anonymous shared-memory segment")
}

/// Never reached: no memfd is ever made here.
pub(crate) fn seal_size(_fd: BorrowedFd<'_>) -> io::Result<()> {
    unsupported("sealing a memory file")
}

/// No file can be sealed here.
pub(crate) fn seals(_fd: BorrowedFd<'_>) -> io::Result<Option<libc::c_int>> {
    Ok(None)
}

/// No file can be sealed here.
pub(crate) fn is_size_sealed(_seals: libc::c_int) -> bool {
    false
}

/// Does nothing: the pages fault in on first use instead.
pub(crate) fn populate(_ptr: *mut u8, _len: usize) -> io::Result<()> {
    Ok(())
}

/// How long a stand-in futex wait sleeps at most before its caller looks
/// again.
const POLL_SLICE: Duration = Duration::from_millis(1);

/// Without a shared futex, waiting is sleeping a little: every caller
/// re-checks its condition after a wake-up (spurious ones included), so a
/// short sleep is correct, only slower. Returns `false` once `timeout` has
/// passed.
pub(crate) fn futex_wait(_word: &AtomicU32, _expected: u32, timeout: Option<Duration>) -> bool {
    match timeout {
        Some(t) if t <= POLL_SLICE => {
            std::thread::sleep(t);
            false
        }
        _ => {
            std::thread::sleep(POLL_SLICE);
            true
        }
    }
}

/// Nobody sleeps on a futex here (see [`futex_wait`]): nothing to wake.
pub(crate) fn futex_wake(_word: &AtomicU32, _n: u32) -> usize {
    0
}

/// Never reached: the tracker does not start here ([`spawn_detached`]).
pub(crate) fn close_all_but_stdio_and(_keep: RawFd) {}

/// Does nothing: the process keeps its name.
pub(crate) fn set_process_name(_name: &CStr) {}

/// Unknown here; the tracker does not start anyway ([`spawn_detached`]).
pub(crate) fn in_main_executable(_addr: *const libc::c_void) -> bool {
    false
}

/// The tracker runs only where its constructor runs (Linux's `.init_array`).
pub(crate) fn spawn_detached(
    _arg0: &str,
    _var: (&str, &str),
    _keep: BorrowedFd<'_>,
) -> io::Result<()> {
    unsupported("the resource tracker")
}

/// Unknown here: `None`, so callers assume several CPUs.
pub fn allowed_cpus() -> Option<u32> {
    None
}

/// Whether `pid` names a process that has not exited yet. Here a zombie
/// (exited, not yet reaped) still counts as alive: never steal a lock on a
/// guess.
pub(crate) fn liveness(pid: u32) -> Liveness {
    match libc::pid_t::try_from(pid) {
        Ok(raw) if raw > 0 && process_exists(raw) => Liveness::Alive,
        _ => Liveness::Dead,
    }
}

/// Doorbells are Linux eventfds; the macOS port uses a non-blocking pipe
/// (its read end polled, its write end rung).
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    unsupported("a doorbell (eventfd)")
}

/// No descriptor is an eventfd here.
pub(crate) fn is_eventfd(_fd: BorrowedFd<'_>) -> bool {
    false
}

/// Never reached: no doorbell is ever made here.
pub(crate) fn eventfd_add(_fd: BorrowedFd<'_>) {}

/// Never reached: no doorbell is ever made here.
pub(crate) fn eventfd_take(_fd: BorrowedFd<'_>) -> bool {
    false
}
