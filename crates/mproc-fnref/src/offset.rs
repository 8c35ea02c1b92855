//! The anchor, offsets from it, and the zero-size check.

/// The fixed point offsets are measured from.
#[inline(never)]
fn anchor() -> u32 {
    // A distinctive body, so that no other function is folded into this one
    // (harmless anyway: the address only has to be the same in every copy
    // of the executable).
    std::hint::black_box(0x6d70_6672)
}

/// The anchor's address in this process.
pub(crate) fn anchor_addr() -> usize {
    anchor as fn() -> u32 as usize
}

/// The distance of the address `addr` (a function pointer, or a constant of
/// the executable, cast to `*const ()`) from this crate's anchor, to be
/// turned back into an address with [`address_at`] in a process running the
/// same executable.
///
/// # Examples
///
/// ```
/// fn double(x: u32) -> u32 {
///     x * 2
/// }
///
/// let off = mproc_fnref::offset_of(double as fn(u32) -> u32 as *const ());
/// // SAFETY: the offset was made in this very process from a `fn(u32) -> u32`.
/// let f = unsafe { std::mem::transmute::<*const (), fn(u32) -> u32>(mproc_fnref::address_at(off)) };
/// assert_eq!(f(21), 42);
/// ```
pub fn offset_of(addr: *const ()) -> i64 {
    (addr as usize as i64).wrapping_sub(anchor_addr() as i64)
}

/// The address at `offset` from this crate's anchor.
///
/// This is plain arithmetic and checks nothing; [`FnRef::resolve`](crate::FnRef::resolve)
/// is the checked way for offsets whose origin is not trusted.
///
/// # Safety
/// `offset` must come from [`offset_of`] in a process running the same
/// executable image as this one (for example a parent that started this
/// process and checked the executable's identity), and the caller may only
/// use the address as what it was made from.
pub unsafe fn address_at(offset: i64) -> *const () {
    (anchor_addr() as *const ()).wrapping_byte_offset(offset as isize)
}

/// Fails to compile unless `F` is zero-sized: a `fn` item or a closure that
/// captures nothing (with a size, it would carry state that cannot reach
/// another process by reference).
///
/// The check runs when the calling generic function is instantiated, so a
/// wrong type is a compile error (E0080) that names this message:
///
/// ```compile_fail,E0080
/// let n = 5u32;
/// fn check<F: Fn(u32) -> u32>(_f: F) {
///     mproc_fnref::assert_zst::<F>();
/// }
/// check(move |x| x + n); // captures `n`: does not compile
/// ```
///
/// ```
/// fn check<F: Fn(u32) -> u32>(_f: F) {
///     mproc_fnref::assert_zst::<F>();
/// }
/// check(|x| x + 5);
/// ```
#[track_caller]
pub const fn assert_zst<F>() {
    const {
        assert!(
            size_of::<F>() == 0,
            "mproc: a function that reaches another process must be a `fn` item or a \
             closure that captures nothing; captured state and fn pointers cannot be sent \
             by reference: pass the data as the function's arguments instead"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }

    #[test]
    fn round_trip_in_one_process() {
        let off = offset_of(double as fn(u32) -> u32 as *const ());
        // SAFETY: the offset was made in this very process from a `fn(u32) -> u32`.
        let f = unsafe { std::mem::transmute::<*const (), fn(u32) -> u32>(address_at(off)) };
        assert_eq!(f(21), 42);
    }

    #[test]
    fn zero_sized_functions_pass() {
        fn check<F: Fn()>(_f: F) {
            assert_zst::<F>();
        }
        check(|| {});
        check(round_trip_in_one_process);
    }
}
