//! `Value<T>` (locked) and `RawValue<T>` (unlocked): one plain-data value in
//! its own shared segment, like CPython's `Value` and `RawValue`.

use std::fmt;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::error::{LockError, LockTimeoutError, SegmentError, TryLockError};
use crate::lock_api::Guard;
use crate::mutex::RawMutex;
use crate::region::{Init, KIND_RAW_VALUE, KIND_VALUE, Region, region_handle};
use crate::segment::Segment;

/// One plain-data value in shared memory, protected by a cross-process lock:
/// CPython's `Value(typecode, v)` (with `lock=True`).
///
/// A `Value` is a handle: it owns an anonymous segment (memfd) holding a
/// checked header, a [`RawMutex`](crate::RawMutex) and the value. Share it
/// with a child by passing it as a process argument (it serializes as its
/// descriptor), with threads through an `Arc`, or with an unrelated process
/// by name ([`Value::create_named`], [`Value::open_named`]).
///
/// Every access takes the lock. [`Value::get`] and [`Value::set`] lock once
/// each, so `v.set(v.get() + 1)` is *not* atomic (as `v.value += 1` is not
/// in Python); take the lock once for a read-modify-write:
///
/// ```
/// use mproc_shm::Value;
///
/// let v = Value::new(0u64)?;
/// v.set(41);
/// *v.lock().unwrap() += 1;           // Python: with v.get_lock(): v.value += 1
/// v.with_lock(|x| *x *= 2);
/// assert_eq!(v.get(), 84);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// Each `Value` has its own lock. For several values guarded by one lock
/// (CPython's `lock=L` argument), see [`Synchronized`](crate::Synchronized).
///
/// # Owner death
/// If a process dies holding the lock, the next [`Value::lock`] returns
/// [`LockError::OwnerDied`] carrying the guard: the lock is held and the value
/// is as the dead process left it. The convenience methods ([`Value::get`],
/// [`Value::set`], [`Value::with_lock`]) proceed in that case, since a `Pod`
/// value is always valid; use [`Value::lock`] to notice it.
pub struct Value<T> {
    region: Region<T>,
}

region_handle!(Value, KIND_VALUE, Some(1), "a value");

impl<T: Pod + Send> Value<T> {
    /// Creates a value initialised to `v` in a fresh anonymous segment.
    ///
    /// # Errors
    /// [`SegmentError`] if the segment cannot be created.
    pub fn new(v: T) -> Result<Self, SegmentError> {
        let region = Region::create(KIND_VALUE, 1, Init::Fill(v))?;
        Ok(Self { region })
    }

    /// Creates a value initialised to `v` in a named POSIX segment that
    /// unrelated processes can open with [`Value::open_named`]. The name is
    /// unlinked when this value is dropped.
    ///
    /// # Errors
    /// As [`Segment::create_named`].
    pub fn create_named(name: &str, v: T) -> Result<Self, SegmentError> {
        let region = Region::create_named(name, KIND_VALUE, 1, Init::Fill(v))?;
        Ok(Self { region })
    }

    /// Copies the value out (under the lock).
    pub fn get(&self) -> T {
        self.with_lock(|v| *v)
    }

    /// Stores `v` (under the lock).
    pub fn set(&self, v: T) {
        self.with_lock(|x| *x = v);
    }

