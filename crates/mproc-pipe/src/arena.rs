//! The shared-memory path for large messages between mproc peers.
//!
//! Each sending end owns an *arena*: a memfd segment used as a ring of bytes.
//! A large message is copied into the ring and the socket carries only a
//! 24-byte record (arena id, start, length), plus the arena's descriptor the
//! first time it is used. The receiver copies the message out of its own
//! mapping of the arena and publishes how far it has read (`head`), which
//! frees the space for the sender. Positions are monotonic byte counts; the
//! offset in the ring is `position % capacity`, and a message never wraps
//! (the sender skips the end of the ring instead).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use mproc_shm::{HEADER_SIZE, Layout, Segment, SharedSync, fingerprint_of, futex};

use crate::error::{RecvError, SendBytesError};
use crate::frame::{ShmRef, encode_shm};
use crate::sys::{self, FdKind};

/// The arena's control block, right after the segment header.
#[repr(C)]
struct Ctl {
    /// The position up to which the receiver has copied messages out.
    head: AtomicU64,
    /// Bumped by the receiver to wake a sender waiting for space.
    wake: AtomicU32,
    /// Set by a sender about to sleep on `wake`.
    waiting: AtomicU32,
    /// 0 while the sender uses the arena; then one more than the position
    /// where its last message ends, so that the receiver, once it has read
    /// that far, can unmap the arena (a connection shared by several
    /// sending processes has one arena per sender, and a sender replaces
    /// its arena when a message does not fit).
    retired: AtomicU64,
}

// SAFETY: repr(C) of atomics only; all zeros is the valid initial state.
unsafe impl SharedSync for Ctl {}

const LAYOUT: Layout = Layout {
    kind: mproc_shm::kind::PIPE_ARENA,
    fingerprint: fingerprint_of::<Ctl>("mproc-pipe arena v2"),
};
/// Where the ring's bytes start: page-aligned, after header and control block.
const DATA_OFF: usize = 4096;
const _: () = assert!(HEADER_SIZE + std::mem::size_of::<Ctl>() <= DATA_OFF);
/// The smallest ring created.
pub(crate) const DEFAULT_CAPACITY: usize = 8 << 20;

fn ctl(seg: &Segment) -> Result<&Ctl, mproc_shm::SegmentError> {
    seg.get::<Ctl>(HEADER_SIZE)
}

/// The sending side of an arena.
pub(crate) struct ArenaTx {
    seg: Segment,
    id: u64,
    cap: u64,
    tail: u64,
    announced: bool,
}

impl ArenaTx {
    fn create(min: usize) -> io::Result<Self> {
        let cap = min
            .checked_next_power_of_two()
            .ok_or(io::ErrorKind::OutOfMemory)?
            .max(DEFAULT_CAPACITY);
        // Anonymous segments are sealed against shrinking; the receiver checks.
        let seg = Segment::anonymous(DATA_OFF + cap).map_err(io::Error::other)?;
        let mut idb = [0u8; 8];
        sys::random(&mut idb)?;
        let id = u64::from_ne_bytes(idb);
        seg.header().map_err(io::Error::other)?.init(
            LAYOUT,
            seg.len() as u64,
            [cap as u64, id, 0, 0],
        );
        Ok(Self {
            seg,
            id,
            cap: cap as u64,
            tail: 0,
            announced: false,
        })
    }

