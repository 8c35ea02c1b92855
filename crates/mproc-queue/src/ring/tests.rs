use std::sync::atomic::Ordering;

use super::*;
use crate::fuzz::HeapRing;
use crate::layout::Ctl;

fn push(r: &Ring<'_>, p: &[u8], max: u32, hc: &ProducerCache) -> Push {
    // SAFETY: single-threaded test: we are the only producer.
    unsafe { r.try_push(REC_INLINE, p, max, hc) }.expect("not corrupted")
}

fn pop(r: &Ring<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    // SAFETY: single-threaded test: we are the only consumer.
    let p = unsafe { r.peek(&mut out, true) }.expect("not corrupted")?;
    // SAFETY: as above.
    assert!(unsafe { r.commit(p) }, "head moved by nobody");
    Some(out)
}

/// Runs `body` on an empty heap ring of `cap` bytes and a producer cache:
/// the test is the ring's only producer and its only consumer.
fn with_ring(cap: usize, body: impl FnOnce(&Ring<'_>, &ProducerCache)) {
    let mut h = HeapRing::new(cap);
    body(&h.ring(), &ProducerCache::new());
}

#[test]
fn round_trip_and_wrap() {
    with_ring(256, |r, hc| {
        for i in 0..200u32 {
            let p: Vec<u8> = (0..(i % 37) as u8).collect();
            assert_eq!(push(r, &p, u32::MAX, hc), Push::Done);
            assert_eq!(r.len(), 1);
            assert_eq!(pop(r).as_deref(), Some(&p[..]));
            assert_eq!(pop(r), None);
        }
        assert_eq!(r.published(), 200);
    });
}

#[test]
fn fills_exactly_and_reports_no_room() {
    with_ring(256, |r, hc| {
        // 15 records of 16 bytes and the 8-byte terminator after them: 248
        // bytes; a 16th record would leave no room for its terminator.
        for i in 0..15u8 {
            assert_eq!(push(r, &[i; 8], u32::MAX, hc), Push::Done);
        }
        assert_eq!(push(r, &[9; 8], u32::MAX, hc), Push::NoRoom);
        // An empty item's record is just its 8-byte header: it still fits.
        assert_eq!(push(r, &[], u32::MAX, hc), Push::Done);
        assert_eq!(push(r, &[], u32::MAX, hc), Push::NoRoom);
        assert_eq!(r.len(), 16);
        for i in 0..15u8 {
            assert_eq!(pop(r), Some(vec![i; 8]));
        }
        assert_eq!(pop(r), Some(vec![]));
        assert_eq!(push(r, &[9; 200], u32::MAX, hc), Push::Done);
        assert_eq!(pop(r), Some(vec![9; 200]));
        // The largest record: all but the terminator.
        assert_eq!(push(r, &[7; 240], u32::MAX, hc), Push::Done);
        assert_eq!(pop(r), Some(vec![7; 240]));
    });
}

#[test]
fn maxcount_is_full() {
    with_ring(1024, |r, hc| {
        assert_eq!(push(r, b"a", 2, hc), Push::Done);
        assert_eq!(push(r, b"b", 2, hc), Push::Done);
        assert_eq!(push(r, b"c", 2, hc), Push::Full);
        assert_eq!(pop(r), Some(b"a".to_vec()));
        assert_eq!(push(r, b"c", 2, hc), Push::Done);
    });
}

#[test]
fn unpublished_record_is_invisible() {
    let mut h = HeapRing::new(256);
    let hc = ProducerCache::new();
    {
        let r = h.ring();
        // A producer that reserved, wrote all of a record but its header
        // (which it stores last) and died leaves nothing visible.
        // SAFETY: single-threaded test.
        let res = unsafe { r.reserve(5, u32::MAX, &hc) }.unwrap();
        assert!(res.is_ok());
    }
    // Everything but the word at `tail` (the terminator) looks like headers.
    h.mem.fill(0x0000_0001_0000_0005);
    h.mem[0] = 0;
    let r = h.ring();
    assert_eq!(pop(&r), None);
    assert_eq!(r.len(), 0);
    // SAFETY: single-threaded test: as if the next producer took the lock
    // from the dead one.
    unsafe { r.repair() }.unwrap();
    assert_eq!(pop(&r), None);
    assert_eq!(push(&r, b"hello", u32::MAX, &hc), Push::Done);
    assert_eq!(pop(&r), Some(b"hello".to_vec()));
}

#[test]
fn header_stored_without_tail_is_completed_by_repair() {
    let mut h = HeapRing::new(256);
    let hc = ProducerCache::new();
    let r = h.ring();
    assert_eq!(push(&r, b"one", u32::MAX, &hc), Push::Done);
    // A producer killed between its header store and its `tail` store: the
    // record is published (a consumer may take it), `tail` lags.
    let before = r.ctl.tail.0.load(Ordering::Relaxed);
    assert_eq!(push(&r, b"two", u32::MAX, &hc), Push::Done);
    r.ctl.tail.0.store(before, Ordering::Relaxed);
    assert_eq!(r.len(), 1);
    assert_eq!(pop(&r), Some(b"one".to_vec()));
    assert_eq!(pop(&r), Some(b"two".to_vec()));
    // `tail` behind `head`: counted as empty, `published` follows `head`.
    assert_eq!(r.len(), 0);
    assert!(!r.has_record());
    assert_eq!(r.published(), 2);
    assert_eq!(pop(&r), None);
    // The next holder of the producer lock completes `tail`.
    // SAFETY: single-threaded test.
    unsafe { r.repair() }.unwrap();
    assert_eq!(unpack(r.ctl.tail.0.load(Ordering::Relaxed)).0, 2);
    // SAFETY: as above; repairing twice changes nothing.
    unsafe { r.repair() }.unwrap();
    assert_eq!(unpack(r.ctl.tail.0.load(Ordering::Relaxed)).0, 2);
    let hc = ProducerCache::new();
    assert_eq!(push(&r, b"three", u32::MAX, &hc), Push::Done);
    assert_eq!(pop(&r), Some(b"three".to_vec()));
}

/// A 256-byte ring holding one record, `abc`, for tests to scribble over
/// its header (`mem[0]`).
fn ring_with_abc() -> HeapRing {
    let mut h = HeapRing::new(256);
    push(&h.ring(), b"abc", u32::MAX, &ProducerCache::new());
    h
}

#[test]
fn corruption_is_an_error() {
    let mut h = ring_with_abc();
    // Scribble a huge length into the record header.
    h.mem[0] = 0xffff_ff00 | (u64::from(REC_INLINE) << 32);
    let r = h.ring();
    let mut out = Vec::new();
    // SAFETY: single-threaded test.
    assert!(unsafe { r.peek(&mut out, true) }.is_err());
    // A header whose sequence is wrong while `tail` says it is published.
    h.mem[0] = 3 | (u64::from(REC_INLINE) << 32) | (5 << 40);
    let r = h.ring();
    // SAFETY: single-threaded test.
    let got = unsafe { r.peek(&mut out, true) };
    assert_eq!(got, Err(Corrupted("record sequence number mismatch")));
    h.ctl.head.0.store(pack(0, 7), Ordering::Relaxed);
    let r = h.ring();
    // SAFETY: single-threaded test.
    let got = unsafe { r.peek(&mut out, true) };
    assert_eq!(got, Err(Corrupted("ring position out of range")));
}

#[test]
fn fuzz_corpus_replays() {
    crate::fuzz::replay_corpus("queue_record", 4, crate::fuzz::queue_record);
}

proptest::proptest! {
    #[test]
    fn fuzz_entry_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        crate::fuzz::queue_record(&data);
    }

    /// Operation streams on the ring plus overflow log, checked against a
    /// model by the fuzz entry (mode bits 0x41).
    #[test]
    fn ring_and_log_match_a_model(
        sizes in 0u8..16,
        ops in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
    ) {
        let mut data = vec![0x41 | (sizes << 1)];
        data.extend(ops);
        crate::fuzz::queue_record(&data);
    }
}

