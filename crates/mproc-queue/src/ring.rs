//! The byte ring of records, generic over its backing memory (a segment, or
//! a heap buffer in unit tests and the fuzz target).
//!
//! # Protocol
//!
//! `tail` and `head` are packed `(sequence: u32, position: u32)` words. The
//! sequence counts records (wrapping), the position is a byte offset in
//! `[0, capacity)`, always a multiple of 8. A record is an 8-byte header
//! (`len: u32`, `kind: u8`, low 24 bits of its sequence) followed by `len`
//! payload bytes padded to 8; the payload may wrap around the end of the ring.
//!
//! The header publishes its record: the 8-byte word at `tail`'s position is
//! always either zero (the *terminator*) or the header of the record being
//! published there, with `tail`'s sequence. So a consumer finds the next
//! record by looking at `head`'s position alone, and the line it waits on is
//! the one that brings the record: one cache-line transfer per hand-off
//! instead of two (`tail`'s, then the record's).
//!
//! * A producer, holding the producer lock, zeroes the word after its record
//!   (the next terminator; the ring keeps 8 bytes free for it), writes the
//!   payload, stores the header (Release) and then the new `tail`. A producer
//!   killed before the header store leaves nothing visible: the next one
//!   writes over its bytes. One killed between the two stores has published
//!   its record; the next holder of the lock completes `tail` ([`Ring::repair`]).
//! * A consumer reads the header at `head` (Acquire) and the payload, and
//!   only then claims the record by moving `head` past it with a
//!   compare-and-swap from the word it read at: whoever moves `head` first
//!   has the record, the others look again. Inline records are taken so
//!   without any lock ([`Ring::take`]); large-message records, whose
//!   descriptors must leave the side channel in record order, and records
//!   behind overflow-log records, are taken under the consumer lock
//!   ([`Ring::peek`], [`Ring::commit`]), whose holder competes with lock-free
//!   takers in the same way. A consumer killed before its swap leaves the
//!   record for the next one; one killed after it took the record.
//! * Bytes a consumer copies may be overwritten while it copies, once
//!   another consumer took the record and a producer reused its room; the
//!   failed swap then discards the copy. The swap compares the whole word
//!   (32-bit sequence and position), so a stale copy could only be accepted
//!   by a consumer stalled between its load and its swap while exactly 2^32
//!   records went through and `head` came back to the same position.
//! * `tail` may thus lag `head` by a record for a moment: counts treat that
//!   as empty, and `published` as `head`.
//!
//! Everything read from the ring (words and headers) is checked: another
//! process may have scribbled on it. A check that fails is a
//! [`Corrupted`] error, never a panic or an out-of-bounds access.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::Ctl;

/// Record kind: the payload is the message.
pub(crate) const REC_INLINE: u8 = 1;
/// Record kind: the payload is `(id: u64, len: u64)` of a large message whose
/// descriptor travels over the side channel.
pub(crate) const REC_LARGE: u8 = 2;

/// The size of a record header.
pub(crate) const REC_HEADER: usize = 8;
/// The smallest ring.
pub(crate) const MIN_CAPACITY: usize = 256;
/// The largest ring (positions are u32).
pub(crate) const MAX_CAPACITY: usize = 1 << 30;

/// The ring's contents are impossible: another process wrote over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Corrupted(pub(crate) &'static str);

/// A ring word unpacked: (sequence, position).
pub(crate) type Unpacked = (u32, u32);

/// Why a fresh look found no room: `maxcount` records queued, or too
/// few free bytes.
fn no_room(count: u32, maxcount: u32) -> Push {
    if count >= maxcount {
        Push::Full
    } else {
        Push::NoRoom
    }
}

/// Packs a sequence and a position into a ring word.
pub(crate) fn pack(seq: u32, pos: u32) -> u64 {
    (u64::from(seq) << 32) | u64::from(pos)
}

/// Unpacks a ring word into (sequence, position).
pub(crate) fn unpack(w: u64) -> (u32, u32) {
    ((w >> 32) as u32, w as u32)
}

pub(crate) fn padded(len: usize) -> usize {
    len.div_ceil(8) * 8
}

/// A record header: its payload length, kind, and the low 24 bits of its
/// sequence (the overflow log's records use the same header).
pub(crate) fn header(len: u32, kind: u8, seq: u32) -> u64 {
    u64::from(len) | (u64::from(kind) << 32) | (u64::from(seq & 0x00ff_ffff) << 40)
}

