//! `Semaphore` and `BoundedSemaphore`, and the raw in-segment semaphore.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::mutex::{current_pid, process_alive};
use mproc_shm::{Acquired, Segment, SharedSync, futex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{
    CreateError, LockError, LockTimeoutError, OpenError, OverRelease, TryLockError,
};
use crate::shared::{Shared, deserialize_shared, kind};
use crate::wait::{Slept, deadline_after, sleep, spin_until};

/// The largest value a semaphore can hold (CPython's `SEM_VALUE_MAX` on Linux).
pub const SEM_VALUE_MAX: usize = VALUE_MAX as usize;

/// [`SEM_VALUE_MAX`] in the width of the in-segment count.
const VALUE_MAX: u32 = i32::MAX as u32;

/// A counting semaphore that lives in shared memory: just the count and a
/// waiter count, no owner tracking.
///
/// This is the raw form for crates that lay out their own segments (queues,
/// managers). [`Semaphore`] adds a handle, guards and dead-holder recovery.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawSemaphore {
    value: AtomicU32,
    waiters: AtomicU32,
}

// SAFETY: repr(C) of atomics; every bit pattern is a valid count.
unsafe impl SharedSync for RawSemaphore {}

impl RawSemaphore {
    /// A semaphore holding `value` units.
    pub const fn new(value: u32) -> Self {
        Self {
            value: AtomicU32::new(value),
            waiters: AtomicU32::new(0),
        }
    }

    /// The number of units available right now (a snapshot).
    pub fn value(&self) -> u32 {
        self.value.load(Ordering::Relaxed)
    }

    /// Takes one unit if one is available.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        let mut v = self.value.load(Ordering::Relaxed);
        while v > 0 {
            // Acquire: pairs with the Release in `release`, so what the
            // releaser wrote before is visible to the acquirer.
            match self
                .value
                .compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(x) => v = x,
            }
        }
        false
    }

    /// Blocks until a unit is taken.
    pub fn acquire(&self) {
        while !self.acquire_deadline_inner(None) {}
    }

    /// Takes a unit, waiting at most `timeout`; returns whether it did.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.acquire_deadline_inner(deadline_after(timeout))
    }

    /// Takes a unit, waiting until `deadline` at most; returns whether it did.
    pub fn acquire_deadline(&self, deadline: Instant) -> bool {
        self.acquire_deadline_inner(Some(deadline))
    }

    fn acquire_deadline_inner(&self, deadline: Option<Instant>) -> bool {
        loop {
            if self.try_acquire() {
                return true;
            }
            match self.sleep(deadline) {
                Slept::DeadlinePassed => return self.try_acquire(),
                Slept::Woken | Slept::SliceOver => {}
            }
        }
    }

    /// Spins briefly, then sleeps one liveness slice while no unit is
    /// available.
    pub(crate) fn sleep(&self, deadline: Option<Instant>) -> Slept {
        if spin_until(|| self.value() > 0) {
            return Slept::Woken;
        }
        // SeqCst (with the SeqCst pair in `release`): either the releaser sees
        // this waiter and wakes it, or this waiter's futex check sees the unit.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let r = sleep(&self.value, 0, deadline);
        // Relaxed: only a hint for releasers.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// Adds `n` units, failing without change if that would exceed `max`.
    ///
    /// # Errors
    /// [`OverRelease`] if the value would go above `max`.
    pub fn release(&self, n: u32, max: u32) -> Result<(), OverRelease> {
        let mut v = self.value.load(Ordering::Relaxed);
        loop {
            let new = v.checked_add(n).filter(|&x| x <= max).ok_or(OverRelease)?;
            // SeqCst: publishes the releaser's writes (Release) and orders
            // against the waiter count load below (see `sleep`).
            match self
                .value
                .compare_exchange_weak(v, new, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(x) => v = x,
            }
        }
        // SeqCst: see `sleep`.
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.value, n);
        }
        Ok(())
    }

    /// Adds up to `n` units, never past `max` (used when recovering a dead
    /// holder's units, which may meanwhile have been replaced by explicit
    /// releases).
    fn give_back(&self, n: u32, max: u32) {
        // SeqCst: see `release`.
        let r = self
            .value
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |v| {
                Some(v.saturating_add(n).min(max.max(v)))
            });
        if r.is_ok() && self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.value, n);
        }
    }
}

/// How many processes holding units at once are tracked for recovery.
const HOLDERS: usize = 256;