#[test]
fn ring_and_log_keep_put_order() {
    use crate::overflow::Overflow;
    use crate::records::Records;
    let ctl = Ctl::new_boxed();
    let mut ring_mem = vec![0u64; 256 / 8];
    let mut log_mem = vec![0u64; 4096 / 8];
    // SAFETY: two disjoint heap buffers, 8-aligned, borrowed for the views'
    // life; the log is small enough never to be trimmed.
    let recs = unsafe {
        Records {
            ring: Ring::new(&ctl, ring_mem.as_mut_ptr().cast(), 256),
            ovf: Overflow::new(&ctl, log_mem.as_mut_ptr().cast(), 4096),
        }
    };
    let hc = ProducerCache::new();
    let put = |v: u64| {
        // SAFETY: single-threaded test: the only producer.
        let r = unsafe { recs.try_push(REC_INLINE, &v.to_le_bytes(), u32::MAX, &hc, || true) };
        assert_eq!(r, Ok(Push::Done));
    };
    let get = || {
        let mut out = Vec::new();
        // SAFETY: single-threaded test: the only consumer.
        let t = unsafe { recs.peek(&mut out, true) }.expect("not corrupted")?;
        // SAFETY: as above.
        assert!(unsafe { recs.commit(t) }, "head moved by nobody");
        Some(u64::from_le_bytes(out.try_into().expect("8 bytes")))
    };
    // 15 records of 16 bytes fill the ring; 15 to 17 go to the log.
    (0..18).for_each(put);
    assert_eq!(recs.len(), 18);
    assert_eq!(recs.ovf.len(), 3);
    // Room in the ring again: 18 goes there, but leaves after 15 to 17.
    assert_eq!(get(), Some(0));
    put(18);
    assert_eq!(recs.ovf.len(), 3);
    let got: Vec<u64> = std::iter::from_fn(get).collect();
    assert_eq!(got, (1..19).collect::<Vec<_>>());
    // Drained, the log starts over at position 0: five records of 24 bytes
    // later, its head is at byte 120 (in 8-byte units: 15), not 192.
    (0..20).for_each(put);
    assert_eq!(recs.ovf.len(), 5);
    let got: Vec<u64> = std::iter::from_fn(get).collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_eq!(unpack(ctl.ovf_head.0.load(Ordering::Relaxed)), (8, 15));
}

