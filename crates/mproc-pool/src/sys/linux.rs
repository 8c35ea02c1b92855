//! OS calls: the collector's wake-up eventfd, ignoring SIGINT in workers,
//! and the opt-in Ctrl-C handler that cancels pools.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A non-blocking eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain system call with valid flags.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes an eventfd readable.
pub(crate) fn notify(fd: BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an open descriptor. A full
    // counter (EAGAIN) still leaves it readable, which is all we need.
    let _ = unsafe { libc::write(fd.as_raw_fd(), (&raw const one).cast(), 8) };
}

/// Resets an eventfd.
pub(crate) fn drain(fd: BorrowedFd<'_>) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64; non-blocking.
    let _ = unsafe { libc::read(fd.as_raw_fd(), (&raw mut v).cast(), 8) };
}

/// Workers ignore Ctrl-C: the terminal sends SIGINT to the whole process
/// group, and the parent decides what Ctrl-C means.
pub(crate) fn ignore_sigint() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
}

/// Eventfds of pools that cancel on Ctrl-C (-1 = free slot).
static SIGINT_FDS: [AtomicI32; 64] = [const { AtomicI32::new(-1) }; 64];
/// How many SIGINTs the handler saw.
static SIGINT_COUNT: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe operations: atomics, write(2), sigaction.
    SIGINT_COUNT.fetch_add(1, Ordering::SeqCst);
    let one: u64 = 1;
    for slot in &SIGINT_FDS {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: `fd` is a registered eventfd, open until unregistered;
            // write(2) is async-signal-safe.
            let _ = unsafe { libc::write(fd, (&raw const one).cast(), 8) };
        }
    }
    // A second Ctrl-C ends the program the usual way.
    // SAFETY: signal(2) (sigaction underneath) is async-signal-safe.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
}

/// The number of SIGINTs seen by the handler.
pub(crate) fn sigint_count() -> u64 {
    SIGINT_COUNT.load(Ordering::SeqCst)
}

/// Registers `fd` to be notified on Ctrl-C and installs the handler.
/// Returns the slot, or `None` if all are taken.
pub(crate) fn register_sigint(fd: BorrowedFd<'_>) -> Option<usize> {
    let raw = fd.as_raw_fd();
    let slot = SIGINT_FDS.iter().position(|s| {
        s.compare_exchange(-1, raw, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    })?;
    let handler: extern "C" fn(libc::c_int) = on_sigint;
    // SAFETY: installs an async-signal-safe handler for SIGINT.
    unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
    Some(slot)
}

/// Unregisters a slot from [`register_sigint`].
pub(crate) fn unregister_sigint(slot: usize) {
    if let Some(s) = SIGINT_FDS.get(slot) {
        s.store(-1, Ordering::SeqCst);
    }
}
