//! Recognising the types that have fast paths: plain numbers (copied as
//! bytes instead of serialized) and integer ranges (shipped as two numbers).

use std::any::TypeId;
use std::ops::{Range, RangeInclusive};
use std::sync::Arc;

/// Bytes another owner keeps alive (a caller's `Vec` of plain numbers,
/// shipped without a copy).
pub(crate) trait ByteSource: Send + Sync {
    fn bytes(&self) -> &[u8];
}

/// Whether `T` is the same type as `U` (lifetimes ignored, which is sound
/// here because every `U` we compare with has none).
pub(crate) fn same<T: ?Sized, U: ?Sized + 'static>() -> bool {
    typeid::of::<T>() == TypeId::of::<U>()
}

macro_rules! pod_list {
    ($m:ident) => {
        $m!(
            u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
        )
    };
}

/// Whether `T` is a plain number (or `()`): every bit pattern is a valid
/// value, so a `[T]` can travel as its bytes.
pub(crate) fn is_pod<T>() -> bool {
    macro_rules! check {
        ($($t:ty),*) => { $(same::<T, $t>())||* || same::<T, ()>() };
    }
    pod_list!(check)
}

/// An integer range, as `[start, end)` in `i128` (bit-cast for `u128`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IntRange {
    pub(crate) start: i128,
    /// How many items remain.
    pub(crate) len: u128,
}

macro_rules! int_list {
    ($m:ident) => {
        $m!(
            u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize
        )
    };
}

/// If `I` is a `Range` or `RangeInclusive` of a primitive integer, that
/// range; otherwise gives `input` back.
pub(crate) fn as_int_range<I>(input: I) -> Result<IntRange, I> {
    macro_rules! check {
        ($($t:ty),*) => {$(
            if same::<I, Range<$t>>() {
                // SAFETY: `I` is `Range<$t>` (same TypeId; `Range<$t>` has no
                // lifetimes), so reading it as one is a plain move; the
                // original is forgotten so it is not dropped twice.
                let r: Range<$t> = unsafe { std::mem::transmute_copy(&input) };
                std::mem::forget(input);
                let len = if r.end > r.start { (r.end as i128).wrapping_sub(r.start as i128) as u128 } else { 0 };
                return Ok(IntRange { start: r.start as i128, len });
            }
            if same::<I, RangeInclusive<$t>>() {
                // SAFETY: as above, for `RangeInclusive<$t>`.
                let r: RangeInclusive<$t> = unsafe { std::mem::transmute_copy(&input) };
                std::mem::forget(input);
                let (s, e) = (*r.start(), *r.end());
                // An exhausted RangeInclusive has no items even if s <= e.
                let len = if r.is_empty() { 0 } else { (e as i128).wrapping_sub(s as i128) as u128 + 1 };
                return Ok(IntRange { start: s as i128, len });
            }
        )*};
    }
    int_list!(check);
    Err(input)
}

/// A `Vec` of plain numbers whose bytes are shipped in place.
struct PodVec<T>(Vec<T>);

// SAFETY: `PodVec` is only made for primitive numbers (`pod_list!`), which
// are `Send + Sync`; nothing else can be put in one.
unsafe impl<T> Send for PodVec<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for PodVec<T> {}

impl<T> ByteSource for PodVec<T> {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `T` is a primitive number (see the `Send` impl).
        unsafe { pod_bytes(&self.0) }
    }
}

/// If `I` is a `Vec<A>` (or its `IntoIter`) with `A` a plain number: its
/// bytes as a shared source, the item size and the item count.
pub(crate) fn as_pod_vec<I, A>(input: I) -> Result<(Arc<dyn ByteSource>, usize, usize), I> {
    macro_rules! check {
        ($($t:ty),*) => {$(
            if same::<I, Vec<$t>>() && same::<A, $t>() {
                // SAFETY: `I` is `Vec<$t>` (same TypeId, no lifetimes); the
                // original is forgotten after the move.
                let v: Vec<$t> = unsafe { std::mem::transmute_copy(&input) };
                std::mem::forget(input);
                let n = v.len();
                return Ok((Arc::new(PodVec(v)), size_of::<$t>(), n));
            }
            if same::<I, std::vec::IntoIter<$t>>() && same::<A, $t>() {
                // SAFETY: as above, for `vec::IntoIter<$t>`.
                let it: std::vec::IntoIter<$t> = unsafe { std::mem::transmute_copy(&input) };
                std::mem::forget(input);
                // Collecting a vec::IntoIter reuses its allocation.
                let v: Vec<$t> = it.collect();
                let n = v.len();
                return Ok((Arc::new(PodVec(v)), size_of::<$t>(), n));
            }
        )*};
    }
    pod_list!(check);
    Err(input)
}

