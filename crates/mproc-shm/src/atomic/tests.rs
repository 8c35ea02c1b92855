use super::*;
use crate::error::LayoutError;
use crate::handle::{from_bytes_with_fds, to_bytes_with_fds};

#[test]
fn std_api_through_deref() {
    let a = SharedAtomicI64::new(-5).unwrap();
    assert_eq!(a.fetch_add(10, Ordering::Relaxed), -5);
    assert_eq!(a.fetch_sub(1, Ordering::Relaxed), 5);
    assert_eq!(a.swap(100, Ordering::AcqRel), 4);
    assert_eq!(
        a.compare_exchange(1, 2, Ordering::AcqRel, Ordering::Acquire),
        Err(100)
    );
    assert_eq!(
        a.compare_exchange(100, 2, Ordering::AcqRel, Ordering::Acquire),
        Ok(100)
    );
    assert_eq!(a.fetch_max(50, Ordering::Relaxed), 2);
    assert_eq!(
        a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |x| Some(x * 2)),
        Ok(50)
    );
    a.store(-1, Ordering::Release);
    assert_eq!(a.load(Ordering::Acquire), -1);
}

#[test]
fn handles_share_and_check_the_type() {
    let a = SharedAtomicU32::new(3).unwrap();
    let (bytes, fds) = to_bytes_with_fds(&a).unwrap();
    let b: SharedAtomicU32 = from_bytes_with_fds(&bytes, fds).unwrap();
    b.fetch_add(1, Ordering::Relaxed);
    assert_eq!(a.load(Ordering::Relaxed), 4);
    let (bytes, fds) = to_bytes_with_fds(&a).unwrap();
    assert!(from_bytes_with_fds::<SharedAtomicI32>(&bytes, fds).is_err());
    let e = SharedAtomicU64::from_segment(a.segment().try_clone().unwrap()).unwrap_err();
    assert!(matches!(
        e,
        SegmentError::Layout(LayoutError::Fingerprint { .. })
    ));
    let e = crate::Value::<u32>::from_segment(a.segment().try_clone().unwrap()).unwrap_err();
    assert!(matches!(e, SegmentError::Layout(LayoutError::Kind { .. })));
    assert!(format!("{a:?}").contains("value: 4"));
}

#[test]
fn named_atomics() {
    let name = format!("mproc_t_atomic_{}", crate::segment::random_hex(8));
    let a = SharedAtomicUsize::create_named(&name, 1).unwrap();
    SharedAtomicUsize::open_named(&name)
        .unwrap()
        .fetch_add(2, Ordering::Relaxed);
    assert_eq!(a.load(Ordering::Relaxed), 3);
    assert!(SharedAtomicU8::open_named(&name).is_err());
    assert_eq!(a.try_clone().unwrap().load(Ordering::Relaxed), 3);
    drop(a);
    assert!(matches!(
        SharedAtomicUsize::open_named(&name),
        Err(SegmentError::NotFound(_))
    ));
}
