//! The overflow log: where records go when the ring has no room for them,
//! so that a queue without an item limit never makes a producer wait for
//! bytes (and `join` before `get` cannot deadlock, whatever the sizes).
//!
//! # Protocol
//!
//! The log is a region of the queue's segment, reserved at creation (the
//! memory file is sparse: its pages exist only once written) and used
//! linearly from position 0. `tail` and `head` are packed
//! `(sequence: u32, position / 8: u32)` words on lines of their own, which
//! stay quiet while the log is unused. A record is an 8-byte header (`len:
//! u32`, `kind: u8`, low 24 bits of its sequence), an 8-byte word `after`
//! (the number of ring records published before it, wrapping), then `len`
//! payload bytes padded to 8. Records never wrap.
//!
//! * A producer, holding the producer lock, writes a record at `tail` and
//!   publishes it by storing the new `tail`, exactly as in the ring.
//! * A consumer, holding the consumer lock, reads the record at `head` and
//!   consumes it by storing the new `head`.
//! * The log is empty when both sequences are equal (whatever the
//!   positions). A producer that finds it empty starts again at position 0:
//!   it stores `head = (seq, 0)` before publishing, which is safe because no
//!   consumer moves `head` while the log is empty, and consumers load `tail`
//!   before `head`. Pages beyond [`RETAIN`] that the previous round wrote
//!   are then given back to the system.
//! * Order with the ring: a consumer takes the log's first record once every
//!   ring record published before it (`after`) is consumed, and a ring record
//!   otherwise; so items leave in the order their puts took the producer
//!   lock, whichever of the two holds them.
//!
//! As in the ring, everything read is checked, and a failed check is a
//! [`Corrupted`] error.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::Ctl;
use crate::ring::{Corrupted, Push, header, is_header_of, kind_and_len, pack, padded, unpack};

/// The size of a record's header and `after` word.
pub(crate) const OVF_HEADER: usize = 16;
/// The largest log (positions are counted in 8-byte units in a u32).
pub(crate) const MAX_OVERFLOW: usize = 1 << 34;
/// The default size of the log: the largest (it costs address space only).
pub(crate) const DEFAULT_OVERFLOW: usize = MAX_OVERFLOW;
/// Bytes at the start of the log whose pages are kept between rounds.
pub(crate) const RETAIN: usize = 256 * 1024;

/// The size a record with `len` payload bytes takes in the log.
pub(crate) fn record_size(len: usize) -> usize {
    OVF_HEADER + padded(len)
}

/// The first record of the log, read by [`Overflow::front`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Front {
    /// Its kind ([`REC_INLINE`](crate::ring::REC_INLINE) or [`REC_LARGE`](crate::ring::REC_LARGE)).
    pub(crate) kind: u8,
    /// How many ring records were published before it (wrapping).
    pub(crate) after: u32,
    len: usize,
    /// Byte offset of its payload.
    payload: usize,
    /// The `head` word that consumes it.
    next_head: u64,
}

/// Room reserved by [`Overflow::reserve`] for one record.
#[derive(Debug)]
pub(crate) struct Reservation {
    /// The sequence the record gets.
    seq: u32,
    /// Byte offset where it starts.
    pos: usize,
    len: u32,
    /// The `head` word to store first (the log was empty and starts over).
    restart: Option<u64>,
}

/// A view of the log: its words in the control block and its bytes.
pub(crate) struct Overflow<'a> {
    ctl: &'a Ctl,
    base: *mut u8,
    cap: usize,
}

impl<'a> Overflow<'a> {
    /// A view of the `cap` bytes at `base`, controlled by `ctl`.
    ///
    /// # Safety
    /// `base` must be valid for reads and writes of `cap` bytes for `'a`, 8-aligned,
    /// not overlapping `ctl` or any Rust reference; `cap` a multiple of 8, at most
    /// [`MAX_OVERFLOW`] (0 disables the log). Unless `cap <= RETAIN` (nothing is
    /// ever trimmed then), the bytes lie in a shared mapping of a memory file.
    pub(crate) unsafe fn new(ctl: &'a Ctl, base: *mut u8, cap: usize) -> Self {
        debug_assert!(cap % 8 == 0 && cap <= MAX_OVERFLOW);
        Self { ctl, base, cap }
    }

