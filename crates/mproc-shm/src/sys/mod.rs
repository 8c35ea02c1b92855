//! The OS layer of the mproc workspace: every system call mproc-shm makes,
//! and the helpers the other mproc crates share (checked system calls,
//! socket pairs, `SCM_RIGHTS`, random bytes, process id, signals, `_exit`).
//!
//! **Not a stable API.** This module is public only so that the sibling
//! crates (mproc-sync, -process, -pipe, -queue, -pool, -manager) call one
//! copy of each helper instead of writing their own; it is hidden from the
//! documentation and may change in any release. Its signatures speak `libc`
//! (`c_int` flags, `pollfd`), and raw descriptor numbers in a few `unsafe`
//! functions: committing to them in a published API would tie this crate's
//! semver to libc's, and users have better crates for plain system calls.
//!
//! Layout, the same in every mproc crate:
//!
//! * `posix.rs`: what POSIX defines, shared by Linux and macOS (sockets,
//!   `SCM_RIGHTS`, `mmap` of a descriptor, `shm_open`, signals, `poll`).
//! * `linux.rs`: what only Linux has (memfd and its seals, shared futexes,
//!   pidfd, `sched_getaffinity`, `close_range`, `prctl`, `/proc`).
//! * `unsupported.rs`: the same names for every other target. They return
//!   [`io::ErrorKind::Unsupported`], or do the plain POSIX thing where that
//!   is trivially correct (a futex wait that only sleeps a little, liveness
//!   by `kill(pid, 0)`).
//!
//! `ARCHITECTURE.md` ("macOS port") says what replaces each Linux-only call.

use std::io;

mod posix;
pub use posix::*;

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "unsupported.rs")]
mod platform;
pub use platform::*;

/// The error of an operation this platform does not provide.
pub fn unsupported<T>(what: &str) -> io::Result<T> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!("{what} is not supported on this platform (mproc supports Linux)"),
    ))
}

/// What the OS says about a process id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The process runs (or at least has not exited).
    Alive,
    /// The process has exited (possibly a zombie not yet reaped) or never
    /// existed.
    Dead,
}

/// What [`peer_gone`] counts as the other end of a socket being gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerGone {
    /// The peer closed its end entirely (or it is in error): `POLLHUP`. A
    /// peer that only shut down its own writing side (a one-way `Pipe`'s
    /// reader) is still there.
    HungUp,
    /// Also when the peer will send nothing more (it closed, or shut down
    /// writing): `POLLRDHUP`, which is how a closed TCP peer shows.
    StoppedSending,
}

/// Whether `fd` is a memory file sealed against shrinking, so that no
/// holder can truncate it under another process's mapping.
pub fn cannot_shrink(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    matches!(seals(fd), Ok(Some(s)) if is_size_sealed(s))
}
