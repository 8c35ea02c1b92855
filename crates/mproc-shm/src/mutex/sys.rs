//! The few OS calls the raw mutex needs: process identity, liveness of
//! another process, and the CPU affinity that decides whether spinning helps.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The calling process's id (`getpid`, a system call on current glibc).
pub(super) fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() };
    pid as u32
}

/// Registers `child` to run in the child after every `fork()` made through
/// libc (`pthread_atfork`).
pub(super) fn at_fork_child(child: extern "C" fn()) {
    // SAFETY: the handler is a plain `extern "C" fn` that only stores to
    // atomics (async-signal-safe), and the other two handlers are absent.
    let _ = unsafe { libc::pthread_atfork(None, None, Some(child)) };
}

/// The number of CPUs this process may run on, per its affinity mask; `None`
/// when the mask cannot be read.
pub(super) fn allowed_cpus() -> Option<u32> {
    // SAFETY: an all-zero cpu_set_t is a valid, empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0
    // means the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return None;
    }
    // SAFETY: `set` was filled in by the kernel.
    Some(unsafe { libc::CPU_COUNT(&set) } as u32)
}

/// The number of CPUs online; `None` when it cannot be read.
pub(super) fn online_cpus() -> Option<u32> {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u32::try_from(n).ok().filter(|&n| n > 0)
}

/// What the OS says about a process id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Liveness {
    /// The process runs (or at least has not exited).
    Alive,
    /// The process has exited (possibly a zombie not yet reaped) or never
    /// existed.
    Dead,
}

/// Whether `pid` names a process that has not exited yet.
///
/// A killed process that its parent has not reaped yet is a zombie: it still
/// answers `kill(pid, 0)`, but it can never release anything, so it counts as
/// dead here. A pidfd becomes readable exactly when the process exits, zombie
/// or not; without pidfds (kernels before 5.3, seccomp filters) the state
/// letter in `/proc/<pid>/stat` decides.
pub(super) fn liveness(pid: u32) -> Liveness {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return Liveness::Dead;
    };
    if raw <= 0 {
        return Liveness::Dead;
    }
    match pidfd_open(raw) {
        Ok(fd) => {
            if pidfd_exited(&fd) {
                Liveness::Dead
            } else {
                Liveness::Alive
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Liveness::Dead,
        Err(_) => liveness_fallback(raw),
    }
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new
    // descriptor or -1; no memory is passed.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(r as libc::c_int) })
}

fn pidfd_exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd; a zero timeout never blocks.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & libc::POLLIN != 0
}

fn liveness_fallback(pid: libc::pid_t) -> Liveness {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let r = unsafe { libc::kill(pid, 0) };
    if r != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return Liveness::Dead;
    }
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state letter follows the last ')' (the command name may contain one).
            let state = stat
                .iter()
                .rposition(|&b| b == b')')
                .and_then(|i| stat.get(i + 2).copied());
            match state {
                Some(b'Z' | b'X' | b'x') => Liveness::Dead,
                _ => Liveness::Alive,
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Liveness::Dead,
        // Unknown: never steal a lock on a guess.
        Err(_) => Liveness::Alive,
    }
}