#[repr(C)]
pub(crate) struct SemState {
    sem: RawSemaphore,
    /// Slots of (pid << 32 | units held through guards); 0 is free.
    holders: [AtomicU64; HOLDERS],
}

// SAFETY: repr(C) of SharedSync fields (atomics); every bit pattern is valid:
// a slot naming an impossible pid is recovered as a dead holder.
unsafe impl SharedSync for SemState {}

const TAG: &str = "mproc-sync SemState v1";

/// What [`Semaphore`] and [`BoundedSemaphore`] share.
#[derive(Clone)]
struct Core {
    shared: Shared<SemState>,
    max: u32,
}

thread_local! {
    static LAST_SCAN: Cell<Option<Instant>> = const { Cell::new(None) };
}

impl Core {
    /// `max`: `None` for "the initial value" (a bounded semaphore).
    fn create(kind: u32, value: usize, max: Option<u32>) -> Result<Self, CreateError> {
        let value = u32::try_from(value)
            .ok()
            .filter(|&v| v <= VALUE_MAX)
            .ok_or(CreateError::InvalidArgument(
                "semaphore value above SEM_VALUE_MAX",
            ))?;
        let max = max.unwrap_or(value);
        let shared = Shared::create(kind, TAG, [u64::from(max), 0, 0, 0], |s: &SemState| {
            // Relaxed: published by the header's Release store.
            s.sem.value.store(value, Ordering::Relaxed);
        })?;
        Ok(Self { shared, max })
    }

    fn open(seg: Segment, kind: u32) -> Result<Self, OpenError> {
        let (shared, params) = Shared::open(seg, kind, TAG)?;
        let max = u32::try_from(params[0]).ok().filter(|&m| m <= VALUE_MAX);
        let max = max.ok_or(OpenError::Corrupt("semaphore maximum out of range"))?;
        Ok(Self { shared, max })
    }

    fn deserialize<'de, D: Deserializer<'de>>(d: D, kind: u32) -> Result<Self, D::Error> {
        let (shared, params): (Shared<SemState>, _) = deserialize_shared(d, kind, TAG)?;
        let max = u32::try_from(params[0]).ok().filter(|&m| m <= VALUE_MAX);
        let max = max.ok_or_else(|| {
            serde::de::Error::custom(OpenError::Corrupt("semaphore maximum out of range"))
        })?;
        Ok(Self { shared, max })
    }

    fn state(&self) -> &SemState {
        self.shared.get()
    }

    /// Records one unit as held by this process (best effort: untracked when
    /// every slot is taken). Returns whether it was recorded.
    fn track(&self) -> bool {
        let me = u64::from(current_pid());
        let start = (me as usize) % HOLDERS;
        for i in 0..HOLDERS {
            let slot = &self.state().holders[(start + i) % HOLDERS];
            let mut v = slot.load(Ordering::Relaxed);
            loop {
                let new = if v == 0 {
                    (me << 32) | 1
                } else if v >> 32 == me && (v as u32) < u32::MAX {
                    v + 1
                } else {
                    break;
                };
                // Relaxed: the slot is bookkeeping for recovery only.
                match slot.compare_exchange_weak(v, new, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return true,
                    Err(x) => v = x,
                }
            }
        }
        false
    }

    /// Forgets one unit recorded for this process, if there is one.
    fn untrack(&self) {
        let me = u64::from(current_pid());
        let start = (me as usize) % HOLDERS;
        for i in 0..HOLDERS {
            let slot = &self.state().holders[(start + i) % HOLDERS];
            let mut v = slot.load(Ordering::Relaxed);
            while v >> 32 == me && v as u32 > 0 {
                let new = if v as u32 == 1 { 0 } else { v - 1 };
                // Relaxed: bookkeeping only.
                match slot.compare_exchange_weak(v, new, Ordering::Relaxed, Ordering::Relaxed) {
                    Ok(_) => return,
                    Err(x) => v = x,
                }
            }
        }
    }