    fn tail_word(&self) -> &AtomicU64 {
        &self.ctl.ovf.tail
    }

    fn head_word(&self) -> &AtomicU64 {
        &self.ctl.ovf_head.0
    }

    /// (sequence, byte position) of a word, checked.
    fn check(&self, w: u64) -> Result<(u32, usize), Corrupted> {
        let (seq, units) = unpack(w);
        let pos = units as usize * 8;
        if pos > self.cap {
            return Err(Corrupted("overflow position out of range"));
        }
        Ok((seq, pos))
    }

    /// The most records the log can hold.
    fn max_records(&self) -> u32 {
        (self.cap / OVF_HEADER).min(u32::MAX as usize) as u32
    }

    /// How many records consumers have taken (wrapping).
    pub(crate) fn consumed(&self) -> u32 {
        // Relaxed: a measure of progress, nothing is read through it.
        unpack(self.head_word().load(Ordering::Relaxed)).0
    }

    /// Records published and not consumed, from fresh loads (0 for
    /// impossible words: callers that must know use [`Overflow::count`]).
    pub(crate) fn len(&self) -> usize {
        self.count().map_or(0, |n| n as usize)
    }

    /// Records published and not consumed, checked.
    pub(crate) fn count(&self) -> Result<u32, Corrupted> {
        // Acquire on both: a snapshot; see `publish`/`commit` for the stores.
        let t = unpack(self.tail_word().load(Ordering::Acquire)).0;
        let h = unpack(self.head_word().load(Ordering::Acquire)).0;
        let n = t.wrapping_sub(h);
        if n > self.max_records() {
            return Err(Corrupted("more overflow records than the log can hold"));
        }
        Ok(n)
    }

    /// Whether a record is published and not consumed (a lock-free hint).
    pub(crate) fn has_record(&self) -> bool {
        // Acquire: pairs with the publishing store of `tail`.
        let t = unpack(self.tail_word().load(Ordering::Acquire)).0;
        // Relaxed: a hint; consumers re-read under their lock.
        t != unpack(self.head_word().load(Ordering::Relaxed)).0
    }

    /// The number of records ever published here, wrapping.
    pub(crate) fn published(&self) -> u32 {
        // Acquire: pairs with the publishing store of `tail`.
        unpack(self.tail_word().load(Ordering::Acquire)).0
    }

    /// Whether a record of `len` payload bytes would fit now (true for
    /// impossible words, so that the caller tries and reports them).
    pub(crate) fn has_room(&self, len: usize) -> bool {
        // Acquire on both: fresh views of the two sides.
        let t = self.check(self.tail_word().load(Ordering::Acquire));
        let h = self.check(self.head_word().load(Ordering::Acquire));
        match (t, h) {
            (Ok(t), Ok(h)) => {
                let start = if t.0 == h.0 { 0 } else { t.1 };
                record_size(len) <= self.cap - start
            }
            _ => true,
        }
    }

    /// Reserves room for a record of `len` payload bytes (`Err(NoRoom)` when
    /// the log cannot take it now).
    ///
    /// # Safety
    /// The caller holds the producer lock until the reservation is published or dropped.
    pub(crate) unsafe fn reserve(
        &self,
        len: usize,
    ) -> Result<Result<Reservation, Push>, Corrupted> {
        // Relaxed: only producer-lock holders store `tail`.
        let (seq, tail_pos) = self.check(self.tail_word().load(Ordering::Relaxed))?;
        // Acquire: pairs with the consumers' Release store in `commit`, so the
        // bytes they read before are no longer needed.
        let head = self.check(self.head_word().load(Ordering::Acquire))?;
        let len32 = u32::try_from(len).map_err(|_| Corrupted("record too large"))?;
        let empty = head.0 == seq;
        if !empty && (seq.wrapping_sub(head.0) > self.max_records() || head.1 >= tail_pos) {
            return Err(Corrupted("overflow words are impossible"));
        }
        let (pos, restart) = if empty {
            (0, (tail_pos != 0 || head.1 != 0).then(|| pack(seq, 0)))
        } else {
            (tail_pos, None)
        };
        if record_size(len) > self.cap - pos || self.cap == 0 {
            return Ok(Err(Push::NoRoom));
        }
        Ok(Ok(Reservation {
            seq,
            pos,
            len: len32,
            restart,
        }))
    }

