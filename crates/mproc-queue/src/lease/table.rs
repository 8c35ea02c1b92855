//! The lease table: a segment of its own holding one slot per item that is
//! leased or waiting to be delivered again.
//!
//! ```text
//! offset 0     mproc_shm::Header (params = [slots, slot bytes, max deliveries,
//!              lease timeout in ns])
//! offset 128   TableCtl (128 bytes)
//! offset 256   the slots: `slots` x `stride` bytes, each a SlotHead (32 bytes)
//!              then the item's bytes
//! ```
//!
//! # Protocol
//!
//! A slot's `word` packs its state (bits 62–63: free, leased, waiting for
//! redelivery), a generation (bits 32–61, bumped by every lease) and the
//! holder's process id (bits 0–31, while leased). Everything but `ack` and
//! `nack` happens under the queue's consumer lock:
//!
//! * **Take.** The taker picks a free slot and records it in `taking`, with
//!   the queue's consumed count; the queue copies the next record out and
//!   calls back, and the taker writes the bytes, delivery count and order
//!   into the slot; *then* the queue claims the record; then the taker
//!   stores `word` (leased by itself) and clears `taking`. A taker killed
//!   anywhere in between leaves `taking` set, and the next lock holder
//!   ([`Table::recover`]) finds the record still in the queue (the consumed
//!   count did not move: the slot stays free) or claimed with its bytes in
//!   the slot (the slot waits for redelivery). So no kill loses the item.
//! * **Ack** and **nack** are a compare-and-swap of `word` by the holder,
//!   from the word it was leased with: to free (ack, without the lock), or
//!   to waiting (nack). A lease that expired meanwhile fails the swap.
//! * **Scans** (rate-limited, see `crate::lease`) turn leased slots whose
//!   holder died (`mproc_shm::mutex::process_alive`, the locks' own check)
//!   or whose time ran out into waiting ones, with the same swap.
//! * **Redelivery** takes the waiting slot with the lowest `order` (the
//!   order of first delivery, which is put order) before any new record.
//!
//! Everything read from the table is checked: a slot index, a length or a
//! state another process scribbled is an error or ignored, never a panic
//! or an access outside the segment.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use mproc_shm::{Layout, Segment, SharedSync};

use crate::core::Consumer;
use crate::error::BrokenError;
use crate::layout::KIND_LEASE_TABLE;

/// Where the control line starts.
const CTL_OFFSET: usize = mproc_shm::HEADER_SIZE;
/// Where the slots start.
const SLOTS_OFFSET: usize = CTL_OFFSET + std::mem::size_of::<TableCtl>();
/// The size of a slot's head.
const SLOT_HEAD: usize = std::mem::size_of::<SlotHead>();
/// The most slots a table may have.
pub(crate) const MAX_SLOTS: usize = 1 << 16;
/// The largest item a slot may hold.
pub(crate) const MAX_SLOT_BYTES: usize = 1 << 30;

const FREE: u64 = 0;
const LEASED: u64 = 1;
const WAITING: u64 = 2;
const STATE_SHIFT: u32 = 62;
const GEN_MASK: u64 = (1 << 30) - 1;

fn state(w: u64) -> u64 {
    w >> STATE_SHIFT
}

fn generation(w: u64) -> u64 {
    (w >> 32) & GEN_MASK
}

fn holder(w: u64) -> u32 {
    w as u32
}

fn word(state: u64, generation: u64, pid: u32) -> u64 {
    (state << STATE_SHIFT) | ((generation & GEN_MASK) << 32) | u64::from(pid)
}

/// Takes one off a count, never below zero.
fn decrement(n: &AtomicU32) {
    // SeqCst: `waiting` pairs with the waiter's SeqCst registration (see
    // `Table::has_waiting`); for `slot_waiters` a stale count only makes an
    // ack notify in vain.
    let _ = n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
        Some(n.saturating_sub(1))
    });
}

