//! Messages too large for the ring.
//!
//! A message too large for the ring goes into a segment of its own. Under
//! the producer lock, its descriptor is sent with a fresh id over the side
//! channel (a `SOCK_SEQPACKET` pair), then a record `(id, len)` is
//! published: entries and records are in the same order. A consumer, under
//! the consumer lock, *peeks* at the channel's first entry (it receives
//! duplicates of the descriptors, the entry stays queued), maps the segment
//! and copies the message out (and decodes it), and only then claims the
//! record, with the same swap as inline records; it then receives the entry
//! to drop it.
//!
//! So a consumer killed before its swap leaves both to the next one and
//! loses nothing; one killed after it had the item and leaves a stale entry,
//! which the next holder of the consumer lock drops (see
//! `drop_claimed_entry`), as does any later large get (entries older than
//! its record are stale). The descriptors a killed consumer held are closed
//! by the kernel; a live one closes the entry it took at its next get (see
//! `Core::spent`).

use super::*;

/// An entry of the side channel: the id it carries (`None`: not a
/// well-formed entry) and the descriptors that came with it.
pub(super) struct Entry {
    pub(super) id: Option<u64>,
    pub(super) fds: Vec<OwnedFd>,
}

impl Core {
    /// Drops the side channel's first entry if it belongs to the large
    /// message a dead consumer was taking and whose record it claimed (so
    /// that its segment does not live on until the next large get).
    /// Called with the consumer lock, just taken from a dead owner: the
    /// record it was taking is the next one unless it claimed it.
    pub(super) fn drop_claimed_entry(&self) {
        // Relaxed: only consumer-lock holders touch `large_taken`.
        let id = self.ctl().cons.large_taken.load(Ordering::Relaxed);
        if !matches!(self.recv_entry(true), Ok(Some(e)) if e.id == Some(id)) {
            return;
        }
        let mut rec = Vec::new();
        // SAFETY: the caller holds the consumer lock.
        let claimed = match unsafe { self.records().peek(&mut rec, true) } {
            Ok(Some(t)) => t.kind() != REC_LARGE || rec.get(..8) != Some(&id.to_le_bytes()[..]),
            Ok(None) => true,
            // Corrupted: the next get reports it.
            Err(_) => false,
        };
        if claimed {
            let _ = self.recv_entry(false);
        }
    }