#[test]
fn two_producers_with_stale_caches_never_overwrite() {
    // Producer A's cached head goes stale while B fills and C drains: A must
    // not trust it (the bug class that corrupts MPMC rings).
    let mut h = HeapRing::new(256);
    let r = h.ring();
    let (a, b) = (ProducerCache::new(), ProducerCache::new());
    assert_eq!(push(&r, &[1; 8], u32::MAX, &a), Push::Done);
    assert_eq!(pop(&r), Some(vec![1; 8]));
    for round in 0..5u8 {
        let mut n = 0;
        while push(&r, &[round; 8], u32::MAX, &b) == Push::Done {
            n += 1;
        }
        // 15 records and the terminator.
        assert_eq!(n, 15);
        for _ in 0..8 {
            assert_eq!(pop(&r), Some(vec![round; 8]));
        }
        // 8 free records now; A may take them, never more.
        let mut m = 0;
        while push(&r, &[200 + round; 8], u32::MAX, &a) == Push::Done {
            m += 1;
        }
        assert_eq!(m, 8);
        for _ in 0..7 {
            assert_eq!(pop(&r), Some(vec![round; 8]));
        }
        for _ in 0..8 {
            assert_eq!(pop(&r), Some(vec![200 + round; 8]));
        }
        assert_eq!(pop(&r), None);
    }
}

