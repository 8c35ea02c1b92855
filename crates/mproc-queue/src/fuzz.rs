//! Fuzz entry points (also replayed by ordinary tests on the corpus).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::Ctl;
use crate::overflow::{self, Overflow};
use crate::records::Records;
use crate::ring::{Corrupted, ProducerCache, Push, REC_INLINE, Ring, Take};

/// A heap ring of `cap` bytes (u64s keep it 8-aligned); also the unit
/// tests' ring.
pub(crate) struct HeapRing {
    pub(crate) ctl: Box<Ctl>,
    pub(crate) mem: Vec<u64>,
}

impl HeapRing {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            ctl: Ctl::new_boxed(),
            mem: vec![0; cap / 8],
        }
    }

    pub(crate) fn ring(&mut self) -> Ring<'_> {
        let cap = self.mem.len() * 8;
        // SAFETY: `mem` is a heap buffer of `cap` bytes, disjoint from `ctl`,
        // borrowed mutably for the ring's lifetime; cap is a multiple of 8 in range.
        unsafe { Ring::new(&self.ctl, self.mem.as_mut_ptr().cast(), cap) }
    }
}

/// A heap ring followed by a heap overflow log.
struct HeapRecords {
    ctl: Box<Ctl>,
    ring: Vec<u64>,
    log: Vec<u64>,
}

impl HeapRecords {
    fn new(cap: usize, log: usize) -> Self {
        Self {
            ctl: Ctl::new_boxed(),
            ring: vec![0; cap / 8],
            log: vec![0; log / 8],
        }
    }

    fn records(&mut self) -> Records<'_> {
        let (cap, log) = (self.ring.len() * 8, self.log.len() * 8);
        debug_assert!(log <= overflow::RETAIN);
        Records {
            // SAFETY: as in `HeapRing::ring`.
            ring: unsafe { Ring::new(&self.ctl, self.ring.as_mut_ptr().cast(), cap) },
            // SAFETY: a separate heap buffer of `log <= RETAIN` bytes (so never
            // trimmed), 8-aligned, disjoint from `ctl` and the ring.
            ovf: unsafe { Overflow::new(&self.ctl, self.log.as_mut_ptr().cast(), log) },
        }
    }
}

/// Runs `entry` on every file of the fuzz corpus `name` (in `fuzz/corpus`),
/// and checks that there are at least `min` of them.
#[cfg(test)]
pub(crate) fn replay_corpus(name: &str, min: usize, entry: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let data = std::fs::read(e.expect("dir entry").path()).expect("readable corpus file");
        entry(&data);
        n += 1;
    }
    assert!(n >= min, "corpus has only {n} files");
}

/// Consumes records from arbitrary bytes until there is none or one is
/// reported corrupted (`rounds` at most), by lock-free takes and locked
/// peeks alternately: it must not panic, and no payload taken (peeked) may
/// be larger than `take_max` (`peek_max`) bytes.
///
/// `take` is a lock-free take; `peek` a locked peek and its commit, which
/// says whether the commit went through (`None`: nothing to peek, or
/// corrupted).
fn consume_arbitrary(
    rounds: usize,
    (take_max, peek_max): (usize, usize),
    mut take: impl FnMut(&mut Vec<u8>) -> Result<Take, Corrupted>,
    mut peek: impl FnMut(&mut Vec<u8>) -> Option<bool>,
) {
    let mut out = Vec::new();
    for i in 0..rounds {
        if i % 2 == 0 {
            match take(&mut out) {
                Ok(Take::Taken) => {
                    assert!(out.len() <= take_max, "payload larger than the ring");
                    continue;
                }
                Ok(Take::Locked) => {}
                Ok(Take::Empty) | Err(_) => break,
            }
        }
        let Some(committed) = peek(&mut out) else {
            break;
        };
        assert!(out.len() <= peek_max, "payload larger than its store");
        assert!(committed, "head moved by nobody");
    }
}

/// Fills `words` then `mems` from `bytes` (zeros once they run out).
fn fill(bytes: &[u8], words: &[&AtomicU64], mems: &mut [&mut Vec<u64>]) {
    let mut it = bytes.chunks(8).map(|c| {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(b)
    });
    for w in words {
        w.store(it.next().unwrap_or(0), Ordering::Relaxed);
    }
    for m in mems.iter_mut() {
        for x in m.iter_mut() {
            *x = it.next().unwrap_or(0).to_le();
        }
    }
}

