//! The shared-memory ring that carries the messages between the two ends of
//! a [`pipe`](crate::pipe), with the queue's spin-then-park hand-off.
//!
//! One memfd segment holds a ring of records per direction. A sender copies
//! a small message into its direction's ring and publishes the new `tail`;
//! a receiver copies it out and publishes `head`. Everything the ring
//! cannot carry (messages with descriptors, messages above [`INLINE_MAX`],
//! shared-memory arena records) still travels on the socket, announced by a
//! `SOCKET` record in the ring at its place in the message order. The
//! record is published *before* the frame is written: a frame larger than
//! the socket's buffer can only be written while the receiver reads it,
//! and a receiver reads the socket for the frames the ring announced (it
//! then waits for the rest of the frame as on any socket).
//!
//! Waking, in the order of cost:
//! * a receiver spins on `tail` briefly when another CPU may run the sender
//!   (the policy of [`mproc_shm::wait`]), then parks on the futex word `seq` after
//!   setting `PARKED` in `state`; a sender reads `state` after publishing
//!   and makes the `futex_wake` system call only when it finds `PARKED`
//!   (SeqCst on `tail` and `state` on both sides: one of the two always
//!   sees the other, so no wake-up is lost);
//! * a receiver that waits on the *descriptor* (`poll`, `wait`, an async
//!   reactor) sets `ARMED` instead, and the sender then writes a 4-byte
//!   doorbell frame to the socket (one per arming: the sender clears the
//!   bit). Doorbells are skipped by the frame decoder wherever they come
//!   in the stream, and drained when found at the head of the read-ahead
//!   buffer, so a socket that is readable because of a doorbell whose
//!   message was already received does not stay "ready".
//! * a sender whose ring is full waits for `head` the same way (spin, then
//!   a futex on `room` with a liveness slice, checking that the receiver's
//!   socket is still open).
//!
//! A parked receiver sleeps in slices of [`LIVENESS_SLICE`] and looks at the
//! socket after each: a sender killed before it could wake anybody closes
//! its socket, which is how end of file is noticed. A sender's `Connection`
//! that is dropped also wakes a parked receiver, after closing its socket.
//!
//! The peer's records are checked before use (a hostile peer can only make
//! us copy other bytes or fail with a protocol error), and the memory is
//! only ever copied, never borrowed as a slice.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use mproc_shm::wait::{Deadline, LIVENESS_SLICE, spin_until};
use mproc_shm::{HEADER_SIZE, Layout, Segment, SharedSync, fingerprint_of, futex};

use crate::error::{RecvError, SendBytesError};
use crate::frame::BELL;
use crate::sys::{self, FdKind};

/// The bytes of one direction's ring (a power of two).
const CAP: u64 = 64 << 10;
/// The largest message carried in the ring; larger ones go through the socket.
pub(crate) const INLINE_MAX: usize = (CAP / 4) as usize;
/// A record's header: the payload length and the kind (u32 each, native order).
const REC: u64 = 8;
/// A record holding a message.
const INLINE: u32 = 1;
/// A record saying that the next message is a frame on the socket.
const SOCKET: u32 = 2;
/// Padding to the end of the ring; the next record starts at offset 0.
const SKIP: u32 = 3;
/// `state`: the receiver sleeps on `seq`.
const PARKED: u32 = 1;
/// `state`: the receiver waits on the socket; the sender rings a doorbell.
const ARMED: u32 = 2;

/// Values on a cache-line pair of their own (no false sharing between what
/// the sender writes on every message and what the receiver writes).
#[repr(C, align(128))]
struct Line<T>(T);

/// One direction.
#[repr(C)]
struct Dir {
    /// Where the published records end (written by senders).
    tail: Line<AtomicU64>,
    /// Where the receiver has read to (written by the receiver).
    head: Line<AtomicU64>,
    /// `PARKED | ARMED`, set by the receiver and cleared by the sender
    /// that wakes it; written only when somebody sleeps.
    state: Line<AtomicU32>,
    /// The futex word a parked receiver sleeps on.
    seq: Line<AtomicU32>,
    /// A sender waiting for room: the flag and the futex word.
    room: Line<[AtomicU32; 2]>,
}

