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
//! * A producer, holding the producer lock, writes a record at `tail` and only
//!   then publishes it by storing the new `tail`. A producer killed before that
//!   store leaves nothing visible: the next one writes over its bytes.
//! * A consumer, holding the consumer lock, reads the record at `head`
//!   ([`Ring::peek`]) and only then advances `head` ([`Ring::commit`]). A
//!   consumer killed in between leaves the record for the next one.
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

/// Packs a sequence and a position into a ring word.
pub(crate) fn pack(seq: u32, pos: u32) -> u64 {
    (u64::from(seq) << 32) | u64::from(pos)
}

/// Unpacks a ring word into (sequence, position).
pub(crate) fn unpack(w: u64) -> (u32, u32) {
    ((w >> 32) as u32, w as u32)
}

fn padded(len: usize) -> usize {
    len.div_ceil(8) * 8
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
    /// The `head` word that consumes it.
    pub(crate) next_head: u64,
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
    /// records ever published, wrapping.
    pub(crate) fn published(&self) -> u32 {
        // Acquire: pairs with the Release store publishing a record.
        unpack(self.ctl.tail.0.load(Ordering::Acquire)).0
    }

    /// The sequence of the next record to publish (read by producer-lock holders).
    pub(crate) fn tail_seq(&self) -> u32 {
        // Relaxed: only producer-lock holders store `tail`.
        unpack(self.ctl.tail.0.load(Ordering::Relaxed)).0
    }

    /// The sequence of the next record to consume (read by consumer-lock holders).
    pub(crate) fn head_seq(&self) -> u32 {
        // Relaxed: only consumer-lock holders store `head`.
        unpack(self.ctl.head.0.load(Ordering::Relaxed)).0
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
        let t = self.ctl.tail.0.load(Ordering::Acquire);
        let h = self.ctl.head.0.load(Ordering::Acquire);
        t != h
    }

    /// Asks the CPU to fetch the cache line of the record a `head` word
    /// points at (a hint for a waiting consumer: when the record arrives, its
    /// line then travels alongside `tail` instead of after it). Does nothing
    /// for an impossible word or where there is no prefetch instruction.
    pub(crate) fn prefetch(&self, head: u64) {
        let pos = unpack(head).1;
        if pos >= self.cap {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // `pos < cap`: the address is inside the ring.
            let p = self
                .base
                .wrapping_add(pos as usize)
                .cast_const()
                .cast::<i8>();
            // SAFETY: a prefetch never faults and changes no memory; `p` is
            // inside the mapping anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
        }
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

    /// Copies `dst.len()` bytes out of the ring from `pos`, wrapping.
    fn read_at(&self, pos: usize, dst: &mut [u8]) {
        let cap = self.cap as usize;
        let first = dst.len().min(cap - pos);
        // SAFETY: `pos < cap`, `first <= cap - pos`: inside the ring; `dst` is a
        // Rust buffer outside it. Bytes a scribbler changes concurrently only
        // change the values copied, which are validated afterwards.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(pos), dst.as_mut_ptr(), first) };
        let rest = dst.len() - first;
        if rest > 0 {
            // SAFETY: callers never read more than `cap` bytes, so [0, rest) is inside.
            unsafe { std::ptr::copy_nonoverlapping(self.base, dst.as_mut_ptr().add(first), rest) };
        }
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
        // Relaxed: only lock holders store `tail`, and the lock's Acquire
        // ordered us after the last of them.
        let tail_w = self.ctl.tail.0.load(Ordering::Relaxed);
        let tail = self.check_word(tail_w)?;
        let head_cache = &cache.head;
        let len32 = u32::try_from(len).map_err(|_| Corrupted("record too large"))?;
        let need = record_size(len);
        // Relaxed: a cached copy; it only ever lags the real head, which makes
        // the ring look fuller than it is, never emptier.
        // Relaxed: the cache is only touched under the producer lock.
        let mut fresh = cache.mark.load(Ordering::Relaxed) != tail_w;
        let mut head_w = if fresh {
            // Acquire: pairs with the Release store in `commit`.
            let h = self.ctl.head.0.load(Ordering::Acquire);
            head_cache.store(h, Ordering::Relaxed);
            h
        } else {
            head_cache.load(Ordering::Relaxed)
        };
        loop {
            match self
                .check_word(head_w)
                .and_then(|h| Ok((h, self.used(h, tail)?)))
            {
                Ok((h, used)) => {
                    let count = tail.0.wrapping_sub(h.0);
                    if count < maxcount && need <= self.cap as usize - used {
                        return Ok(Ok(Reservation {
                            tail,
                            len: len32,
                            need,
                            cache,
                        }));
                    }
                    if fresh {
                        return Ok(Err(if count >= maxcount {
                            Push::Full
                        } else {
                            Push::NoRoom
                        }));
                    }
                }
                Err(e) if fresh => return Err(e),
                Err(_) => {}
            }
            // Acquire: pairs with the Release store in `commit`, so the bytes the
            // consumers read before moving `head` are no longer needed.
            head_w = self.ctl.head.0.load(Ordering::Acquire);
            head_cache.store(head_w, Ordering::Relaxed);
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
        let hdr =
            u64::from(r.len) | (u64::from(kind) << 32) | (u64::from(tail.0 & 0x00ff_ffff) << 40);
        self.write_at(tail.1 as usize, &hdr.to_le_bytes());
        if !payload.is_empty() {
            self.write_at((tail.1 as usize + REC_HEADER) % self.cap as usize, payload);
        }
        let next_pos = ((tail.1 as usize + r.need) % self.cap as usize) as u32;
        let next = pack(tail.0.wrapping_add(1), next_pos);
        // Release: publishes the record; pairs with the consumers' Acquire
        // loads of `tail`. (Sleeping consumers register under the producer
        // lock, so no StoreLoad fence is needed here; see `wait`.)
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

    /// Reads the record at `head` into `out` (replacing its contents) and
    /// returns its kind and the `head` that consumes it; `None` if empty.
    ///
    /// `tail_cache` is this handle's last view of `tail`, refreshed only when
    /// it says the ring is empty.
    ///
    /// # Safety
    /// The caller holds the consumer lock.
    pub(crate) unsafe fn peek(
        &self,
        out: &mut Vec<u8>,
        tail_cache: &AtomicU64,
    ) -> Result<Option<Peeked>, Corrupted> {
        // Relaxed: only consumer-lock holders store `head`.
        let head = self.check_word(self.ctl.head.0.load(Ordering::Relaxed))?;
        // Relaxed: a cached copy that only lags the real tail.
        let mut tail = unpack(tail_cache.load(Ordering::Relaxed));
        if (tail.0.wrapping_sub(head.0) as i32) <= 0
            || self.check_word(pack(tail.0, tail.1)).is_err()
        {
            // Acquire: pairs with the producers' publishing store.
            let t = self.ctl.tail.0.load(Ordering::Acquire);
            tail_cache.store(t, Ordering::Relaxed);
            tail = self.check_word(t)?;
        }
        let used = self.used(head, tail)?;
        if used == 0 {
            return Ok(None);
        }
        let mut hdr = [0u8; REC_HEADER];
        self.read_at(head.1 as usize, &mut hdr);
        let hdr = u64::from_le_bytes(hdr);
        let len = hdr as u32 as usize;
        let kind = (hdr >> 32) as u8;
        let seq = (hdr >> 40) as u32;
        if seq != head.0 & 0x00ff_ffff {
            return Err(Corrupted("record sequence number mismatch"));
        }
        if kind != REC_INLINE && kind != REC_LARGE {
            return Err(Corrupted("unknown record kind"));
        }
        if kind == REC_LARGE && len != 16 {
            return Err(Corrupted("large-message record of the wrong size"));
        }
        let need = REC_HEADER
            .checked_add(padded(len))
            .ok_or(Corrupted("record length overflows"))?;
        if need > used {
            return Err(Corrupted("record longer than the published bytes"));
        }
        out.clear();
        out.resize(len, 0);
        self.read_at((head.1 as usize + REC_HEADER) % self.cap as usize, out);
        let next_pos = ((head.1 as usize + need) % self.cap as usize) as u32;
        Ok(Some(Peeked {
            kind,
            next_head: pack(head.0.wrapping_add(1), next_pos),
        }))
    }

    /// Consumes the record [`Ring::peek`] returned.
    ///
    /// # Safety
    /// The caller holds the consumer lock, and has held it since the `peek`.
    pub(crate) unsafe fn commit(&self, p: Peeked) {
        // Release: frees the bytes for producers; pairs with their Acquire
        // loads of `head`. (Sleeping producers register under the consumer
        // lock, so no StoreLoad fence is needed here; see `wait`.)
        self.ctl.head.0.store(p.next_head, Ordering::Release);
    }
}

#[cfg(test)]
mod tests;