/// Fuzzes the ring and the overflow log together (see `queue_record`).
fn records(first: u8, rest: &[u8]) {
    let cap = 256 * (1 + usize::from(first >> 1) % 4);
    let log = 512 * (1 + usize::from(first >> 3) % 4);
    let mut h = HeapRecords::new(cap, log);
    let hc = ProducerCache::new();
    if first & 1 == 0 {
        // The sixth word: bit 0 asks for a repair first, as after a
        // producer died holding the lock.
        let flags = AtomicU64::new(0);
        let ctl = &h.ctl;
        let words = [
            &ctl.head.0,
            &ctl.tail.0,
            &ctl.ovf_head.0,
            &ctl.ovf.tail,
            &ctl.ovf.high,
            &flags,
        ];
        let (ring_mem, log_mem) = (&mut h.ring, &mut h.log);
        fill(rest, &words, &mut [ring_mem, log_mem]);
        let recs = h.records();
        if flags.load(Ordering::Relaxed) & 1 != 0 {
            // SAFETY: single-threaded: nobody else touches the stores.
            let _ = unsafe { recs.ring.repair() };
        }
        consume_arbitrary(
            cap + log,
            (cap, cap.max(log)),
            |out| recs.take(out),
            // SAFETY: single-threaded: nobody else touches the stores.
            |out| Some(unsafe { recs.commit(recs.peek(out, true).ok()??) }),
        );
        let _ = recs.len();
        let _ = recs.has_room(8, 3, true, true);
        // SAFETY: as above.
        let _ = unsafe { recs.try_push(REC_INLINE, b"x", u32::MAX, &hc, || true) };
        // SAFETY: as above.
        let _ = unsafe { recs.reserve_overflow(9, 5) };
        return;
    }
    let recs = h.records();
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut out = Vec::new();
    let mut n = 0u8;
    for &op in rest {
        if op & 1 == 0 {
            let len = usize::from((op >> 1) & 0x3f) * (cap / 256).max(1);
            n = n.wrapping_add(1);
            let payload = vec![n; len];
            let maxcount = if op & 0x80 != 0 { 40 } else { u32::MAX };
            // Whether the log may be started (a put that waited long enough).
            let log_ok = op & 0x40 != 0 || n % 3 == 0;
            // SAFETY: single-threaded; `len <= 63 * cap / 256 < cap / 4`.
            match unsafe { recs.try_push(REC_INLINE, &payload, maxcount, &hc, || log_ok) } {
                Ok(Push::Done) => model.push_back(payload),
                Ok(Push::Full) => assert!(model.len() >= maxcount as usize, "full below maxcount"),
                Ok(Push::NoRoom) => assert!(
                    !log_ok || !recs.ovf.has_room(len),
                    "no room although there is"
                ),
                Err(e) => panic!("own records reported corrupted: {e:?}"),
            }
        } else {
            // Consumers that take without the lock, and ones that hold it.
            if op & 0x80 != 0 {
                match recs.take(&mut out) {
                    Ok(Take::Taken) => {
                        assert_eq!(Some(&out), model.front(), "wrong record taken");
                        model.pop_front();
                        continue;
                    }
                    // Only records behind the log's need the lock.
                    Ok(Take::Locked) => assert!(recs.ovf.has_record(), "locked for no reason"),
                    Ok(Take::Empty) => {
                        assert!(model.is_empty() || recs.ovf.has_record(), "missed a record");
                    }
                    Err(e) => panic!("own records reported corrupted: {e:?}"),
                }
            }
            // SAFETY: single-threaded.
            match unsafe { recs.peek(&mut out, true) } {
                Ok(Some(t)) => {
                    assert_eq!(Some(&out), model.front(), "wrong record");
                    model.pop_front();
                    // SAFETY: single-threaded.
                    assert!(unsafe { recs.commit(t) }, "head moved by nobody");
                }
                Ok(None) => assert!(model.is_empty(), "empty but the model is not"),
                Err(e) => panic!("own records reported corrupted: {e:?}"),
            }
        }
        assert_eq!(recs.len(), model.len());
    }
}