/// Whether `hdr` is the header of the record with sequence `seq` (never the
/// zero terminator, whose sequence bits would match record 0 and its kin).
pub(crate) fn is_header_of(hdr: u64, seq: u32) -> bool {
    hdr != 0 && (hdr >> 40) as u32 == seq & 0x00ff_ffff
}

/// The kind and payload length of a record header, checked: a known kind,
/// and the fixed size of a large-message record.
pub(crate) fn kind_and_len(hdr: u64) -> Result<(u8, usize), Corrupted> {
    let (kind, len) = ((hdr >> 32) as u8, hdr as u32 as usize);
    if kind != REC_INLINE && kind != REC_LARGE {
        return Err(Corrupted("unknown record kind"));
    }
    if kind == REC_LARGE && len != 16 {
        return Err(Corrupted("large-message record of the wrong size"));
    }
    Ok((kind, len))
}

/// The size a record with `len` payload bytes takes in the ring.
pub(crate) fn record_size(len: usize) -> usize {
    REC_HEADER + padded(len)
}

/// Outcome of [`Ring::try_push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Push {
    /// Published.
    Done,
    /// The queue holds `maxcount` records already.
    Full,
    /// Not enough free bytes in the ring right now.
    NoRoom,
}

/// A producer handle's cached view of `head`.
///
/// A stale `head` is safe to use only while no *other* producer published
/// since it was loaded: then every byte between it and `tail` was checked
/// against it by this handle. So the cache remembers the `tail` word this
/// handle published last (`mark`) and is trusted only while `tail` still
/// equals it; otherwise `head` is loaded afresh.
#[derive(Debug)]
pub(crate) struct ProducerCache {
    head: AtomicU64,
    mark: AtomicU64,
}

impl ProducerCache {
    /// An empty cache (the first reservation loads `head`).
    pub(crate) fn new() -> Self {
        // u64::MAX is never a valid tail word (its position is >= capacity).
        Self {
            head: AtomicU64::new(0),
            mark: AtomicU64::new(u64::MAX),
        }
    }

    /// The cached `head` word (a hint for lock-free probes).
    pub(crate) fn cached_head(&self) -> u64 {
        // Relaxed: only a hint.
        self.head.load(Ordering::Relaxed)
    }
}

/// Room reserved by [`Ring::reserve`] for one record.
#[derive(Debug)]
pub(crate) struct Reservation<'c> {
    tail: (u32, u32),
    len: u32,
    need: usize,
    cache: &'c ProducerCache,
}

/// A record read by [`Ring::peek`], not yet consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peeked {
    /// Its kind ([`REC_INLINE`] or [`REC_LARGE`]).
    pub(crate) kind: u8,
    /// The `head` word it was read at.
    head: u64,
    /// The `head` word that consumes it.
    next_head: u64,
}

/// Outcome of [`Ring::peek_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peek {
    /// The record at the given `head`.
    Record(Peeked),
    /// No record is published there.
    Empty,
    /// `head` moved on meanwhile: look again.
    Moved,
}

/// Outcome of [`Ring::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// An inline record was taken.
    Taken,
    /// No record is published at `head` (or its header is not one).
    Empty,
    /// The record at `head` must be taken under the consumer lock.
    Locked,
}

/// A view of a ring: its control block and its bytes.
pub(crate) struct Ring<'a> {
    ctl: &'a Ctl,
    base: *mut u8,
    cap: u32,
}

impl<'a> Ring<'a> {
    /// A view of the `cap` bytes at `base`, controlled by `ctl`.
    ///
    /// # Safety
    /// `base` must be valid for reads and writes of `cap` bytes for `'a`, and
    /// must not overlap `ctl` or any Rust reference; `cap` must be a multiple
    /// of 8 between [`MIN_CAPACITY`] and [`MAX_CAPACITY`].
    pub(crate) unsafe fn new(ctl: &'a Ctl, base: *mut u8, cap: usize) -> Self {
        debug_assert!(cap % 8 == 0 && (MIN_CAPACITY..=MAX_CAPACITY).contains(&cap));
        Self {
            ctl,
            base,
            cap: cap as u32,
        }
    }

