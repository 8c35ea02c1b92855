//! The untyped queue every public type wraps: a segment (header, control
//! block, ring) plus the side channel for large messages.
//!
//! Large messages take a path of their own ([`large`]); JoinableQueue's
//! task counting is in [`tasks`].

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::handle::{self, HandleFd};
use mproc_shm::ready::Doorbell;
use mproc_shm::{Acquired, Layout, RawMutex, Segment};
use serde::{Deserialize, Serialize};

use crate::error::{BrokenError, CreateError};
use crate::layout::{CTL_OFFSET, Ctl, KIND_LARGE, RING_OFFSET};
use crate::overflow::{self, Overflow};
use crate::records::{Records, Taken};
use crate::ring::{self, Corrupted, ProducerCache, Push, REC_INLINE, REC_LARGE, Ring, Take};
use crate::wait::{Deadline, Prepare, SLICE, block_on};

mod batch;
mod large;
mod locked;
mod tasks;
pub(crate) use locked::{Consumer, Took};

/// The default ring capacity: 1 MiB (its pages are only allocated as they
/// are first used).
pub(crate) const DEFAULT_CAPACITY: usize = 1 << 20;

/// How long a put waits for room in a full ring before it starts using the
/// overflow log, while consumers make no progress. Consumers that keep up
/// free room well within this; ones that stopped (a parent joining before it
/// gets) cost each producer handle this once per stop, since its puts go
/// straight into the log while the consumers stay where they were.
const LOG_AFTER: Duration = Duration::from_millis(2);

/// When a put may use the overflow log: at once if it may not wait
/// [`LOG_AFTER`] or if the consumers have not taken anything since this
/// producer handle last found them stalled, otherwise once it waited that
/// long for room in the ring. The clock is read only once the ring was found
/// full.
///
/// So while consumers make progress, producers wait for room in the ring
/// (whose pages are warm, and whose records consumers take without a lock)
/// instead of filling the log faster than consumers empty it.
struct LogGate<'a> {
    deadline: Deadline,
    since: std::cell::Cell<Option<Instant>>,
    /// The producer handle's mark: how many records consumers had taken when
    /// it last found them stalled (`u64::MAX`: never).
    stalled: &'a AtomicU64,
    recs: Records<'a>,
}

impl<'a> LogGate<'a> {
    fn new(deadline: Deadline, stalled: &'a AtomicU64, recs: Records<'a>) -> Self {
        Self {
            deadline,
            since: std::cell::Cell::new(None),
            stalled,
            recs,
        }
    }

    /// Whether the consumers are where this handle last found them stalled.
    fn still_stalled(&self) -> bool {
        // Relaxed: a per-handle heuristic.
        self.stalled.load(Ordering::Relaxed) == u64::from(self.recs.consumed())
    }

    /// Whether the log may be used now (starts the wait on first call).
    fn open(&self) -> bool {
        if self.still_stalled() {
            return true;
        }
        let now = Instant::now();
        let since = self.since.get().unwrap_or(now);
        self.since.set(Some(since));
        let open = match self.deadline {
            Deadline::Now => true,
            Deadline::At(t) if t <= since + LOG_AFTER => true,
            _ => now >= since + LOG_AFTER,
        };
        if open {
            // Relaxed: as above.
            self.stalled
                .store(u64::from(self.recs.consumed()), Ordering::Relaxed);
        }
        open
    }

    /// The longest sleep before the gate opens (`None`: not waiting on it).
    fn until_open(&self) -> Option<Duration> {
        let since = self.since.get()?;
        if self.still_stalled() {
            return Some(Duration::ZERO);
        }
        Some((since + LOG_AFTER).saturating_duration_since(Instant::now()))
    }
}

/// Why a byte-level put did not happen.
#[derive(Debug)]
pub(crate) enum PutFail {
    /// Full (or timed out while full).
    Full,
    Closed,
    Broken(BrokenError),
}