    /// A message too large for the ring: its bytes go into a dedicated
    /// segment whose descriptor travels over the side channel; the ring holds
    /// a small record `(id, len)`.
    pub(super) fn put_large(&self, bytes: &[u8], deadline: Deadline) -> Result<(), PutFail> {
        if self.is_closed() {
            return Err(PutFail::Closed);
        }
        let mp = mproc_shm::HEADER_SIZE;
        let seg = Segment::anonymous(mp + bytes.len())
            .map_err(|e| PutFail::Broken(io_broken(e.into())))?;
        // SAFETY: the segment was made just above and is not shared yet.
        unsafe { seg.write_plain(mp, bytes) }.map_err(|e| PutFail::Broken(io_broken(e.into())))?;
        let ctl = self.ctl();
        let recs = self.records();
        let len = bytes.len() as u64;
        let side_full = std::cell::Cell::new(false);
        self.put_with(
            deadline,
            |gate, _g| {
                // Reserve first, so a full queue does not burn ids or descriptors.
                // SAFETY: we hold the producer lock until the publish below; 16 <= cap / 4.
                let res = match unsafe {
                    recs.reserve(16, self.maxcount(), &self.head_cache, || gate.open())
                } {
                    Ok(Ok(res)) => res,
                    Ok(Err(_)) => return None,
                    Err(c) => return Some(Err(PutFail::Broken(c.into()))),
                };
                // Relaxed: only producer-lock holders touch `large_seq`.
                let id = ctl.prod.large_seq.load(Ordering::Relaxed).wrapping_add(1);
                // Claim the id before sending, so a producer killed after the
                // send cannot make the next one reuse it.
                ctl.prod.large_seq.store(id, Ordering::Relaxed);
                let hdr = seg.header().expect("segment holds a header");
                hdr.init(
                    Layout {
                        kind: KIND_LARGE,
                        fingerprint: self.fingerprint,
                    },
                    seg.len() as u64,
                    [len, id, 0, 0],
                );
                let mut rec = [0u8; 16];
                rec[..8].copy_from_slice(&id.to_le_bytes());
                rec[8..].copy_from_slice(&len.to_le_bytes());
                match handle::send_with_fds(self.tx.as_fd(), &rec, &[seg.as_fd()]) {
                    Ok(16) => {}
                    Ok(_) => {
                        return Some(Err(PutFail::Broken(BrokenError::corrupted(
                            "short send on side channel",
                        ))));
                    }
                    // The channel's buffer is full: the bytes go into the
                    // overflow log instead (the claimed id is skipped; ids
                    // only need to grow), or we wait for consumers.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // (The ring reservation `res` is simply not published.)
                        // SAFETY: we hold the producer lock.
                        let r = unsafe { self.copy_into_log(&recs, bytes, gate) };
                        side_full.set(r.is_none());
                        return r;
                    }
                    Err(e) => return Some(Err(PutFail::Broken(io_broken(e)))),
                }
                // SAFETY: producer lock held since `reserve`; 16 bytes reserved.
                unsafe { recs.publish(res, REC_LARGE, &rec) };
                side_full.set(false);
                // Read under the producer lock, as in `put_bytes`.
                Some(Ok(ctl.wait.not_empty.waiters()))
            },
            || (16, side_full.get()),
        )
    }

    /// Takes the large message whose record `p` the caller peeked into
    /// `out`: copies it out of its segment into `out` and `decode`s it, and
    /// only then claims the record (so a consumer killed meanwhile leaves it
    /// to the next one; and large messages are taken one at a time), then
    /// takes its entry off the side channel.
    ///
    /// Out of line: it is the cold path of `get_bytes`.
    ///
    /// # Safety
    /// The caller holds the consumer lock, and has held it since the peek.
    #[cold]
    #[inline(never)]
    pub(super) unsafe fn take_large(
        &self,
        recs: &Records<'_>,
        p: Taken,
        out: &mut Vec<u8>,
        decode: &mut dyn FnMut(&[u8]),
    ) -> Result<(), BrokenError> {
        let rec = <[u8; 16]>::try_from(out.as_slice())
            .map_err(|_| BrokenError::corrupted("short record"))?;
        self.copy_large(&rec, out)?;
        decode(out);
        // Lock-free consumers leave large-message records alone: only a
        // scribbled `head` fails this.
        // SAFETY: the caller holds the consumer lock since the peek.
        if !unsafe { recs.commit(p) } {
            return Err(Corrupted("ring head moved under the consumer lock").into());
        }
        // The item is ours: take its entry off the side channel (a consumer
        // killed before this leaves it stale, and the next holder of the
        // lock drops it), closed later.
        if let Ok(Some(e)) = self.recv_entry(false) {
            self.keep_spent(e.fds);
        }
        Ok(())
    }

    /// Closes the entry [`Core::keep_spent`] kept, if any.
    pub(super) fn close_spent(&self) {
        // Relaxed: a hint; the mutex orders the descriptors themselves.
        if self.has_spent.load(Ordering::Relaxed) {
            let mut spent = mproc_shm::local::lock(&self.spent);
            // Relaxed: under the mutex, as in `keep_spent`.
            self.has_spent.store(false, Ordering::Relaxed);
            let fds = std::mem::take(&mut *spent);
            drop(spent);
            drop(fds);
        }
    }

    /// Keeps `fds` (a taken entry's descriptors) open until this handle's
    /// next get (which closes them outside the claim-to-return window).
    pub(super) fn keep_spent(&self, fds: Vec<OwnedFd>) {
        let mut spent = mproc_shm::local::lock(&self.spent);
        spent.extend(fds);
        // Relaxed: under the mutex, which orders the vector itself.
        self.has_spent.store(true, Ordering::Relaxed);
    }

    /// Receives the side channel's first entry; with `peek`, leaves it
    /// there (its descriptors are then duplicates). `None` when the channel
    /// is empty.
    pub(super) fn recv_entry(&self, peek: bool) -> Result<Option<Entry>, BrokenError> {
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let r = if peek {
            handle::peek_with_fds(self.rx.as_fd(), &mut buf, &mut fds)
        } else {
            handle::recv_with_fds(self.rx.as_fd(), &mut buf, &mut fds)
        };
        let id = match r {
            Ok(16) => Some(u64::from_le_bytes(buf[..8].try_into().unwrap_or_default())),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(io_broken(e)),
        };
        Ok(Some(Entry { id, fds }))
    }

    /// Copies the large message whose record `(id, len)` is `rec` into
    /// `out` (replacing its contents), leaving its entry in the side channel:
    /// the entry is dropped only once the record is claimed, so until then
    /// the item is in the queue for whoever takes the consumer lock next.
    /// Entries before it are stale (their records were claimed by consumers
    /// killed before they dropped them, or never published by producers
    /// killed between send and publish) and are discarded here.
    ///
    /// Called with the consumer lock held.
    pub(super) fn copy_large(&self, rec: &[u8; 16], out: &mut Vec<u8>) -> Result<(), BrokenError> {
        let id = u64::from_le_bytes(rec[..8].try_into().unwrap_or_default());
        let len = u64::from_le_bytes(rec[8..].try_into().unwrap_or_default());
        // Relaxed: only consumer-lock holders touch `large_taken`; see
        // `drop_claimed_entry`.
        self.ctl().cons.large_taken.store(id, Ordering::Relaxed);
        let fd = loop {
            match self.recv_entry(true)? {
                Some(mut e) if e.id == Some(id) && e.fds.len() == 1 => {
                    break e.fds.pop().expect("one descriptor");
                }
                // Stale (an older id) or garbage: drop it, closing its
                // descriptors.
                Some(e) if e.id.is_none_or(|g| (g.wrapping_sub(id) as i64) < 0) => {
                    let _ = self.recv_entry(false)?;
                }
                // Entries leave only after their records: a later one, or
                // none, means someone else removed it.
                _ => {
                    return Err(BrokenError::corrupted(
                        "large message missing from the side channel",
                    ));
                }
            }
        };
        let seg = Segment::from_fd(fd).map_err(|e| io_broken(e.into()))?;
        let p = seg
            .check_layout(Layout {
                kind: KIND_LARGE,
                fingerprint: self.fingerprint,
            })
            .map_err(|_| BrokenError::corrupted("large message segment has a bad header"))?;
        if p[0] != len || p[1] != id || len > (seg.len() - mproc_shm::HEADER_SIZE) as u64 {
            return Err(BrokenError::corrupted(
                "large message segment does not match its record",
            ));
        }
        let len = len as usize;
        out.clear();
        // The size is backed by a real segment, but may still be more than
        // this process can hold: an error, not an abort (and the item stays).
        out.try_reserve_exact(len)
            .map_err(|_| io_broken(io::ErrorKind::OutOfMemory.into()))?;
        out.resize(len, 0);
        // SAFETY: the producer wrote the bytes before it sent the descriptor
        // and never writes them again (`put_large` only drops its mapping),
        // so nobody writes them during this copy.
        unsafe { seg.read_plain(mproc_shm::HEADER_SIZE, out) }.map_err(|e| io_broken(e.into()))
    }
}