    /// The header word at `pos`, a multiple of 8 below the capacity.
    fn word_at(&self, pos: u32) -> &AtomicU64 {
        debug_assert!(pos < self.cap && pos % 8 == 0);
        // Callers pass checked positions; the clamp (not a division, which
        // would cost more than the rest of a hand-off) only keeps a bug in
        // bounds.
        let pos = if pos < self.cap { pos & !7 } else { 0 };
        // Headers are read and written only through this view; payload copies
        // touch a header word only while it is free (or scribbled on, which
        // gives a value callers check), as for every byte of shared memory.
        // SAFETY: `pos` is a multiple of 8 inside the ring; its base is 8-aligned,
        // valid for the ring's life and never referenced as a Rust value.
        unsafe { AtomicU64::from_ptr(self.base.add(pos as usize).cast()) }
    }

    /// The bytes a published record with header `hdr` takes up to the next
    /// header, checked so that it and the terminator after it fit the ring.
    fn span(&self, hdr: u64) -> Result<usize, Corrupted> {
        REC_HEADER
            .checked_add(padded(hdr as u32 as usize))
            .filter(|n| n + REC_HEADER <= self.cap as usize)
            .ok_or(Corrupted("record longer than the ring"))
    }

    /// The kind, payload length and span of a record header, checked.
    #[inline]
    fn checked(&self, hdr: u64) -> Result<(u8, usize, usize), Corrupted> {
        let (kind, len) = kind_and_len(hdr)?;
        Ok((kind, len, self.span(hdr)?))
    }

    fn check_word(&self, w: u64) -> Result<(u32, u32), Corrupted> {
        let (seq, pos) = unpack(w);
        if pos >= self.cap || pos % 8 != 0 {
            return Err(Corrupted("ring position out of range"));
        }
        Ok((seq, pos))
    }

    /// Bytes used between `head` and `tail`, checking that the pair is possible.
    fn used(&self, head: (u32, u32), tail: (u32, u32)) -> Result<usize, Corrupted> {
        let count = tail.0.wrapping_sub(head.0);
        if count == 0 {
            return if head.1 == tail.1 {
                Ok(0)
            } else {
                Err(Corrupted("empty ring with bytes in it"))
            };
        }
        if count as usize > self.cap as usize / REC_HEADER {
            return Err(Corrupted("more records than the ring can hold"));
        }
        let d = (tail.1 + self.cap - head.1) % self.cap;
        Ok(if d == 0 {
            self.cap as usize
        } else {
            d as usize
        })
    }

    /// Records published and not yet consumed, from a snapshot of both words
    /// (an approximation while others work; 0 for impossible words).
    pub(crate) fn len(&self) -> usize {
        // Acquire on both: a snapshot; see `try_push`/`commit` for the stores.
        let t = unpack(self.ctl.tail.0.load(Ordering::Acquire)).0;
        let h = unpack(self.ctl.head.0.load(Ordering::Acquire)).0;
        let n = t.wrapping_sub(h);
        if n as usize > self.cap as usize / REC_HEADER {
            0
        } else {
            n as usize
        }
    }

    /// The sequence number of the next record to be published: the number of
    /// records ever published, wrapping (`head`'s when `tail` lags it).
    pub(crate) fn published(&self) -> u32 {
        // Acquire on both: pair with the Release stores of `tail` and `head`.
        let t = unpack(self.ctl.tail.0.load(Ordering::Acquire)).0;
        let h = unpack(self.ctl.head.0.load(Ordering::Acquire)).0;
        if (h.wrapping_sub(t) as i32) > 0 { h } else { t }
    }

    /// The sequence of the next record to publish (read by producer-lock holders).
    pub(crate) fn tail_seq(&self) -> u32 {
        // Relaxed: only producer-lock holders store `tail`.
        unpack(self.ctl.tail.0.load(Ordering::Relaxed)).0
    }

    /// How many records consumers have taken (wrapping).
    pub(crate) fn consumed(&self) -> u32 {
        unpack(self.head_word()).0
    }

    /// Whether a record of `len` payload bytes would fit now, from fresh
    /// loads of both words (true for impossible words, so that the caller
    /// tries and reports the corruption).
    pub(crate) fn has_room(&self, len: usize, maxcount: u32) -> bool {
        // Acquire on both: pairs with the Release stores in `publish`/`commit`.
        let t = self.ctl.tail.0.load(Ordering::Acquire);
        let h = self.ctl.head.0.load(Ordering::Acquire);
        match self
            .check_word(t)
            .and_then(|t| Ok((t, self.check_word(h)?)))
        {
            Ok((t, h)) => match self.used(h, t) {
                Ok(used) => {
                    t.0.wrapping_sub(h.0) < maxcount && record_size(len) <= self.cap as usize - used
                }
                Err(_) => true,
            },
            Err(_) => true,
        }
    }