impl SlotHead {
    /// Moves the slot from word `w` to state `to` (no holder, same
    /// generation), unless its word changed meanwhile.
    #[inline]
    fn swap_state(&self, w: u64, to: u64) -> bool {
        // SeqCst: frees or hands back the slot for `free_slot` and
        // `redeliver`, ordered before the waiter check that follows changes
        // made outside the lock (see `Core::get_locked`).
        self.word
            .compare_exchange(
                w,
                word(to, generation(w), 0),
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

/// The table's control line.
#[repr(C, align(128))]
#[derive(Debug)]
struct TableCtl {
    /// 1 + the slot a take in flight fills (0: none). Under the consumer lock.
    taking: AtomicU64,
    /// The queue's consumed count when that take began.
    taking_consumed: AtomicU64,
    /// The order of the next first delivery.
    next_order: AtomicU64,
    /// Items dropped: delivered `max_deliveries` times, or undecodable.
    dropped: AtomicU64,
    /// `monotonic_ns` of the last scan.
    last_scan: AtomicU64,
    /// Slots that may be waiting for redelivery (a hint: scans recount).
    waiting: AtomicU32,
    /// Consumers that may wait for a slot to be freed (see
    /// [`Table::want_slots`]); acks notify only while it is not zero.
    slot_waiters: AtomicU32,
}

/// The head of a slot; the item's bytes follow it.
#[repr(C)]
#[derive(Debug)]
struct SlotHead {
    /// State, generation and holder (see the module docs).
    word: AtomicU64,
    /// The order of the item's first delivery.
    order: AtomicU64,
    /// `monotonic_ns` after which the lease expires (0: never).
    expires: AtomicU64,
    /// How many times the item was delivered.
    deliveries: AtomicU32,
    /// The item's length in bytes.
    len: AtomicU32,
}

const _: () = assert!(std::mem::size_of::<TableCtl>() == 128);
const _: () = assert!(SLOT_HEAD == 32);
const _: () = assert!(CTL_OFFSET % std::mem::align_of::<TableCtl>() == 0);

// SAFETY: repr(C) structs of atomics, valid for every bit pattern including
// all zeros (an empty table); padding from align(128) is never read.
unsafe impl SharedSync for TableCtl {}
// SAFETY: as above.
unsafe impl SharedSync for SlotHead {}

/// The table's parameters, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) slots: usize,
    pub(crate) slot_bytes: usize,
    /// 0: no limit.
    pub(crate) max_deliveries: u32,
    /// 0: leases do not expire.
    pub(crate) timeout_ns: u64,
}

impl Params {
    fn stride(&self) -> usize {
        (SLOT_HEAD + self.slot_bytes).div_ceil(64) * 64
    }

    fn size(&self) -> usize {
        SLOTS_OFFSET + self.slots * self.stride()
    }
}

/// A leased item as the table hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Leased {
    pub(crate) slot: u32,
    /// The slot's word while this lease holds it.
    pub(crate) word: u64,
    pub(crate) deliveries: u32,
}

/// What happened to a lease handed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// The lease was no longer held (it expired, and the item was or will
    /// be delivered again).
    Lost,
}

/// A view of a lease table.
pub(crate) struct Table {
    seg: Segment,
    p: Params,
    /// `p.stride()`, computed once: every slot access uses it.
    stride: usize,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseTable")
            .field("params", &self.p)
            .finish()
    }
}

impl Table {
    /// Creates a table.
    pub(crate) fn create(p: Params, fingerprint: u64) -> Result<Self, mproc_shm::SegmentError> {
        debug_assert!((1..=MAX_SLOTS).contains(&p.slots) && p.slot_bytes <= MAX_SLOT_BYTES);
        let seg = Segment::anonymous(p.size())?;
        seg.header()?.init(
            Layout {
                kind: KIND_LEASE_TABLE,
                fingerprint,
            },
            seg.len() as u64,
            [
                p.slots as u64,
                p.slot_bytes as u64,
                u64::from(p.max_deliveries),
                p.timeout_ns,
            ],
        );
        Ok(Self::from_parts(seg, p))
    }