/// Why a byte-level get did not happen.
#[derive(Debug)]
pub(crate) enum GetFail {
    /// Empty (or timed out while empty).
    Empty,
    Closed,
    Broken(BrokenError),
}

/// The untyped queue.
pub(crate) struct Core {
    seg: Segment,
    /// Producers send large-message descriptors here.
    tx: HandleFd,
    /// Consumers receive them here.
    rx: HandleFd,
    kind: u32,
    fingerprint: u64,
    cap: usize,
    /// The overflow log's size (after the ring).
    ovf_cap: usize,
    maxsize: u32,
    /// This handle's last view of `head` (see `Ring::try_push`).
    head_cache: ProducerCache,
    /// See [`LogGate`].
    stalled: AtomicU64,
    /// The descriptors of the side-channel entries of large messages this
    /// handle took since its last get, closed by its next get (or when it is
    /// dropped) rather than between the claim and the return: closing the
    /// last one frees the message's memory, which takes about as long as
    /// copying it. `has_spent` says whether there are any, so that other
    /// gets do not lock.
    spent: std::sync::Mutex<Vec<OwnedFd>>,
    has_spent: AtomicBool,
    /// The control block inside `seg` (checked once, in `assemble`).
    ctl: std::ptr::NonNull<Ctl>,
    /// Rung for processes that wait for an item through a descriptor
    /// (`wait`, `get_async`), only while `Ctl::wait` counts any: see `ready`.
    pub(crate) bell: Doorbell,
    /// The same for room (`put_async`).
    pub(crate) room_bell: Doorbell,
}

// SAFETY: `ctl` points into the mapping `seg` owns (which is Send and Sync)
// and is only used to make shared references to `Ctl`, a SharedSync type of
// atomics; every other field is Send and Sync.
unsafe impl Send for Core {}
// SAFETY: as for Send.
unsafe impl Sync for Core {}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("kind", &format_args!("{:#x}", self.kind))
            .field("maxsize", &self.maxsize)
            .field("capacity", &self.cap)
            .field("overflow", &self.ovf_cap)
            .field("len", &self.records().len())
            .finish_non_exhaustive()
    }
}

/// A lock guard on one of the two queue locks (see `Core::lock_prod` and
/// `Core::lock_cons`).
pub(crate) struct Guard<'a>(&'a RawMutex);

impl<'a> Guard<'a> {
    /// Locks `m`; true with it when its previous owner died holding it.
    fn lock(ctl: &Ctl, m: &'a RawMutex) -> (Self, bool) {
        let died = m.lock() == Acquired::OwnerDied;
        if died {
            // The dead holder may have changed the ring without waking
            // anybody: wake every sleeper so they look again.
            ctl.wait.not_empty.notify_always();
            ctl.wait.not_full.notify_always();
        }
        (Self(m), died)
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: `Guard::lock` acquired this lock and the guard is its only
        // releaser; nothing touches the ring under it after the drop.
        unsafe { self.0.unlock() };
    }
}

#[derive(Deserialize)]
struct Wire {
    seg: Segment,
    tx: HandleFd,
    rx: HandleFd,
    bell: Doorbell,
    room_bell: Doorbell,
}

/// The parts of a queue checked by `create`/`open`.
struct Parts {
    kind: u32,
    fingerprint: u64,
    cap: usize,
    ovf_cap: usize,
    maxsize: u32,
}

#[derive(Serialize)]
struct WireRef<'a> {
    seg: &'a Segment,
    tx: &'a HandleFd,
    rx: &'a HandleFd,
    bell: &'a Doorbell,
    room_bell: &'a Doorbell,
}

fn io_broken(e: io::Error) -> BrokenError {
    BrokenError::io(e)
}

