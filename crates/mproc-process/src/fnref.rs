//! Functions by reference for crates built on top of processes (the pool).
//!
//! The same idea as a child's entry (see the crate docs): a code address
//! travels as its distance from a fixed anchor function of this crate, and a
//! process running the same executable adds the distance to its own anchor.
//! A pool sends such offsets to its workers for each task. Not a stable API.

/// The fixed point offsets are measured from.
#[inline(never)]
fn fnref_anchor() -> u32 {
    // A distinctive body, so that no other function is folded into this one.
    std::hint::black_box(0x6d70_6672)
}

fn anchor_addr() -> usize {
    fnref_anchor as fn() -> u32 as usize
}

/// The distance of the code address `addr` (a function pointer cast to
/// `*const ()`) from this crate's anchor, to be resolved with
/// [`address_at`] in a process running the same executable.
pub fn offset_of(addr: *const ()) -> i64 {
    (addr as usize as i64).wrapping_sub(anchor_addr() as i64)
}

/// The code address at `offset` from this crate's anchor.
///
/// # Safety
/// `offset` must come from [`offset_of`] in a process running the same
/// executable image as this one (for example a parent that started this
/// process with mproc-process, which checks the executable's identity), and
/// the caller may only use the address as the function type it was made
/// from.
pub unsafe fn address_at(offset: i64) -> *const () {
    (anchor_addr() as *const ()).wrapping_byte_offset(offset as isize)
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
}