    /// Looks for a dead process holding units. If one is found, its units
    /// go back: one to the caller (returned as `OwnerDied`, tracked), the
    /// rest to the semaphore.
    fn recover(&self, rate_limit: bool) -> Option<Acquired> {
        if rate_limit {
            let recent = LAST_SCAN.with(|c| {
                c.get()
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(1))
            });
            if recent {
                return None;
            }
            LAST_SCAN.with(|c| c.set(Some(Instant::now())));
        }
        let me = current_pid();
        for slot in &self.state().holders {
            let v = slot.load(Ordering::Relaxed);
            let (pid, units) = ((v >> 32) as u32, v as u32);
            if v == 0 || pid == me || process_alive(pid) {
                continue;
            }
            // Relaxed: the units themselves are re-published by `give_back`
            // and the Acquire in the caller's later operations.
            if slot
                .compare_exchange(v, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
                || units == 0
            {
                continue;
            }
            if units > 1 {
                self.state().sem.give_back(units - 1, self.max);
            }
            // The caller holds the remaining unit; an Acquire fence orders
            // the dead holder's writes (as visible as they will ever be).
            std::sync::atomic::fence(Ordering::Acquire);
            self.track();
            return Some(Acquired::OwnerDied);
        }
        None
    }

    fn acquire_inner(&self, deadline: Option<Instant>) -> Option<Acquired> {
        let sem = &self.state().sem;
        loop {
            if sem.try_acquire() {
                self.track();
                return Some(Acquired::Clean);
            }
            match sem.sleep(deadline) {
                Slept::Woken => {}
                Slept::SliceOver => {
                    if let Some(a) = self.recover(false) {
                        return Some(a);
                    }
                }
                Slept::DeadlinePassed => {
                    if sem.try_acquire() {
                        self.track();
                        return Some(Acquired::Clean);
                    }
                    return self.recover(false);
                }
            }
        }
    }

    fn try_acquire(&self) -> Option<Acquired> {
        if self.state().sem.try_acquire() {
            self.track();
            return Some(Acquired::Clean);
        }
        self.recover(true)
    }

    fn release(&self) -> Result<(), OverRelease> {
        self.state().sem.release(1, self.max)?;
        self.untrack();
        Ok(())
    }
}

/// One unit of a [`Semaphore`] or [`BoundedSemaphore`]; released when
/// dropped.
///
/// While a guard lives, its unit is recorded as held by this process, so that
/// if the process dies the unit goes back to the semaphore (the next acquirer
/// sees `OwnerDied`). [`SemaphoreGuard::forget`] keeps the unit taken for good.
#[must_use = "the unit is released as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    core: &'a Core,
    _not_send: PhantomData<*const ()>,
}

impl SemaphoreGuard<'_> {
    /// Consumes the unit: it is not released, and not recovered if this
    /// process dies (for semaphores used as signals, where someone else
    /// releases).
    pub fn forget(self) {
        self.core.untrack();
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        self.core.untrack();
        // Over-release cannot happen for a unit that was taken, unless another
        // process released past the bound meanwhile; then the unit is dropped.
        let _ = self.core.state().sem.release(1, self.core.max);
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

macro_rules! semaphore_api {
    ($ty:ident) => {
        impl $ty {
            fn guard(
                &self,
                how: Acquired,
            ) -> Result<SemaphoreGuard<'_>, LockError<SemaphoreGuard<'_>>> {
                let g = SemaphoreGuard {
                    core: &self.core,
                    _not_send: PhantomData,
                };
                match how {
                    Acquired::Clean => Ok(g),
                    Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
                }
            }

            /// Opens a segment that holds this kind of semaphore.
            ///
            /// # Errors
            /// [`OpenError`] if the segment holds something else or is corrupt.
            pub fn from_segment(seg: Segment) -> Result<Self, OpenError> {
                Ok(Self {
                    core: Core::open(seg, kind::$ty)?,
                })
            }

            /// The shared memory segment of this semaphore.
            pub fn segment(&self) -> &Segment {
                self.core.shared.segment()
            }

            /// Takes one unit, blocking until one is available.
            ///
            /// # Errors
            /// [`LockError::OwnerDied`] (holding the guard) if the unit came
            /// back from a process that died holding it.
            pub fn acquire(&self) -> Result<SemaphoreGuard<'_>, LockError<SemaphoreGuard<'_>>> {
                loop {
                    if let Some(a) = self.core.acquire_inner(None) {
                        return self.guard(a);
                    }
                }
            }

            /// Takes one unit if one is available now.
            ///
            /// # Errors
            /// [`TryLockError::WouldBlock`] if none is; [`TryLockError::OwnerDied`]
            /// if the unit came back from a dead holder.
            pub fn try_acquire(
                &self,
            ) -> Result<SemaphoreGuard<'_>, TryLockError<SemaphoreGuard<'_>>> {
                match self.core.try_acquire() {
                    Some(a) => self.guard(a).map_err(Into::into),
                    None => Err(TryLockError::WouldBlock),
                }
            }

            /// Takes one unit, waiting at most `timeout` (zero: try once).
            ///
            /// # Errors
            /// [`LockTimeoutError::Timeout`] when the time runs out;
            /// [`LockTimeoutError::OwnerDied`] as for `acquire`.
            pub fn acquire_timeout(
                &self,
                timeout: Duration,
            ) -> Result<SemaphoreGuard<'_>, LockTimeoutError<SemaphoreGuard<'_>>> {
                match deadline_after(timeout) {
                    Some(d) => self.acquire_deadline(d),
                    None => self.acquire().map_err(Into::into),
                }
            }

            /// Takes one unit, waiting until `deadline` at most.
            ///
            /// # Errors
            /// As `acquire_timeout`.
            pub fn acquire_deadline(
                &self,
                deadline: Instant,
            ) -> Result<SemaphoreGuard<'_>, LockTimeoutError<SemaphoreGuard<'_>>> {
                match self.core.acquire_inner(Some(deadline)) {
                    Some(a) => self.guard(a).map_err(Into::into),
                    None => Err(LockTimeoutError::Timeout),
                }
            }

            /// The number of units available right now (CPython's
            /// `get_value()`, a snapshot).
            pub fn value(&self) -> usize {
                self.core.state().sem.value() as usize
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("value", &self.value())
                    .field("max", &self.core.max)
                    .finish()
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.core.shared.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self {
                    core: Core::deserialize(d, kind::$ty)?,
                })
            }
        }
    };
}

