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

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the
/// machine (lease expiry times are compared across processes).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}
