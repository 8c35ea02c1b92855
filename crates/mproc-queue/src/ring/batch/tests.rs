use std::sync::atomic::Ordering;

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

fn batch(items: impl IntoIterator<Item = Vec<u8>>) -> Batch {
    let mut b = Batch::default();
    for i in items {
        b.push(&i);
    }
    b
}

fn publish(r: &Ring<'_>, b: &mut Batch, max: u32, hc: &ProducerCache) -> Result<usize, Push> {
    // SAFETY: single-threaded test: we are the only producer.
    unsafe { r.publish_batch(b, max, hc) }.expect("not corrupted")
}

fn take(r: &Ring<'_>, max: usize) -> Vec<Vec<u8>> {
    let (mut out, mut ends) = (Vec::new(), Vec::new());
    match r.take_many(&mut out, &mut ends, max, || false).unwrap() {
        TakeMany::Taken(n) => assert_eq!(n, ends.len()),
        TakeMany::Empty => assert!(ends.is_empty()),
        TakeMany::Locked => panic!("locked"),
    }
    let mut at = 0;
    ends.iter()
        .map(|&e| {
            let v = out[at..e].to_vec();
            at = e;
            v
        })
        .collect()
}

fn item(i: u32) -> Vec<u8> {
    vec![i as u8; (i % 23) as usize]
}

#[test]
fn groups_round_trip_across_the_wrap() {
    let mut h = Heap::new(1024);
    let r = h.ring();
    let hc = ProducerCache::new();
    let mut next = 0u32;
    let mut want = 0u32;
    for round in 0..300u32 {
        let n = 1 + round % 9;
        let mut b = batch((next..next + n).map(item));
        let mut put = 0;
        while b.pending() > 0 {
            match publish(&r, &mut b, u32::MAX, &hc) {
                Ok(k) => put += k,
                Err(Push::NoRoom) => {
                    // Drain a little, in runs of various lengths.
                    for v in take(&r, 1 + (round as usize % 5)) {
                        assert_eq!(v, item(want));
                        want += 1;
                    }
                }
                Err(p) => panic!("{p:?}"),
            }
        }
        assert_eq!(put as u32, n);
        next += n;
    }
    loop {
        let got = take(&r, 64);
        if got.is_empty() {
            break;
        }
        for v in got {
            assert_eq!(v, item(want));
            want += 1;
        }
    }
    assert_eq!(want, next);
    assert_eq!(r.published(), next);
}

#[test]
fn a_group_is_cut_at_maxcount() {
    let mut h = Heap::new(1024);
    let r = h.ring();
    let hc = ProducerCache::new();
    let mut b = batch((0..5).map(item));
    assert_eq!(publish(&r, &mut b, 3, &hc), Ok(3));
    assert_eq!(publish(&r, &mut b, 3, &hc), Err(Push::Full));
    assert_eq!(take(&r, 2).len(), 2);
    assert_eq!(publish(&r, &mut b, 3, &hc), Ok(2));
    let got = take(&r, 10);
    assert_eq!(got, (2..5).map(item).collect::<Vec<_>>());
}

/// A producer killed between the group's header store and its `tail`
/// store has published the whole group: the next holder of the lock must
/// move `tail` past all of it, or its next record would overwrite records
/// consumers can see.
#[test]
fn repair_completes_a_whole_group() {
    let mut h = Heap::new(1024);
    let r = h.ring();
    let hc = ProducerCache::new();
    let tail0 = r.ctl.tail.0.load(Ordering::Relaxed);
    let mut b = batch((0..4).map(item));
    assert_eq!(publish(&r, &mut b, u32::MAX, &hc), Ok(4));
    // As if killed before the `tail` store.
    r.ctl.tail.0.store(tail0, Ordering::Relaxed);
    // SAFETY: single-threaded: we hold the (notional) producer lock.
    unsafe { r.repair() }.unwrap();
    assert_eq!(
        super::super::unpack(r.ctl.tail.0.load(Ordering::Relaxed)).0,
        4
    );
    let mut b = batch([item(4)]);
    assert_eq!(publish(&r, &mut b, u32::MAX, &hc), Ok(1));
    assert_eq!(take(&r, 10), (0..5).map(item).collect::<Vec<_>>());
}

/// A producer killed before the group's header store leaves nothing
/// visible, and the next one writes over its bytes.
#[test]
fn a_group_killed_before_its_header_is_invisible() {
    let mut h = Heap::new(1024);
    let r = h.ring();
    let hc = ProducerCache::new();
    let mut b = batch((0..4).map(item));
    assert_eq!(publish(&r, &mut b, u32::MAX, &hc), Ok(4));
    let tail0 = 0u64;
    // Undo the first header and `tail`: the other records' bytes stay.
    r.word_at(0).store(0, Ordering::Relaxed);
    r.ctl.tail.0.store(tail0, Ordering::Relaxed);
    // SAFETY: as above.
    unsafe { r.repair() }.unwrap();
    assert_eq!(r.ctl.tail.0.load(Ordering::Relaxed), 0);
    assert!(take(&r, 10).is_empty());
    let hc2 = ProducerCache::new();
    let mut b = batch([vec![9; 3]]);
    assert_eq!(publish(&r, &mut b, u32::MAX, &hc2), Ok(1));
    assert_eq!(take(&r, 10), vec![vec![9; 3]]);
}