#[test]
fn take_without_the_lock() {
    with_ring(256, |r, hc| {
        let mut out = vec![9; 3];
        assert_eq!(r.take(&mut out, || false), Ok(Take::Empty));
        push(r, b"one", u32::MAX, hc);
        push(r, b"", u32::MAX, hc);
        push(r, b"three", u32::MAX, hc);
        // `defer` is asked once a record is found, and leaves it in place.
        assert_eq!(r.take(&mut out, || true), Ok(Take::Locked));
        assert_eq!(r.len(), 3);
        assert_eq!(r.take(&mut out, || false), Ok(Take::Taken));
        assert_eq!(out, b"one");
        assert_eq!(r.take(&mut out, || false), Ok(Take::Taken));
        assert_eq!(out, b"");
        assert_eq!(pop(r).as_deref(), Some(&b"three"[..]));
        assert_eq!(r.take(&mut out, || false), Ok(Take::Empty));
        assert_eq!(r.len(), 0);
        // Wrap around the end many times, alternating with locked consumers.
        for i in 0..200u32 {
            let v = i.to_le_bytes().repeat(1 + i as usize % 5);
            assert_eq!(push(r, &v, u32::MAX, hc), Push::Done);
            if i % 3 == 0 {
                assert_eq!(pop(r), Some(v));
            } else {
                assert_eq!(r.take(&mut out, || false), Ok(Take::Taken));
                assert_eq!(out, v);
            }
        }
    });
}

#[test]
fn a_locked_commit_loses_to_a_lock_free_take() {
    with_ring(256, |r, hc| {
        push(r, b"first", u32::MAX, hc);
        push(r, b"second", u32::MAX, hc);
        let mut locked = Vec::new();
        // SAFETY: single-threaded test; we act as the consumer-lock holder.
        let p = unsafe { r.peek(&mut locked, true) }
            .expect("not corrupted")
            .expect("a record");
        assert_eq!(locked, b"first");
        // A lock-free consumer takes the same record first.
        let mut free = Vec::new();
        assert_eq!(r.take(&mut free, || false), Ok(Take::Taken));
        assert_eq!(free, b"first");
        // The lock holder's commit fails, and its next look finds the next one.
        // SAFETY: as above.
        assert!(!unsafe { r.commit(p) });
        assert_eq!(pop(r).as_deref(), Some(&b"second"[..]));
        assert_eq!(pop(r), None);
    });
}

#[test]
fn take_leaves_large_records_to_the_lock() {
    with_ring(256, |r, hc| {
        let rec = [7u8; 16];
        // SAFETY: single-threaded test: the only producer.
        let pushed = unsafe { r.try_push(REC_LARGE, &rec, u32::MAX, hc) };
        assert_eq!(pushed, Ok(Push::Done));
        let mut out = Vec::new();
        assert_eq!(r.take(&mut out, || false), Ok(Take::Locked));
        assert_eq!(r.len(), 1);
        assert_eq!(pop(r).as_deref(), Some(&rec[..]));
    });
}

#[test]
fn take_reports_scribbled_records() {
    let mut h = ring_with_abc();
    // A header of this sequence with an impossible length: an error.
    h.mem[0] = 0xffff_ff00 | (u64::from(REC_INLINE) << 32);
    let mut out = Vec::new();
    assert_eq!(
        h.ring().take(&mut out, || false),
        Err(Corrupted("record longer than the ring"))
    );
    // An unknown kind: an error.
    h.mem[0] = 3 | (9 << 32);
    assert_eq!(
        h.ring().take(&mut out, || false),
        Err(Corrupted("unknown record kind"))
    );
    // A header of another sequence looks unpublished (a strict look under
    // the lock reports it, see `corruption_is_an_error`).
    h.mem[0] = 3 | (u64::from(REC_INLINE) << 32) | (5 << 40);
    assert_eq!(h.ring().take(&mut out, || false), Ok(Take::Empty));
    h.ctl.head.0.store(pack(0, 7), Ordering::Relaxed);
    assert_eq!(
        h.ring().take(&mut out, || false),
        Err(Corrupted("ring position out of range"))
    );
}