/// Fuzzes the record parsers and the protocols of the ring and the
/// overflow log.
///
/// With bit 6 of the first byte set, the ring and the overflow log are
/// fuzzed together (bits 1–2 pick the ring's capacity, bits 3–4 the log's,
/// bit 0 the mode, as below). Otherwise the ring alone: the first byte picks
/// a mode and a capacity (256 B to 1 KiB):
/// * even: the next 24 bytes become `head`, `tail` and a flag word (bit 0:
///   repair first, as after a producer died holding the lock), the rest the
///   ring's bytes, and records are consumed until the ring is empty or
///   reported corrupted: arbitrary bytes must never panic or read out of
///   bounds;
/// * odd: the rest is an operation stream (push a record of some length, or
///   pop), checked against a `VecDeque` model.
pub(crate) fn queue_record(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    if first & 0x40 != 0 {
        return records(first, rest);
    }
    let cap = 256 * (1 + usize::from(first >> 1) % 4);
    let mut h = HeapRing::new(cap);
    let caches_h = [ProducerCache::new(), ProducerCache::new()];
    if first & 1 == 0 {
        let word = |i: usize| {
            let mut b = [0u8; 8];
            for (k, x) in b.iter_mut().enumerate() {
                *x = rest.get(i * 8 + k).copied().unwrap_or(0);
            }
            u64::from_le_bytes(b)
        };
        h.ctl.head.0.store(word(0), Ordering::Relaxed);
        h.ctl.tail.0.store(word(1), Ordering::Relaxed);
        let bytes = rest.get(24..).unwrap_or(&[]);
        for (i, chunk) in bytes.chunks(8).take(h.mem.len()).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            h.mem[i] = u64::from_ne_bytes(b);
        }
        let ring = h.ring();
        if word(2) & 1 != 0 {
            // SAFETY: single-threaded: nobody else touches the ring.
            let _ = unsafe { ring.repair() };
        }
        consume_arbitrary(
            cap,
            (cap, cap),
            |out| ring.take(out, || false),
            // SAFETY: single-threaded: nobody else touches the ring.
            |out| Some(unsafe { ring.commit(ring.peek(out, true).ok()??) }),
        );
        // A push after arbitrary state must not panic either.
        // SAFETY: as above.
        let _ = unsafe { ring.try_push(REC_INLINE, b"x", u32::MAX, &caches_h[0]) };
        return;
    }
    let ring = h.ring();
    let mut model: VecDeque<Vec<u8>> = VecDeque::new();
    let mut out = Vec::new();
    let mut n = 0u8;
    // Two producer handles and two consumer handles with their own caches,
    // picked by a running bit, as several processes would be.
    let mut who = 0usize;
    for &op in rest {
        who = (who + usize::from(op >> 7) + usize::from(op & 0x40 != 0)) % 2;
        if op & 1 == 0 {
            let len = usize::from((op >> 1) & 0x3f) * (cap / 64).max(1);
            n = n.wrapping_add(1);
            let payload = vec![n; len];
            let maxcount = if op & 0x80 != 0 {
                1 + u32::from(op >> 4 & 7)
            } else {
                u32::MAX
            };
            // SAFETY: single-threaded.
            match unsafe { ring.try_push(REC_INLINE, &payload, maxcount, &caches_h[who]) } {
                Ok(Push::Done) => model.push_back(payload),
                Ok(Push::Full) => assert!(model.len() >= maxcount as usize, "full below maxcount"),
                Ok(Push::NoRoom) => {
                    let used: usize = model
                        .iter()
                        .map(|p| crate::ring::record_size(p.len()))
                        .sum();
                    // A record needs its size plus the terminator after it.
                    assert!(
                        used + crate::ring::record_size(len) + 8 > cap,
                        "no room although there is"
                    );
                }
                Err(e) => panic!("own ring reported corrupted: {e:?}"),
            }
        } else if who == 1 {
            // This consumer takes without the lock.
            match ring.take(&mut out, || false) {
                Ok(Take::Taken) => {
                    assert_eq!(Some(&out), model.front(), "wrong record taken");
                    model.pop_front();
                }
                Ok(Take::Empty) => assert!(model.is_empty(), "ring empty but model is not"),
                Ok(Take::Locked) => panic!("an inline record needs no lock"),
                Err(e) => panic!("own ring reported corrupted: {e:?}"),
            }
        } else {
            // SAFETY: single-threaded.
            match unsafe { ring.peek(&mut out, true) } {
                Ok(Some(p)) => {
                    assert_eq!(
                        Some(&out),
                        model.front().as_ref().map(|v| *v),
                        "wrong record"
                    );
                    model.pop_front();
                    // SAFETY: single-threaded.
                    assert!(unsafe { ring.commit(p) }, "head moved by nobody");
                }
                Ok(None) => assert!(model.is_empty(), "ring empty but model is not"),
                Err(e) => panic!("own ring reported corrupted: {e:?}"),
            }
        }
        assert_eq!(ring.len(), model.len());
    }
}
