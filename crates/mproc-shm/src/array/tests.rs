use super::*;
use crate::error::{LayoutError, SegmentError};
use crate::handle::{from_bytes_with_fds, to_bytes_with_fds};

#[test]
fn new_is_zeroed_and_copies_round_trip() {
    let a = Array::<u32>::new(100).unwrap();
    assert_eq!(a.len(), 100);
    assert!(!a.is_empty());
    assert!(a.to_vec().iter().all(|&x| x == 0));
    a.copy_from(10, &[1, 2, 3]).unwrap();
    let mut out = [0u32; 5];
    a.copy_to(9, &mut out).unwrap();
    assert_eq!(out, [0, 1, 2, 3, 0]);
    assert_eq!(a.get(11), Some(2));
    assert_eq!(a.get(100), None);
    a.set(99, 7).unwrap();
    assert_eq!(
        a.set(100, 7),
        Err(RangeError {
            start: 100,
            len: 1,
            array_len: 100
        })
    );
    assert_eq!(a.get(99), Some(7));
}

#[test]
fn out_of_range_copies_fail_without_copying() {
    let a = Array::from_slice(&[1u8, 2, 3]).unwrap();
    let e = a.copy_from(2, &[9, 9]).unwrap_err();
    assert_eq!(
        e,
        RangeError {
            start: 2,
            len: 2,
            array_len: 3
        }
    );
    assert_eq!(
        e.to_string(),
        "range of 2 elements at index 2 is out of range for an array of length 3"
    );
    assert_eq!(a.to_vec(), [1, 2, 3]);
    assert!(a.copy_to(usize::MAX, &mut [0u8; 2]).is_err());
    assert_eq!(
        a.set(3, 0).unwrap_err().to_string(),
        "index 3 is out of range for an array of length 3"
    );
}

#[test]
fn with_lock_and_guard_work_in_place() {
    let a = Array::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).unwrap();
    assert_eq!(a.with_lock(|s| s.iter().sum::<f64>()), 10.0);
    {
        let mut g = a.lock().unwrap();
        g.reverse();
        assert!(a.try_lock().unwrap_err().is_would_block());
        assert_eq!(g.len(), 4);
    }
    assert_eq!(a.to_vec(), [4.0, 3.0, 2.0, 1.0]);
    a.fill(0.5);
    assert_eq!(a.to_vec(), [0.5; 4]);
}

#[test]
fn iter_crosses_chunks_and_sees_every_element() {
    let data: Vec<u64> = (0..10_000).collect();
    let a = Array::from_slice(&data).unwrap();
    let it = a.iter();
    assert_eq!(it.len(), 10_000);
    assert_eq!(it.collect::<Vec<_>>(), data);
    assert_eq!(
        (&a).into_iter().map(|x| x * 2).sum::<u64>(),
        2 * data.iter().sum::<u64>()
    );
    let raw = RawArray::from_slice(&data).unwrap();
    assert_eq!(raw.iter().collect::<Vec<_>>(), data);
}