/// Items each producer puts in the threaded tests below.
const PER: u32 = 20_000;
/// Producers in the threaded tests below.
const PRODUCERS: u32 = 2;

/// Runs [`PRODUCERS`] threads that put [`PER`] items each with
/// `push(producer, payload)` (called under a shared producer lock, and again
/// while it says there is no room), and three consumer threads that take with
/// `take(consumer, round, out)` (true: an item was taken into `out`), until
/// every item was taken. Checks that every item arrived exactly once and
/// that each consumer saw each producer's items in put order.
///
/// Nothing blocks: every loop gives up after a minute, and the checks then
/// fail.
fn stress(
    push: impl Fn(u32, &[u8]) -> Push + Sync,
    take: impl Fn(usize, u32, &mut Vec<u8>) -> bool + Sync,
) {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let prod_lock = Mutex::new(());
    let taken = AtomicUsize::new(0);
    let total = (PER * PRODUCERS) as usize;
    let got: Vec<Vec<(u32, u32)>> = std::thread::scope(|s| {
        for p in 0..PRODUCERS {
            let (push, prod_lock) = (&push, &prod_lock);
            s.spawn(move || {
                for i in 0..PER {
                    let mut v = p.to_le_bytes().to_vec();
                    v.extend_from_slice(&i.to_le_bytes());
                    v.resize(8 + (i % 13) as usize, 0xab);
                    let put = || {
                        let _g = prod_lock.lock().expect("no panics");
                        push(p, &v)
                    };
                    while put() != Push::Done {
                        assert!(std::time::Instant::now() < deadline, "timed out");
                        std::thread::yield_now();
                    }
                }
            });
        }
        let consumers: Vec<_> = (0..3)
            .map(|c| {
                let (take, taken) = (&take, &taken);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    let mut out = Vec::new();
                    let mut round = 0u32;
                    while taken.load(Ordering::SeqCst) < total
                        && std::time::Instant::now() < deadline
                    {
                        round = round.wrapping_add(1);
                        if take(c, round, &mut out) {
                            taken.fetch_add(1, Ordering::SeqCst);
                            let w = |i: usize| {
                                u32::from_le_bytes(out[i..i + 4].try_into().expect("8+ bytes"))
                            };
                            mine.push((w(0), w(4)));
                        } else {
                            std::thread::yield_now();
                        }
                    }
                    mine
                })
            })
            .collect();
        consumers
            .into_iter()
            .map(|h| h.join().expect("no panics"))
            .collect()
    });
    let mut seen = vec![vec![false; PER as usize]; PRODUCERS as usize];
    for mine in &got {
        for p in 0..PRODUCERS {
            let seq: Vec<u32> = mine.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
            assert!(seq.windows(2).all(|w| w[0] < w[1]), "out of put order");
        }
        for &(p, i) in mine {
            assert!(!seen[p as usize][i as usize], "record {p}/{i} taken twice");
            seen[p as usize][i as usize] = true;
        }
    }
    assert!(seen.iter().flatten().all(|&b| b), "a record was lost");
}

/// Producers and consumers on threads, some consumers taking without the
/// lock and some under it (a std mutex stands for the consumer lock): every
/// record arrives exactly once, and each producer's in its order.
#[test]
fn lock_free_and_locked_consumers_share_the_work() {
    let ctl = Ctl::new_boxed();
    let mut mem = vec![0u64; 512 / 8];
    let base = mem.as_mut_ptr() as usize;
    // Producers write under the producer lock `stress` holds; consumers
    // follow the ring's protocol (locked ones under `cons_lock`).
    let ring = || {
        // SAFETY: a heap buffer of 512 bytes, alive until the test ends,
        // disjoint from `ctl`, only accessed through ring views.
        unsafe { Ring::new(&ctl, base as *mut u8, 512) }
    };
    let caches = [ProducerCache::new(), ProducerCache::new()];
    let cons_lock = std::sync::Mutex::new(());
    stress(
        |p, v| {
            let cache = &caches[p as usize];
            // SAFETY: `stress` holds the producer lock around `push`.
            unsafe { ring().try_push(REC_INLINE, v, u32::MAX, cache) }.expect("not corrupted")
        },
        |c, _, out| {
            let r = ring();
            if c != 0 {
                return r.take(out, || false).expect("not corrupted") == Take::Taken;
            }
            let _g = cons_lock.lock().expect("no panics");
            // SAFETY: we hold the consumer lock, from the peek to the commit.
            match unsafe { r.peek(out, true) }.expect("not corrupted") {
                // SAFETY: as above.
                Some(p) => unsafe { r.commit(p) },
                None => false,
            }
        },
    );
    drop(mem);
}

