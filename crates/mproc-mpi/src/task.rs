//! Functions by reference: the one place this crate touches the mechanism
//! (`mproc-fnref`, shared with the local Pool, processes and the manager). Every rank runs the same executable, so a
//! worker rank finds a task's code from its offset to a fixed anchor.

/// Fails the build unless `F` is zero-sized (a `fn` item or a non-capturing
/// closure); the message is mproc-fnref's, the same for every crate.
pub(crate) const fn assert_zst<F>() {
    mproc_fnref::assert_zst::<F>();
}

/// The value of a zero-sized function type.
///
/// # Safety
/// `F` must have passed [`assert_zst`]: a zero-sized `Copy` type has one
/// value and no bytes, so conjuring it is copying it.
pub(crate) unsafe fn conjure<F: Copy>() -> F {
    assert_zst::<F>();
    // SAFETY: zero-sized (asserted at compile time) and `Copy` (caller).
    unsafe { std::mem::zeroed() }
}

/// Where the code at `addr` is, as an offset another rank can resolve.
pub(crate) fn offset_of(addr: *const ()) -> i64 {
    mproc_fnref::offset_of(addr)
}

/// The code address at `offset`.
///
/// # Safety
/// As [`mproc_fnref::address_at`]: `offset` comes from
/// [`offset_of`] in a process running the same executable.
pub(crate) unsafe fn address_at(offset: i64) -> *const () {
    // SAFETY: forwarded to the caller.
    unsafe { mproc_fnref::address_at(offset) }
}

/// A function whose offset both sides compare at the handshake, so a worker
/// running a different executable refuses to run tasks instead of jumping
/// to a wrong address.
#[inline(never)]
pub(crate) fn probe_fn() -> u64 {
    std::hint::black_box(0x6d70_695f_7072_6f62)
}

/// The offset of [`probe_fn`] in this process.
pub(crate) fn probe_offset() -> i64 {
    offset_of(probe_fn as fn() -> u64 as *const ())
}
