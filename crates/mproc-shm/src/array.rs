//! `Array<T>` (locked) and `RawArray<T>` (unlocked): a fixed number of
//! plain-data elements in their own shared segment, like CPython's `Array`
//! and `RawArray`.

use std::fmt;

use bytemuck::Pod;

use crate::error::{LockError, RangeError};
use crate::lock_api::{Guard, LockRef};
use crate::mutex::RawMutex;
use crate::region::{KIND_ARRAY, KIND_RAW_ARRAY, Region, region_handle};
use crate::segment::Segment;

/// How many bytes [`Iter`] copies out per lock acquisition.
const ITER_CHUNK_BYTES: usize = 16 * 1024;

/// A fixed-length array of plain-data elements in shared memory, protected
/// by one cross-process lock: CPython's `Array(typecode, n)` (with
/// `lock=True`).
///
/// Like [`Value`](crate::Value), an `Array` is a handle owning an anonymous
/// segment (header, lock, elements); it travels to other processes as a
/// descriptor, or by name ([`Array::create_named`], [`Array::open_named`]).
///
/// The elements are never exposed as `&[T]` outside the lock. Copy them in
/// and out ([`Array::copy_from`], [`Array::copy_to`], [`Array::to_vec`]),
/// iterate over copies ([`Array::iter`]), or work on the slice in place while
/// holding the lock ([`Array::with_lock`], [`Array::lock`]), which is the
/// fast way to scan or update many elements:
///
/// ```
/// use mproc_shm::Array;
///
/// let a = Array::<f64>::new(1000)?;
/// a.copy_from(0, &[1.0, 2.0, 3.0])?;
/// a.set(999, 4.0)?;
/// let sum: f64 = a.with_lock(|s| s.iter().sum());
/// assert_eq!(sum, 10.0);
/// {
///     let mut g = a.lock().unwrap();  // Python: with a.get_lock(): ...
///     g[0] += 1.0;
///     g[1..3].copy_from_slice(&[0.0, 0.0]);
/// }
/// assert_eq!(a.to_vec()[..4], [2.0, 0.0, 0.0, 0.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Owner death
/// As for [`Value`](crate::Value): [`Array::lock`] reports a holder that died
/// with [`LockError::OwnerDied`] carrying the guard, and the convenience
/// methods proceed on the elements as they were left.
///
/// Each `Array` has its own lock. For arrays and values guarded by one lock
/// (CPython's `lock=L` argument), see
/// [`SynchronizedArray`](crate::SynchronizedArray).
pub struct Array<T> {
    region: Region<T>,
}

region_handle!(array Array, KIND_ARRAY, Iter);

impl<T: Pod + Send> Array<T> {
    /// Copies out element `i`, or `None` if it is out of range.
    pub fn get(&self, i: usize) -> Option<T> {
        let mut out = [T::zeroed()];
        let _g = self.lock_anyway();
        // SAFETY: we hold the lock (`_g`).
        unsafe { self.region.copy_out_plain(i, &mut out) }
            .ok()
            .map(|()| out[0])
    }

    /// Stores `v` at index `i`.
    ///
    /// # Errors
    /// [`RangeError`] if `i` is out of range.
    pub fn set(&self, i: usize, v: T) -> Result<(), RangeError> {
        let _g = self.lock_anyway();
        // SAFETY: we hold the lock (`_g`).
        unsafe { self.region.copy_in_plain(i, &[v]) }
    }

    /// Copies elements `[start, start + out.len())` into `out`, under the lock.
    ///
    /// # Errors
    /// [`RangeError`] if the range does not fit; nothing is copied.
    pub fn copy_to(&self, start: usize, out: &mut [T]) -> Result<(), RangeError> {
        self.region.check_range(start, out.len())?;
        let _g = self.lock_anyway();
        // SAFETY: we hold the lock (`_g`).
        unsafe { self.region.copy_out_plain(start, out) }
    }

    /// Copies `data` into elements `[start, start + data.len())`, under the lock.
    ///
    /// # Errors
    /// [`RangeError`] if the range does not fit; nothing is copied.
    pub fn copy_from(&self, start: usize, data: &[T]) -> Result<(), RangeError> {
        self.region.check_range(start, data.len())?;
        let _g = self.lock_anyway();
        // SAFETY: we hold the lock (`_g`).
        unsafe { self.region.copy_in_plain(start, data) }
    }