    /// Writes the record reserved by `r` and publishes it.
    ///
    /// # Safety
    /// The caller holds the producer lock, has held it since `reserve`, and
    /// `payload.len()` is the length reserved.
    pub(crate) unsafe fn publish(&self, r: Reservation, kind: u8, after: u32, payload: &[u8]) {
        debug_assert_eq!(payload.len(), r.len as usize);
        if let Some(h) = r.restart {
            // The log is empty and stays so (we hold the producer lock), so no
            // consumer stores `head` now. Relaxed: ordered before consumers'
            // reads by the Release store of `tail` below.
            self.head_word().store(h, Ordering::Relaxed);
            self.trim();
        }
        let end = r.pos + record_size(payload.len());
        // Relaxed: only producer-lock holders touch `high`.
        if end as u64 > self.ctl.ovf.high.load(Ordering::Relaxed) {
            self.ctl.ovf.high.store(end as u64, Ordering::Relaxed);
        }
        let hdr = header(r.len, kind, r.seq);
        let mut head = [0u8; OVF_HEADER];
        head[..8].copy_from_slice(&hdr.to_le_bytes());
        head[8..].copy_from_slice(&u64::from(after).to_le_bytes());
        // SAFETY: `reserve` checked `pos + record_size(len) <= cap`; the
        // producer lock makes us the only writer past `tail`, and consumers
        // read only published records; `payload` lies outside the log.
        unsafe {
            std::ptr::copy_nonoverlapping(head.as_ptr(), self.base.add(r.pos), OVF_HEADER);
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                self.base.add(r.pos + OVF_HEADER),
                payload.len(),
            );
        }
        let next = pack(r.seq.wrapping_add(1), (end / 8) as u32);
        // Release: publishes the record (and a restart's `head`); pairs with
        // the consumers' Acquire loads of `tail`.
        self.tail_word().store(next, Ordering::Release);
    }

    /// Gives back the pages written since the last trim, beyond [`RETAIN`].
    /// Called with the producer lock held and the log empty, so nobody reads
    /// or writes them.
    fn trim(&self) {
        // Relaxed: only producer-lock holders touch `high`.
        let high = (self.ctl.ovf.high.load(Ordering::Relaxed) as usize).min(self.cap);
        if high <= RETAIN {
            return;
        }
        // A failure only leaves pages in use: nothing to report.
        // SAFETY: [RETAIN, high) is inside the log (`high <= cap`), which lies in
        // the queue's shared mapping; the log is empty and we hold the producer
        // lock, so nobody reads or writes those bytes until the next publish.
        let _ = unsafe { crate::sys::discard(self.base.wrapping_add(RETAIN), high - RETAIN) };
        self.ctl.ovf.high.store(RETAIN as u64, Ordering::Relaxed);
    }

    /// Empties a drained log of its pages (see [`Overflow::trim`]) unless it
    /// is already small.
    ///
    /// # Safety
    /// The caller holds the producer lock.
    pub(crate) unsafe fn trim_if_empty(&self) {
        // Relaxed: only producer-lock holders touch `high`.
        if self.ctl.ovf.high.load(Ordering::Relaxed) as usize <= RETAIN {
            return;
        }
        // Relaxed: ours; Acquire: the consumers' commits (and their reads before).
        let t = unpack(self.tail_word().load(Ordering::Relaxed));
        let h = unpack(self.head_word().load(Ordering::Acquire));
        if t.0 == h.0 {
            // Start over at 0 so the next round writes retained pages.
            self.head_word().store(pack(t.0, 0), Ordering::Relaxed);
            self.tail_word().store(pack(t.0, 0), Ordering::Release);
            self.trim();
        }
    }

    /// Whether the log holds pages worth trimming (a hint for consumers).
    pub(crate) fn wants_trim(&self) -> bool {
        // Relaxed: a hint; `trim_if_empty` re-reads under the producer lock.
        self.ctl.ovf.high.load(Ordering::Relaxed) as usize > RETAIN
    }

    /// The first record, if any (its payload is read by [`Overflow::read`]).
    ///
    /// # Safety
    /// The caller holds the consumer lock.
    pub(crate) unsafe fn front(&self) -> Result<Option<Front>, Corrupted> {
        // Acquire, and before `head`: see the restart rule in the module docs.
        let t = self.tail_word().load(Ordering::Acquire);
        // Relaxed: stored by consumer-lock holders, or by a restarting
        // producer before the `tail` we just loaded.
        let h = self.head_word().load(Ordering::Relaxed);
        let (tseq, tpos) = self.check(t)?;
        let (hseq, hpos) = self.check(h)?;
        if tseq == hseq {
            return Ok(None);
        }
        if tseq.wrapping_sub(hseq) > self.max_records() || hpos >= tpos {
            return Err(Corrupted("overflow words are impossible"));
        }
        if tpos - hpos < OVF_HEADER {
            return Err(Corrupted("overflow record longer than the published bytes"));
        }
        let mut head = [0u8; OVF_HEADER];
        // SAFETY: `hpos + 16 <= tpos <= cap`: inside the log; `head` is ours.
        // Bytes a scribbler changes concurrently only change the values
        // copied, which are checked below.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(hpos), head.as_mut_ptr(), OVF_HEADER)
        };
        let hdr = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let after = u64::from_le_bytes(head[8..].try_into().expect("8 bytes"));
        if !is_header_of(hdr, hseq) {
            return Err(Corrupted("overflow record sequence number mismatch"));
        }
        let (kind, len) = kind_and_len(hdr)?;
        if after > u64::from(u32::MAX) {
            return Err(Corrupted(
                "overflow record with an impossible ring sequence",
            ));
        }
        let end = hpos + record_size(len);
        if end > tpos {
            return Err(Corrupted("overflow record longer than the published bytes"));
        }
        Ok(Some(Front {
            kind,
            after: after as u32,
            len,
            payload: hpos + OVF_HEADER,
            next_head: pack(hseq.wrapping_add(1), (end / 8) as u32),
        }))
    }

    /// Copies the payload of `f` into `out` (replacing its contents); an
    /// error if this process cannot hold it.
    ///
    /// # Safety
    /// The caller holds the consumer lock, and has held it since `front` returned `f`.
    pub(crate) unsafe fn read(&self, f: &Front, out: &mut Vec<u8>) -> Result<(), Corrupted> {
        out.clear();
        out.try_reserve_exact(f.len)
            .map_err(|_| Corrupted("overflow record too large for this process"))?;
        out.resize(f.len, 0);
        // SAFETY: `front` checked `payload + len <= tail position <= cap`;
        // `out` is a Rust buffer of `len` bytes outside the log.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(f.payload), out.as_mut_ptr(), f.len) };
        Ok(())
    }

    /// Consumes the record `front` returned.
    ///
    /// # Safety
    /// The caller holds the consumer lock, and has held it since the `front`.
    pub(crate) unsafe fn commit(&self, f: Front) {
        // SeqCst: frees the bytes for producers (Release, pairing with their
        // Acquire loads of `head`), and orders this store before the
        // consumer's SeqCst load of the `not_full` waiters (see `wait`).
        self.head_word().store(f.next_head, Ordering::SeqCst);
    }
}
