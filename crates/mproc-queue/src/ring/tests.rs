use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use crate::layout::Ctl;

struct Heap {
    ctl: Box<Ctl>,
    mem: Vec<u64>,
}

impl Heap {
    fn new(cap: usize) -> Self {
        Self {
            ctl: Ctl::new_boxed(),
            mem: vec![0; cap / 8],
        }
    }

    fn ring(&mut self) -> Ring<'_> {
        let cap = self.mem.len() * 8;
        // SAFETY: a heap buffer of `cap` bytes, disjoint from `ctl`, borrowed for the ring's life.
        unsafe { Ring::new(&self.ctl, self.mem.as_mut_ptr().cast(), cap) }
    }
}

fn push(r: &Ring<'_>, p: &[u8], max: u32, hc: &ProducerCache) -> Push {
    // SAFETY: single-threaded test: we are the only producer.
    unsafe { r.try_push(REC_INLINE, p, max, hc) }.expect("not corrupted")
}

fn pop(r: &Ring<'_>, tc: &AtomicU64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // SAFETY: single-threaded test: we are the only consumer.
    let p = unsafe { r.peek(&mut out, tc) }.expect("not corrupted")?;
    // SAFETY: as above.
    unsafe { r.commit(p) };
    Some(out)
}

#[test]
fn round_trip_and_wrap() {
    let mut h = Heap::new(256);
    let r = h.ring();
    let (hc, tc) = (ProducerCache::new(), AtomicU64::new(0));
    for i in 0..200u32 {
        let p: Vec<u8> = (0..(i % 37) as u8).collect();
        assert_eq!(push(&r, &p, u32::MAX, &hc), Push::Done);
        assert_eq!(r.len(), 1);
        assert_eq!(pop(&r, &tc).as_deref(), Some(&p[..]));
        assert_eq!(pop(&r, &tc), None);
    }
    assert_eq!(r.published(), 200);
}

#[test]
fn fills_exactly_and_reports_no_room() {
    let mut h = Heap::new(256);
    let r = h.ring();
    let (hc, tc) = (ProducerCache::new(), AtomicU64::new(0));
    // 16 records of 16 bytes fill 256 exactly.
    for i in 0..16u8 {
        assert_eq!(push(&r, &[i; 8], u32::MAX, &hc), Push::Done);
    }
    assert_eq!(push(&r, &[], u32::MAX, &hc), Push::NoRoom);
    assert_eq!(r.len(), 16);
    for i in 0..16u8 {
        assert_eq!(pop(&r, &tc), Some(vec![i; 8]));
    }
    assert_eq!(push(&r, &[9; 200], u32::MAX, &hc), Push::Done);
    assert_eq!(pop(&r, &tc), Some(vec![9; 200]));
}

#[test]
fn maxcount_is_full() {
    let mut h = Heap::new(1024);
    let r = h.ring();
    let (hc, tc) = (ProducerCache::new(), AtomicU64::new(0));
    assert_eq!(push(&r, b"a", 2, &hc), Push::Done);
    assert_eq!(push(&r, b"b", 2, &hc), Push::Done);
    assert_eq!(push(&r, b"c", 2, &hc), Push::Full);
    assert_eq!(pop(&r, &tc), Some(b"a".to_vec()));
    assert_eq!(push(&r, b"c", 2, &hc), Push::Done);
}

#[test]
fn unpublished_record_is_invisible() {
    let mut h = Heap::new(256);
    let (hc, tc) = (ProducerCache::new(), AtomicU64::new(0));
    {
        let r = h.ring();
        // A producer that reserved, wrote part of a record and died before
        // publishing leaves nothing visible.
        // SAFETY: single-threaded test.
        let res = unsafe { r.reserve(5, u32::MAX, &hc) }.unwrap();
        assert!(res.is_ok());
    }
    h.mem.fill(0x0000_0001_0000_0005);
    let r = h.ring();
    assert_eq!(pop(&r, &tc), None);
    assert_eq!(r.len(), 0);
    assert_eq!(push(&r, b"hello", u32::MAX, &hc), Push::Done);
    assert_eq!(pop(&r, &tc), Some(b"hello".to_vec()));
}

#[test]
fn corruption_is_an_error() {
    let mut h = Heap::new(256);
    let tc = AtomicU64::new(0);
    {
        let r = h.ring();
        push(&r, b"abc", u32::MAX, &ProducerCache::new());
    }
    // Scribble a huge length into the record header.
    h.mem[0] = 0xffff_ff00 | (u64::from(REC_INLINE) << 32);
    let r = h.ring();
    let mut out = Vec::new();
    // SAFETY: single-threaded test.
    assert!(unsafe { r.peek(&mut out, &tc) }.is_err());
    h.ctl.tail.0.store(pack(1, 7), Ordering::Relaxed);
    let r = h.ring();
    // SAFETY: single-threaded test.
    let got = unsafe { r.peek(&mut out, &AtomicU64::new(0)) };
    assert_eq!(got, Err(Corrupted("ring position out of range")));
}

#[test]
fn fuzz_corpus_replays() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/queue_record");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let data = std::fs::read(e.expect("dir entry").path()).expect("readable corpus file");
        crate::fuzz::queue_record(&data);
        n += 1;
    }
    assert!(n >= 4, "corpus has only {n} files");
}

proptest::proptest! {
    #[test]
    fn fuzz_entry_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        crate::fuzz::queue_record(&data);
    }
}

#[test]
fn two_producers_with_stale_caches_never_overwrite() {
    // Producer A's cached head goes stale while B fills and C drains: A must
    // not trust it (the bug class that corrupts MPMC rings).
    let mut h = Heap::new(256);
    let r = h.ring();
    let (a, b, tc) = (
        ProducerCache::new(),
        ProducerCache::new(),
        AtomicU64::new(0),
    );
    assert_eq!(push(&r, &[1; 8], u32::MAX, &a), Push::Done);
    assert_eq!(pop(&r, &tc), Some(vec![1; 8]));
    for round in 0..5u8 {
        let mut n = 0;
        while push(&r, &[round; 8], u32::MAX, &b) == Push::Done {
            n += 1;
        }
        assert_eq!(n, 16);
        for _ in 0..8 {
            assert_eq!(pop(&r, &tc), Some(vec![round; 8]));
        }
        // 8 free records now; A may take them, never more.
        let mut m = 0;
        while push(&r, &[200 + round; 8], u32::MAX, &a) == Push::Done {
            m += 1;
        }
        assert_eq!(m, 8);
        for _ in 0..8 {
            assert_eq!(pop(&r, &tc), Some(vec![round; 8]));
        }
        for _ in 0..8 {
            assert_eq!(pop(&r, &tc), Some(vec![200 + round; 8]));
        }
        assert_eq!(pop(&r, &tc), None);
    }
}
