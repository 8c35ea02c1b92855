//! `Synchronized<T, L>` and `SynchronizedArray<T, L>`: shared values guarded
//! by a caller-supplied lock, CPython's `Value(…, lock=L)` and
//! `Array(…, lock=L)`, so that one lock can guard several values.

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::array::RawArray;
use crate::error::{LockError, RangeError, SegmentError};
use crate::value::RawValue;

/// A cross-process lock that can guard [`Synchronized`] values and
/// [`SynchronizedArray`]s: what CPython accepts as `lock=` (an object with
/// `acquire`/`release`). `mproc_sync::Lock` and `mproc_sync::RLock`
/// implement it.
///
/// A lock is a handle that travels to other processes (it serializes), and
/// every handle to the same lock, in any process, has the same
/// [`identity`](ValueLock::identity) in a given process.
pub trait ValueLock: Clone + Send + Sync + Serialize + DeserializeOwned {
    /// The guard of one acquisition.
    type Guard<'a>
    where
        Self: 'a;

    /// Acquires the lock, blocking until it is free.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] (with the guard) if the previous holder died
    /// holding it.
    fn acquire_guard(&self) -> Result<Self::Guard<'_>, LockError<Self::Guard<'_>>>;

    /// Which lock this is: equal for two handles (in this process) exactly
    /// when they are the same lock.
    fn identity(&self) -> u128;

    /// The [`identity`](ValueLock::identity) of the lock `guard` holds.
    fn guard_identity(guard: &Self::Guard<'_>) -> u128;
}

/// A guard of another lock was passed to [`Synchronized::locked`] or
/// [`SynchronizedArray::locked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrongLock;

impl fmt::Display for WrongLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the guard holds another lock than the one guarding this value")
    }
}

impl std::error::Error for WrongLock {}

/// One plain-data value in shared memory guarded by a caller-supplied lock
/// `L`: CPython's `Value(typecode, v, lock=L)` (a `Synchronized` object).
///
/// Several values may share one lock, so that an invariant between them
/// holds under one acquisition. [`Synchronized::get`], [`Synchronized::set`]
/// and [`Synchronized::with_lock`] take the lock for one value each;
/// to work on several values under one acquisition, take the lock yourself
/// and open each value with [`Synchronized::locked`], which checks that the
/// guard holds *this* value's lock:
///
/// ```ignore
/// // mproc_sync::Lock implements ValueLock (a runnable example is in
/// // mproc-sync's crate documentation).
/// let lock = mproc_sync::Lock::new()?;
/// let a = Synchronized::new(100i64, &lock)?;
/// let b = Synchronized::new(0i64, &lock)?;
/// let g = lock.lock().unwrap_or_else(|e| e.into_inner());
/// let (a, b) = (a.locked(&g)?, b.locked(&g)?);
/// a.set(a.get() - 10);
/// b.set(b.get() + 10);
/// ```
///
/// The value and the lock travel together: serializing a `Synchronized`
/// sends both, and a child's [`Synchronized::get_lock`] is the same lock.
///
/// The value is copied in and out, never referenced: with a lock that any
/// thread may release (CPython's `Lock`), a guard does not prove that no
/// one else writes, so no `&T` into the shared memory is handed out. A
/// value no wider than a machine word is never torn even then.
pub struct Synchronized<T, L> {
    raw: RawValue<T>,
    lock: L,
}

/// One [`Synchronized`] value opened under a guard of its lock; copies in
/// and out without taking the lock again. Lives as long as the guard's
/// borrow.
pub struct LockedValue<'g, T> {
    raw: &'g RawValue<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod + Send, L: ValueLock> Synchronized<T, L> {
    /// A value initialised to `v` in a fresh anonymous segment, guarded by
    /// (a handle to) `lock`.
    ///
    /// # Errors
    /// [`SegmentError`] if the segment cannot be created.
    pub fn new(v: T, lock: &L) -> Result<Self, SegmentError> {
        Ok(Self {
            raw: RawValue::new(v)?,
            lock: lock.clone(),
        })
    }

    /// Copies the value out under the lock. With a non-recursive lock, do
    /// not call it while holding the lock (use [`Synchronized::locked`]).
    pub fn get(&self) -> T {
        let _g = self.acquire();
        self.raw.get()
    }

    /// Stores `v` under the lock.
    pub fn set(&self, v: T) {
        let _g = self.acquire();
        self.raw.set(v);
    }

    /// Runs `f` on a copy of the value with the lock held, stores the copy
    /// back and returns `f`'s result: an atomic read-modify-write.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let _g = self.acquire();
        let mut v = self.raw.get();
        let r = f(&mut v);
        self.raw.set(v);
        r
    }
}

impl<T: Pod + Send> LockedValue<'_, T> {
    /// Copies the value out.
    pub fn get(&self) -> T {
        self.raw.get()
    }

    /// Stores `v`.
    pub fn set(&self, v: T) {
        self.raw.set(v);
    }
}

/// Plain-data elements in shared memory guarded by a caller-supplied lock
/// `L`: CPython's `Array(typecode, size_or_initializer, lock=L)`.
///
/// As [`Synchronized`]: each method takes the lock once;
/// [`SynchronizedArray::locked`] opens the array under a guard of its lock
/// that may guard other values too.
pub struct SynchronizedArray<T, L> {
    raw: RawArray<T>,
    lock: L,
}

