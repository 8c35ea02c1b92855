//! Many records per header exchange.
//!
//! * A producer lays out a group of records ([`Batch`]) before it takes
//!   the producer lock, then writes all of them but the first record's
//!   header, and publishes the group with one store of that header (then
//!   one of `tail`): consumers see none of the group or all of it. A
//!   producer killed before that store leaves nothing visible; one killed
//!   after it has published the group, and the next holder of the lock
//!   completes `tail` over every record of it ([`Ring::repair`] follows
//!   headers as long as they are there).
//! * A consumer reads a run of consecutive inline records from `head` and
//!   claims all of them with one compare-and-swap of `head`
//!   ([`Ring::take_many`]); as for one record, a failed swap discards the
//!   copies.

use std::sync::atomic::Ordering;

use super::{
    Corrupted, Peek, ProducerCache, Push, REC_HEADER, REC_INLINE, Ring, header, is_header_of, pack,
    padded,
};

/// Records laid out as in the ring (header, payload padded to 8), whose
/// headers get their sequence numbers when they are published.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    /// Where each record ends in `buf`.
    ends: Vec<usize>,
    /// Records of the batch published so far.
    done: usize,
}

impl Batch {
    /// Appends a record (at most a quarter of the ring: the caller checks).
    pub(crate) fn push(&mut self, payload: &[u8]) {
        let len = payload.len();
        self.buf
            .extend_from_slice(&header(len as u32, REC_INLINE, 0).to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(self.buf.len() + padded(len) - len, 0);
        self.ends.push(self.buf.len());
    }

    /// Records not yet published.
    pub(crate) fn pending(&self) -> usize {
        self.ends.len() - self.done
    }

    /// Records published.
    pub(crate) fn published(&self) -> usize {
        self.done
    }

    /// The bytes laid out, published or not.
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// The payload of the next record to publish.
    pub(crate) fn next_payload(&self) -> &[u8] {
        let start = self.start();
        let len = u64::from_le_bytes(
            self.buf[start..start + REC_HEADER]
                .try_into()
                .unwrap_or_default(),
        ) as u32 as usize;
        &self.buf[start + REC_HEADER..start + REC_HEADER + len]
    }

    /// Marks the next record published (elsewhere: in the overflow log).
    pub(crate) fn skip_one(&mut self) {
        self.done += 1;
    }

    /// Empties the batch.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
        self.done = 0;
    }

    fn start(&self) -> usize {
        self.done.checked_sub(1).map_or(0, |i| self.ends[i])
    }
}

/// Outcome of [`Ring::take_many`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeMany {
    /// This many inline records were taken.
    Taken(usize),
    /// No record is published at `head` (or its header is not one).
    Empty,
    /// The record at `head` must be taken under the consumer lock.
    Locked,
}