/// The control block, after the segment header.
#[repr(C)]
struct Ctl {
    dirs: [Dir; 2],
    /// How many `Connection` values (in all processes, counting those in
    /// flight to another process) hold each end: a sender whose peer's
    /// count is zero checks the socket and reports the disconnection.
    open: Line<[AtomicU32; 2]>,
}

// SAFETY: repr(C) structs of atomics only (and alignment padding); all zeros
// is the valid initial state.
unsafe impl SharedSync for Ctl {}

const LAYOUT: Layout = Layout {
    kind: 0x0403,
    fingerprint: fingerprint_of::<Ctl>("mproc-pipe ring v1"),
};
/// Where the control block starts (aligned for its lines).
const CTL_OFF: usize = 128;
/// Where direction `i`'s bytes start: `DATA_OFF + i * CAP`.
const DATA_OFF: usize = 4096;
const _: () = assert!(HEADER_SIZE <= CTL_OFF);
const _: () = assert!(CTL_OFF + std::mem::size_of::<Ctl>() <= DATA_OFF);
const SIZE: usize = DATA_OFF + 2 * CAP as usize;

/// One end's view of the ring: it sends on direction `end` and receives on
/// the other.
pub(crate) struct Ring {
    seg: Segment,
    end: usize,
    ctl: NonNull<Ctl>,
}

// SAFETY: `ctl` points into `seg`'s mapping, which lives as long as the
// `Ring`; everything it points to is atomics (SharedSync), which any thread
// may use at once.
unsafe impl Send for Ring {}
// SAFETY: as for Send.
unsafe impl Sync for Ring {}

/// What [`Ring::take`] found.
pub(crate) enum Taken {
    /// A message.
    Msg(Vec<u8>),
    /// The next message is a frame on the socket.
    Socket,
}

fn padded(len: u64) -> u64 {
    len.div_ceil(REC) * REC
}

impl Ring {
    /// A new ring, as the ends `(0, 1)`, each counted open once.
    pub(crate) fn pair() -> io::Result<(Self, Self)> {
        let seg = Segment::anonymous(SIZE).map_err(io::Error::other)?;
        seg.header()
            .map_err(io::Error::other)?
            .init(LAYOUT, seg.len() as u64, [CAP, 0, 0, 0]);
        let other = seg.try_clone().map_err(io::Error::other)?;
        let (a, b) = (Self::adopt(seg, 0)?, Self::adopt(other, 1)?);
        a.opened();
        b.opened();
        Ok((a, b))
    }