impl Core {
    /// Creates a queue of `kind` holding at most `maxsize` items (0: no
    /// limit) in a ring of `capacity` bytes followed by an overflow log of
    /// `overflow` bytes.
    pub(crate) fn create(
        kind: u32,
        fingerprint: u64,
        maxsize: usize,
        capacity: usize,
        overflow: usize,
    ) -> Result<Self, CreateError> {
        if !(ring::MIN_CAPACITY..=ring::MAX_CAPACITY).contains(&capacity) {
            return Err(CreateError::InvalidCapacity(capacity));
        }
        if overflow > overflow::MAX_OVERFLOW {
            return Err(CreateError::InvalidOverflow(overflow));
        }
        let cap = capacity.div_ceil(8) * 8;
        let ovf_cap = overflow.div_ceil(8) * 8;
        let maxsize = u32::try_from(maxsize)
            .ok()
            .filter(|m| *m <= i32::MAX as u32)
            .ok_or(CreateError::InvalidMaxsize(maxsize))?;
        // The overflow log's pages exist only once written.
        let seg = Segment::anonymous(RING_OFFSET + cap + ovf_cap).map_err(CreateError::Segment)?;
        let (tx, rx) = crate::sys::seqpacket_pair().map_err(CreateError::Io)?;
        let bells = [
            Doorbell::new().map_err(CreateError::Io)?,
            Doorbell::new().map_err(CreateError::Io)?,
        ];
        let hdr = seg.header().map_err(CreateError::Segment)?;
        hdr.init(
            Layout { kind, fingerprint },
            seg.len() as u64,
            [
                cap as u64,
                u64::from(maxsize),
                ovf_cap as u64,
                RING_OFFSET as u64,
            ],
        );
        let parts = Parts {
            kind,
            fingerprint,
            cap,
            ovf_cap,
            maxsize,
        };
        Self::assemble(seg, tx, rx, bells, parts).map_err(CreateError::Segment)
    }

    fn assemble(
        seg: Segment,
        tx: OwnedFd,
        rx: OwnedFd,
        [bell, room_bell]: [Doorbell; 2],
        p: Parts,
    ) -> Result<Self, mproc_shm::SegmentError> {
        let ctl = std::ptr::NonNull::from(seg.get::<Ctl>(CTL_OFFSET)?);
        if RING_OFFSET + p.cap + p.ovf_cap > seg.len() {
            return Err(mproc_shm::SegmentError::OutOfBounds {
                offset: RING_OFFSET,
                len: p.cap + p.ovf_cap,
                size: seg.len(),
            });
        }
        Ok(Self {
            seg,
            tx: HandleFd::new(tx),
            rx: HandleFd::new(rx),
            kind: p.kind,
            fingerprint: p.fingerprint,
            cap: p.cap,
            ovf_cap: p.ovf_cap,
            maxsize: p.maxsize,
            head_cache: ProducerCache::new(),
            stalled: AtomicU64::new(u64::MAX),
            spent: std::sync::Mutex::new(Vec::new()),
            has_spent: AtomicBool::new(false),
            ctl,
            bell,
            room_bell,
        })
    }

    /// Opens a received segment, checking that it holds a queue of `kind`.
    fn open(w: Wire, kind: u32, fingerprint: u64) -> Result<Self, String> {
        let p = w
            .seg
            .check_layout(Layout { kind, fingerprint })
            .map_err(|e| format!("not a matching queue: {e}"))?;
        let [cap, maxsize, ovf_cap, off] = p;
        let cap = usize::try_from(cap).map_err(|_| "queue capacity out of range")?;
        let ovf_cap = usize::try_from(ovf_cap).map_err(|_| "queue overflow size out of range")?;
        if off != RING_OFFSET as u64
            || cap % 8 != 0
            || !(ring::MIN_CAPACITY..=ring::MAX_CAPACITY).contains(&cap)
            || ovf_cap % 8 != 0
            || ovf_cap > overflow::MAX_OVERFLOW
            || RING_OFFSET + cap + ovf_cap > w.seg.len()
            || maxsize > i32::MAX as u64
        {
            return Err("queue header is corrupt".into());
        }
        let (tx, rx) = (w.tx.into_inner(), w.rx.into_inner());
        let parts = Parts {
            kind,
            fingerprint,
            cap,
            ovf_cap,
            maxsize: maxsize as u32,
        };
        Self::assemble(w.seg, tx, rx, [w.bell, w.room_bell], parts)
            .map_err(|e| format!("queue segment is unusable: {e}"))
    }

