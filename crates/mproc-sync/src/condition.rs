//! `Condition`, and the raw in-segment condition variable.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::mutex::{current_pid, process_alive};
use mproc_shm::{Acquired, MapGuard, RawMutex, Segment, SharedSync, futex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{
    CreateError, LockError, LockTimeoutError, NotOwner, OpenError, TryLockError, WaitError,
};
use crate::lock::{Lock, LockGuard};
use crate::rlock::{RLock, RLockGuard};
use crate::shared::{Shared, kind};
use crate::wait::{Slept, deadline_after, sleep, spin_until};

/// A condition variable in shared memory: the raw form of [`Condition`],
/// for crates that lay out their own segments next to a
/// [`RawMutex`](mproc_shm::RawMutex).
///
/// Each waiter takes a slot while holding the associated lock, stamped with
/// a ticket (its place in line) and its process id; `notify(n)` (also under
/// the lock) marks the `n` longest-waiting slots as notified and wakes their
/// owners, each on its own slot. A notify therefore wakes only waiters that
/// were already waiting when it was called: one that starts waiting later
/// (the notifier itself, in ping-pong) can never take it. A waiter that
/// times out gives its slot up with a compare-and-swap that loses against
/// a concurrent notify (then it counts as notified), so a notify is never
/// spent on a waiter that left, and a waiter's process that died is skipped
/// (and its slot freed) by the next notify.
///
/// Up to [`RawCondition::SLOTS`] waiters hold slots at once; a further
/// waiter waits without one and returns at the next notify of any waiter
/// (a spurious wake-up, which condition variables allow).
#[repr(C)]
pub struct RawCondition {
    /// The next ticket. Written under the lock.
    next_ticket: AtomicU32,
    /// One past the highest slot index in use (a bound for scans, never
    /// too small). Written under the lock.
    high: AtomicU32,
    /// Bumped by a notify while waiters without a slot exist; their futex word.
    overflow_seq: AtomicU32,
    /// How many waiters wait without a slot.
    overflow: AtomicU32,
    slots: [Slot; SLOTS],
}

/// One waiter's place.
#[repr(C)]
#[derive(Default)]
struct Slot {
    /// `state | pid` (state in the top two bits; 0: free). The futex word
    /// its waiter sleeps on.
    word: AtomicU32,
    /// The waiter's ticket.
    ticket: AtomicU32,
}

const SLOTS: usize = 254;
const STATE: u32 = 0b11 << 30;
const WAITING: u32 = 0b01 << 30;
const NOTIFIED: u32 = 0b10 << 30;
/// The ticket of a waiter that has no slot.
const NO_SLOT: u32 = u32::MAX;

const _: () = assert!(size_of::<RawCondition>() == 16 + 8 * SLOTS);

// SAFETY: repr(C) of atomics; every bit pattern is valid: a slot word whose
// state is not WAITING or NOTIFIED is never woken nor reused until freed by
// its owner, `high` is clamped to SLOTS, and tickets only order waiters.
unsafe impl SharedSync for RawCondition {}

impl Default for RawCondition {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RawCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawCondition")
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

impl RawCondition {
    /// How many waiters can hold a slot at once (see the type's docs).
    pub const SLOTS: usize = SLOTS;

    /// A condition with no waiters.
    pub const fn new() -> Self {
        Self {
            next_ticket: AtomicU32::new(0),
            high: AtomicU32::new(0),
            overflow_seq: AtomicU32::new(0),
            overflow: AtomicU32::new(0),
            slots: [const {
                Slot {
                    word: AtomicU32::new(0),
                    ticket: AtomicU32::new(0),
                }
            }; SLOTS],
        }
    }

    fn high(&self) -> usize {
        // Relaxed: written under the lock the caller holds (or a bound that
        // may only be too large).
        (self.high.load(Ordering::Relaxed) as usize).min(SLOTS)
    }

    /// Registers the caller as a waiter and returns a ticket for
    /// [`RawCondition::wait_prepared`]. Call it while holding the lock.
    pub fn prepare_wait(&self) -> u32 {
        let pid = current_pid() & !STATE;
        let free = self
            .slots
            .iter()
            // Relaxed: a free slot is only taken under the lock, which orders
            // this with the waiter that freed it (or it stays taken).
            .position(|s| s.word.load(Ordering::Relaxed) == 0)
            .or_else(|| self.reclaim_dead());
        let Some(i) = free else {
            // Relaxed: a hint for `notify`, which reads it under the lock.
            self.overflow.fetch_add(1, Ordering::Relaxed);
            // Acquire: pairs with the Release bump in `notify`.
            return NO_SLOT - 1 - (self.overflow_seq.load(Ordering::Acquire) & 0x7fff_ffff);
        };
        let slot = &self.slots[i];
        // Relaxed: under the lock; the slot commits with the store below.
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        slot.ticket.store(ticket, Ordering::Relaxed);
        if i >= self.high() {
            self.high.store(i as u32 + 1, Ordering::Relaxed);
        }
        // Release: the ticket above is visible to a notifier that sees the
        // slot waiting (it holds the lock anyway).
        slot.word.store(WAITING | pid, Ordering::Release);
        i as u32
    }

    /// Frees the slots of waiters whose process died; returns one.
    #[cold]
    fn reclaim_dead(&self) -> Option<usize> {
        let mut found = None;
        for (i, s) in self.slots.iter().enumerate() {
            // Relaxed: under the lock; the CAS settles a race with a waiter
            // that gives its slot up itself.
            let w = s.word.load(Ordering::Relaxed);
            if w & STATE != 0
                && !process_alive(w & !STATE)
                && s.word
                    .compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                found.get_or_insert(i);
            }
        }
        found
    }

    /// After [`RawCondition::prepare_wait`] and releasing the lock: waits
    /// until notified or `deadline` (`None`: no deadline) passes, and
    /// returns whether it was notified. Re-acquire the lock afterwards.
    pub fn wait_prepared(&self, ticket: u32, deadline: Option<Instant>) -> bool {
        let Some(slot) = self.slots.get(ticket as usize) else {
            return self.wait_without_slot(ticket, deadline);
        };
        loop {
            // Acquire: pairs with the AcqRel CAS in `notify`, so what the
            // notifier wrote before notifying is visible.
            let w = slot.word.load(Ordering::Acquire);
            if w & STATE != WAITING {
                // Notified (or the slot was reclaimed as a dead process's,
                // which cannot be ours: we are alive): give it back.
                // Release: our reads of the slot happen before its reuse.
                slot.word.store(0, Ordering::Release);
                return true;
            }
            if spin_until(|| slot.word.load(Ordering::Relaxed) != w) {
                continue;
            }
            if sleep(&slot.word, w, deadline) == Slept::DeadlinePassed {
                // Leave, unless a notify marked us in the meantime: the CAS
                // fails then, and the notify is ours.
                // AcqRel: pairs with the CAS in `notify`.
                match slot
                    .word
                    .compare_exchange(w, 0, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return false,
                    Err(_) => continue,
                }
            }
        }
    }

    /// A waiter that found every slot taken: woken by the next notify that
    /// finds such waiters.
    #[cold]
    fn wait_without_slot(&self, ticket: u32, deadline: Option<Instant>) -> bool {
        let seq = (NO_SLOT - 1).wrapping_sub(ticket);
        let notified = loop {
            // Acquire: pairs with the Release bump in `notify`.
            if self.overflow_seq.load(Ordering::Acquire) != seq {
                break true;
            }
            if sleep(&self.overflow_seq, seq, deadline) == Slept::DeadlinePassed {
                break false;
            }
        };
        // Relaxed: a hint; saturating so a corrupt count cannot wrap.
        let _ = self
            .overflow
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
        notified
    }

    /// Wakes up to `n` waiters that were waiting when it was called and
    /// have not been woken yet, longest waiting first, and returns how
    /// many. Call it while holding the lock.
    pub fn notify(&self, n: u32) -> u32 {
        let mut woken = 0;
        if n == 0 {
            return 0;
        }
        // Relaxed: under the lock.
        let next = self.next_ticket.load(Ordering::Relaxed);
        let slots = &self.slots[..self.high()];
        // Relaxed: under the lock.
        let waiting = slots
            .iter()
            .filter(|s| s.word.load(Ordering::Relaxed) & STATE == WAITING)
            .count();
        if n as usize >= waiting {
            // Everyone (notify_all): no need to find the oldest.
            for s in slots {
                woken += u32::from(wake_slot(s));
            }
        }
        while woken < n {
            // The longest-waiting slot: the smallest distance back from
            // `next` is the newest, so the largest is the oldest.
            let mut best: Option<(usize, u32, u32)> = None;
            for (i, s) in slots.iter().enumerate() {
                // Relaxed: under the lock; the CAS below settles races with
                // waiters that time out.
                let w = s.word.load(Ordering::Relaxed);
                if w & STATE != WAITING {
                    continue;
                }
                let age = next.wrapping_sub(s.ticket.load(Ordering::Relaxed));
                if best.is_none_or(|(_, _, a)| age > a) {
                    best = Some((i, w, age));
                }
            }
            let Some((i, _, _)) = best else { break };
            woken += u32::from(wake_slot(&slots[i]));
        }
        // Relaxed: a hint; waiters without a slot re-check `overflow_seq`.
        // Read before the wake-up below: a woken waiter takes itself off the
        // count at once, so reading after it would under-count.
        let without_slot = self.overflow.load(Ordering::Relaxed);
        if woken < n && without_slot > 0 {
            // Release: pairs with the Acquire loads in `wait_without_slot`.
            // Kept to 31 bits, the range of the tickets that carry it.
            let _ = self
                .overflow_seq
                .fetch_update(Ordering::Release, Ordering::Relaxed, |v| {
                    Some(v.wrapping_add(1) & 0x7fff_ffff)
                });
            futex::wake(&self.overflow_seq, u32::MAX);
            woken = woken.saturating_add(without_slot.min(n - woken));
        }
        woken
    }

    /// How many waiters are waiting and not yet notified (a snapshot).
    pub fn waiting(&self) -> u32 {
        let in_slots = self.slots[..self.high()]
            .iter()
            // Relaxed: a snapshot.
            .filter(|s| s.word.load(Ordering::Relaxed) & STATE == WAITING)
            .count() as u32;
        in_slots.saturating_add(self.overflow.load(Ordering::Relaxed))
    }

    /// Waits on this condition with `mutex` as its lock: releases `mutex`,
    /// waits until notified or `deadline`, re-acquires `mutex`. Returns
    /// whether it was notified, and how the mutex was re-acquired.
    ///
    /// # Safety
    /// The caller holds `mutex` and does not touch the data it protects
    /// until this returns (when it holds `mutex` again).
    pub unsafe fn wait(&self, mutex: &RawMutex, deadline: Option<Instant>) -> (bool, Acquired) {
        let ticket = self.prepare_wait();
        // SAFETY: the caller holds `mutex`.
        unsafe { mutex.unlock() };
        let notified = self.wait_prepared(ticket, deadline);
        (notified, mutex.lock())
    }
}

/// Marks a waiting slot notified and wakes its waiter; frees it instead if
/// its process died. Returns whether it woke someone. Under the lock.
fn wake_slot(s: &Slot) -> bool {
    // Relaxed: under the lock; the CAS settles races with a timeout.
    let w = s.word.load(Ordering::Relaxed);
    if w & STATE != WAITING {
        return false;
    }
    let pid = w & !STATE;
    if !process_alive(pid) {
        // Its process died waiting: free the slot, wake nobody.
        // Relaxed: only the lock holder reuses a free slot.
        let _ = s
            .word
            .compare_exchange(w, 0, Ordering::Relaxed, Ordering::Relaxed);
        return false;
    }
    // AcqRel: publishes the notifier's writes to the waiter (pairs with its
    // Acquire load) and settles a race with its timeout (a failed CAS: it
    // left, and the notify goes to the next one).
    let ok = s
        .word
        .compare_exchange(w, NOTIFIED | pid, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok();
    if ok {
        futex::wake(&s.word, 1);
    }
    ok
}

const TAG: &str = "mproc-sync RawCondition v2";

/// The lock under a [`Condition`].
#[derive(Clone, Debug, Serialize, Deserialize)]
enum CondLock {
    Lock(Lock),
    RLock(RLock),
}

/// A condition variable shared between processes, like CPython's
/// `multiprocessing.Condition`.
///
/// It works over a [`Lock`] or an [`RLock`] (the default, as in CPython).
/// [`Condition::wait`] must be called holding the lock (acquired with
/// [`Condition::lock`] or directly on the lock): it releases the lock fully,
/// even a re-entered RLock, waits for a notification, and re-acquires it the
/// same number of times. `notify(n)` wakes up to `n` waiters; waiters that
/// timed out are not counted.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// let cond = mproc_sync::Condition::new()?;
/// let _g = cond.lock().unwrap_or_else(|e| e.into_inner());
/// assert_eq!(cond.wait_timeout(Duration::from_millis(1)), Ok(false));
/// assert_eq!(cond.notify(1), Ok(0)); // nobody waits
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    shared: Shared<RawCondition>,
    lock: CondLock,
}

/// Holds the lock of a [`Condition`]; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub enum ConditionGuard<'a> {
    /// The condition is over a [`Lock`].
    Lock(LockGuard<'a>),
    /// The condition is over an [`RLock`].
    RLock(RLockGuard<'a>),
}

/// `r` with its guard, clean or carried by the error, wrapped by `f`.
fn map_guard<'a, G, E: MapGuard<G>>(
    r: Result<G, E>,
    f: impl Fn(G) -> ConditionGuard<'a>,
) -> Result<ConditionGuard<'a>, E::Map<ConditionGuard<'a>>> {
    r.map(&f).map_err(|e| e.map_guard(f))
}

impl Condition {
    /// A condition over a new [`RLock`] (CPython's default).
    ///
    /// # Errors
    /// [`CreateError::Segment`] if a segment cannot be made.
    pub fn new() -> Result<Self, CreateError> {
        Self::with_rlock(RLock::new()?)
    }

    /// A condition over `lock` (shared with other users of the lock).
    ///
    /// # Errors
    /// [`CreateError::Segment`] if the segment cannot be made.
    pub fn with_lock(lock: Lock) -> Result<Self, CreateError> {
        Self::make(CondLock::Lock(lock))
    }

    /// A condition over `rlock`.
    ///
    /// # Errors
    /// [`CreateError::Segment`] if the segment cannot be made.
    pub fn with_rlock(rlock: RLock) -> Result<Self, CreateError> {
        Self::make(CondLock::RLock(rlock))
    }

    fn make(lock: CondLock) -> Result<Self, CreateError> {
        Ok(Self {
            shared: Shared::create(kind::CONDITION, TAG, [0; 4], |_| {})?,
            lock,
        })
    }

    /// Rebuilds a condition from its segment and its lock (the parts of one
    /// made in another process).
    ///
    /// # Errors
    /// [`OpenError`] if the segment holds something else or is corrupt.
    pub fn from_parts(seg: Segment, lock: Result<Lock, RLock>) -> Result<Self, OpenError> {
        let lock = match lock {
            Ok(l) => CondLock::Lock(l),
            Err(r) => CondLock::RLock(r),
        };
        Ok(Self {
            shared: Shared::open(seg, kind::CONDITION, TAG)?.0,
            lock,
        })
    }

    /// The shared memory segment of the condition itself (not its lock's).
    pub fn segment(&self) -> &Segment {
        self.shared.segment()
    }

    /// Acquires the condition's lock, blocking.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] (holding the guard) if its holder died.
    pub fn lock(&self) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        match &self.lock {
            CondLock::Lock(l) => map_guard(l.lock(), ConditionGuard::Lock),
            CondLock::RLock(l) => map_guard(l.lock(), ConditionGuard::RLock),
        }
    }

    /// Acquires the condition's lock if possible without waiting.
    ///
    /// # Errors
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> Result<ConditionGuard<'_>, TryLockError<ConditionGuard<'_>>> {
        match &self.lock {
            CondLock::Lock(l) => map_guard(l.try_lock(), ConditionGuard::Lock),
            CondLock::RLock(l) => map_guard(l.try_lock(), ConditionGuard::RLock),
        }
    }

    /// Acquires the condition's lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// As [`Lock::lock_timeout`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ConditionGuard<'_>, LockTimeoutError<ConditionGuard<'_>>> {
        match &self.lock {
            CondLock::Lock(l) => map_guard(l.lock_timeout(timeout), ConditionGuard::Lock),
            CondLock::RLock(l) => map_guard(l.lock_timeout(timeout), ConditionGuard::RLock),
        }
    }

    fn owned(&self) -> bool {
        match &self.lock {
            CondLock::Lock(l) => l.is_owned_by_current_thread(),
            CondLock::RLock(l) => l.is_owned_by_current_thread(),
        }
    }

    /// Waits for a notification, holding the lock before and after.
    ///
    /// # Errors
    /// [`WaitError::NotOwner`] if the calling thread does not hold the lock;
    /// [`WaitError::OwnerDied`] if, while re-acquiring, the lock's holder had
    /// died (the lock is held again).
    pub fn wait(&self) -> Result<(), WaitError> {
        self.wait_inner(None).map(|_| ())
    }

    /// Waits at most `timeout` for a notification; returns whether it came
    /// (`false`: timed out). The lock is held again in both cases.
    ///
    /// # Errors
    /// As [`Condition::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, WaitError> {
        match deadline_after(timeout) {
            Some(d) => self.wait_inner(Some(d)),
            None => self.wait_inner(None),
        }
    }

    /// Waits until `deadline` at most for a notification; returns whether it came.
    ///
    /// # Errors
    /// As [`Condition::wait`].
    pub fn wait_deadline(&self, deadline: Instant) -> Result<bool, WaitError> {
        self.wait_inner(Some(deadline))
    }

    fn wait_inner(&self, deadline: Option<Instant>) -> Result<bool, WaitError> {
        if !self.owned() {
            return Err(WaitError::NotOwner);
        }
        let raw = self.shared.get();
        let ticket = raw.prepare_wait();
        let (notified, how) = match &self.lock {
            CondLock::Lock(l) => {
                // SAFETY: the calling thread holds the lock (checked above);
                // its guard stays with the caller and is valid again once
                // `relock` returns.
                unsafe { l.unlock_raw() };
                let n = raw.wait_prepared(ticket, deadline);
                (n, l.relock())
            }
            CondLock::RLock(l) => {
                let count = l.release_all()?;
                let n = raw.wait_prepared(ticket, deadline);
                (n, l.relock(count))
            }
        };
        match how {
            Acquired::Clean => Ok(notified),
            Acquired::OwnerDied => Err(WaitError::OwnerDied { notified }),
        }
    }

    /// Waits until `pred()` is true, re-checking after each notification;
    /// returns the last value of `pred` (always `true` here).
    ///
    /// # Errors
    /// As [`Condition::wait`].
    pub fn wait_for(&self, pred: impl FnMut() -> bool) -> Result<bool, WaitError> {
        self.wait_for_inner(pred, None)
    }

    /// Waits at most `timeout` until `pred()` is true; returns the last
    /// value of `pred` (CPython's `wait_for(pred, timeout)`).
    ///
    /// # Errors
    /// As [`Condition::wait`].
    pub fn wait_for_timeout(
        &self,
        pred: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<bool, WaitError> {
        self.wait_for_inner(pred, deadline_after(timeout))
    }

    fn wait_for_inner(
        &self,
        mut pred: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool, WaitError> {
        if !self.owned() {
            return Err(WaitError::NotOwner);
        }
        loop {
            if pred() {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            self.wait_inner(deadline)?;
        }
    }

    /// Wakes up to `n` waiters; returns how many were woken.
    ///
    /// # Errors
    /// [`NotOwner`] if the calling thread does not hold the lock.
    pub fn notify(&self, n: usize) -> Result<usize, NotOwner> {
        if !self.owned() {
            return Err(NotOwner);
        }
        // More than u32::MAX waiters cannot exist: saturating is exact.
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        Ok(self.shared.get().notify(n) as usize)
    }

    /// Wakes every waiter; returns how many were woken.
    ///
    /// # Errors
    /// [`NotOwner`] if the calling thread does not hold the lock.
    pub fn notify_all(&self) -> Result<usize, NotOwner> {
        self.notify(usize::MAX)
    }

    /// How many waiters are waiting and not yet notified (a snapshot).
    pub fn waiting(&self) -> usize {
        self.shared.get().waiting() as usize
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("waiting", &self.waiting())
            .finish()
    }
}

#[derive(Serialize)]
struct WireRef<'a> {
    seg: &'a Segment,
    lock: &'a CondLock,
}

#[derive(Deserialize)]
struct Wire {
    seg: Segment,
    lock: CondLock,
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        WireRef {
            seg: self.shared.segment(),
            lock: &self.lock,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let shared = Shared::open(w.seg, kind::CONDITION, TAG)
            .map_err(serde::de::Error::custom)?
            .0;
        Ok(Self {
            shared,
            lock: w.lock,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_beyond_the_slots_are_woken_by_a_notify() {
        let c = RawCondition::new();
        let tickets: Vec<u32> = (0..SLOTS).map(|_| c.prepare_wait()).collect();
        assert_eq!(c.waiting(), SLOTS as u32);
        let extra = c.prepare_wait();
        assert!(extra as usize >= SLOTS);
        assert!(!c.wait_prepared(extra, Some(Instant::now())));
        let extra = c.prepare_wait();
        std::thread::scope(|s| {
            let h =
                s.spawn(|| c.wait_prepared(extra, Some(Instant::now() + Duration::from_secs(20))));
            assert_eq!(c.notify(u32::MAX), SLOTS as u32 + 1);
            assert!(h.join().unwrap());
        });
        for t in tickets {
            assert!(c.wait_prepared(t, Some(Instant::now())));
        }
        assert_eq!(c.waiting(), 0);
    }

    /// notify's count of waiters without a slot was read after waking them,
    /// when a woken one may already have taken itself off (it under-counted
    /// about one run in three on a loaded two-CPU machine).
    #[test]
    fn notify_counts_slotless_waiters_it_woke() {
        let c = RawCondition::new();
        let tickets: Vec<u32> = (0..SLOTS).map(|_| c.prepare_wait()).collect();
        for round in 0..200 {
            let extra: Vec<u32> = (0..3).map(|_| c.prepare_wait()).collect();
            let woken = std::thread::scope(|s| {
                for &t in &extra {
                    let c = &c;
                    s.spawn(move || {
                        assert!(c.wait_prepared(t, Some(Instant::now() + Duration::from_secs(20))))
                    });
                }
                // Let the waiters go to sleep, then wake everyone.
                std::thread::sleep(Duration::from_micros(200));
                let n = c.waiting();
                c.notify(n)
            });
            assert_eq!(woken, SLOTS as u32 + 3, "round {round}");
            for &t in &tickets {
                // Re-register the slot waiters for the next round.
                assert!(c.wait_prepared(t, Some(Instant::now())));
            }
            for t in &tickets {
                assert_eq!(c.prepare_wait(), *t);
            }
        }
    }
}