#[test]
fn empty_arrays_work() {
    let a = Array::<u16>::new(0).unwrap();
    assert!(a.is_empty());
    assert_eq!(a.to_vec(), Vec::<u16>::new());
    assert_eq!(a.iter().count(), 0);
    assert_eq!(a.with_lock(|s| s.len()), 0);
    a.copy_from(0, &[]).unwrap();
    assert!(a.copy_from(0, &[1]).is_err());
    let (bytes, fds) = to_bytes_with_fds(&a).unwrap();
    assert!(
        from_bytes_with_fds::<Array<u16>>(&bytes, fds)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn handle_round_trip_and_type_checks() {
    let a = Array::from_slice(&[1i32, 2, 3]).unwrap();
    let (bytes, fds) = to_bytes_with_fds(&a).unwrap();
    let b: Array<i32> = from_bytes_with_fds(&bytes, fds).unwrap();
    b.set(0, 100).unwrap();
    assert_eq!(a.to_vec(), [100, 2, 3]);
    assert_eq!(b.len(), 3);
    let (bytes, fds) = to_bytes_with_fds(&a).unwrap();
    assert!(from_bytes_with_fds::<Array<u32>>(&bytes, fds).is_err());
    let (bytes, fds) = to_bytes_with_fds(&a).unwrap();
    assert!(from_bytes_with_fds::<RawArray<i32>>(&bytes, fds).is_err());
    // SAFETY: the clones below are only checked (and refused) as other kinds;
    // nothing reads or writes the elements through them.
    let seg = || unsafe { a.segment() }.try_clone().unwrap();
    let e = Array::<i64>::from_segment(seg()).unwrap_err();
    assert!(matches!(
        e,
        SegmentError::Layout(LayoutError::Fingerprint { .. })
    ));
    let e = crate::Value::<i32>::from_segment(seg()).unwrap_err();
    assert!(matches!(e, SegmentError::Layout(LayoutError::Kind { .. })));
}

#[test]
fn user_pod_types_and_big_alignment() {
    #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(512))]
    struct Big {
        x: [u64; 64],
    }
    let a = Array::<Big>::new(3).unwrap();
    a.set(2, Big { x: [9; 64] }).unwrap();
    assert_eq!(a.get(2), Some(Big { x: [9; 64] }));
    let data_addr = a.with_lock(|s| s.as_ptr() as usize);
    assert_eq!(data_addr % 512, 0);
    #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C, align(8192))]
    struct Huge {
        x: [u8; 8192],
    }
    assert!(matches!(
        Array::<Huge>::new(1),
        Err(SegmentError::Layout(LayoutError::Alignment { align: 8192 }))
    ));
}

#[test]
fn zero_sized_elements_are_refused() {
    assert!(matches!(
        Array::<()>::new(3),
        Err(SegmentError::Layout(LayoutError::ZeroSizedElement))
    ));
    assert!(crate::Value::new(()).is_err());
}

#[test]
fn absurd_lengths_are_errors() {
    assert!(matches!(
        Array::<u64>::new(usize::MAX),
        Err(SegmentError::TooLarge { .. })
    ));
    assert!(matches!(
        Array::<u8>::new(usize::MAX - 10),
        Err(SegmentError::TooLarge { .. })
    ));
}

#[test]
fn named_arrays() {
    let name = format!("mproc_t_array_{}", crate::segment::random_hex(8));
    let a = Array::<u8>::create_named(&name, 10).unwrap();
    let b = Array::<u8>::open_named(&name).unwrap();
    b.copy_from(0, b"0123456789").unwrap();
    assert_eq!(a.to_vec(), b"0123456789");
    assert!(RawArray::<u8>::open_named(&name).is_err());
    drop((a, b));
    assert!(matches!(
        Array::<u8>::open_named(&name),
        Err(SegmentError::NotFound(_))
    ));
    let raw = RawArray::<f32>::create_named(&name, 2).unwrap();
    RawArray::<f32>::open_named(&name)
        .unwrap()
        .set(1, 2.5)
        .unwrap();
    assert_eq!(raw.to_vec(), [0.0, 2.5]);
}

#[test]
fn raw_array_copies() {
    let a = RawArray::<i16>::new(4).unwrap();
    a.copy_from(1, &[1, 2, 3]).unwrap();
    assert!(a.copy_from(2, &[1, 2, 3]).is_err());
    let mut out = [0i16; 2];
    a.copy_to(2, &mut out).unwrap();
    assert_eq!(out, [2, 3]);
    assert_eq!(a.get(0), Some(0));
    assert_eq!(a.get(4), None);
    let c = a.try_clone().unwrap();
    c.set(0, -1).unwrap();
    assert_eq!(a.to_vec(), [-1, 1, 2, 3]);
    assert_eq!(a.len(), 4);
}