/// Calls `each` with every item `start + k` (`k < len`) of an integer range
/// as an `A`, if `A` is a primitive integer. Returns `false` (calling
/// nothing) otherwise. `each` returns `false` to stop early.
pub(crate) fn for_each_in_range<A>(
    start: i128,
    from: u64,
    len: u64,
    mut each: impl FnMut(u64, A) -> bool,
) -> bool {
    macro_rules! run {
        ($($t:ty),*) => {$(
            if same::<A, $t>() {
                let s = start as $t;
                let mut k = from;
                while k < len {
                    let v: $t = s.wrapping_add(k as $t);
                    // SAFETY: `A` is `$t` (checked above); this is a copy.
                    let a: A = unsafe { std::mem::transmute_copy(&v) };
                    if !each(k, a) {
                        return true;
                    }
                    k += 1;
                }
                return true;
            }
        )*};
    }
    int_list!(run);
    false
}

/// Copies `n` plain values out of `bytes` (unaligned).
///
/// # Safety
/// `T` must satisfy [`is_pod`] and `bytes.len()` must be `n * size_of::<T>()`.
pub(crate) unsafe fn pod_from_bytes<T>(bytes: &[u8], n: usize) -> Vec<T> {
    debug_assert_eq!(bytes.len(), n * size_of::<T>());
    let mut v = Vec::<T>::with_capacity(n);
    if size_of::<T>() == 0 {
        // SAFETY: `n` zero-sized values take no bytes, and one of a plain
        // type (caller) needs none to be valid.
        unsafe { v.set_len(n) };
    } else {
        // SAFETY: the caller's promise, passed on (`T` has a size).
        unsafe { pod_extend(&mut v, bytes) };
    }
    v
}

/// Appends the plain values whose bytes `bytes` holds (unaligned) to `v`.
///
/// # Safety
/// `T` must satisfy [`is_pod`] and not be zero-sized, and `bytes.len()`
/// must be a multiple of `size_of::<T>()`.
pub(crate) unsafe fn pod_extend<T>(v: &mut Vec<T>, bytes: &[u8]) {
    let n = bytes.len() / size_of::<T>();
    debug_assert_eq!(bytes.len(), n * size_of::<T>());
    v.reserve(n);
    // `v` has room for `n` more values after its length (just reserved),
    // and `bytes` holds exactly their bytes (caller).
    // SAFETY: so the copy stays in bounds; every bit pattern is a valid `T`
    // (caller: plain number); `bytes` cannot overlap `v` (borrowed mutably).
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            v.as_mut_ptr().add(v.len()).cast::<u8>(),
            bytes.len(),
        );
        v.set_len(v.len() + n);
    }
}

/// Appends the bytes of the next values of `items`, at most `max` of them,
/// to `out`, each written straight into place (no `Vec` of the values
/// first); returns how many.
///
/// # Safety
/// `T` must satisfy [`is_pod`].
pub(crate) unsafe fn pod_write<T>(
    out: &mut Vec<u8>,
    items: &mut impl Iterator<Item = T>,
    max: usize,
) -> usize {
    /// Values written per reservation when the iterator does not know its
    /// length.
    const BLOCK: usize = 4096;
    let size = size_of::<T>();
    let mut n = 0;
    while n < max {
        let room = (max - n).min(items.size_hint().0.max(BLOCK));
        out.reserve(room * size);
        let mut k = 0;
        // `out` has room for `room` values after its length (just reserved),
        // and at most `room` are written, unaligned, each inside that room.
        // SAFETY: so the writes stay in bounds, and `set_len` covers only
        // bytes written, all initialised (a plain number has no padding).
        unsafe {
            let dst = out.as_mut_ptr().add(out.len());
            for x in items.by_ref().take(room) {
                dst.add(k * size).cast::<T>().write_unaligned(x);
                k += 1;
            }
            out.set_len(out.len() + k * size);
        }
        n += k;
        if k < room {
            break;
        }
    }
    n
}