    /// Takes the producer lock. A producer that died holding it either
    /// published nothing (the next one overwrites its bytes) or stored its
    /// record's header but not `tail`, which is completed here.
    pub(crate) fn lock_prod(&self) -> Guard<'_> {
        let ctl = self.ctl();
        let (g, died) = Guard::lock(ctl, &ctl.prod.lock);
        if died {
            // It may have published without ringing, like the wake-ups in
            // `Guard::lock`.
            self.bell.ring();
            // SAFETY: we hold the producer lock. A corrupted ring is reported
            // by the operation that follows, which reads the same words.
            let _ = unsafe { self.ring().repair() };
        }
        g
    }

    /// Takes the consumer lock. A consumer that died holding it either
    /// claimed its record or left it for the next one; one that claimed a
    /// large message may have left its side-channel entry, dropped here.
    #[inline]
    fn lock_cons(&self) -> Guard<'_> {
        let ctl = self.ctl();
        let (g, died) = Guard::lock(ctl, &ctl.cons.lock);
        if died {
            self.drop_claimed_entry();
        }
        g
    }

    pub(crate) fn ctl(&self) -> &Ctl {
        // SAFETY: `assemble` made `ctl` from `Segment::get::<Ctl>` (in bounds,
        // aligned, SharedSync) on `self.seg`, whose mapping lives as long as
        // `self`; the reference borrows `self`.
        unsafe { self.ctl.as_ref() }
    }

    pub(crate) fn ring(&self) -> Ring<'_> {
        // SAFETY: `create`/`open` checked [RING_OFFSET, RING_OFFSET+cap) is inside the
        // mapping (alive as long as `self`), disjoint from header and control block,
        // never referenced from Rust; `cap` is a multiple of 8 in range.
        unsafe { Ring::new(self.ctl(), self.seg.as_ptr().add(RING_OFFSET), self.cap) }
    }

    fn overflow(&self) -> Overflow<'_> {
        // SAFETY: `create`/`open` checked the log [RING_OFFSET+cap, +ovf_cap) is
        // inside the shared mapping (alive as long as `self`), 8-aligned after the
        // ring, never referenced from Rust; `ovf_cap` is a multiple of 8 in range.
        unsafe {
            Overflow::new(
                self.ctl(),
                self.seg.as_ptr().add(RING_OFFSET + self.cap),
                self.ovf_cap,
            )
        }
    }

    pub(crate) fn records(&self) -> Records<'_> {
        Records {
            ring: self.ring(),
            ovf: self.overflow(),
        }
    }

    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize as usize
    }

    /// The largest payload kept inline in the ring.
    fn inline_max(&self) -> usize {
        self.cap / 4
    }

    fn maxcount(&self) -> u32 {
        if self.maxsize == 0 {
            u32::MAX
        } else {
            self.maxsize
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.records().len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.maxsize != 0 && self.len() >= self.maxsize as usize
    }

    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the SeqCst store in `close`.
        self.ctl().wait.closed.load(Ordering::Acquire) != 0
    }

    /// Closes the queue for every process: puts fail, gets drain then fail.
    pub(crate) fn close(&self) {
        let ctl = self.ctl();
        {
            // Under the producer lock: a put either published before this or
            // sees the flag, so a consumer that sees the flag sees every item.
            let _g = self.lock_prod();
            // SeqCst: ordered before the wake-ups below.
            ctl.wait.closed.store(1, Ordering::SeqCst);
        }
        ctl.wait.not_empty.notify_always();
        ctl.wait.not_full.notify_always();
        ctl.tasks.all_done.notify_always();
        self.bell.ring();
        self.room_bell.ring();
    }

    /// Puts an encoded item.
    pub(crate) fn put_bytes(&self, bytes: &[u8], deadline: Deadline) -> Result<(), PutFail> {
        if bytes.len() > self.inline_max() {
            return self.put_large(bytes, deadline);
        }
        let recs = self.records();
        self.put_with(
            deadline,
            |gate, _g| {
                let max = self.maxcount();
                // SAFETY: we hold the producer lock; `bytes.len() <= cap / 4`.
                match unsafe {
                    recs.try_push(REC_INLINE, bytes, max, &self.head_cache, || gate.open())
                } {
                    // Read under the producer lock, which sleeping consumers
                    // register under: see `wait`.
                    Ok(Push::Done) => Some(Ok(self.ctl().wait.not_empty.waiters())),
                    Ok(Push::Full | Push::NoRoom) => None,
                    Err(c) => Some(Err(PutFail::Broken(c.into()))),
                }
            },
            || (bytes.len(), false),
        )
    }

    /// How every put waits and locks: until `deadline`, each attempt
    /// (spinning, then sleeping on `not_full`) takes the producer lock,
    /// fails on a closed queue, and hands the lock to `locked`, which
    /// publishes and returns the `not_empty` waiters it read under the lock
    /// (`None`: no room yet). Before each sleep, `wants` says the length of
    /// the next record and whether the side channel was full (see
    /// `prepare_put`). Then wakes the consumers.
    ///
    /// (Inlined: it is the single put's hot path.)
    #[inline(always)]
    fn put_with(
        &self,
        deadline: Deadline,
        mut locked: impl FnMut(&LogGate<'_>, Guard<'_>) -> Option<Result<u32, PutFail>>,
        mut wants: impl FnMut() -> (usize, bool),
    ) -> Result<(), PutFail> {
        let ctl = self.ctl();
        let gate = &LogGate::new(deadline, &self.stalled, self.records());
        // `move`: the closures hold `locked` and `wants` themselves, not a
        // pointer to them (an indirection less on the single put's path).
        let r = block_on(
            &ctl.wait.not_full,
            deadline,
            self.spin_for_room(),
            || self.probe_room(),
            move || {
                let g = self.lock_prod();
                // Relaxed: the lock orders us after `close`, which holds it.
                if ctl.wait.closed.load(Ordering::Relaxed) != 0 {
                    return Some(Err(PutFail::Closed));
                }
                locked(gate, g)
            },
            move || {
                let (len, side_full) = wants();
                self.prepare_put(len, side_full, gate)
            },
        );
        self.after_put(r)
    }

    /// A producer about to sleep: registers on `not_full`, unless there is
    /// room now or the queue is closed (consumers free room with a SeqCst
    /// swap of `head`, then read `waiters` with SeqCst; a fence between our
    /// registration and our look at `head` makes one of us see the other:
    /// see `wait`). `side_full`: the side
    /// channel was full, which consumers do not signal; retry soon. `gate`:
    /// when the put may start using the overflow log (wake up then).
    fn prepare_put(&self, len: usize, side_full: bool, gate: &LogGate) -> Prepare {
        let ctl = self.ctl();
        let seq = ctl.wait.not_full.register_fenced();
        let until_open = gate.until_open();
        let log_ok = until_open.is_some_and(|d| d.is_zero());
        let room = || {
            self.records()
                .has_room(len, self.maxcount(), len <= self.inline_max(), log_ok)
        };
        if self.is_closed() || (!side_full && room()) {
            ctl.wait.not_full.unregister();
            return Prepare::Ready;
        }
        let mut max = if side_full {
            Duration::from_millis(1)
        } else {
            SLICE
        };
        if let Some(d) = until_open.filter(|d| !d.is_zero()) {
            max = max.min(d);
        }
        Prepare::Sleep { seq, max }
    }

    /// A consumer about to sleep: registers on `not_empty` under the
    /// producer lock (under which producers publish and read `waiters`),
    /// unless an item is there now or the queue is closed.
    fn prepare_get(&self) -> Prepare {
        let ctl = self.ctl();
        let _g = self.lock_prod();
        let seq = ctl.wait.not_empty.register();
        if self.is_closed() || self.records().has_record() {
            ctl.wait.not_empty.unregister();
            return Prepare::Ready;
        }
        Prepare::Sleep { seq, max: SLICE }
    }

    fn after_put(&self, r: Option<Result<u32, PutFail>>) -> Result<(), PutFail> {
        match r {
            Some(Ok(waiters)) => {
                if self.ctl().wait.not_empty.notify_if(waiters) {
                    self.ring_for_items();
                }
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None if self.is_closed() => Err(PutFail::Closed),
            None => Err(PutFail::Full),
        }
    }

    /// Whether a producer waiting for room spins: only when items are
    /// counted (a `maxsize` queue may be a hand-off where each item is
    /// awaited). Otherwise the ring is full of unread bytes, the consumers
    /// have a long way to go, and spinning would only slow them down.
    fn spin_for_room(&self) -> bool {
        self.maxsize != 0
    }

    /// Whether a put might succeed now (a lock-free hint).
    fn probe_room(&self) -> bool {
        let ctl = self.ctl();
        // Relaxed: only a hint; the attempt re-reads under the lock.
        let h = ring::unpack(ctl.head.0.load(Ordering::Relaxed));
        h != ring::unpack(self.head_cache.cached_head())
            || (self.maxsize != 0 && self.records().len() < self.maxsize as usize)
            || ctl.wait.closed.load(Ordering::Relaxed) != 0
    }

    /// Whether a get might succeed now (a lock-free hint).
    fn probe_item(&self) -> bool {
        // Relaxed: only a hint; the attempt re-reads under the lock.
        self.ring().probe()
            || self.overflow().has_record()
            || self.ctl().wait.closed.load(Ordering::Relaxed) != 0
    }

    /// A large item whose descriptor the full side channel cannot take: its
    /// bytes are copied into the overflow log, if that may be used now (see
    /// [`LogGate`]) and has room; `None` otherwise (wait for consumers).
    ///
    /// # Safety
    /// The caller holds the producer lock.
    unsafe fn copy_into_log(
        &self,
        recs: &Records<'_>,
        bytes: &[u8],
        gate: &LogGate,
    ) -> Option<Result<u32, PutFail>> {
        if !gate.open() {
            return None;
        }
        // SAFETY: the caller holds the producer lock, through the publish.
        match unsafe { recs.reserve_overflow(bytes.len(), self.maxcount()) } {
            Ok(Ok(slot)) => {
                // SAFETY: as above; the slot is for `bytes.len()` bytes.
                unsafe { recs.publish(slot, REC_INLINE, bytes) };
                // Read under the producer lock, as in `put_bytes`.
                Some(Ok(self.ctl().wait.not_empty.waiters()))
            }
            Ok(Err(_)) => None,
            Err(c) => Some(Err(PutFail::Broken(c.into()))),
        }
    }

    /// Takes an item: its bytes into `out`, then `decode`s them.
    ///
    /// A large message is decoded before its record is claimed (under the
    /// consumer lock), so that once it is claimed the consumer has the item
    /// in hand; others are decoded once claimed (their copy may be torn
    /// until the claim confirms it). A decoding error comes with a claimed
    /// item either way: it is lost, not left to fail every get.
    ///
    /// (Inlined, as is `with_scratch` around it: as calls, they cost an
    /// 8-byte get about 5 ns.)
    #[inline]
    pub(crate) fn get_decoded<R>(
        &self,
        out: &mut Vec<u8>,
        deadline: Deadline,
        decode: impl Fn(&[u8]) -> R,
    ) -> Result<R, GetFail> {
        let mut item = None;
        self.get_bytes(out, deadline, &mut |b| item = Some(decode(b)))?;
        Ok(item.unwrap_or_else(|| decode(out)))
    }

    /// Takes an item's bytes into `out`; for a large message, also calls
    /// `decode_large` on them before claiming it (see `get_decoded`).
    fn get_bytes(
        &self,
        out: &mut Vec<u8>,
        deadline: Deadline,
        decode_large: &mut dyn FnMut(&[u8]),
    ) -> Result<(), GetFail> {
        self.close_spent();
        let ctl = self.ctl();
        let recs = self.records();
        // The first look of a get that may wait is not strict (see `Ring::peek`).
        let mut strict = deadline == Deadline::Now;
        let r = block_on(
            &ctl.wait.not_empty,
            deadline,
            true,
            || self.probe_item(),
            || {
                let strict = std::mem::replace(&mut strict, true);
                // Inline ring records are taken without the lock (one atomic
                // read-modify-write per get instead of three). A first look
                // that finds nothing takes no lock either.
                match recs.take(out) {
                    Ok(Take::Taken) => return Some(Ok(ctl.wait.not_full.waiters_seqcst())),
                    Ok(Take::Empty) if !strict && !self.overflow().has_record() => return None,
                    Ok(_) => {}
                    Err(c) => return Some(Err(GetFail::Broken(c.into()))),
                }
                let _g = self.lock_cons();
                loop {
                    // SAFETY: we hold the consumer lock.
                    let p = match unsafe { recs.peek(out, strict) } {
                        Ok(Some(p)) => p,
                        Ok(None) => {
                            // Acquire: close stores under the producer lock after
                            // every put it lets through; seeing the flag, re-check
                            // the tail once more before reporting Closed.
                            if ctl.wait.closed.load(Ordering::Acquire) != 0 {
                                // SAFETY: as above.
                                return match unsafe { recs.peek(out, true) } {
                                    Ok(None) => Some(Err(GetFail::Closed)),
                                    Ok(Some(_)) => continue,
                                    Err(c) => Some(Err(GetFail::Broken(c.into()))),
                                };
                            }
                            return None;
                        }
                        Err(c) => return Some(Err(GetFail::Broken(c.into()))),
                    };
                    // After the SeqCst swap that freed the room: see `wait`.
                    let waiters = || ctl.wait.not_full.waiters_seqcst();
                    if p.kind() == REC_INLINE {
                        // SAFETY: consumer lock held since the peek.
                        if unsafe { recs.commit(p) } {
                            return Some(Ok(waiters()));
                        }
                        // A lock-free consumer took it: look again.
                        continue;
                    }
                    // SAFETY: consumer lock held since the peek.
                    let r = unsafe { self.take_large(&recs, p, out, decode_large) };
                    return Some(r.map(|()| waiters()).map_err(GetFail::Broken));
                }
            },
            || self.prepare_get(),
        );
        let r = match r {
            Some(r) => r,
            None if self.is_closed() => return Err(GetFail::Closed),
            None => return Err(GetFail::Empty),
        };
        let r = r.map(|waiters| {
            if ctl.wait.not_full.notify_if(waiters) {
                self.ring_for_room();
            }
        });
        self.trim_overflow();
        r
    }

    /// Gives the overflow log's pages back once consumers drained it (a
    /// producer does it too, when it next uses the log).
    fn trim_overflow(&self) {
        let ovf = self.overflow();
        if !ovf.wants_trim() || ovf.has_record() {
            return;
        }
        let _g = self.lock_prod();
        // SAFETY: we hold the producer lock.
        unsafe { ovf.trim_if_empty() };
    }

    pub(crate) fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireRef {
            seg: &self.seg,
            tx: &self.tx,
            rx: &self.rx,
            bell: &self.bell,
            room_bell: &self.room_bell,
        }
        .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
        kind: u32,
        fingerprint: u64,
    ) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = Wire::deserialize(d)?;
        Self::open(w, kind, fingerprint).map_err(D::Error::custom)
    }
}
