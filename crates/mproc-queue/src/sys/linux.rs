//! The Linux-only call of mproc-queue: giving drained pages back.

use std::io;

/// Gives the whole pages inside `[start, start + len)` of a shared mapping
/// back to the system (`madvise(MADV_REMOVE)`): they read as zeros
/// afterwards and use no memory until written again.
///
/// # Safety
/// The range must lie inside one shared mapping of a memory file, and no one
/// (in any process) may use its bytes until they are written again.
pub(crate) unsafe fn discard(start: *mut u8, len: usize) -> io::Result<()> {
    let page = mproc_shm::sys::page_size();
    let first = (start as usize).div_ceil(page) * page;
    let end = (start as usize + len) / page * page;
    if end <= first {
        return Ok(());
    }
    // SAFETY: whole pages inside the caller's range, which the caller
    // guarantees is one shared mapping nobody uses.
    let r = unsafe {
        libc::madvise(
            start.wrapping_add(first - start as usize).cast(),
            end - first,
            libc::MADV_REMOVE,
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
