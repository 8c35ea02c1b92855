//! Property tests: copies in and out of shared arrays round-trip, and a
//! corrupted segment header is always rejected, never a panic.

use mproc_shm::{Array, RawArray, Segment, SegmentError, SharedAtomicU64, Value};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn array_copies_round_trip(
        data in prop::collection::vec(any::<u64>(), 0..3000),
        extra in 0usize..100,
        start_frac in 0.0f64..=1.0,
    ) {
        let len = data.len() + extra;
        let start = ((extra as f64) * start_frac) as usize;
        let a = Array::<u64>::new(len).unwrap();
        a.copy_from(start, &data).unwrap();
        let mut out = vec![0u64; data.len()];
        a.copy_to(start, &mut out).unwrap();
        prop_assert_eq!(&out, &data);
        let mut model = vec![0u64; len];
        model[start..start + data.len()].copy_from_slice(&data);
        prop_assert_eq!(a.to_vec(), model.clone());
        prop_assert_eq!(a.iter().collect::<Vec<_>>(), model.clone());
        // One past the end never fits and copies nothing.
        prop_assert!(a.copy_from(len - data.len() + 1, &data).is_err());
        prop_assert_eq!(a.to_vec(), model);
    }

    #[test]
    fn raw_and_float_copies_round_trip(data in prop::collection::vec(any::<f32>(), 0..2000)) {
        let r = RawArray::from_slice(&data).unwrap();
        let back = r.to_vec();
        prop_assert_eq!(bytemuck::cast_slice::<f32, u32>(&back), bytemuck::cast_slice::<f32, u32>(&data));
        let a = Array::from_slice(&data).unwrap();
        let back = a.with_lock(|s| s.to_vec());
        prop_assert_eq!(bytemuck::cast_slice::<f32, u32>(&back), bytemuck::cast_slice::<f32, u32>(&data));
    }

    #[test]
    fn corrupted_array_header_is_rejected(
        len in 0usize..500,
        at in 0usize..64,
        xor in 1u8..=255,
    ) {
        let a = Array::<u64>::new(len).unwrap();
        // SAFETY: one thread, no guard alive: nothing uses the elements meanwhile.
        let copy = corrupted(unsafe { a.segment() }, at, xor);
        prop_assert!(Array::<u64>::from_segment(copy).is_err());
    }

    #[test]
    fn corrupted_value_and_atomic_headers_are_rejected(at in 0usize..64, xor in 1u8..=255) {
        let v = Value::new(5u32).unwrap();
        // SAFETY: one thread, no guard alive: nothing uses the value meanwhile.
        let copy = corrupted(unsafe { v.segment() }, at, xor);
        prop_assert!(Value::<u32>::from_segment(copy).is_err());
        let a = SharedAtomicU64::new(5).unwrap();
        prop_assert!(SharedAtomicU64::from_segment(corrupted(a.segment(), at, xor)).is_err());
    }

    #[test]
    fn random_segments_never_panic(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        // Random bytes are (almost surely) no valid header at all.
        prop_assert_eq!(mproc_shm::__private::segment_header(&data), 0);
    }

    #[test]
    fn truncated_segments_are_rejected(len in 1usize..300, cut in 1usize..2500) {
        let a = Array::<u64>::new(len).unwrap();
        // SAFETY: one thread, no guard alive: nothing uses the elements meanwhile.
        let seg = unsafe { a.segment() };
        let total = seg.len();
        let keep = total.saturating_sub(cut).max(1);
        let mut bytes = vec![0u8; keep];
        seg.read(0, &mut bytes).unwrap();
        let short = Segment::anonymous(keep).unwrap();
        short.write(0, &bytes).unwrap();
        let e = Array::<u64>::from_segment(short).unwrap_err();
        prop_assert!(matches!(e, SegmentError::Layout(_) | SegmentError::Truncated { .. }), "{}", e);
    }
}

/// A copy of `seg` in a new segment with byte `at` XORed with `xor`.
fn corrupted(seg: &Segment, at: usize, xor: u8) -> Segment {
    let mut bytes = vec![0u8; seg.len()];
    seg.read(0, &mut bytes).unwrap();
    bytes[at] ^= xor;
    let copy = Segment::anonymous(bytes.len()).unwrap();
    copy.write(0, &bytes).unwrap();
    copy
}

#[test]
fn an_untouched_copy_is_accepted() {
    // The corruption tests would pass vacuously if copies were never accepted.
    let a = Array::<u64>::from_slice(&[1, 2, 3]).unwrap();
    // SAFETY: one thread, no guard alive: nothing uses the elements meanwhile.
    let seg = unsafe { a.segment() };
    let b = Array::<u64>::from_segment(corrupted(seg, 100, 1)).unwrap();
    assert_eq!(b.to_vec(), [1, 2, 3]);
    let v = Value::new(5u32).unwrap();
    assert_eq!(
        // SAFETY: as above, for the value.
        Value::<u32>::from_segment(corrupted(unsafe { v.segment() }, 127, 1))
            .unwrap()
            .get(),
        5
    );
    let mut bytes = vec![0u8; seg.len()];
    seg.read(0, &mut bytes).unwrap();
    assert_eq!(mproc_shm::__private::segment_header(&bytes), 1);
}