    fn from_parts(seg: Segment, p: Params) -> Self {
        Self {
            seg,
            p,
            stride: p.stride(),
        }
    }

    /// Opens a received table, checking its header.
    pub(crate) fn open(seg: Segment, fingerprint: u64) -> Result<Self, String> {
        let [slots, slot_bytes, max_deliveries, timeout_ns] = seg
            .check_layout(Layout {
                kind: KIND_LEASE_TABLE,
                fingerprint,
            })
            .map_err(|e| format!("not a matching lease table: {e}"))?;
        let p = Params {
            slots: usize::try_from(slots).unwrap_or(usize::MAX),
            slot_bytes: usize::try_from(slot_bytes).unwrap_or(usize::MAX),
            max_deliveries: u32::try_from(max_deliveries).unwrap_or(u32::MAX),
            timeout_ns,
        };
        if !(1..=MAX_SLOTS).contains(&p.slots)
            || p.slot_bytes > MAX_SLOT_BYTES
            || p.size() > seg.len()
        {
            return Err("lease table header is corrupt".into());
        }
        Ok(Self::from_parts(seg, p))
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    #[inline]
    pub(crate) fn params(&self) -> Params {
        self.p
    }

    #[inline]
    fn ctl(&self) -> &TableCtl {
        // (Not `Segment::get`: its bounds check on every access costs more
        // than the accesses themselves on a lease's path.) `create`/`open`
        // checked that the mapping holds the slots after SLOTS_OFFSET, so
        // the control line before them too; a mapping is page-aligned, so
        // CTL_OFFSET (128) is aligned for TableCtl.
        // SAFETY: so the line is inside the mapping, which lives as long as
        // `self`, and aligned; TableCtl is SharedSync (atomics only), so a
        // shared reference is sound whatever other processes do.
        unsafe { &*self.seg.as_ptr().add(CTL_OFFSET).cast() }
    }

    #[inline]
    fn head(&self, s: usize) -> &SlotHead {
        debug_assert!(s < self.p.slots);
        // Clamped, not `%`: a division on every slot access costs more than
        // the rest of a lease.
        let s = s.min(self.p.slots - 1);
        // `create`/`open` checked that `slots` slots of `stride` bytes fit
        // the mapping after SLOTS_OFFSET, which is 128-aligned, and `stride`
        // is a multiple of 64.
        // SAFETY: so the head is 8-aligned and inside the mapping, which
        // lives as long as `self`; SlotHead is SharedSync (atomics only), so
        // a shared reference is sound whatever other processes do.
        unsafe { &*self.seg.as_ptr().add(SLOTS_OFFSET + s * self.stride).cast() }
    }

    #[inline]
    fn data_offset(&self, s: usize) -> usize {
        SLOTS_OFFSET + s * self.stride + SLOT_HEAD
    }

    /// Items dropped so far (see [`Table::dropped`]).
    pub(crate) fn dropped(&self) -> u64 {
        // Relaxed: a counter.
        self.ctl().dropped.load(Ordering::Relaxed)
    }

    fn drop_one(&self) {
        // Relaxed: a counter.
        self.ctl().dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a get may skip [`Table::recover`] and [`Table::redeliver`]:
    /// no take is in flight and no slot may be waiting for redelivery.
    #[inline]
    pub(crate) fn quiet(&self) -> bool {
        let ctl = self.ctl();
        // Relaxed: `taking` is written and read under the consumer lock.
        ctl.taking.load(Ordering::Relaxed) == 0 && !self.has_waiting()
    }

    /// Whether some slot may be waiting for redelivery (a hint).
    #[inline]
    pub(crate) fn has_waiting(&self) -> bool {
        // SeqCst: pairs with the waiter's SeqCst registration (see
        // `Core::get_locked`).
        self.ctl().waiting.load(Ordering::SeqCst) != 0
    }

    /// Says that this get may wait for a slot to be freed (for a free slot,
    /// or for none to be in use once the queue is closed): from now on
    /// until [`Table::unwant_slots`], [`Table::slots_wanted`] is true, so
    /// acks notify. Called before the slots are looked at.
    pub(crate) fn want_slots(&self) {
        // SeqCst: ordered before the SeqCst loads of the slots' words that
        // follow; an ack's SeqCst swap then load of `slot_waiters` either
        // sees this or its freed slot is seen by those loads.
        self.ctl().slot_waiters.fetch_add(1, Ordering::SeqCst);
    }

    /// Withdraws a [`Table::want_slots`].
    pub(crate) fn unwant_slots(&self) {
        decrement(&self.ctl().slot_waiters);
    }

    /// Whether a consumer may wait for a slot to be freed (a killed waiter
    /// leaves this true for good: acks then always notify).
    #[inline]
    pub(crate) fn slots_wanted(&self) -> bool {
        // SeqCst: after the ack's SeqCst swap; see `want_slots`.
        self.ctl().slot_waiters.load(Ordering::SeqCst) != 0
    }

    /// Whether a slot is free, looking first at `hint`.
    #[inline]
    pub(crate) fn has_free(&self, hint: usize) -> bool {
        self.free_slot(hint).is_some()
    }

    /// A free slot, looking first at `hint` and then at those after it.
    #[inline]
    pub(crate) fn free_slot(&self, hint: usize) -> Option<usize> {
        let n = self.p.slots;
        let start = if hint < n { hint } else { 0 };
        // SeqCst: pairs with the SeqCst swap in `release`.
        let free = |s: usize| state(self.head(s).word.load(Ordering::SeqCst)) == FREE;
        if free(start) {
            return Some(start);
        }
        (start + 1..n).chain(0..start).find(|&s| free(s))
    }

    /// Whether any slot is in use (leased or waiting).
    pub(crate) fn in_use(&self) -> usize {
        (0..self.p.slots)
            // SeqCst: as in `free_slot`.
            .filter(|&s| state(self.head(s).word.load(Ordering::SeqCst)) != FREE)
            .count()
    }

    /// Whether a slot is leased by a process other than `me` (whose death
    /// a waiter must notice by looking).
    pub(crate) fn leased_elsewhere(&self, me: u32) -> bool {
        (0..self.p.slots).any(|s| {
            // Relaxed: a hint for how long to sleep.
            let w = self.head(s).word.load(Ordering::Relaxed);
            state(w) == LEASED && holder(w) != me
        })
    }

    /// Finishes a take that a killed consumer left in flight: its slot
    /// waits for redelivery if the record was claimed, and stays free if
    /// not.
    #[inline]
    pub(crate) fn recover(&self, c: &Consumer<'_>) {
        let ctl = self.ctl();
        // Relaxed (here and below): written and read under the consumer lock.
        let taking = ctl.taking.load(Ordering::Relaxed);
        if taking == 0 {
            return;
        }
        ctl.taking.store(0, Ordering::Relaxed);
        let Some(s) = usize::try_from(taking - 1)
            .ok()
            .filter(|&s| s < self.p.slots)
        else {
            return;
        };
        let h = self.head(s);
        let w = h.word.load(Ordering::Relaxed);
        let claimed = u64::from(c.consumed()) != ctl.taking_consumed.load(Ordering::Relaxed);
        if state(w) == FREE && claimed && h.swap_state(w, WAITING) {
            // SeqCst: see `has_waiting`.
            ctl.waiting.fetch_add(1, Ordering::SeqCst);
        }
        // Leased: the killed consumer got as far as recording its lease; a
        // scan will find its holder dead.
    }

    /// Starts a take into free slot `s`: records it as in flight.
    #[inline]
    pub(crate) fn begin(&self, _c: &Consumer<'_>, s: usize, consumed: u32) {
        let ctl = self.ctl();
        // Relaxed: under the consumer lock, which orders them for the next
        // holder (or, after a kill, the takeover's Acquire).
        ctl.taking_consumed
            .store(u64::from(consumed), Ordering::Relaxed);
        ctl.taking.store(s as u64 + 1, Ordering::Relaxed);
    }

    /// Starts a take into free slot `s` ([`Table::begin`], with the queue's
    /// consumed count before the claim) and writes the item's bytes into
    /// it before its record is claimed. An item too large for the slot is
    /// marked so ([`Table::commit`] then refuses it).
    #[inline]
    pub(crate) fn keep(&self, c: &Consumer<'_>, s: usize, bytes: &[u8], consumed: u32) {
        self.begin(c, s, consumed);
        let h = self.head(s);
        let ctl = self.ctl();
        // Relaxed (all): under the consumer lock, as in `begin`.
        let order = ctl.next_order.load(Ordering::Relaxed);
        ctl.next_order
            .store(order.wrapping_add(1), Ordering::Relaxed);
        h.order.store(order, Ordering::Relaxed);
        h.deliveries.store(1, Ordering::Relaxed);
        if bytes.len() > self.p.slot_bytes {
            h.len.store(u32::MAX, Ordering::Relaxed);
            return;
        }
        h.len.store(bytes.len() as u32, Ordering::Relaxed);
        // Clamped as in `head` (`s` is a free slot's, so below `slots`).
        let at = self.data_offset(s.min(self.p.slots - 1));
        // The slot is free, so only consumer-lock holders touch its bytes,
        // and we hold that lock (`_c`); `create`/`open` checked that every
        // slot's `slot_bytes` bytes lie inside the mapping, and `bytes` is
        // no longer, a Rust buffer outside it. (Not `Segment::write_plain`:
        // its bounds check is one more on every lease.)
        // SAFETY: so the range is inside the mapping, which lives as long
        // as `self`, nobody else accesses it meanwhile, and it does not
        // overlap `bytes`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.seg.as_ptr().add(at), bytes.len())
        };
    }

    /// Records slot `s`, just filled, as leased by `me`; `Err` (and the slot
    /// stays free) when its item was too large for it.
    #[inline]
    pub(crate) fn commit(
        &self,
        c: &Consumer<'_>,
        s: usize,
        me: u32,
        expires: u64,
    ) -> Result<Leased, BrokenError> {
        self.commit_steps(c, s, me, expires, false)
    }

    /// [`Table::commit`], stopping after its first step with `cut` (as a
    /// consumer killed there would: the test of that window).
    ///
    /// The lease is recorded *before* the take stops being in flight: a
    /// consumer killed between the two leaves a lease of a dead holder,
    /// which a scan takes back. (In the other order it left a claimed
    /// record, a free slot and no take in flight: the item was lost.)
    #[inline]
    pub(crate) fn commit_steps(
        &self,
        _c: &Consumer<'_>,
        s: usize,
        me: u32,
        expires: u64,
        cut: bool,
    ) -> Result<Leased, BrokenError> {
        let ctl = self.ctl();
        let h = self.head(s);
        // Relaxed: under the consumer lock.
        if h.len.load(Ordering::Relaxed) as usize > self.p.slot_bytes {
            // Relaxed: under the consumer lock.
            ctl.taking.store(0, Ordering::Relaxed);
            self.drop_one();
            return Err(BrokenError::corrupted(
                "an item larger than the lease slots was put",
            ));
        }
        h.expires.store(expires, Ordering::Relaxed);
        // Relaxed: free slots change only under the lock.
        let w = h.word.load(Ordering::Relaxed);
        let leased = word(LEASED, generation(w) + 1, me);
        // Release: publishes the slot's fields to scans (under the lock
        // anyway) and to `free_slot` probes. No waiter waits for a slot to
        // become leased, so no SeqCst pairing is needed (unlike `swap_from`).
        h.word.store(leased, Ordering::Release);
        if !cut {
            // Relaxed: under the consumer lock.
            ctl.taking.store(0, Ordering::Relaxed);
        }
        Ok(Leased {
            slot: s as u32,
            word: leased,
            deliveries: 1,
        })
    }

    /// Ends a take that claimed nothing.
    #[inline]
    pub(crate) fn abandon(&self, _c: &Consumer<'_>) {
        // Relaxed: under the consumer lock.
        self.ctl().taking.store(0, Ordering::Relaxed);
    }

    /// Leases the waiting item first delivered earliest to `me`, copying
    /// its bytes into `out`; items delivered `max_deliveries` times already
    /// are dropped on the way. `None` when no item waits.
    #[inline]
    pub(crate) fn redeliver(
        &self,
        c: &Consumer<'_>,
        me: u32,
        expires: u64,
        out: &mut Vec<u8>,
    ) -> Option<Leased> {
        if !self.has_waiting() {
            return None;
        }
        self.redeliver_waiting(c, me, expires, out)
    }

    /// [`Table::redeliver`] once some slot may be waiting.
    fn redeliver_waiting(
        &self,
        _c: &Consumer<'_>,
        me: u32,
        expires: u64,
        out: &mut Vec<u8>,
    ) -> Option<Leased> {
        let ctl = self.ctl();
        loop {
            let mut best: Option<(usize, u64, u64)> = None;
            for s in 0..self.p.slots {
                let h = self.head(s);
                // SeqCst: pairs with the swap in `nack`.
                let w = h.word.load(Ordering::SeqCst);
                if state(w) != WAITING {
                    continue;
                }
                // Relaxed: written under the lock before the slot was leased.
                let order = h.order.load(Ordering::Relaxed);
                if best.is_none_or(|(_, _, o)| (order.wrapping_sub(o) as i64) < 0) {
                    best = Some((s, w, order));
                }
            }
            let Some((s, w, _)) = best else {
                // SeqCst: see `has_waiting`.
                ctl.waiting.store(0, Ordering::SeqCst);
                return None;
            };
            let h = self.head(s);
            // Relaxed: under the lock, as are all changes of waiting slots.
            let deliveries = h.deliveries.load(Ordering::Relaxed);
            let len = h.len.load(Ordering::Relaxed) as usize;
            let spent = self.p.max_deliveries != 0 && deliveries >= self.p.max_deliveries;
            if spent || len > self.p.slot_bytes {
                // Poison (or scribbled): dropped.
                if h.swap_state(w, FREE) {
                    self.drop_one();
                    self.uncount_waiting();
                    mproc_shm::trace_event!(
                        warn,
                        deliveries = deliveries,
                        pid = me,
                        slot = s,
                        "leased item dropped after its last delivery"
                    );
                }
                continue;
            }
            out.clear();
            out.resize(len, 0);
            // SAFETY: a waiting slot's bytes are written only when it is
            // filled while free under the consumer lock, which we hold (`_c`).
            let r = unsafe { self.seg.read_plain(self.data_offset(s), out) };
            debug_assert!(r.is_ok());
            let deliveries = deliveries.saturating_add(1);
            h.deliveries.store(deliveries, Ordering::Relaxed);
            h.expires.store(expires, Ordering::Relaxed);
            let leased = word(LEASED, generation(w) + 1, me);
            // SeqCst: as in `commit`.
            if h.word
                .compare_exchange(w, leased, Ordering::SeqCst, Ordering::Relaxed)
                .is_err()
            {
                // Only a scribbler changes a waiting slot under the lock.
                continue;
            }
            self.uncount_waiting();
            mproc_shm::trace_event!(
                info,
                deliveries = deliveries,
                pid = me,
                slot = s,
                "lease redelivered"
            );
            return Some(Leased {
                slot: s as u32,
                word: leased,
                deliveries,
            });
        }
    }

    fn uncount_waiting(&self) {
        // Never below zero: a nack between its swap and its add may make us
        // take its slot first.
        decrement(&self.ctl().waiting);
    }

    /// Frees the slot of a finished lease. Needs no lock.
    #[inline]
    pub(crate) fn ack(&self, l: Leased) -> Outcome {
        self.swap_from(l, FREE)
    }

    /// Leaves the item of a lease waiting for redelivery (under the lock,
    /// so that the count of waiting slots stays exact).
    pub(crate) fn nack(&self, _c: &Consumer<'_>, l: Leased) -> Outcome {
        let r = self.swap_from(l, WAITING);
        if r == Outcome::Done {
            // SeqCst: see `has_waiting`.
            self.ctl().waiting.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    #[inline]
    fn swap_from(&self, l: Leased, to: u64) -> Outcome {
        let Some(s) = Some(l.slot as usize).filter(|&s| s < self.p.slots) else {
            return Outcome::Lost;
        };
        if self.head(s).swap_state(l.word, to) {
            Outcome::Done
        } else {
            Outcome::Lost
        }
    }

    /// Drops the item of a lease whose item could not be decoded.
    pub(crate) fn discard(&self, l: Leased) {
        if self.ack(l) == Outcome::Done {
            self.drop_one();
        }
    }

    /// Whether a scan is due at `now` (and claims it: others skip theirs).
    pub(crate) fn scan_due(&self, now: u64, every_ns: u64) -> bool {
        let last = &self.ctl().last_scan;
        // Relaxed: a rate limit.
        let t = last.load(Ordering::Relaxed);
        if now.wrapping_sub(t) < every_ns {
            return false;
        }
        last.store(now, Ordering::Relaxed);
        true
    }

    /// Leased slots whose holder died, or whose lease expired before `now`,
    /// wait for redelivery; recounts the waiting ones. Returns how many
    /// leases it took back.
    pub(crate) fn scan(&self, _c: &Consumer<'_>, me: u32, now: u64) -> usize {
        let mut checked: Vec<(u32, bool)> = Vec::new();
        let mut alive = |pid: u32| {
            if pid == me {
                return true;
            }
            if let Some(&(_, a)) = checked.iter().find(|(p, _)| *p == pid) {
                return a;
            }
            let a = mproc_shm::mutex::process_alive(pid);
            checked.push((pid, a));
            a
        };
        let mut taken_back = 0;
        let mut waiting = 0;
        for s in 0..self.p.slots {
            let h = self.head(s);
            // SeqCst: as in `free_slot`.
            let w = h.word.load(Ordering::SeqCst);
            match state(w) {
                WAITING => waiting += 1,
                LEASED => {
                    // Relaxed: written under the lock before the lease.
                    let exp = h.expires.load(Ordering::Relaxed);
                    let expired = exp != 0 && now >= exp;
                    let dead = !expired && !alive(holder(w));
                    if (expired || dead) && h.swap_state(w, WAITING) {
                        taken_back += 1;
                        waiting += 1;
                        let reason = if dead {
                            "consumer died"
                        } else {
                            "lease expired"
                        };
                        mproc_shm::trace_event!(
                            warn,
                            consumer_pid = holder(w),
                            // Relaxed: as `expires`.
                            deliveries = h.deliveries.load(Ordering::Relaxed),
                            reason = reason,
                            pid = me,
                            slot = s,
                            "lease taken back for redelivery"
                        );
                    }
                }
                _ => {}
            }
        }
        // SeqCst: as in `has_waiting`.
        self.ctl().waiting.store(waiting, Ordering::SeqCst);
        taken_back
    }
}