#[test]
fn a_peek_at_a_head_that_moved_on_says_so() {
    with_ring(256, |r, hc| {
        let mut out = Vec::new();
        // Fill the ring so that the next records reuse the first one's room.
        let big = [5u8; 56];
        for _ in 0..3 {
            assert_eq!(push(r, &big, u32::MAX, hc), Push::Done);
        }
        let old = r.head_word();
        // A lock-free consumer takes the first record; a producer reuses its room.
        assert_eq!(r.take(&mut out, || false), Ok(Take::Taken));
        assert_eq!(r.take(&mut out, || false), Ok(Take::Taken));
        // Records of 16 bytes from position 192: the fifth starts at 0.
        for i in 0..5u64 {
            assert_eq!(push(r, &i.to_le_bytes(), u32::MAX, hc), Push::Done);
        }
        for strict in [false, true] {
            let got = r.peek_at(old, &mut out, strict);
            assert_eq!(got, Ok(Peek::Moved), "strict: {strict}");
        }
        // From the current head, the records come in order.
        assert_eq!(pop(r).as_deref(), Some(&big[..]));
        for i in 0..5u64 {
            assert_eq!(pop(r), Some(i.to_le_bytes().to_vec()));
        }
        assert_eq!(pop(r), None);
    });
}

/// As `lock_free_and_locked_consumers_share_the_work`, with the overflow log
/// in play: producers put into the log now and then while the ring is full,
/// and lock-free takes fall back to the lock when log records may come
/// first. One consumer, taking both ways in turn, sees nearly every item:
/// its order is the order items leave the queue (the other two, taking
/// without the lock, take one now and then).
#[test]
fn consumers_keep_put_order_across_ring_and_log() {
    use crate::overflow::Overflow;
    use crate::records::Records;
    const RING: usize = 256;
    const LOG: usize = 64 * 1024;
    let ctl = Ctl::new_boxed();
    let mut ring_mem = vec![0u64; RING / 8];
    let mut log_mem = vec![0u64; LOG / 8];
    let (ring_base, log_base) = (
        ring_mem.as_mut_ptr() as usize,
        log_mem.as_mut_ptr() as usize,
    );
    // Producers write under the producer lock `stress` holds; consumers
    // follow the protocol (locked ones under `cons_lock`); the log is small
    // enough never to be trimmed.
    let recs = || {
        // SAFETY: two disjoint 8-aligned heap buffers, alive until the test
        // ends, disjoint from `ctl`, only accessed through these views.
        unsafe {
            Records {
                ring: Ring::new(&ctl, ring_base as *mut u8, RING),
                ovf: Overflow::new(&ctl, log_base as *mut u8, LOG),
            }
        }
    };
    let caches = [ProducerCache::new(), ProducerCache::new()];
    let cons_lock = std::sync::Mutex::new(());
    let puts = std::sync::atomic::AtomicU32::new(0);
    stress(
        |p, v| {
            // Every fifth put may use the log.
            let log_ok = puts.fetch_add(1, Ordering::Relaxed) % 5 == 0;
            let cache = &caches[p as usize];
            // SAFETY: `stress` holds the producer lock around `push`; 20 <= RING / 4.
            unsafe { recs().try_push(REC_INLINE, v, u32::MAX, cache, || log_ok) }
                .expect("not corrupted")
        },
        |c, round, out| {
            if c != 0 && round % 64 != 0 {
                return false;
            }
            let r = recs();
            if c != 0 || round % 3 != 0 {
                match r.take(out).expect("not corrupted") {
                    Take::Taken => return true,
                    Take::Empty => return false,
                    Take::Locked => {}
                }
            }
            let _g = cons_lock.lock().expect("no panics");
            // SAFETY: we hold the consumer lock, from the peek to the commit.
            match unsafe { r.peek(out, true) }.expect("not corrupted") {
                // SAFETY: as above.
                Some(t) => unsafe { r.commit(t) },
                None => false,
            }
        },
    );
    // The log's head sequence counts the records taken from it.
    assert!(recs().ovf.consumed() > 0, "the log was never used");
    drop((ring_mem, log_mem));
}