/// A [`SynchronizedArray`] opened under a guard of its lock.
pub struct LockedArray<'g, T> {
    raw: &'g RawArray<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod + Send, L: ValueLock> SynchronizedArray<T, L> {
    /// `len` zeroed elements in a fresh anonymous segment, guarded by `lock`.
    ///
    /// # Errors
    /// [`SegmentError`] if the segment cannot be created.
    pub fn new(len: usize, lock: &L) -> Result<Self, SegmentError> {
        Ok(Self {
            raw: RawArray::new(len)?,
            lock: lock.clone(),
        })
    }

    /// A copy of `data` in a fresh anonymous segment, guarded by `lock`.
    ///
    /// # Errors
    /// [`SegmentError`] if the segment cannot be created.
    pub fn from_slice(data: &[T], lock: &L) -> Result<Self, SegmentError> {
        Ok(Self {
            raw: RawArray::from_slice(data)?,
            lock: lock.clone(),
        })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Copies out element `i` under the lock, or `None` if out of range.
    pub fn get(&self, i: usize) -> Option<T> {
        let _g = self.acquire();
        self.raw.get(i)
    }

    /// Stores `v` at index `i` under the lock.
    ///
    /// # Errors
    /// [`RangeError`] if `i` is out of range.
    pub fn set(&self, i: usize, v: T) -> Result<(), RangeError> {
        let _g = self.acquire();
        self.raw.set(i, v)
    }

    /// Copies the whole array out under the lock.
    pub fn to_vec(&self) -> Vec<T> {
        let _g = self.acquire();
        self.raw.to_vec()
    }

    /// Runs `f` on a copy of the elements with the lock held, stores the
    /// copy back and returns `f`'s result.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> R {
        let _g = self.acquire();
        let mut v = self.raw.to_vec();
        let r = f(&mut v);
        // The length is the array's own: the copy cannot be out of range.
        let _ = self.raw.copy_from(0, &v);
        r
    }
}

impl<T: Pod + Send> LockedArray<'_, T> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Copies out element `i`, or `None` if out of range.
    pub fn get(&self, i: usize) -> Option<T> {
        self.raw.get(i)
    }

    /// Stores `v` at index `i`.
    ///
    /// # Errors
    /// [`RangeError`] if `i` is out of range.
    pub fn set(&self, i: usize, v: T) -> Result<(), RangeError> {
        self.raw.set(i, v)
    }

    /// Copies elements `[start, start + out.len())` into `out`.
    ///
    /// # Errors
    /// [`RangeError`] if the range does not fit; nothing is copied.
    pub fn copy_to(&self, start: usize, out: &mut [T]) -> Result<(), RangeError> {
        self.raw.copy_to(start, out)
    }

    /// Copies `data` into elements `[start, start + data.len())`.
    ///
    /// # Errors
    /// [`RangeError`] if the range does not fit; nothing is copied.
    pub fn copy_from(&self, start: usize, data: &[T]) -> Result<(), RangeError> {
        self.raw.copy_from(start, data)
    }

    /// Copies the whole array out.
    pub fn to_vec(&self) -> Vec<T> {
        self.raw.to_vec()
    }
}

/// The impls that `Synchronized` and `SynchronizedArray` share: `Clone`,
/// `Debug`, and serialization as (raw storage, lock).
macro_rules! handle_impls {
    ($ty:ident, $view:ident, $raw:ident) => {
        impl<T, L: Clone> Clone for $ty<T, L> {
            /// Another handle to the same storage and lock.
            fn clone(&self) -> Self {
                Self {
                    raw: self.raw.clone(),
                    lock: self.lock.clone(),
                }
            }
        }

        impl<T, L: fmt::Debug> fmt::Debug for $ty<T, L> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("lock", &self.lock)
                    .finish_non_exhaustive()
            }
        }

        impl<T> fmt::Debug for $view<'_, T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($view)).finish_non_exhaustive()
            }
        }

        impl<T, L: Serialize> Serialize for $ty<T, L> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                (&self.raw, &self.lock).serialize(s)
            }
        }

        impl<'de, T: Pod + Send, L: ValueLock> Deserialize<'de> for $ty<T, L> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let (raw, lock) = <($raw<T>, L)>::deserialize(d)?;
                Ok(Self { raw, lock })
            }
        }

        impl<T: Pod + Send, L: ValueLock> $ty<T, L> {
            /// The lock guarding this storage (CPython's `get_lock()`).
            pub fn get_lock(&self) -> &L {
                &self.lock
            }

            fn acquire(&self) -> L::Guard<'_> {
                self.lock
                    .acquire_guard()
                    .unwrap_or_else(LockError::into_inner)
            }

            /// Opens the storage under `guard`, a guard of its lock (which
            /// may guard other values too), to read and write it without
            /// taking the lock again.
            ///
            /// # Errors
            /// [`WrongLock`] if `guard` holds another lock.
            pub fn locked<'g>(
                &'g self,
                guard: &'g L::Guard<'_>,
            ) -> Result<$view<'g, T>, WrongLock> {
                if L::guard_identity(guard) != self.lock.identity() {
                    return Err(WrongLock);
                }
                Ok($view {
                    raw: &self.raw,
                    _not_send: PhantomData,
                })
            }
        }
    };
}

handle_impls!(Synchronized, LockedValue, RawValue);
handle_impls!(SynchronizedArray, LockedArray, RawArray);
