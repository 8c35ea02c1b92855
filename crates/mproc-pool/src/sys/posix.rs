//! The POSIX calls of mproc-pool: the opt-in Ctrl-C handler that cancels
//! pools by writing to their wake-up descriptors.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

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
