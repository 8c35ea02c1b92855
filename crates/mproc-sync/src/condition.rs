//! `Condition`, and the raw in-segment condition variable.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::{Acquired, RawMutex, Segment, SharedSync, futex};
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
/// Waiters register while holding the associated lock; `notify(n)` (also
/// under the lock) hands out exactly `min(n, waiting)` wake-ups, and a waiter
/// that times out deregisters itself atomically, so notifications are never
/// spent on waiters that already left (CPython's accounting for timed-out
/// waiters).
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawCondition {
    /// Bumped by every notify that hands out wake-ups; the futex word.
    seq: AtomicU32,
    _reserved: AtomicU32,
    /// (registered waiters << 32) | (wake-ups handed out, not yet taken).
    state: AtomicU64,
}

// SAFETY: repr(C) of atomics; every bit pattern is valid (counts are
// saturated where they could be inconsistent).
unsafe impl SharedSync for RawCondition {}

const ONE_WAITER: u64 = 1 << 32;

impl RawCondition {
    /// A condition with no waiters.
    pub const fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            state: AtomicU64::new(0),
        }
    }

    /// Registers the caller as a waiter and returns a ticket for
    /// [`RawCondition::wait_prepared`]. Call it while holding the lock.
    pub fn prepare_wait(&self) -> u32 {
        // AcqRel: orders the registration before the ticket read below.
        self.state.fetch_add(ONE_WAITER, Ordering::AcqRel);
        // Acquire: pairs with the Release increment in `notify`.
        self.seq.load(Ordering::Acquire)
    }

    /// After [`RawCondition::prepare_wait`] and releasing the lock: waits
    /// until notified or `deadline` (`None`: no deadline) passes, and
    /// returns whether it was notified. Re-acquire the lock afterwards.
    pub fn wait_prepared(&self, ticket: u32, deadline: Option<Instant>) -> bool {
        let mut seq = ticket;
        loop {
            if self.take_wakeup() {
                return true;
            }
            if spin_until(|| self.state.load(Ordering::Relaxed) as u32 > 0) {
                continue;
            }
            match sleep(&self.seq, seq, deadline) {
                Slept::DeadlinePassed => return self.leave(),
                Slept::Woken | Slept::SliceOver => {
                    // Acquire: pairs with the Release increment in `notify`.
                    seq = self.seq.load(Ordering::Acquire);
                }
            }
        }
    }

    /// Takes a wake-up if one is handed out, deregistering.
    fn take_wakeup(&self) -> bool {
        let mut st = self.state.load(Ordering::Acquire);
        while st as u32 > 0 {
            let new = st.saturating_sub(ONE_WAITER + 1);
            // AcqRel: pairs with the AcqRel update in `notify`.
            match self
                .state
                .compare_exchange_weak(st, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(x) => st = x,
            }
        }
        false
    }

    /// Deregisters at the deadline, unless a wake-up arrived: then takes it.
    fn leave(&self) -> bool {
        let mut st = self.state.load(Ordering::Acquire);
        loop {
            let (taken, new) = if st as u32 > 0 {
                (true, st.saturating_sub(ONE_WAITER + 1))
            } else {
                (false, st.saturating_sub(ONE_WAITER))
            };
            // AcqRel: as in `take_wakeup`.
            match self
                .state
                .compare_exchange_weak(st, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return taken,
                Err(x) => st = x,
            }
        }
    }

    /// Wakes up to `n` registered waiters that have not been woken yet and
    /// returns how many. Call it while holding the lock.
    pub fn notify(&self, n: u32) -> u32 {
        let mut st = self.state.load(Ordering::Acquire);
        let k = loop {
            let (waiting, handed) = ((st >> 32) as u32, st as u32);
            let k = waiting.saturating_sub(handed).min(n);
            if k == 0 {
                return 0;
            }
            // AcqRel: pairs with the updates by waiters.
            match self.state.compare_exchange_weak(
                st,
                st + u64::from(k),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break k,
                Err(x) => st = x,
            }
        };
        // Release: pairs with the Acquire loads of `seq` by waiters.
        self.seq.fetch_add(1, Ordering::Release);
        futex::wake(&self.seq, k);
        k
    }

    /// How many waiters are registered and not yet woken (a snapshot).
    pub fn waiting(&self) -> u32 {
        let st = self.state.load(Ordering::Relaxed);
        ((st >> 32) as u32).saturating_sub(st as u32)
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

const TAG: &str = "mproc-sync RawCondition v1";

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

fn map_lock<'a, G>(
    r: Result<G, LockError<G>>,
    f: impl Fn(G) -> ConditionGuard<'a>,
) -> Result<ConditionGuard<'a>, LockError<ConditionGuard<'a>>> {
    r.map(&f)
        .map_err(|e| LockError::OwnerDied(f(e.into_inner())))
}

fn map_try<'a, G>(
    r: Result<G, TryLockError<G>>,
    f: impl Fn(G) -> ConditionGuard<'a>,
) -> Result<ConditionGuard<'a>, TryLockError<ConditionGuard<'a>>> {
    r.map(&f).map_err(|e| match e {
        TryLockError::WouldBlock => TryLockError::WouldBlock,
        TryLockError::OwnerDied(g) => TryLockError::OwnerDied(f(g)),
    })
}

fn map_timeout<'a, G>(
    r: Result<G, LockTimeoutError<G>>,
    f: impl Fn(G) -> ConditionGuard<'a>,
) -> Result<ConditionGuard<'a>, LockTimeoutError<ConditionGuard<'a>>> {
    r.map(&f).map_err(|e| match e {
        LockTimeoutError::Timeout => LockTimeoutError::Timeout,
        LockTimeoutError::OwnerDied(g) => LockTimeoutError::OwnerDied(f(g)),
    })
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
            CondLock::Lock(l) => map_lock(l.lock(), ConditionGuard::Lock),
            CondLock::RLock(l) => map_lock(l.lock(), ConditionGuard::RLock),
        }
    }

    /// Acquires the condition's lock if possible without waiting.
    ///
    /// # Errors
    /// As [`Lock::try_lock`].
    pub fn try_lock(&self) -> Result<ConditionGuard<'_>, TryLockError<ConditionGuard<'_>>> {
        match &self.lock {
            CondLock::Lock(l) => map_try(l.try_lock(), ConditionGuard::Lock),
            CondLock::RLock(l) => map_try(l.try_lock(), ConditionGuard::RLock),
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
            CondLock::Lock(l) => map_timeout(l.lock_timeout(timeout), ConditionGuard::Lock),
            CondLock::RLock(l) => map_timeout(l.lock_timeout(timeout), ConditionGuard::RLock),
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
    pub fn notify(&self, n: u32) -> Result<u32, NotOwner> {
        if !self.owned() {
            return Err(NotOwner);
        }
        Ok(self.shared.get().notify(n))
    }

    /// Wakes every waiter; returns how many were woken.
    ///
    /// # Errors
    /// [`NotOwner`] if the calling thread does not hold the lock.
    pub fn notify_all(&self) -> Result<u32, NotOwner> {
        self.notify(u32::MAX)
    }

    /// How many waiters are waiting and not yet notified (a snapshot).
    pub fn waiting(&self) -> u32 {
        self.shared.get().waiting()
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
