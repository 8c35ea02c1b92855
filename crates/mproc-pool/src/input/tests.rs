use mproc_shm::codec::{Bytes, Pod, Postcard};

use super::{Produced, producer};
use crate::wire::Kind;

/// The kind, count and bytes of the next chunk of at most `max` items.
fn chunk(p: &mut dyn super::Producer, max: usize) -> (Kind, usize, Vec<u8>) {
    match p.next_chunk(max) {
        Some(Produced::Chunk {
            kind,
            count,
            payload,
        }) => (kind, count, payload.bytes.as_slice().to_vec()),
        Some(Produced::EncodeFailed(m)) => panic!("encode failed: {m}"),
        None => panic!("no chunk"),
    }
}

#[test]
fn postcard_items_are_the_bytes_postcard_writes() {
    let items = vec![
        (1u8, "one".to_string()),
        (200, String::new()),
        (3, "x".repeat(300)),
    ];
    let mut want = Vec::new();
    for it in &items {
        want.extend(postcard::to_stdvec(it).unwrap());
    }
    let mut p = producer::<Postcard, _, _>(items);
    assert_eq!(chunk(&mut *p, 10), (Kind::Seq, 3, want));
    assert!(p.next_chunk(10).is_none());
}

#[test]
fn plain_numbers_and_ranges_keep_their_fast_paths_whatever_the_codec() {
    // A `Vec` of plain numbers travels as its bytes, an iterator of them too.
    let mut p = producer::<Pod, u32, _>(vec![1u32, 2]);
    assert_eq!(
        chunk(&mut *p, 10),
        (Kind::Pod, 2, vec![1, 0, 0, 0, 2, 0, 0, 0])
    );
    let mut p = producer::<Postcard, u16, _>(std::iter::once(7u16));
    assert_eq!(chunk(&mut *p, 10), (Kind::Pod, 1, vec![7, 0]));
    // A range as its first item (postcard's i128: a zigzag varint).
    let mut p = producer::<Postcard, u64, _>(5..9u64);
    assert_eq!(chunk(&mut *p, 3), (Kind::Range, 3, vec![10]));
    assert_eq!(chunk(&mut *p, 3), (Kind::Range, 1, vec![16]));
}

#[test]
fn other_codecs_put_a_length_before_each_item() {
    let mut p = producer::<Bytes, Vec<u8>, _>(vec![vec![9u8, 8], Vec::new()]);
    let (kind, count, bytes) = chunk(&mut *p, 10);
    assert_eq!((kind, count), (Kind::Seq, 2));
    assert_eq!(
        bytes,
        [2, 0, 0, 0, 0, 0, 0, 0, 9, 8, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}