    /// Whether a record is published and not consumed, from fresh loads.
    pub(crate) fn has_record(&self) -> bool {
        // Acquire: pairs with the Release stores in `publish`/`commit`.
        let t = unpack(self.ctl.tail.0.load(Ordering::Acquire));
        let h = unpack(self.ctl.head.0.load(Ordering::Acquire));
        (t.0.wrapping_sub(h.0) as i32) > 0 || (t.0 == h.0 && t.1 != h.1)
    }

    /// Whether the record at `head` is published (a lock-free hint for a
    /// waiting consumer: it reads the line the record arrives in).
    pub(crate) fn probe(&self) -> bool {
        // Relaxed: a hint; the attempt re-reads under the consumer lock.
        let (seq, pos) = unpack(self.ctl.head.0.load(Ordering::Relaxed));
        if pos >= self.cap || pos % 8 != 0 {
            return true;
        }
        // Relaxed: as above.
        is_header_of(self.word_at(pos).load(Ordering::Relaxed), seq)
    }

    /// Copies `src` into the ring at `pos`, wrapping at the end.
    fn write_at(&self, pos: usize, src: &[u8]) {
        let cap = self.cap as usize;
        let first = src.len().min(cap - pos);
        // The producer lock makes this producer the only writer past `tail`;
        // consumers read only bytes before `tail`.
        // SAFETY: `pos < cap`, `first <= cap - pos`: inside the ring; `src` lies outside it.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.base.add(pos), first) };
        let rest = src.len() - first;
        if rest > 0 {
            // SAFETY: `rest <= cap - first` because callers never write more than
            // `cap` bytes; the range [0, rest) is inside the ring.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr().add(first), self.base, rest) };
        }
    }

    /// Replaces the contents of `out` with `len` bytes of the ring from
    /// `pos`, wrapping (`len` at most the capacity). Copies into the
    /// vector's spare room: no zero-filling first.
    #[inline]
    fn read_into(&self, pos: usize, len: usize, out: &mut Vec<u8>) {
        let cap = self.cap as usize;
        assert!(pos < cap && len <= cap, "read outside the ring");
        out.clear();
        out.reserve(len);
        let first = len.min(cap - pos);
        let dst = out.as_mut_ptr();
        // Bytes a scribbler or a racing producer changes meanwhile only
        // change the values copied, which callers validate afterwards.
        // SAFETY: [pos, pos + first) is inside the ring (`pos < cap`, `first <=
        // cap - pos`); `dst` has room for `len >= first` bytes, outside it.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(pos), dst, first) };
        let rest = len - first;
        if rest > 0 {
            // SAFETY: `rest <= len <= cap`, so [0, rest) is inside the ring,
            // and `dst + first` has room for `rest` bytes.
            unsafe { std::ptr::copy_nonoverlapping(self.base, dst.add(first), rest) };
        }
        // SAFETY: the `len` bytes were just written.
        unsafe { out.set_len(len) };
    }

    /// This producer handle's view of `head` for a reservation at `tail_w`,
    /// and whether it is fresh: the cached copy while nobody else published
    /// since this handle did, else `head` itself (cached for next time).
    #[inline(always)]
    fn head_view(&self, tail_w: u64, cache: &ProducerCache) -> (bool, u64) {
        // Relaxed: a cached copy; it only ever lags the real head, which makes
        // the ring look fuller than it is, never emptier.
        // Relaxed: the cache is only touched under the producer lock.
        if cache.mark.load(Ordering::Relaxed) != tail_w {
            (true, self.refresh_head(cache))
        } else {
            (false, cache.head.load(Ordering::Relaxed))
        }
    }

    /// Reads `head` and caches it.
    #[inline(always)]
    fn refresh_head(&self, cache: &ProducerCache) -> u64 {
        // Acquire: pairs with the Release store in `commit`, so the bytes the
        // consumers read before moving `head` are no longer needed.
        let h = self.ctl.head.0.load(Ordering::Acquire);
        // Relaxed: the cache is only touched under the producer lock.
        cache.head.store(h, Ordering::Relaxed);
        h
    }

