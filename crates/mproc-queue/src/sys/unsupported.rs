//! Stand-ins on platforms mproc-queue does not support yet.

use std::io;

/// Does nothing here: the pages stay in use.
///
/// # Safety
/// As on Linux (nothing is required here).
pub(crate) unsafe fn discard(_start: *mut u8, _len: usize) -> io::Result<()> {
    Ok(())
}