    /// End `end` of a ring received from another process, checked.
    pub(crate) fn adopt(seg: Segment, end: usize) -> io::Result<Self> {
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "bad pipe ring");
        if end > 1 || seg.len() < SIZE {
            return Err(bad());
        }
        // A file the peer could truncate would make our accesses fault.
        if !sys::cannot_shrink(seg.as_fd()) {
            return Err(bad());
        }
        if seg.check_layout(LAYOUT).map_err(|_| bad())?[0] != CAP {
            return Err(bad());
        }
        let ctl = NonNull::from(seg.get::<Ctl>(CTL_OFF).map_err(|_| bad())?);
        Ok(Self { seg, end, ctl })
    }

    /// The segment and which end this is, to travel to another process.
    pub(crate) fn parts(&self) -> (&Segment, usize) {
        (&self.seg, self.end)
    }

    fn ctl(&self) -> &Ctl {
        // SAFETY: `ctl` was checked by `Segment::get` (in bounds, aligned) in
        // `adopt`, and the mapping lives as long as `self.seg`.
        unsafe { self.ctl.as_ref() }
    }

    fn tx(&self) -> &Dir {
        &self.ctl().dirs[self.end]
    }

    fn rx(&self) -> &Dir {
        &self.ctl().dirs[1 - self.end]
    }

    /// The address of byte `pos % CAP` of direction `dir`'s ring.
    fn at(&self, dir: usize, pos: u64) -> *mut u8 {
        // SAFETY: `DATA_OFF + dir * CAP + pos % CAP < SIZE <= seg.len()`
        // (checked in `adopt`), so the result stays inside the mapping.
        unsafe {
            self.seg
                .as_ptr()
                .add(DATA_OFF + dir * CAP as usize + (pos % CAP) as usize)
        }
    }

    // ----- open counts -----

    /// Counts one more `Connection` holding this end (a clone, or a copy
    /// about to travel to another process).
    pub(crate) fn opened(&self) {
        // Relaxed: a count read only as a hint (see `peer_closed`).
        self.ctl().open.0[self.end].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one `Connection` holding this end less, and wakes a parked
    /// receiver on the other side so that it looks for end of file (call
    /// after closing the socket).
    pub(crate) fn closed(&self) {
        // Relaxed: as in `opened`. Saturating: a hostile count cannot wrap.
        let _ =
            self.ctl().open.0[self.end]
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let d = self.tx();
        // SeqCst: as the wake in `push`.
        if d.state.0.fetch_and(!PARKED, Ordering::SeqCst) & PARKED != 0 {
            d.seq.0.fetch_add(1, Ordering::SeqCst);
            futex::wake(&d.seq.0, u32::MAX);
        }
    }

    /// Whether no `Connection` holds the other end any more (then the
    /// caller confirms with the socket).
    pub(crate) fn peer_closed(&self) -> bool {
        // Relaxed: a hint; the socket is the authority.
        self.ctl().open.0[1 - self.end].load(Ordering::Relaxed) == 0
    }

    // ----- sending -----

    /// Publishes one record: `payload` as a message (`socket: false`), or a
    /// note that the next message is the frame just written to the socket
    /// (`socket: true`, empty payload). Waits for room while the ring is
    /// full. The caller holds the connection's write locks.
    pub(crate) fn push(
        &self,
        sock: BorrowedFd<'_>,
        socket: bool,
        payload: &[u8],
    ) -> Result<(), SendBytesError> {
        let d = self.tx();
        let len = payload.len() as u64;
        debug_assert!(payload.len() <= INLINE_MAX);
        // Relaxed: senders take turns under the write locks, which order
        // this load after the previous sender's store.
        let tail = d.tail.0.load(Ordering::Relaxed);
        let need = REC + padded(len);
        let off = tail % CAP;
        let skip = if off + need > CAP { CAP - off } else { 0 };
        let end = tail + skip + need;
        self.wait_for_room(sock, end)?;
        if skip > 0 {
            self.write_header(tail, 0, SKIP);
        }
        let start = tail + skip;
        self.write_header(start, len as u32, if socket { SOCKET } else { INLINE });
        // The receiver has read everything below `end - CAP` (see
        // `wait_for_room`) and reads this range only after the store of
        // `tail` below publishes it.
        // SAFETY: `start + REC .. start + REC + len` lies inside one ring
        // (`off + need <= CAP` after the skip), inside the mapping; the
        // source is a live slice.
        unsafe {
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                self.at(self.end, start + REC),
                payload.len(),
            );
        }
        // SeqCst: publishes the record, and orders the load of `state`
        // below after it (pairs with `park` and `arm`).
        d.tail.0.store(end, Ordering::SeqCst);
        let st = d.state.0.load(Ordering::SeqCst);
        if st != 0 {
            self.wake(st, sock);
        }
        Ok(())
    }

    fn write_header(&self, pos: u64, len: u32, kind: u32) {
        let mut h = [0u8; REC as usize];
        h[..4].copy_from_slice(&len.to_ne_bytes());
        h[4..].copy_from_slice(&kind.to_ne_bytes());
        // SAFETY: `pos % CAP` is a multiple of REC, so the 8 bytes lie inside
        // the ring; nobody reads them before `tail` is published.
        unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), self.at(self.end, pos), h.len()) };
    }

    /// Wakes the receiver as `state` asks: the futex for a parked one, a
    /// doorbell on the socket for one waiting on the descriptor.
    fn wake(&self, st: u32, sock: BorrowedFd<'_>) {
        let d = self.tx();
        // SeqCst: clearing the bit is what makes only one sender pay.
        if st & PARKED != 0 && d.state.0.fetch_and(!PARKED, Ordering::SeqCst) & PARKED != 0 {
            d.seq.0.fetch_add(1, Ordering::SeqCst);
            futex::wake(&d.seq.0, u32::MAX);
        }
        if st & ARMED != 0 && d.state.0.fetch_and(!ARMED, Ordering::SeqCst) & ARMED != 0 {
            // A full socket is readable already, so a doorbell that does not
            // fit is not needed; errors (the receiver is gone) are the
            // receiver's business.
            match sys::send_nonblock(sock, &BELL) {
                Ok(n) if n < BELL.len() => {
                    let _ = sys::write_all(sock, FdKind::Unix, &[&BELL[n..]], &[]);
                }
                _ => {}
            }
        }
    }

    /// Waits until the receiver has read everything before `end - CAP`.
    fn wait_for_room(&self, sock: BorrowedFd<'_>, end: u64) -> Result<(), SendBytesError> {
        let d = self.tx();
        let need = end.saturating_sub(CAP);
        // Acquire: pairs with the SeqCst store of `head` in `advance`, so the
        // receiver's copy-out happened before we overwrite the bytes.
        let room = || d.head.0.load(Ordering::Acquire) >= need;
        if room() || spin_until(Deadline::Never, room) {
            return Ok(());
        }
        let [waiting, seq] = &d.room.0;
        loop {
            // SeqCst: "set waiting, re-check head" against the receiver's
            // "store head, check waiting": one of the two sees the other.
            let s = seq.load(Ordering::SeqCst);
            waiting.store(1, Ordering::SeqCst);
            if d.head.0.load(Ordering::SeqCst) >= need {
                return Ok(());
            }
            futex::wait(seq, s, Some(LIVENESS_SLICE));
            if room() {
                return Ok(());
            }
            if sys::peer_gone(sock) {
                return Err(SendBytesError::Disconnected);
            }
        }
    }

    // ----- receiving -----

    /// Whether the ring holds no record for us.
    pub(crate) fn is_empty(&self) -> bool {
        let d = self.rx();
        // Relaxed: `head` is ours. SeqCst: see `park` and `arm`.
        d.head.0.load(Ordering::Relaxed) == d.tail.0.load(Ordering::SeqCst)
    }

    /// Takes the next record, if any. The caller holds the reader's lock.
    ///
    /// # Errors
    /// [`RecvError::Protocol`] for records that break the ring's rules.
    pub(crate) fn take(&self) -> Result<Option<Taken>, RecvError> {
        const BAD: RecvError = RecvError::Protocol("bad record in the pipe's shared-memory ring");
        let peer = 1 - self.end;
        let d = self.rx();
        // Relaxed: only this end writes `head`.
        let mut head = d.head.0.load(Ordering::Relaxed);
        // Acquire: pairs with the SeqCst store in `push`; the record's bytes
        // are visible.
        let tail = d.tail.0.load(Ordering::Acquire);
        loop {
            if head == tail {
                return Ok(None);
            }
            if tail < head || tail - head > CAP || head % REC != 0 {
                return Err(BAD);
            }
            let mut h = [0u8; REC as usize];
            // The peer may be writing anywhere but in `head..tail`; a hostile
            // one can only change which bytes we copy.
            // SAFETY: `head % CAP` is a multiple of REC below CAP, so the 8
            // bytes lie inside the ring; the destination is a local array.
            unsafe { std::ptr::copy_nonoverlapping(self.at(peer, head), h.as_mut_ptr(), h.len()) };
            let len = u64::from(u32::from_ne_bytes([h[0], h[1], h[2], h[3]]));
            let kind = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
            let off = head % CAP;
            let next = match kind {
                SKIP => head + (CAP - off),
                INLINE if len <= INLINE_MAX as u64 && off + REC + len <= CAP => {
                    head + REC + padded(len)
                }
                SOCKET if len == 0 => head + REC,
                _ => return Err(BAD),
            };
            if next > tail {
                return Err(BAD);
            }
            let taken = match kind {
                SKIP => {
                    head = next;
                    continue;
                }
                SOCKET => Taken::Socket,
                _ => {
                    let n = len as usize;
                    let mut out = Vec::<u8>::with_capacity(n);
                    // SAFETY: `off + REC + len <= CAP` (checked above): the
                    // source lies inside the ring; the destination is the
                    // fresh Vec's capacity of `n` bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            self.at(peer, head + REC),
                            out.as_mut_ptr(),
                            n,
                        );
                        out.set_len(n);
                    }
                    Taken::Msg(out)
                }
            };
            self.advance(next);
            return Ok(Some(taken));
        }
    }

    /// Publishes that everything before `head` is read, waking a sender
    /// waiting for room.
    fn advance(&self, head: u64) {
        let d = self.rx();
        // SeqCst: pairs with the sender's "set waiting, re-check head".
        d.head.0.store(head, Ordering::SeqCst);
        let [waiting, seq] = &d.room.0;
        if waiting.load(Ordering::SeqCst) != 0 && waiting.swap(0, Ordering::SeqCst) != 0 {
            seq.fetch_add(1, Ordering::SeqCst);
            futex::wake(seq, u32::MAX);
        }
    }

    /// Sleeps until a sender publishes a record (or wakes us for another
    /// reason), at most `max`.
    pub(crate) fn park(&self, max: Duration) {
        let d = self.rx();
        // SeqCst: "set PARKED, re-check tail" against the sender's "store
        // tail, check state". `seq` first: a wake after it moves it on.
        let s = d.seq.0.load(Ordering::SeqCst);
        d.state.0.fetch_or(PARKED, Ordering::SeqCst);
        if self.is_empty() {
            futex::wait(&d.seq.0, s, Some(max));
        }
        // Relaxed: only saves the sender a system call.
        d.state.0.fetch_and(!PARKED, Ordering::Relaxed);
    }

    /// Asks the next sender to ring the socket's doorbell; the caller then
    /// re-checks [`Ring::is_empty`] before waiting on the descriptor.
    pub(crate) fn arm(&self) {
        // SeqCst: as in `park`.
        self.rx().state.0.fetch_or(ARMED, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_that_break_the_rules_are_protocol_errors() {
        let kinds: [(u32, u32, u64); 4] = [
            // An unknown kind.
            (0, 9, REC),
            // An inline message longer than the ring allows.
            (
                INLINE_MAX as u32 + 1,
                INLINE,
                REC + padded(INLINE_MAX as u64 + 1),
            ),
            // A message running past the published tail.
            (100, INLINE, REC + 8),
            // A socket note with a payload.
            (4, SOCKET, REC + 8),
        ];
        for (len, kind, tail) in kinds {
            let (a, b) = Ring::pair().unwrap();
            a.write_header(0, len, kind);
            a.tx().tail.0.store(tail, Ordering::SeqCst);
            assert!(
                matches!(b.take(), Err(RecvError::Protocol(_))),
                "{kind} {len}"
            );
        }
        // A tail more than a ring ahead.
        let (a, b) = Ring::pair().unwrap();
        a.tx().tail.0.store(CAP + REC, Ordering::SeqCst);
        assert!(matches!(b.take(), Err(RecvError::Protocol(_))));
    }

    #[test]
    fn records_wrap_around_the_ring() {
        let (a, b) = Ring::pair().unwrap();
        let (x, _) = crate::sys::socketpair().unwrap();
        let msg = vec![0x5a; 5000];
        for i in 0..100u8 {
            let mut m = msg.clone();
            m[0] = i;
            a.push(x.as_fd(), false, &m).unwrap();
            match b.take().unwrap() {
                Some(Taken::Msg(got)) => assert_eq!(got, m),
                _ => panic!("no message {i}"),
            }
        }
        assert!(b.is_empty());
        assert!(b.take().unwrap().is_none());
    }
}