impl Ring<'_> {
    /// Publishes as many of `b`'s pending records as there is room for
    /// (all of them if they fit, within `maxcount` queued records), as one
    /// group; returns how many (0: no room, or `Push::Full`).
    ///
    /// # Safety
    /// The caller holds the producer lock; every record of `b` is at most a
    /// quarter of the ring.
    pub(crate) unsafe fn publish_batch(
        &self,
        b: &mut Batch,
        maxcount: u32,
        cache: &ProducerCache,
    ) -> Result<Result<usize, Push>, Corrupted> {
        let start = b.start();
        let pending = &b.ends[b.done..];
        // SAFETY: forwarded from the caller.
        let room = unsafe {
            self.room(maxcount, cache, |records, bytes| {
                // The longest prefix that fits.
                let n = pending
                    .partition_point(|&e| e - start <= bytes)
                    .min(records as usize);
                (n > 0).then_some(n)
            })
        }?;
        let (tail, n) = match room {
            Ok(r) => r,
            Err(p) => return Ok(Err(p)),
        };
        let end = pending[n - 1];
        let need = end - start;
        // Number the headers.
        let mut at = start;
        for k in 0..n {
            let e = b.ends[b.done + k];
            let w = u64::from_le_bytes(b.buf[at..at + 8].try_into().unwrap_or_default());
            let hdr = header(w as u32, REC_INLINE, tail.0.wrapping_add(k as u32));
            b.buf[at..at + 8].copy_from_slice(&hdr.to_le_bytes());
            at = e;
        }
        let first = u64::from_le_bytes(b.buf[start..start + 8].try_into().unwrap_or_default());
        let cap = self.cap as usize;
        let next_pos = ((tail.1 as usize + need) % cap) as u32;
        // The next terminator: `room` left room for it after the group.
        // Relaxed: ordered before consumers' reads by the first header's Release.
        self.word_at(next_pos).store(0, Ordering::Relaxed);
        // Everything but the first header, which is the terminator
        // consumers may be watching until the store below.
        self.write_at(
            (tail.1 as usize + REC_HEADER) % cap,
            &b.buf[start + REC_HEADER..end],
        );
        // Release: publishes the whole group; pairs with the consumers'
        // Acquire loads of the first header.
        self.word_at(tail.1).store(first, Ordering::Release);
        let next = pack(tail.0.wrapping_add(n as u32), next_pos);
        // Release: as in `publish`.
        self.ctl.tail.0.store(next, Ordering::Release);
        // Relaxed: the cache is only touched under the producer lock.
        cache.mark.store(next, Ordering::Relaxed);
        b.done += n;
        Ok(Ok(n))
    }

    /// Takes up to `max` consecutive inline records from `head` without the
    /// consumer lock, appending their payloads to `out` and where each ends
    /// to `ends`; claims them all with one swap of `head`, looking again
    /// when another consumer was faster. `Locked` when the record at `head`
    /// is a large-message record or `defer()` says records of the overflow
    /// log may come first (the run stops before a large-message record).
    pub(crate) fn take_many(
        &self,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
        max: usize,
        defer: impl Fn() -> bool,
    ) -> Result<TakeMany, Corrupted> {
        // The log holds records: they may come first, so any run read now
        // would be discarded (the check after reading, below, is the one
        // that keeps the order). Say so before copying up to `max` records
        // for nothing, which made a consumer that fell behind once (its
        // producers spilled into the log) copy thousands of records per
        // item and never catch up.
        if defer() {
            return Ok(TakeMany::Locked);
        }
        let (out0, ends0) = (out.len(), ends.len());
        let cap = self.cap as usize;
        loop {
            out.truncate(out0);
            ends.truncate(ends0);
            let head_w = self.head_word();
            let head = self.check_word(head_w)?;
            let moved = || self.head_word() != head_w;
            let (mut seq, mut pos) = head;
            let mut scanned = 0usize;
            let mut n = 0;
            while n < max {
                // Acquire: pairs with the producer's Release store of the
                // (group's first) header.
                let hdr = self.word_at(pos).load(Ordering::Acquire);
                if !is_header_of(hdr, seq) {
                    break;
                }
                let (kind, len, need) = match self.checked(hdr) {
                    Ok(v) => v,
                    // Read after the record was taken and its room reused,
                    // or scribbled on: the first is told by `head`.
                    Err(_) if n > 0 || moved() => break,
                    Err(e) => return Err(e),
                };
                if kind != REC_INLINE {
                    break;
                }
                // Never read more than the ring holds (a run read while
                // others reuse it is checked by the swap, but must stay
                // bounded).
                scanned += need;
                if scanned > cap {
                    break;
                }
                self.append(((pos as usize) + REC_HEADER) % cap, len, out);
                ends.push(out.len());
                seq = seq.wrapping_add(1);
                pos = ((pos as usize + need) % cap) as u32;
                n += 1;
            }
            if n == 0 {
                return match self.peek_at(head_w, &mut Vec::new(), false)? {
                    Peek::Moved => continue,
                    Peek::Empty => Ok(TakeMany::Empty),
                    Peek::Record(_) => Ok(TakeMany::Locked),
                };
            }
            if defer() {
                out.truncate(out0);
                ends.truncate(ends0);
                return Ok(TakeMany::Locked);
            }
            // SeqCst: as in `claim`.
            if self
                .ctl
                .head
                .0
                .compare_exchange(head_w, pack(seq, pos), Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(TakeMany::Taken(n));
            }
        }
    }

    /// Appends `len` bytes of the ring from `pos` to `out`, wrapping.
    fn append(&self, pos: usize, len: usize, out: &mut Vec<u8>) {
        let cap = self.cap as usize;
        let at = out.len();
        out.reserve(len);
        let first = len.min(cap - pos);
        let dst = out.as_mut_ptr();
        // Bytes a racing producer changes meanwhile only change the values
        // copied, which the swap in `take_many` validates.
        // SAFETY: [pos, pos + first) is inside the ring (`pos < cap`, `first
        // <= cap - pos`); `dst + at` has room for `len >= first` bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.base.add(pos), dst.add(at), first) };
        if len > first {
            // SAFETY: `len - first <= cap`: [0, len - first) is inside the
            // ring, and `dst + at + first` has room for it.
            unsafe { std::ptr::copy_nonoverlapping(self.base, dst.add(at + first), len - first) };
        }
        // SAFETY: the `len` bytes after `at` were just written.
        unsafe { out.set_len(at + len) };
    }
}