/// A counting semaphore shared between processes, like CPython's
/// `multiprocessing.Semaphore`.
///
/// [`Semaphore::acquire`] takes a unit as a [`SemaphoreGuard`], which gives
/// it back when dropped; [`Semaphore::release`] adds a unit from anywhere
/// (any thread or process). Units held through guards by a process that
/// dies go back to the semaphore, and the acquirer that gets the first of
/// them sees [`LockError::OwnerDied`].
///
/// # Examples
///
/// ```
/// let sem = mproc_sync::Semaphore::new(2)?;
/// let a = sem.acquire().unwrap_or_else(|e| e.into_inner());
/// let _b = sem.acquire().unwrap_or_else(|e| e.into_inner());
/// assert!(sem.try_acquire().is_err());
/// drop(a);
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    core: Core,
}

impl Semaphore {
    /// A semaphore holding `value` units (at most [`SEM_VALUE_MAX`]).
    ///
    /// # Errors
    /// [`CreateError::InvalidArgument`] above the maximum;
    /// [`CreateError::Segment`] if the segment cannot be made.
    pub fn new(value: usize) -> Result<Self, CreateError> {
        Ok(Self {
            core: Core::create(kind::Semaphore, value, Some(VALUE_MAX))?,
        })
    }

    /// Adds one unit (CPython's `release()`); any thread or process may.
    /// If this process holds a unit through a forgotten guard, that unit is
    /// no longer tracked for recovery.
    ///
    /// # Errors
    /// [`OverRelease`] at [`SEM_VALUE_MAX`].
    pub fn release(&self) -> Result<(), OverRelease> {
        self.core.release()
    }
}

semaphore_api!(Semaphore);

/// A semaphore that may not be released above its initial value, like
/// CPython's `multiprocessing.BoundedSemaphore`.
///
/// # Examples
///
/// ```
/// let sem = mproc_sync::BoundedSemaphore::new(1)?;
/// assert!(sem.release().is_err()); // already at its bound
/// sem.acquire().unwrap_or_else(|e| e.into_inner()).forget();
/// assert!(sem.release().is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    core: Core,
}

impl BoundedSemaphore {
    /// A semaphore holding `value` units, which is also its bound.
    ///
    /// # Errors
    /// [`CreateError::InvalidArgument`] above [`SEM_VALUE_MAX`];
    /// [`CreateError::Segment`] if the segment cannot be made.
    pub fn new(value: usize) -> Result<Self, CreateError> {
        Ok(Self {
            core: Core::create(kind::BoundedSemaphore, value, None)?,
        })
    }

    /// Adds one unit; any thread or process may.
    ///
    /// # Errors
    /// [`OverRelease`] if the value is already at its bound (CPython:
    /// `ValueError("semaphore or lock released too many times")`).
    pub fn release(&self) -> Result<(), OverRelease> {
        self.core.release()
    }

    /// The bound (the initial value).
    pub fn max_value(&self) -> usize {
        self.core.max as usize
    }
}

semaphore_api!(BoundedSemaphore);