    /// Reserves room for a record of `len` payload bytes at `tail`, unless
    /// the queue holds `maxcount` records or the ring lacks room
    /// (`Err(Push::Full)` / `Err(Push::NoRoom)`).
    ///
    /// `cache` is this handle's view of `head`; it is refreshed when another
    /// producer published since, or when it says the ring is full.
    ///
    /// # Safety
    /// The caller holds the producer lock, and keeps holding it until the
    /// reservation is published or dropped; `cache` is used with this ring only.
    pub(crate) unsafe fn reserve<'c>(
        &self,
        len: usize,
        maxcount: u32,
        cache: &'c ProducerCache,
    ) -> Result<Result<Reservation<'c>, Push>, Corrupted> {
        let len32 = u32::try_from(len).map_err(|_| Corrupted("record too large"))?;
        let need = record_size(len);
        self.find_room(maxcount, cache, |tail, _, bytes| {
            (need <= bytes).then_some(Reservation {
                tail,
                len: len32,
                need,
                cache,
            })
        })
    }

    /// Looks for room at `tail`: `fits(records, bytes)` is given how many
    /// more records `maxcount` allows (at least one) and how many bytes are
    /// free for records (the next terminator's excluded), and says what it
    /// takes (`None`: not enough). Returns `tail` with its answer, or why
    /// there is no room (`Full`: `maxcount` records are queued).
    ///
    /// `cache` is this handle's view of `head`; it is refreshed when another
    /// producer published since, or when it says there is no room.
    ///
    /// # Safety
    /// As for [`Ring::reserve`].
    pub(crate) unsafe fn room<R>(
        &self,
        maxcount: u32,
        cache: &ProducerCache,
        fits: impl Fn(u32, usize) -> Option<R>,
    ) -> Result<Result<(Unpacked, R), Push>, Corrupted> {
        self.find_room(maxcount, cache, |tail, records, bytes| {
            Some((tail, fits(records, bytes)?))
        })
    }

    /// The loop of [`Ring::reserve`] and [`Ring::room`]: `fits(tail,
    /// records, bytes)` as for `room`, with `tail` (the caller holds the
    /// producer lock).
    ///
    /// (Inlined into both: the single put is the hot path; through a call
    /// with a closure a put + get cost 8 ns more, 110 -> 118 ns in a
    /// one-thread loop.)
    #[inline(always)]
    fn find_room<R>(
        &self,
        maxcount: u32,
        cache: &ProducerCache,
        fits: impl Fn(Unpacked, u32, usize) -> Option<R>,
    ) -> Result<Result<R, Push>, Corrupted> {
        // Relaxed: only lock holders store `tail`, and the lock's Acquire
        // ordered us after the last of them.
        let tail_w = self.ctl.tail.0.load(Ordering::Relaxed);
        let tail = self.check_word(tail_w)?;
        let (mut fresh, mut head_w) = self.head_view(tail_w, cache);
        loop {
            match self
                .check_word(head_w)
                .and_then(|h| Ok((h, self.used(h, tail)?)))
            {
                Ok((h, used)) => {
                    let count = tail.0.wrapping_sub(h.0);
                    // Room for records, and the next terminator after them.
                    let bytes = (self.cap as usize - used).saturating_sub(REC_HEADER);
                    if count < maxcount {
                        if let Some(r) = fits(tail, maxcount - count, bytes) {
                            return Ok(Ok(r));
                        }
                    }
                    if fresh {
                        return Ok(Err(no_room(count, maxcount)));
                    }
                }
                Err(e) if fresh => return Err(e),
                Err(_) => {}
            }
            head_w = self.refresh_head(cache);
            fresh = true;
        }
    }

    /// Writes the record reserved by `r` and publishes it.
    ///
    /// # Safety
    /// The caller holds the producer lock, has held it since `reserve`, and
    /// `payload.len()` is the length reserved.
    pub(crate) unsafe fn publish(&self, r: Reservation<'_>, kind: u8, payload: &[u8]) {
        debug_assert_eq!(payload.len(), r.len as usize);
        let tail = r.tail;
        let next_pos = ((tail.1 as usize + r.need) % self.cap as usize) as u32;
        // The next terminator: `reserve` left room for it after the record.
        // Relaxed: ordered before consumers' reads by the header's Release.
        self.word_at(next_pos).store(0, Ordering::Relaxed);
        if !payload.is_empty() {
            self.write_at((tail.1 as usize + REC_HEADER) % self.cap as usize, payload);
        }
        let hdr = header(r.len, kind, tail.0);
        // Release: publishes the record (and the terminator after it); pairs
        // with the consumers' Acquire loads of the header.
        self.word_at(tail.1).store(hdr, Ordering::Release);
        let next = pack(tail.0.wrapping_add(1), next_pos);
        // Release: pairs with Acquire loads of `tail` (counts, other
        // producers). (Sleeping consumers register under the producer lock,
        // so no StoreLoad fence is needed here; see `wait`.)
        self.ctl.tail.0.store(next, Ordering::Release);
        // Relaxed: the cache is only touched under the producer lock.
        r.cache.mark.store(next, Ordering::Relaxed);
    }

    /// [`Ring::reserve`] then [`Ring::publish`] (the queue goes through
    /// `Records::try_push`; tests and the fuzz target use the ring alone).
    ///
    /// # Safety
    /// The caller holds the producer lock.
    #[cfg(any(test, fuzzing))]
    pub(crate) unsafe fn try_push(
        &self,
        kind: u8,
        payload: &[u8],
        maxcount: u32,
        cache: &ProducerCache,
    ) -> Result<Push, Corrupted> {
        // SAFETY: the caller holds the producer lock, through both calls.
        match unsafe { self.reserve(payload.len(), maxcount, cache) }? {
            Ok(r) => {
                // SAFETY: as above; `r` was reserved for this payload's length.
                unsafe { self.publish(r, kind, payload) };
                Ok(Push::Done)
            }
            Err(p) => Ok(p),
        }
    }

    /// The `head` word.
    pub(crate) fn head_word(&self) -> u64 {
        // Acquire: lock-free consumers move `head` (see `take`); pairs with
        // their swaps.
        self.ctl.head.0.load(Ordering::Acquire)
    }

    /// Reads the record at `head` into `out` (replacing its contents) and
    /// returns its kind and the `head` that consumes it; `None` if empty
    /// (the queue goes through `Records::peek`, which calls
    /// [`Ring::peek_at`]; tests and the fuzz target use the ring alone).
    ///
    /// `strict`: when no record is at `head`, check `tail` to tell "not yet"
    /// from a corrupted header. A consumer's first look skips that: reading
    /// `tail` would pull its line away from the producer about to write it;
    /// looks after a wait are strict, so corruption is still reported.
    ///
    /// # Safety
    /// The caller holds the consumer lock.
    #[cfg(any(test, fuzzing))]
    pub(crate) unsafe fn peek(
        &self,
        out: &mut Vec<u8>,
        strict: bool,
    ) -> Result<Option<Peeked>, Corrupted> {
        loop {
            // SAFETY: forwarded from the caller.
            match self.peek_at(self.head_word(), out, strict)? {
                Peek::Record(p) => return Ok(Some(p)),
                Peek::Empty => return Ok(None),
                Peek::Moved => {}
            }
        }
    }

    /// [`Ring::peek`] at the `head` word `head_w` the caller loaded; `Moved`
    /// when a lock-free consumer moved `head` since, and what was read may
    /// belong to a later record (look again from the new `head`).
    ///
    /// This only reads, so it needs no lock: the record is the reader's only
    /// once the swap in [`Ring::commit`] (or [`Ring::take`]) moved `head`
    /// from `head_w`.
    #[inline]
    pub(crate) fn peek_at(
        &self,
        head_w: u64,
        out: &mut Vec<u8>,
        strict: bool,
    ) -> Result<Peek, Corrupted> {
        let head = self.check_word(head_w)?;
        // What looks missing or wrong may be a record another consumer took
        // and whose room a producer reused.
        let moved = || self.head_word() != head_w;
        let empty_or_moved = || Ok(if moved() { Peek::Moved } else { Peek::Empty });
        let wrong_or_moved = |e| if moved() { Ok(Peek::Moved) } else { Err(e) };
        // Acquire: pairs with the producer's Release store of the header, so
        // the payload (and the terminator after it) are visible.
        let mut hdr = self.word_at(head.1).load(Ordering::Acquire);
        if !is_header_of(hdr, head.0) {
            if !strict {
                return empty_or_moved();
            }
            // Not published yet, unless `tail` says it is.
            // Acquire: pairs with the producers' Release store of `tail`,
            // which follows their header store.
            let tail = self.check_word(self.ctl.tail.0.load(Ordering::Acquire))?;
            let ahead = tail.0.wrapping_sub(head.0) as i32;
            if ahead < 0 || (ahead == 0 && tail.1 == head.1) {
                return empty_or_moved();
            }
            // Published between our two loads, or taken by a lock-free
            // consumer, or the bytes are wrong.
            // Acquire: as above.
            hdr = self.word_at(head.1).load(Ordering::Acquire);
            if !is_header_of(hdr, head.0) {
                return wrong_or_moved(Corrupted("record sequence number mismatch"));
            }
        }
        let (kind, len, need) = match self.checked(hdr) {
            Ok(v) => v,
            Err(e) => return wrong_or_moved(e),
        };
        self.read_into((head.1 as usize + REC_HEADER) % self.cap as usize, len, out);
        let next_pos = ((head.1 as usize + need) % self.cap as usize) as u32;
        Ok(Peek::Record(Peeked {
            kind,
            head: head_w,
            next_head: pack(head.0.wrapping_add(1), next_pos),
        }))
    }

    /// Takes the inline record at `head` into `out` (replacing its contents)
    /// without the consumer lock: reads it ([`Ring::peek_at`]), then claims
    /// it by swapping `head` (see the protocol above), looking again when
    /// another consumer was faster. `Locked` when the record at `head` is a
    /// large-message record, or when `defer()` (asked once a record is found)
    /// says records of the overflow log may come first.
    ///
    /// Like [`Ring::peek`]'s non-strict look, this cannot tell a record not
    /// yet published from a scribbled header: both are `Empty`, and a strict
    /// look under the lock tells them apart.
    pub(crate) fn take(
        &self,
        out: &mut Vec<u8>,
        defer: impl Fn() -> bool,
    ) -> Result<Take, Corrupted> {
        loop {
            let p = match self.peek_at(self.head_word(), out, false)? {
                Peek::Moved => continue,
                Peek::Empty => return Ok(Take::Empty),
                Peek::Record(p) => p,
            };
            if p.kind != REC_INLINE || defer() {
                return Ok(Take::Locked);
            }
            if self.claim(p) {
                return Ok(Take::Taken);
            }
        }
    }

    /// Moves `head` past the record `p` unless another consumer did first.
    fn claim(&self, p: Peeked) -> bool {
        // SeqCst: frees the bytes for producers (Release, pairing with their
        // Acquire loads of `head`), and orders this swap before the caller's
        // SeqCst load of the `not_full` waiters (producers register, fence,
        // then look at `head`; see `wait`).
        self.ctl
            .head
            .0
            .compare_exchange(p.head, p.next_head, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Completes the publication of the records whose producer was killed
    /// between storing a header and storing `tail`: advances `tail` over
    /// every record published at it (one, or a whole group, see `batch`).
    /// Called by whoever takes the producer lock from a dead owner.
    ///
    /// Each publication zeroes the word after what it publishes, so the
    /// walk stops at the first word that is not the header of the record
    /// expected there.
    ///
    /// # Safety
    /// The caller holds the producer lock.
    pub(crate) unsafe fn repair(&self) -> Result<(), Corrupted> {
        // Relaxed: only producer-lock holders store `tail`.
        let start = self.check_word(self.ctl.tail.0.load(Ordering::Relaxed))?;
        let (mut seq, mut pos) = start;
        let mut walked = 0usize;
        loop {
            // Acquire: the dead producer's writes before its header store.
            let hdr = self.word_at(pos).load(Ordering::Acquire);
            if !is_header_of(hdr, seq) {
                break;
            }
            let need = self.span(hdr)?;
            walked += need;
            if walked + REC_HEADER > self.cap as usize {
                return Err(Corrupted("published records longer than the ring"));
            }
            seq = seq.wrapping_add(1);
            pos = ((pos as usize + need) % self.cap as usize) as u32;
        }
        if (seq, pos) != start {
            // Release: as in `publish`.
            self.ctl.tail.0.store(pack(seq, pos), Ordering::Release);
        }
        Ok(())
    }

    /// Consumes the record [`Ring::peek`] returned, unless a lock-free
    /// consumer took it first (false: peek again).
    ///
    /// # Safety
    /// The caller holds the consumer lock, and has held it since the `peek`.
    pub(crate) unsafe fn commit(&self, p: Peeked) -> bool {
        self.claim(p)
    }
}

mod batch;
pub(crate) use batch::{Batch, TakeMany};

#[cfg(test)]
mod tests;
