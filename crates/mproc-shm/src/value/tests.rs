use super::*;
use crate::error::{LayoutError, SegmentError};
use crate::handle::{from_bytes_with_fds, to_bytes_with_fds};
use std::time::{Duration, Instant};

#[test]
fn get_set_and_guards() {
    let v = Value::new(7i64).unwrap();
    assert_eq!(v.get(), 7);
    v.set(-3);
    assert_eq!(v.get(), -3);
    {
        let mut g = v.lock().unwrap();
        *g *= 10;
        assert!(v.is_locked());
        assert!(v.try_lock().unwrap_err().is_would_block());
    }
    assert!(!v.is_locked());
    assert_eq!(v.with_lock(|x| std::mem::replace(x, 5)), -30);
    assert_eq!(v.get(), 5);
    *v.try_lock().unwrap() += 1;
    assert_eq!(v.get(), 6);
}

#[test]
fn lock_timeout_waits_at_least_the_timeout() {
    let v = Value::new([0u8; 24]).unwrap();
    let _g = v.lock().unwrap();
    let t0 = Instant::now();
    assert!(
        v.lock_timeout(Duration::from_millis(50))
            .unwrap_err()
            .is_timeout()
    );
    assert!(t0.elapsed() >= Duration::from_millis(50));
    let past = Instant::now();
    assert!(v.lock_deadline(past).unwrap_err().is_timeout());
}

#[test]
fn lock_is_released_for_other_threads() {
    let v = std::sync::Arc::new(Value::new(0u64).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let v = v.clone();
            std::thread::spawn(move || {
                for _ in 0..10_000 {
                    *v.lock().unwrap() += 1;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(v.get(), 40_000);
}

#[test]
fn handle_round_trip_shares_the_value() {
    let v = Value::new(1.5f64).unwrap();
    let (bytes, fds) = to_bytes_with_fds(&v).unwrap();
    let w: Value<f64> = from_bytes_with_fds(&bytes, fds).unwrap();
    w.set(2.5);
    assert_eq!(v.get(), 2.5);
    // The lock is shared too.
    let _g = v.lock().unwrap();
    assert!(w.try_lock().unwrap_err().is_would_block());
}

#[test]
fn handle_of_another_type_is_rejected() {
    let v = Value::new(1u64).unwrap();
    let (bytes, fds) = to_bytes_with_fds(&v).unwrap();
    assert!(from_bytes_with_fds::<Value<f64>>(&bytes, fds).is_err());
    let (bytes, fds) = to_bytes_with_fds(&v).unwrap();
    assert!(from_bytes_with_fds::<Value<u32>>(&bytes, fds).is_err());
    let (bytes, fds) = to_bytes_with_fds(&v).unwrap();
    assert!(from_bytes_with_fds::<RawValue<u64>>(&bytes, fds).is_err());
    let (bytes, fds) = to_bytes_with_fds(&v).unwrap();
    assert!(from_bytes_with_fds::<crate::Array<u64>>(&bytes, fds).is_err());
    let (bytes, fds) = to_bytes_with_fds(&v).unwrap();
    assert_eq!(
        from_bytes_with_fds::<Value<u64>>(&bytes, fds)
            .unwrap()
            .get(),
        1
    );
}

#[test]
fn from_segment_reports_what_is_wrong() {
    let v = Value::new(9u32).unwrap();
    // SAFETY: the clones below are only checked (and refused) as other kinds;
    // nothing reads or writes the value through them.
    let seg = || unsafe { v.segment() }.try_clone().unwrap();
    let e = Value::<f32>::from_segment(seg()).unwrap_err();
    assert!(
        matches!(e, SegmentError::Layout(LayoutError::Fingerprint { .. })),
        "{e}"
    );
    let e = RawValue::<u32>::from_segment(seg()).unwrap_err();
    assert!(
        matches!(
            e,
            SegmentError::Layout(LayoutError::Kind {
                expected: 0x0102,
                found: 0x0101
            })
        ),
        "{e}"
    );
    let foreign = Segment::anonymous(4096).unwrap();
    let e = Value::<u32>::from_segment(foreign).unwrap_err();
    assert!(
        matches!(e, SegmentError::Layout(LayoutError::BadMagic(0))),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "shared memory segment has an unexpected layout"
    );
    let tiny = Segment::anonymous(16).unwrap();
    assert!(matches!(
        Value::<u32>::from_segment(tiny),
        Err(SegmentError::Layout(LayoutError::TooSmall { size: 16 }))
    ));
}

#[test]
fn truncated_segment_is_rejected() {
    let v = Value::new([7u64; 64]).unwrap();
    // Copy the valid header into a segment too short for the value.
    let mut head = vec![0u8; 300];
    // SAFETY: one thread, no guard alive: nobody uses the value meanwhile.
    unsafe { v.segment() }.read(0, &mut head).unwrap();
    let short = Segment::anonymous(300).unwrap();
    short.write(0, &head).unwrap();
    let e = Value::<[u64; 64]>::from_segment(short).unwrap_err();
    assert!(
        matches!(e, SegmentError::Layout(LayoutError::Size { .. })),
        "{e}"
    );
}

#[test]
fn named_value_is_shared_by_name_and_unlinked_by_creator() {
    let name = format!("mproc_t_value_{}", crate::segment::random_hex(8));
    let v = Value::create_named(&name, 11u16).unwrap();
    assert_eq!(v.name(), Some(name.as_str()));
    {
        let w = Value::<u16>::open_named(&name).unwrap();
        w.set(12);
        assert!(Value::<u32>::open_named(&name).is_err());
        assert!(RawValue::<u16>::open_named(&name).is_err());
    }
    assert_eq!(v.get(), 12);
    drop(v);
    assert!(matches!(
        Value::<u16>::open_named(&name),
        Err(SegmentError::NotFound(_))
    ));
}

#[test]
fn raw_value_copies() {
    let v = RawValue::new([1u32, 2]).unwrap();
    assert_eq!(v.get(), [1, 2]);
    v.set([3, 4]);
    let w = v.try_clone().unwrap();
    assert_eq!(w.get(), [3, 4]);
    let (bytes, fds) = to_bytes_with_fds(&w).unwrap();
    let x: RawValue<[u32; 2]> = from_bytes_with_fds(&bytes, fds).unwrap();
    x.set([5, 6]);
    assert_eq!(v.get(), [5, 6]);
}

#[test]
fn debug_does_not_need_debug_payloads() {
    #[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
    #[repr(C)]
    struct NoDebug(u32);
    let v = Value::new(NoDebug(1)).unwrap();
    assert!(format!("{v:?}").starts_with("Value"));
    let g = v.lock().unwrap();
    assert_eq!(format!("{g:?}"), "Guard { .. }");
    drop(g);
    assert_eq!(v.get().0, 1);
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Value<u64>>();
    check::<RawValue<[f32; 4]>>();
    check::<crate::Array<u8>>();
    check::<crate::RawArray<i64>>();
    check::<crate::SharedAtomicU64>();
    check::<crate::SharedMemory>();
    fn check_sync<T: Sync>() {}
    check_sync::<ValueGuard<'static, u64>>();
}