    /// Copies the whole array out, under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len()];
        let _g = self.lock_anyway();
        // SAFETY: we hold the lock (`_g`).
        let _ = unsafe { self.region.copy_out_plain(0, &mut v) };
        v
    }

    /// Sets every element to `v`, under the lock.
    pub fn fill(&self, v: T) {
        self.with_lock(|s| s.fill(v));
    }

    /// An iterator over copies of the elements. It copies a chunk at a time,
    /// taking the lock once per chunk, so it sees each chunk consistently but
    /// not the whole array as one snapshot (use [`Array::to_vec`] or
    /// [`Array::with_lock`] for that).
    pub fn iter(&self) -> Iter<'_, T> {
        Iter::new(&self.region, true)
    }

    /// Runs `f` on the elements with the lock held and returns its result.
    ///
    /// This is the fast path for scans and bulk updates: `f` works on the
    /// shared memory in place, without copying.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let mut g = self.lock_anyway();
        f(&mut g)
    }

    crate::lock_forms!(ArrayGuard<'_, T>, "the array's lock");

    /// Whether some process holds the lock right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.region.lock().is_locked()
    }

    /// The segment holding the array (header, lock and elements).
    ///
    /// The segment's safe copies do not take the array's lock, so they
    /// could race with a guard's `&mut [T]`:
    ///
    /// ```compile_fail,E0133
    /// let a = mproc_shm::Array::<u8>::new(8)?;
    /// let mut g = a.lock().unwrap();
    /// let elems: &mut [u8] = &mut g;
    /// a.segment().write(256, &[1; 8])?;   // would write under `elems`
    /// elems[0] = 2;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Safety
    /// Through the returned segment, and anything made from it (clones, its
    /// descriptor), do not read or write the elements (the bytes from the
    /// data offset on) while any thread of this process may hold the lock
    /// or use the array. The header and the lock word are atomics and may be
    /// read at any time.
    pub unsafe fn segment(&self) -> &Segment {
        self.region.segment()
    }

    /// The lock with the elements it protects: the four ways in.
    #[inline]
    fn lock_ref(&self) -> LockRef<'_, RawMutex, [T]> {
        self.region.lock_all()
    }

    fn lock_anyway(&self) -> ArrayGuard<'_, T> {
        self.lock().unwrap_or_else(LockError::into_inner)
    }
}

/// The lock of an [`Array`], held; dereferences to the elements as a slice.
/// Unlocks on drop.
///
/// It is the workspace's one [`Guard`](crate::Guard) type (see
/// [`lock_api`](crate::lock_api)); it stays on the thread that locked.
pub type ArrayGuard<'a, T> = Guard<'a, RawMutex, [T]>;

/// An iterator over copies of the elements of an [`Array`] or [`RawArray`],
/// made a chunk at a time (see [`Array::iter`]).
pub struct Iter<'a, T> {
    region: &'a Region<T>,
    locked: bool,
    next: usize,
    buf: Vec<T>,
    pos: usize,
}

impl<'a, T: Pod> Iter<'a, T> {
    fn new(region: &'a Region<T>, locked: bool) -> Self {
        Self {
            region,
            locked,
            next: 0,
            buf: Vec::new(),
            pos: 0,
        }
    }

    fn refill(&mut self) -> bool {
        let left = self.region.len() - self.next;
        if left == 0 {
            return false;
        }
        let chunk = (ITER_CHUNK_BYTES / std::mem::size_of::<T>().max(1)).clamp(1, left);
        self.buf.clear();
        self.buf.resize(chunk, T::zeroed());
        if self.locked {
            // A dead previous owner does not matter for a copy of Pod data.
            let _ = self.region.lock().lock();
            // SAFETY: we hold the lock, taken just above.
            let _ = unsafe { self.region.copy_out_plain(self.next, &mut self.buf) };
            // SAFETY: locked just above (cleanly or from a dead owner, either
            // way now held by us); the copy is done.
            unsafe { self.region.lock().unlock() };
        } else {
            // SAFETY: an unlocked iterator is made only by `RawArray::iter`, and a
            // raw array's elements are only accessed by word-atomic copies.
            let _ = unsafe { self.region.load(self.next, &mut self.buf) };
        }
        self.next += chunk;
        self.pos = 0;
        true
    }
}

