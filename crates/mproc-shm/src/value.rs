//! `Value<T>` (locked) and `RawValue<T>` (unlocked): one plain-data value in
//! its own shared segment, like CPython's `Value` and `RawValue`.

use bytemuck::Pod;

use crate::error::LockError;
use crate::lock_api::{Guard, LockRef};
use crate::mutex::RawMutex;
use crate::region::{KIND_RAW_VALUE, KIND_VALUE, Region, region_handle};
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

region_handle!(value Value, KIND_VALUE);

impl<T: Pod + Send> Value<T> {
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

    crate::lock_forms!(ValueGuard<'_, T>, "the value's lock");

    /// The lock with the value it protects: the four ways in.
    #[inline]
    fn lock_ref(&self) -> LockRef<'_, RawMutex, T> {
        self.region.lock_one()
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

region_handle!(value RawValue, KIND_RAW_VALUE);

impl<T: Pod + Send> RawValue<T> {
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

#[cfg(test)]
mod tests;