    /// Runs `f` on the value with the lock held and returns its result.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let mut g = self.lock().unwrap_or_else(LockError::into_inner);
        f(&mut g)
    }

    /// Locks the value, blocking until the lock is free; the guard gives
    /// `&mut T`. This is CPython's `with v.get_lock():`.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] (with the guard) if the previous holder died
    /// holding the lock.
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, LockError<ValueGuard<'_, T>>> {
        self.region.lock_one().lock()
    }

    /// Locks the value if the lock is free right now.
    ///
    /// # Errors
    /// [`TryLockError::WouldBlock`] if it is held, or
    /// [`TryLockError::OwnerDied`] (with the guard).
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, TryLockError<ValueGuard<'_, T>>> {
        self.region.lock_one().try_lock()
    }

    /// Locks the value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`LockTimeoutError::Timeout`] or [`LockTimeoutError::OwnerDied`].
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ValueGuard<'_, T>, LockTimeoutError<ValueGuard<'_, T>>> {
        self.region.lock_one().lock_timeout(timeout)
    }

    /// Locks the value, waiting until `deadline` at most.
    ///
    /// # Errors
    /// [`LockTimeoutError::Timeout`] or [`LockTimeoutError::OwnerDied`].
    pub fn lock_deadline(
        &self,
        deadline: Instant,
    ) -> Result<ValueGuard<'_, T>, LockTimeoutError<ValueGuard<'_, T>>> {
        self.region.lock_one().lock_deadline(deadline)
    }

    /// Whether some process holds the lock right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.region.lock().is_locked()
    }

    /// The segment holding the value (header, lock and value).
    ///
    /// The segment's safe copies do not take the value's lock, so they
    /// could race with a guard's `&mut T`:
    ///
    /// ```compile_fail,E0133
    /// let v = mproc_shm::Value::new(0u64)?;
    /// let mut g = v.lock().unwrap();
    /// let x: &mut u64 = &mut g;
    /// v.segment().write(256, &[1; 8])?;   // would write under `x`
    /// *x += 1;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Safety
    /// As for [`Array::segment`](crate::Array::segment): through the returned
    /// segment, and anything made from it, do not read or write the value's
    /// bytes while any thread of this process may hold the lock or use the
    /// value.
    pub unsafe fn segment(&self) -> &Segment {
        self.region.segment()
    }
}

impl<T> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("segment", self.region.segment())
            .finish_non_exhaustive()
    }
}

/// The lock of a [`Value`], held; dereferences to the value. Unlocks on drop.
///
/// It is the workspace's one [`Guard`](crate::Guard) type (see
/// [`lock_api`](crate::lock_api)); it stays on the thread that locked.
pub type ValueGuard<'a, T> = Guard<'a, RawMutex, T>;

/// One plain-data value in shared memory *without* a lock: CPython's
/// `RawValue`.
///
/// Reads and writes are copies made of relaxed atomic word loads and stores,
/// so threads and processes may use it at the same time without undefined
/// behaviour. They race, as in CPython: a read may see a torn mix of two
/// writes for a `T` wider than a machine word (a `T` that fits in an aligned
/// word is always seen whole), and read-modify-write sequences lose updates.
/// Use [`Value`] (locked) or [`SharedAtomic`](crate::SharedAtomic) unless
/// every writer is otherwise synchronised.
///
/// ```
/// use mproc_shm::RawValue;
///
/// let v = RawValue::new([1.5f64, 2.5])?;
/// v.set([3.0, 4.0]);
/// assert_eq!(v.get(), [3.0, 4.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RawValue<T> {
    region: Region<T>,
}

region_handle!(RawValue, KIND_RAW_VALUE, Some(1), "a value");

impl<T: Pod + Send> RawValue<T> {
    /// Creates a value initialised to `v` in a fresh anonymous segment.
    ///
    /// # Errors
    /// [`SegmentError`] if the segment cannot be created.
    pub fn new(v: T) -> Result<Self, SegmentError> {
        let region = Region::create(KIND_RAW_VALUE, 1, Init::Fill(v))?;
        Ok(Self { region })
    }

    /// Creates a value in a named POSIX segment; unlinked on drop.
    ///
    /// # Errors
    /// As [`Segment::create_named`].
    pub fn create_named(name: &str, v: T) -> Result<Self, SegmentError> {
        let region = Region::create_named(name, KIND_RAW_VALUE, 1, Init::Fill(v))?;
        Ok(Self { region })
    }

    /// Copies the value out (racy, see the type's docs).
    pub fn get(&self) -> T {
        let mut out = [T::zeroed()];
        // SAFETY: a raw value's bytes are only accessed by word-atomic copies.
        let _ = unsafe { self.region.load(0, &mut out) };
        out[0]
    }

    /// Stores `v` (racy, see the type's docs).
    pub fn set(&self, v: T) {
        // SAFETY: a raw value's bytes are only accessed by word-atomic copies.
        let _ = unsafe { self.region.store(0, &[v]) };
    }

    /// The segment holding the value. Its copies are atomic too, so using
    /// them on the value while this handle's copies run is no data race
    /// (mind the note on mixed access sizes at [`Segment::read`]).
    pub fn segment(&self) -> &Segment {
        self.region.segment()
    }
}

impl<T> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawValue")
            .field("segment", self.region.segment())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