impl<T: Pod> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        if self.pos == self.buf.len() && !self.refill() {
            return None;
        }
        let v = self.buf[self.pos];
        self.pos += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.buf.len() - self.pos + (self.region.len() - self.next);
        (n, Some(n))
    }
}

impl<T: Pod> ExactSizeIterator for Iter<'_, T> {}

impl<T> fmt::Debug for Iter<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// A fixed-length array of plain-data elements in shared memory *without* a
/// lock: CPython's `RawArray`.
///
/// Every access is a copy made of relaxed atomic loads and stores of whole
/// machine words, so threads and processes may read and write at the same
/// time without undefined behaviour. They race, as in CPython: a copy may
/// mix old and new elements, and a `T` wider than a machine word (8 bytes on
/// 64-bit targets), or not aligned to its size, may be torn between words;
/// an element that fits in an aligned word is always seen whole. Use it when
/// writers are otherwise synchronised (for example each child writes its own
/// disjoint part, then the parent reads after joining them), or use [`Array`].
///
/// Large atomic copies run at about the speed of the locked [`Array`]'s
/// `memcpy` (the bench scenarios `raw_array_copy_64mib` and
/// `array_copy_64mib`), but they cannot be vectorised with other work;
/// [`Array::with_lock`] works on the elements in place.
///
/// ```
/// use mproc_shm::RawArray;
///
/// let a = RawArray::from_slice(&[1u32, 2, 3])?;
/// a.set(1, 20)?;
/// assert_eq!(a.to_vec(), [1, 20, 3]);
/// assert_eq!(a.iter().sum::<u32>(), 24);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RawArray<T> {
    region: Region<T>,
}

region_handle!(array RawArray, KIND_RAW_ARRAY, Iter);

impl<T: Pod + Send> RawArray<T> {
    /// Copies out element `i` (racy), or `None` if it is out of range.
    pub fn get(&self, i: usize) -> Option<T> {
        let mut out = [T::zeroed()];
        // SAFETY: a raw array's elements are only accessed by word-atomic copies.
        unsafe { self.region.load(i, &mut out) }
            .ok()
            .map(|()| out[0])
    }

    /// Stores `v` at index `i` (racy).
    ///
    /// # Errors
    /// [`RangeError`] if `i` is out of range.
    pub fn set(&self, i: usize, v: T) -> Result<(), RangeError> {
        // SAFETY: a raw array's elements are only accessed by word-atomic copies.
        unsafe { self.region.store(i, &[v]) }
    }

    /// Copies elements `[start, start + out.len())` into `out` (racy).
    ///
    /// # Errors
    /// [`RangeError`] if the range does not fit.
    pub fn copy_to(&self, start: usize, out: &mut [T]) -> Result<(), RangeError> {
        // SAFETY: a raw array's elements are only accessed by word-atomic copies.
        unsafe { self.region.load(start, out) }
    }

    /// Copies `data` into elements `[start, start + data.len())` (racy).
    ///
    /// # Errors
    /// [`RangeError`] if the range does not fit.
    pub fn copy_from(&self, start: usize, data: &[T]) -> Result<(), RangeError> {
        // SAFETY: a raw array's elements are only accessed by word-atomic copies.
        unsafe { self.region.store(start, data) }
    }

    /// Copies the whole array out (racy).
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len()];
        // SAFETY: a raw array's elements are only accessed by word-atomic copies.
        let _ = unsafe { self.region.load(0, &mut v) };
        v
    }

    /// An iterator over copies of the elements, a chunk at a time (racy).
    pub fn iter(&self) -> Iter<'_, T> {
        Iter::new(&self.region, false)
    }

    /// The segment holding the array. Its copies ([`Segment::read`],
    /// [`Segment::write`]) are atomic too, so using them on the elements
    /// while this array's copies run is no data race (mind the note on
    /// mixed access sizes at [`Segment::read`]).
    pub fn segment(&self) -> &Segment {
        self.region.segment()
    }
}

#[cfg(test)]
mod tests;
