//! The queue's records across its two stores: the ring, and the overflow
//! log for what the ring has no room for. Where a put goes, which record a
//! get takes next, and the counts over both.

use crate::overflow::{self, Front, Overflow};
use crate::ring::{self, Corrupted, Peek, Peeked, ProducerCache, Push, Ring, Take};

/// Room reserved for one record.
#[derive(Debug)]
pub(crate) enum Slot<'c> {
    Ring(ring::Reservation<'c>),
    Overflow(overflow::Reservation),
}

/// A record read by [`Records::peek`], not yet consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    Ring(Peeked),
    Overflow(Front),
}

impl Taken {
    /// The record's kind.
    pub(crate) fn kind(&self) -> u8 {
        match self {
            Self::Ring(p) => p.kind,
            Self::Overflow(f) => f.kind,
        }
    }
}

/// Both stores of one queue.
pub(crate) struct Records<'a> {
    pub(crate) ring: Ring<'a>,
    pub(crate) ovf: Overflow<'a>,
}

impl Records<'_> {
    /// Records published and not consumed (a snapshot while others work).
    pub(crate) fn len(&self) -> usize {
        self.ring.len() + self.ovf.len()
    }

    /// Records ever published, wrapping.
    pub(crate) fn published(&self) -> u32 {
        self.ring.published().wrapping_add(self.ovf.published())
    }

    /// Whether a record is published and not consumed, from fresh loads.
    pub(crate) fn has_record(&self) -> bool {
        self.ring.has_record() || self.ovf.has_record()
    }

    /// Whether a record of `len` payload bytes would be accepted now, from
    /// fresh loads (true for impossible words, so the caller tries and
    /// reports them). `ring_ok`: the ring may take it (`len` fits its limit);
    /// `log_ok`: the log may take it (see [`Records::reserve`]).
    pub(crate) fn has_room(&self, len: usize, maxcount: u32, ring_ok: bool, log_ok: bool) -> bool {
        if maxcount != u32::MAX && self.len() >= maxcount as usize {
            return false;
        }
        (ring_ok && self.ring.has_room(len, u32::MAX)) || (log_ok && self.ovf.has_room(len))
    }

    /// How many records consumers have taken from both stores (wrapping): a
    /// measure of their progress.
    pub(crate) fn consumed(&self) -> u32 {
        self.ring.consumed().wrapping_add(self.ovf.consumed())
    }

    /// Reserves room for a record of `len` payload bytes: in the ring if it
    /// has room, else in the overflow log; `Err(Full)` when `maxcount`
    /// records are queued, `Err(NoRoom)` when neither store has room.
    ///
    /// The log is used only when `log_ok()` says so (it is asked only then,
    /// so the common path pays nothing for it): a put first waits a little
    /// for consumers to make room in the ring, whose pages are warm and
    /// whose records consumers take without a lock, instead of writing to
    /// the log. Records put in the ring while the log holds some still leave
    /// after them (see `overflow`).
    ///
    /// # Safety
    /// The caller holds the producer lock until the slot is published or
    /// dropped; `len` is at most a quarter of the ring's capacity.
    pub(crate) unsafe fn reserve<'c>(
        &self,
        len: usize,
        maxcount: u32,
        cache: &'c ProducerCache,
        log_ok: impl FnOnce() -> bool,
    ) -> Result<Result<Slot<'c>, Push>, Corrupted> {
        // Counting the log's records costs a look at the consumers' word, so
        // only queues with an item limit do it.
        let in_log = if maxcount == u32::MAX {
            0
        } else {
            self.ovf.count()?
        };
        // SAFETY: the caller holds the producer lock.
        match unsafe {
            self.ring
                .reserve(len, maxcount.saturating_sub(in_log), cache)
        }? {
            Ok(r) => Ok(Ok(Slot::Ring(r))),
            // The ring checked the count against what the log leaves.
            Err(Push::NoRoom) if log_ok() => Ok(
                // SAFETY: the caller holds the producer lock.
                unsafe { self.ovf.reserve(len) }?.map(Slot::Overflow),
            ),
            Err(p) => Ok(Err(p)),
        }
    }

    /// Reserves room in the overflow log only, for a record of any size.
    ///
    /// # Safety
    /// The caller holds the producer lock until the slot is published or dropped.
    pub(crate) unsafe fn reserve_overflow<'c>(
        &self,
        len: usize,
        maxcount: u32,
    ) -> Result<Result<Slot<'c>, Push>, Corrupted> {
        if maxcount != u32::MAX {
            let n = self.ring.len() as u64 + u64::from(self.ovf.count()?);
            if n >= u64::from(maxcount) {
                return Ok(Err(Push::Full));
            }
        }
        // SAFETY: the caller holds the producer lock.
        Ok(unsafe { self.ovf.reserve(len) }?.map(Slot::Overflow))
    }

    /// Writes and publishes the record reserved by `slot`.
    ///
    /// # Safety
    /// The caller holds the producer lock, has held it since the slot was
    /// reserved, and `payload.len()` is the length reserved.
    pub(crate) unsafe fn publish(&self, slot: Slot<'_>, kind: u8, payload: &[u8]) {
        match slot {
            // SAFETY: forwarded from the caller.
            Slot::Ring(r) => unsafe { self.ring.publish(r, kind, payload) },
            Slot::Overflow(o) => {
                let after = self.ring.tail_seq();
                // SAFETY: forwarded from the caller.
                unsafe { self.ovf.publish(o, kind, after, payload) }
            }
        }
    }

    /// [`Records::reserve`] then [`Records::publish`].
    ///
    /// # Safety
    /// As for [`Records::reserve`].
    pub(crate) unsafe fn try_push(
        &self,
        kind: u8,
        payload: &[u8],
        maxcount: u32,
        cache: &ProducerCache,
        log_ok: impl FnOnce() -> bool,
    ) -> Result<Push, Corrupted> {
        // SAFETY: forwarded from the caller, who holds the lock through both.
        match unsafe { self.reserve(payload.len(), maxcount, cache, log_ok) }? {
            Ok(slot) => {
                // SAFETY: as above; reserved for this payload's length.
                unsafe { self.publish(slot, kind, payload) };
                Ok(Push::Done)
            }
            Err(p) => Ok(p),
        }
    }

    /// Reads the next record in put order into `out` (replacing its
    /// contents); `None` if both stores are empty. `strict`: see [`Ring::peek`].
    ///
    /// The ring's record is read first and the log's first record looked at
    /// after it: a log record published after that ring record comes after
    /// it (its `after` is beyond it), so a log found empty then cannot hold
    /// one that should have gone first. Both are judged against the same
    /// `head` word: lock-free consumers move it meanwhile.
    ///
    /// # Safety
    /// The caller holds the consumer lock.
    pub(crate) unsafe fn peek(
        &self,
        out: &mut Vec<u8>,
        strict: bool,
    ) -> Result<Option<Taken>, Corrupted> {
        loop {
            let head_w = self.ring.head_word();
            let ring = match self.ring.peek_at(head_w, out, strict)? {
                Peek::Moved => continue,
                Peek::Record(p) => Some(p),
                Peek::Empty => None,
            };
            // SAFETY: the caller holds the consumer lock (here and below).
            let Some(f) = unsafe { self.ovf.front() }? else {
                return Ok(ring.map(Taken::Ring));
            };
            // Every ring record put before it is consumed: it is next.
            let due = (ring::unpack(head_w).0.wrapping_sub(f.after) as i32) >= 0;
            match ring {
                Some(p) if !due => return Ok(Some(Taken::Ring(p))),
                // The ring's record may not have been visible yet when we
                // read it; a strict look will tell.
                None if !due && !strict => return Ok(None),
                // Due; or a strict look found the ring empty although `after`
                // says records came before it: only a scribbled `after` does
                // that, and the record is taken anyway.
                _ => {
                    // SAFETY: as above.
                    unsafe { self.ovf.read(&f, out) }?;
                    return Ok(Some(Taken::Overflow(f)));
                }
            }
        }
    }

    /// Consumes the record `peek` returned, unless a lock-free consumer took
    /// it first (false: peek again).
    ///
    /// # Safety
    /// The caller holds the consumer lock, and has held it since the `peek`.
    pub(crate) unsafe fn commit(&self, t: Taken) -> bool {
        match t {
            // SAFETY: forwarded from the caller.
            Taken::Ring(p) => unsafe { self.ring.commit(p) },
            Taken::Overflow(f) => {
                // SAFETY: forwarded from the caller; only lock holders take
                // the log's records.
                unsafe { self.ovf.commit(f) };
                true
            }
        }
    }

    /// Takes the next record into `out` without the consumer lock when it is
    /// an inline ring record and the overflow log is empty (see
    /// [`Ring::take`]); `Locked` when it must be taken under the lock.
    ///
    /// While the log is empty, a record it receives later comes after every
    /// ring record published before it, so the record found at `head` is
    /// next in put order.
    pub(crate) fn take(&self, out: &mut Vec<u8>) -> Result<Take, Corrupted> {
        self.ring.take(out, || self.ovf.has_record())
    }
}