/// The bytes of plain values.
///
/// # Safety
/// `T` must satisfy [`is_pod`] (no padding, no pointers).
pub(crate) unsafe fn pod_bytes<T>(v: &[T]) -> &[u8] {
    // SAFETY: plain numbers have no padding bytes, so all `size_of_val(v)`
    // bytes are initialised; the slice borrows `v`.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_ranges() {
        assert_eq!(
            as_int_range(3u64..10).unwrap(),
            IntRange { start: 3, len: 7 }
        );
        assert_eq!(
            as_int_range(-2i32..=2).unwrap(),
            IntRange { start: -2, len: 5 }
        );
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 5u8..1;
        assert_eq!(as_int_range(empty).unwrap().len, 0);
        assert!(as_int_range(vec![1u64]).is_err());
        assert!(as_int_range((0u64..3).map(|x| x + 1)).is_err());
    }

    #[test]
    fn recognises_pods() {
        assert!(is_pod::<u64>() && is_pod::<f32>() && is_pod::<()>());
        assert!(!is_pod::<bool>() && !is_pod::<String>() && !is_pod::<(u8, u8)>());
        let (src, elem, n) = as_pod_vec::<_, u32>(vec![1u32, 2]).ok().unwrap();
        assert_eq!((src.bytes().len(), elem, n), (8, 4, 2));
        assert!(as_pod_vec::<_, u32>(vec![1u32, 2].into_iter()).is_ok());
        assert!(as_pod_vec::<_, String>(vec![String::new()]).is_err());
    }

    #[test]
    fn range_items() {
        let mut got = Vec::new();
        assert!(for_each_in_range::<i16>(-3, 1, 4, |k, a| {
            got.push((k, a));
            true
        }));
        assert_eq!(got, [(1, -2), (2, -1), (3, 0)]);
        assert!(!for_each_in_range::<String>(0, 0, 1, |_, _| true));
    }

    #[test]
    fn plain_values_written_and_read_in_place() {
        use crate::__private::{plain_extend, plain_write};
        // Written after what the buffer holds, unaligned, at most `max`;
        // the iterator keeps the rest.
        let mut out = vec![0xAAu8];
        let mut items = (1u64..).take(10_000);
        assert_eq!(plain_write(&mut out, &mut items, 5000), Some(5000));
        assert_eq!(items.next(), Some(5001));
        assert_eq!(out.len(), 1 + 5000 * 8);
        assert_eq!(out[0], 0xAA);
        // An iterator without a length, shorter than `max`.
        let mut odd = (0u16..9).filter(|x| x % 2 == 1);
        let mut small: Vec<u8> = Vec::new();
        assert_eq!(plain_write(&mut small, &mut odd, 100), Some(4));
        assert!(plain_write(&mut small, &mut ["x"].into_iter(), 1).is_none());
        // Read back, appended to what is there.
        let mut back = vec![0u64];
        assert!(plain_extend(&mut back, &out[1..]));
        assert_eq!(back.len(), 5001);
        assert_eq!(back[1..], (1..=5000u64).collect::<Vec<_>>()[..]);
        let mut shorts: Vec<u16> = Vec::new();
        assert!(plain_extend(&mut shorts, &small));
        assert_eq!(shorts, [1u16, 3, 5, 7]);
        // A torn value, or a type that is not plain: nothing appended.
        assert!(!plain_extend(&mut back, &out[1..8]));
        assert!(!plain_extend(&mut Vec::<String>::new(), &[]));
        // Zero-sized plain values (`()`) take no bytes: a count alone.
        // SAFETY: `()` is plain, and 3 of them take 0 bytes.
        assert_eq!(unsafe { pod_from_bytes::<()>(&[], 3) }.len(), 3);
        // One value, exactly.
        use crate::__private::plain_one;
        assert_eq!(plain_one::<u32>(&7u32.to_ne_bytes()), Some(7));
        assert_eq!(plain_one::<u32>(&[1, 2, 3]), None);
        assert_eq!(plain_one::<u32>(&[0; 8]), None);
        assert_eq!(plain_one::<String>(&[]), None);
        assert_eq!(back.len(), 5001);
    }
}