    /// Sends `data` through the arena of `slot` (creating or growing it),
    /// writing the record to `sock`.
    pub(crate) fn send(
        slot: &mut Option<Self>,
        sock: BorrowedFd<'_>,
        data: &[u8],
    ) -> Result<(), SendBytesError> {
        let len = data.len() as u64;
        if slot.as_ref().is_none_or(|a| a.cap < len) {
            *slot = Some(Self::create(data.len()).map_err(SendBytesError::Io)?);
        }
        let Some(a) = slot.as_mut() else {
            return Err(SendBytesError::Io(io::ErrorKind::OutOfMemory.into()));
        };
        let off = a.tail % a.cap;
        let skip = if off + len > a.cap { a.cap - off } else { 0 };
        let start = a.tail + skip;
        a.wait_for_space(sock, start + len)?;
        let at = DATA_OFF + (start % a.cap) as usize;
        // `wait_for_space` saw (Acquire on `head`) that the receiver has copied
        // out everything it was sent in this range, and it reads the range
        // again only after the record below announces it.
        // SAFETY: so nobody else touches these bytes during the copy.
        unsafe { a.seg.write_plain(at, data) }
            .map_err(|e| SendBytesError::Io(io::Error::other(e)))?;
        let rec = encode_shm(ShmRef {
            arena: a.id,
            start,
            len,
        });
        let fds: &[BorrowedFd<'_>] = if a.announced { &[] } else { &[a.seg.as_fd()] };
        sys::write_all(sock, FdKind::Unix, &[&rec], fds).map_err(SendBytesError::from_io)?;
        a.announced = true;
        a.tail = start + len;
        Ok(())
    }

    /// Waits until the receiver has read everything before `end - cap`.
    fn wait_for_space(&self, sock: BorrowedFd<'_>, end: u64) -> Result<(), SendBytesError> {
        let ctl = ctl(&self.seg).map_err(|e| SendBytesError::Io(io::Error::other(e)))?;
        // Every position below `end - cap` must have been read, except the
        // skipped tail of the ring (positions from `tail` on were never written).
        let need = end.saturating_sub(self.cap).min(self.tail);
        loop {
            // Acquire: pairs with the Release store of `head` in `ArenaRx::read`,
            // so the receiver's copy-out happened before we overwrite the bytes.
            let head = ctl.head.load(Ordering::Acquire);
            if head >= need && head <= self.tail {
                return Ok(());
            }
            if !self.announced {
                // The receiver has never seen this arena, so nothing in it is unread.
                return Ok(());
            }
            // SeqCst on `wake`, `waiting` and `head` (here and in `ArenaRx::read`)
            // orders "set waiting, re-check head" against "store head, check
            // waiting", so one side always sees the other: no lost wake-up.
            let seq = ctl.wake.load(Ordering::SeqCst);
            ctl.waiting.store(1, Ordering::SeqCst);
            if ctl.head.load(Ordering::SeqCst) != head {
                continue;
            }
            futex::wait(&ctl.wake, seq, Some(mproc_shm::wait::LIVENESS_SLICE));
            if sys::peer_gone(sock) {
                return Err(SendBytesError::Disconnected);
            }
        }
    }
}

impl Drop for ArenaTx {
    fn drop(&mut self) {
        if let Ok(ctl) = ctl(&self.seg) {
            // Release: orders the arena's messages before the flag; pairs with
            // the Acquire load in `ArenaRx::finished`.
            ctl.retired.store(self.tail + 1, Ordering::Release);
        }
    }
}

/// The receiving side: the peer's arena as mapped here.
pub(crate) struct ArenaRx {
    seg: Segment,
    id: u64,
    cap: u64,
    next: u64,
}

impl ArenaRx {
    /// Adopts an arena received as a descriptor, checking its layout.
    pub(crate) fn adopt(fd: OwnedFd, id: u64) -> Result<Self, RecvError> {
        // A file the sender could truncate would make our reads fault (SIGBUS).
        if !sys::cannot_shrink(fd.as_fd()) {
            return Err(RecvError::Protocol(
                "shared-memory arena is not sealed against shrinking",
            ));
        }
        let seg =
            Segment::from_fd(fd).map_err(|_| RecvError::Protocol("bad shared-memory arena"))?;
        let params = seg
            .check_layout(LAYOUT)
            .map_err(|_| RecvError::Protocol("bad shared-memory arena"))?;
        let (cap, found) = (params[0], params[1]);
        let fits = usize::try_from(cap)
            .ok()
            .and_then(|c| c.checked_add(DATA_OFF))
            .is_some_and(|end| end <= seg.len());
        if found != id || cap == 0 || !fits {
            return Err(RecvError::Protocol("bad shared-memory arena"));
        }
        Ok(Self {
            seg,
            id,
            cap,
            next: 0,
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whether the sender has given the arena up and every message in it has
    /// been read: it can be unmapped. (A hostile sender can only make us
    /// unmap its arena early, and then its next record is an error.)
    pub(crate) fn finished(&self) -> bool {
        ctl(&self.seg).map_or(true, |c| {
            // Acquire: pairs with the Release store in `ArenaTx::drop`.
            let r = c.retired.load(Ordering::Acquire);
            r != 0 && self.next >= r - 1
        })
    }

    /// Copies the message at `start..start+len` out and frees its space.
    pub(crate) fn read(&mut self, start: u64, len: u64) -> Result<Vec<u8>, RecvError> {
        const BAD: RecvError = RecvError::Protocol("bad shared-memory record");
        let off = start % self.cap;
        if start < self.next || off.checked_add(len).is_none_or(|e| e > self.cap) {
            return Err(BAD);
        }
        let n = usize::try_from(len).map_err(|_| BAD)?;
        let at = DATA_OFF + off as usize;
        let mut out = Vec::<u8>::with_capacity(n);
        let spare: &mut [MaybeUninit<u8>] = &mut out.spare_capacity_mut()[..n];
        // The sender does not write this range until we advance `head` below (a
        // hostile sender can only change which bytes we copy).
        // SAFETY: `at + n <= DATA_OFF + cap <= seg.len()` (checked above and in `adopt`):
        // the source is inside the live mapping; the destination is a fresh Vec's spare capacity.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.seg.as_ptr().add(at),
                spare.as_mut_ptr().cast::<u8>(),
                n,
            )
        };
        // SAFETY: the copy above initialised the first `n` bytes.
        unsafe { out.set_len(n) };
        self.next = start + len;
        if let Ok(ctl) = ctl(&self.seg) {
            // SeqCst (includes Release): publishes that the copy-out is done;
            // pairs with the loads in `ArenaTx::wait_for_space`.
            ctl.head.store(self.next, Ordering::SeqCst);
            if ctl.waiting.swap(0, Ordering::SeqCst) != 0 {
                ctl.wake.fetch_add(1, Ordering::SeqCst);
                futex::wake(&ctl.wake, 1);
            }
        }
        Ok(out)
    }

    /// The arena as a handle plus its read position, to travel with a
    /// connection to another process.
    pub(crate) fn parts(&self) -> (&Segment, u64, u64) {
        (&self.seg, self.id, self.next)
    }

    /// Rebuilds from [`ArenaRx::parts`] received from another process.
    pub(crate) fn from_parts(seg: Segment, id: u64, next: u64) -> Result<Self, RecvError> {
        let fd = seg.as_fd().try_clone_to_owned().map_err(RecvError::Io)?;
        let mut a = Self::adopt(fd, id)?;
        a.next = next;
        Ok(a)
    }
}