// Groups of records (`batch`).

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
    with_ring(1024, |r, hc| {
        let mut next = 0u32;
        let mut want = 0u32;
        for round in 0..300u32 {
            let n = 1 + round % 9;
            let mut b = batch((next..next + n).map(item));
            let mut put = 0;
            while b.pending() > 0 {
                match publish(r, &mut b, u32::MAX, hc) {
                    Ok(k) => put += k,
                    Err(Push::NoRoom) => {
                        // Drain a little, in runs of various lengths.
                        for v in take(r, 1 + (round as usize % 5)) {
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
            let got = take(r, 64);
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
    });
}

#[test]
fn a_group_is_cut_at_maxcount() {
    with_ring(1024, |r, hc| {
        let mut b = batch((0..5).map(item));
        assert_eq!(publish(r, &mut b, 3, hc), Ok(3));
        assert_eq!(publish(r, &mut b, 3, hc), Err(Push::Full));
        assert_eq!(take(r, 2).len(), 2);
        assert_eq!(publish(r, &mut b, 3, hc), Ok(2));
        let got = take(r, 10);
        assert_eq!(got, (2..5).map(item).collect::<Vec<_>>());
    });
}

/// A producer killed between the group's header store and its `tail`
/// store has published the whole group: the next holder of the lock must
/// move `tail` past all of it, or its next record would overwrite records
/// consumers can see.
#[test]
fn repair_completes_a_whole_group() {
    with_ring(1024, |r, hc| {
        let tail0 = r.ctl.tail.0.load(Ordering::Relaxed);
        let mut b = batch((0..4).map(item));
        assert_eq!(publish(r, &mut b, u32::MAX, hc), Ok(4));
        // As if killed before the `tail` store.
        r.ctl.tail.0.store(tail0, Ordering::Relaxed);
        // SAFETY: single-threaded: we hold the (notional) producer lock.
        unsafe { r.repair() }.unwrap();
        assert_eq!(unpack(r.ctl.tail.0.load(Ordering::Relaxed)).0, 4);
        let mut b = batch([item(4)]);
        assert_eq!(publish(r, &mut b, u32::MAX, hc), Ok(1));
        assert_eq!(take(r, 10), (0..5).map(item).collect::<Vec<_>>());
    });
}

/// A producer killed before the group's header store leaves nothing
/// visible, and the next one writes over its bytes.
#[test]
fn a_group_killed_before_its_header_is_invisible() {
    with_ring(1024, |r, hc| {
        let mut b = batch((0..4).map(item));
        assert_eq!(publish(r, &mut b, u32::MAX, hc), Ok(4));
        let tail0 = 0u64;
        // Undo the first header and `tail`: the other records' bytes stay.
        r.word_at(0).store(0, Ordering::Relaxed);
        r.ctl.tail.0.store(tail0, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { r.repair() }.unwrap();
        assert_eq!(r.ctl.tail.0.load(Ordering::Relaxed), 0);
        assert!(take(r, 10).is_empty());
        let hc2 = ProducerCache::new();
        let mut b = batch([vec![9; 3]]);
        assert_eq!(publish(r, &mut b, u32::MAX, &hc2), Ok(1));
        assert_eq!(take(r, 10), vec![vec![9; 3]]);
    });
}
