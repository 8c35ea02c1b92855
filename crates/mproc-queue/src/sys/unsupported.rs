//! Stand-ins on platforms mproc-queue does not support yet.

use std::io;

/// Does nothing here: the pages stay in use.
///
/// # Safety
/// As on Linux (nothing is required here).
pub(crate) unsafe fn discard(_start: *mut u8, _len: usize) -> io::Result<()> {
    Ok(())
}

/// A process-local monotonic clock in nanoseconds (cross-process lease
/// expiry needs a shared clock, which this platform does not provide yet).
pub(crate) fn monotonic_ns() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
}
