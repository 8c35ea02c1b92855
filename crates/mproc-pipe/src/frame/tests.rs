use proptest::prelude::*;

use super::*;

fn decode_all(dec: &mut FrameDecoder, mut input: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let (n, f) = dec.decode(input)?;
        input = &input[n..];
        out.extend(f);
    }
    Ok(out)
}

#[test]
fn header_bytes_match_cpython() {
    // CPython: send_bytes(b"hello") -> 00 00 00 05 68 65 6c 6c 6f; send_bytes(b"") -> 00 00 00 00.
    assert_eq!(
        encode_frame(b"hello"),
        [0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']
    );
    assert_eq!(encode_frame(b""), [0, 0, 0, 0]);
    let mut h = [0u8; MAX_HEADER_LEN];
    assert_eq!(encode_header(0x7fff_ffff, &mut h), 4);
    assert_eq!(h[..4], [0x7f, 0xff, 0xff, 0xff]);
    // Above 2 GiB - 1: -1 then the 8-byte big-endian length.
    assert_eq!(encode_header(0x8000_0000, &mut h), 12);
    assert_eq!(h, [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]);
    assert_eq!(encode_header(5 << 30, &mut h), 12);
    assert_eq!(h[4..], (5u64 << 30).to_be_bytes());
}

#[test]
fn large_header_is_decoded_without_allocating_the_claim() {
    // A 3 GiB message: the header decodes, the decoder starts a payload, and
    // holds at most INITIAL_ALLOC bytes while nothing has arrived.
    let len = 3u64 << 30;
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(len, &mut h);
    let mut dec = FrameDecoder::new(usize::MAX);
    let (used, f) = dec.decode(&h[..n]).unwrap();
    assert_eq!((used, f), (12, None));
    assert_eq!(dec.payload_remaining(), Some(len as usize));
    assert!(dec.allocated() <= INITIAL_ALLOC);
    let (used, f) = dec.decode(&[7u8; 1000]).unwrap();
    assert_eq!((used, f), (1000, None));
    assert_eq!(dec.payload_remaining(), Some(len as usize - 1000));
    assert!(dec.allocated() <= INITIAL_ALLOC);
}

#[test]
fn large_header_over_the_maximum_is_rejected() {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(3 << 30, &mut h);
    let mut dec = FrameDecoder::new(DEFAULT_MAX_MESSAGE);
    assert_eq!(
        dec.decode(&h[..n]),
        Err(FrameError::TooLarge {
            len: 3 << 30,
            max: DEFAULT_MAX_MESSAGE as u64
        })
    );
    assert_eq!(dec.allocated(), 0);
    assert!(dec.is_failed());
    assert_eq!(dec.decode(&[0; 4]), Err(FrameError::Failed));
}

#[test]
fn extended_header_with_small_length_is_accepted() {
    // CPython accepts -1 + an 8-byte length of any size.
    let mut wire = vec![0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3];
    wire.extend_from_slice(b"abc");
    let mut dec = FrameDecoder::new(100);
    assert_eq!(
        decode_all(&mut dec, &wire).unwrap(),
        [Frame::Bytes(b"abc".to_vec())]
    );
    assert!(dec.is_idle());
}

#[test]
fn negative_lengths_are_errors() {
    let mut dec = FrameDecoder::new(100);
    assert_eq!(
        dec.decode(&(-5i32).to_be_bytes()),
        Err(FrameError::BadLength(-5))
    );
    // The shared-memory marker is not valid CPython framing.
    let mut dec = FrameDecoder::new(100);
    assert_eq!(
        dec.decode(&(-2i32).to_be_bytes()),
        Err(FrameError::BadLength(-2))
    );
}

#[test]
fn shm_records_decode_between_mproc_peers() {
    let r = ShmRef {
        arena: 0xdead_beef,
        start: 1 << 40,
        len: 99,
    };
    let wire = encode_shm(r);
    let mut dec = FrameDecoder::with_wire(100, Wire::Mproc);
    let frames = decode_all(&mut dec, &wire).unwrap();
    assert_eq!(
        frames,
        [Frame::Shm {
            arena: 0xdead_beef,
            start: 1 << 40,
            len: 99
        }]
    );
    let big = encode_shm(ShmRef {
        arena: 1,
        start: 0,
        len: 101,
    });
    let mut dec = FrameDecoder::with_wire(100, Wire::Mproc);
    assert_eq!(
        dec.decode(&big),
        Err(FrameError::TooLarge { len: 101, max: 100 })
    );
}

#[test]
fn frames_are_never_merged_or_split() {
    let msgs: [&[u8]; 4] = [b"a", b"", b"bcd", &[0u8; 70_000]];
    let wire: Vec<u8> = msgs.iter().flat_map(|m| encode_frame(m)).collect();
    for chunk in [1, 3, 4, 5, 4096, wire.len()] {
        let mut dec = FrameDecoder::new(1 << 20);
        let mut got = Vec::new();
        for c in wire.chunks(chunk) {
            got.extend(decode_all(&mut dec, c).unwrap());
        }
        let want: Vec<Frame> = msgs.iter().map(|m| Frame::Bytes(m.to_vec())).collect();
        assert_eq!(got, want, "chunk size {chunk}");
    }
}

#[test]
fn allocation_grows_with_arriving_bytes() {
    let len = 8 * INITIAL_ALLOC;
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(len as u64, &mut h);
    let mut dec = FrameDecoder::new(len);
    dec.decode(&h[..n]).unwrap();
    let chunk = vec![1u8; 64 << 10];
    let mut received = 0;
    while received < len {
        let (_, f) = dec.decode(&chunk).unwrap();
        received += chunk.len();
        assert!(
            dec.allocated() <= (2 * received).max(INITIAL_ALLOC),
            "{} after {received}",
            dec.allocated()
        );
        if let Some(Frame::Bytes(b)) = f {
            assert_eq!(b.len(), len);
        }
    }
}

proptest! {
    #[test]
    fn round_trip(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..8),
                  chunk in 1usize..5000) {
        let wire: Vec<u8> = msgs.iter().flat_map(|m| encode_frame(m)).collect();
        let mut dec = FrameDecoder::new(1 << 16);
        let mut got = Vec::new();
        for c in wire.chunks(chunk) {
            got.extend(decode_all(&mut dec, c).unwrap());
        }
        let want: Vec<Frame> = msgs.into_iter().map(Frame::Bytes).collect();
        prop_assert_eq!(got, want);
        prop_assert!(dec.is_idle());
    }

    #[test]
    fn header_round_trip(len in any::<u64>()) {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(len, &mut h);
        let mut dec = FrameDecoder::new(usize::MAX);
        let (used, f) = dec.decode(&h[..n]).unwrap();
        prop_assert_eq!(used, n);
        if len == 0 {
            prop_assert_eq!(f, Some(Frame::Bytes(Vec::new())));
        } else {
            prop_assert_eq!(f, None);
            prop_assert_eq!(dec.payload_remaining(), usize::try_from(len).ok());
            prop_assert!(dec.allocated() <= INITIAL_ALLOC);
        }
    }

    #[test]
    fn arbitrary_streams_never_panic_nor_over_allocate(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        max in 0usize..(4 << 20),
        chunk in 1usize..600,
        mproc in any::<bool>(),
    ) {
        let wire = if mproc { Wire::Mproc } else { Wire::Cpython };
        let mut dec = FrameDecoder::with_wire(max, wire);
        let mut received = 0usize;
        'outer: for c in bytes.chunks(chunk) {
            let mut c = c;
            while !c.is_empty() {
                match dec.decode(c) {
                    Ok((n, f)) => {
                        prop_assert!(n <= c.len());
                        received += n;
                        if let Some(Frame::Bytes(b)) = f {
                            prop_assert!(b.len() <= max);
                        }
                        c = &c[n..];
                    }
                    Err(_) => break 'outer,
                }
                prop_assert!(dec.allocated() <= max);
                prop_assert!(dec.allocated() <= (2 * received).max(INITIAL_ALLOC));
            }
        }
    }
}
