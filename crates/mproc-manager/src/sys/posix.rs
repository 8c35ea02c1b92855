//! The operating-system calls of this crate (Linux).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The process id.
pub(crate) fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// Fills `buf` from the kernel's random source.
pub(crate) fn random(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid, writable buffer of the length passed.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// Stops a listening socket: a thread blocked in `accept` on it returns
/// (`EINVAL`) and no further connection is accepted.
pub(crate) fn shutdown_listener(fd: BorrowedFd<'_>) {
    // SAFETY: `fd` is a valid socket for the duration of the call.
    let _ = unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

/// Whether the peer of a stream socket has closed or reset it (without
/// consuming anything).
pub(crate) fn peer_gone(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd; a zero timeout does not block.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}

/// Enables TCP keep-alive probes so a vanished peer host is noticed.
pub(crate) fn keepalive(fd: BorrowedFd<'_>) {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is a valid socket; the option value is a c_int of the size passed.
    let _ = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_KEEPALIVE,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
}

/// Ignores SIGINT in this process (the manager server, as CPython's: Ctrl-C
/// in a terminal reaches the whole process group, and the parent decides).
pub(crate) fn ignore_sigint() {
    // SAFETY: installing SIG_IGN for SIGINT has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
}

/// Ends this process at once with `code` (no destructors, no atexit).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions; it never returns.
    unsafe { libc::_exit(code) }
}

/// Whether the system has more than one CPU online.
pub(crate) fn several_cpus_online() -> bool {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) > 1 }
}

static PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forget_pid() {
    // Relaxed: the forked child has a single thread at this point.
    PID.store(0, std::sync::atomic::Ordering::Relaxed);
}

/// The process id, cached (`getpid` is a system call); the cache is
/// cleared in a forked child.
pub(crate) fn pid() -> i32 {
    static HOOK: std::sync::Once = std::sync::Once::new();
    // Relaxed: a cached fact; every thread computes the same value.
    let p = PID.load(std::sync::atomic::Ordering::Relaxed);
    if p != 0 {
        return p;
    }
    HOOK.call_once(|| {
        // SAFETY: `forget_pid` is async-signal-safe (one atomic store).
        unsafe { libc::pthread_atfork(None, None, Some(forget_pid)) };
    });
    let p = getpid();
    PID.store(p, std::sync::atomic::Ordering::Relaxed);
    p
}
