use super::*;
use crate::LayoutError;

#[test]
fn anonymous_is_zeroed_and_readable() {
    let seg = Segment::anonymous(10_000).unwrap();
    assert_eq!(seg.len(), 10_000);
    let mut buf = vec![1u8; 10_000];
    seg.read(0, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    seg.write(9_995, b"12345").unwrap();
    assert!(matches!(
        seg.write(9_996, b"12345"),
        Err(SegmentError::OutOfBounds { .. })
    ));
    assert!(matches!(
        seg.read(usize::MAX, &mut [0u8; 2]),
        Err(SegmentError::OutOfBounds { .. })
    ));
}

#[test]
fn zero_and_absurd_sizes_are_errors() {
    assert!(matches!(Segment::anonymous(0), Err(SegmentError::ZeroSize)));
    assert!(matches!(
        Segment::anonymous(usize::MAX),
        Err(SegmentError::TooLarge { .. })
    ));
    assert!(matches!(
        Segment::create_named("mproc_t_zero", 0),
        Err(SegmentError::ZeroSize)
    ));
}

#[test]
fn named_creator_unlinks_and_opener_does_not() {
    let seg = Segment::create_unique(NAME_PREFIX, 4096).unwrap();
    let name = seg.name().unwrap().to_owned();
    assert!(name.starts_with("mproc_"));
    seg.write(0, b"abc").unwrap();
    {
        let peer = Segment::open_named(&name).unwrap();
        let mut b = [0u8; 3];
        peer.read(0, &mut b).unwrap();
        assert_eq!(&b, b"abc");
        assert!(!peer.unlinks_on_drop());
    }
    // The opener's drop left the name in place.
    assert!(Segment::open_named(&name).is_ok());
    assert!(matches!(
        Segment::create_named(&name, 10),
        Err(SegmentError::AlreadyExists(_))
    ));
    drop(seg);
    assert!(matches!(
        Segment::open_named(&name),
        Err(SegmentError::NotFound(_))
    ));
}

#[test]
fn bad_names_are_errors() {
    for n in ["", "a/b", "a\0b", ".", ".."] {
        assert!(
            matches!(
                Segment::create_named(n, 10),
                Err(SegmentError::InvalidName(_))
            ),
            "{n:?}"
        );
    }
}

#[test]
fn explicit_unlink_twice_is_not_found() {
    let mut seg = Segment::create_unique(NAME_PREFIX, 64).unwrap();
    seg.unlink().unwrap();
    let name = seg.name().unwrap().to_owned();
    assert!(matches!(
        unlink_named(&name),
        Err(SegmentError::NotFound(_))
    ));
}

#[test]
fn serialize_round_trip_shares_memory() {
    let seg = Segment::anonymous(4096).unwrap();
    let (bytes, fds) = crate::handle::to_bytes_with_fds(&seg).unwrap();
    let other: Segment = crate::handle::from_bytes_with_fds(&bytes, fds).unwrap();
    seg.write(100, b"shared").unwrap();
    let mut b = [0u8; 6];
    other.read(100, &mut b).unwrap();
    assert_eq!(&b, b"shared");
    assert_ne!(seg.as_ptr(), other.as_ptr());
}

#[test]
fn header_checks() {
    use crate::layout::{HEADER_SIZE, Layout};
    let seg = Segment::anonymous(4096).unwrap();
    let layout = Layout {
        kind: 0x0101,
        fingerprint: crate::fingerprint_of::<u64>("u64"),
    };
    assert!(matches!(
        seg.check_layout(layout),
        Err(SegmentError::Layout(LayoutError::BadMagic(0)))
    ));
    seg.header().unwrap().init(layout, 4096, [1, 2, 3, 4]);
    assert_eq!(seg.check_layout(layout).unwrap(), [1, 2, 3, 4]);
    let other = Layout {
        kind: 0x0102,
        ..layout
    };
    assert!(matches!(
        seg.check_layout(other),
        Err(SegmentError::Layout(LayoutError::Kind { .. }))
    ));
    let other = Layout {
        fingerprint: crate::fingerprint_of::<u32>("u32"),
        ..layout
    };
    assert!(matches!(
        seg.check_layout(other),
        Err(SegmentError::Layout(LayoutError::Fingerprint { .. }))
    ));
    let small = Segment::anonymous(HEADER_SIZE - 1).unwrap();
    assert!(matches!(
        small.check_layout(layout),
        Err(SegmentError::Layout(LayoutError::TooSmall { .. }))
    ));
}

#[test]
fn unsealed_or_unsealable_received_segments_are_refused() {
    use crate::handle::{HandleFd, from_bytes_with_fds, to_bytes_with_fds};
    use std::os::fd::OwnedFd;

    #[derive(serde::Serialize)]
    struct Forged {
        fd: HandleFd,
        len: u64,
        name: Option<String>,
    }
    // A memfd its sender could still shrink under our mapping.
    let raw = sys::memfd_create("forged").unwrap();
    sys::ftruncate(raw.as_fd(), 4096).unwrap();
    let forged = Forged {
        fd: HandleFd::new(raw),
        len: 4096,
        name: None,
    };
    let (bytes, fds) = to_bytes_with_fds(&forged).unwrap();
    let err = from_bytes_with_fds::<Segment>(&bytes, fds).unwrap_err();
    let _ = err;
    // A regular file (cannot be sealed) that claims to be anonymous.
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let forged = Forged {
        fd: HandleFd::new(OwnedFd::from(file)),
        len: 16,
        name: None,
    };
    let (bytes, fds) = to_bytes_with_fds(&forged).unwrap();
    assert!(from_bytes_with_fds::<Segment>(&bytes, fds).is_err());
    // A genuine anonymous segment still travels.
    let seg = Segment::anonymous(4096).unwrap();
    let (bytes, fds) = to_bytes_with_fds(&seg).unwrap();
    assert!(from_bytes_with_fds::<Segment>(&bytes, fds).is_ok());
}
