//! One lock API for every locked type in the workspace.
//!
//! Every lock mproc offers — [`Value`](crate::Value), [`Array`](crate::Array),
//! and mproc-sync's `Lock`, `RLock` — has the same four ways in
//! (`lock`, `try_lock`, `lock_timeout`, `lock_deadline`), the same guard
//! behaviour (unlock on drop, stays on its thread) and the same answer when the
//! previous holder died ([`LockError::OwnerDied`] and friends, carrying the
//! guard). That shape is written once, here, in the manner of the `lock_api`
//! crate:
//!
//! - [`RawLock`] is what a lock word must do: acquire in three ways, release.
//!   [`RawMutex`] is the implementation every type uses underneath.
//! - [`LockRef`] is a lock plus a pointer to the data it protects; its four
//!   methods are the four ways in, each returning a [`Guard`].
//! - [`Guard`] dereferences to the data and releases the lock when dropped.
//!
//! A new locked type is then a few lines: implement [`RawLock`] if its
//! locking is not a plain [`RawMutex`], give it a private
//! `fn lock_ref(&self) -> LockRef<'_, L, T>` over its lock and its data, and
//! let `lock_forms!` write its four public methods, forwards to it.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use crate::error::{LockError, LockTimeoutError, TryLockError};
use crate::mutex::{Acquired, RawMutex};

/// A lock word shared between threads and processes.
///
/// # Safety
/// An implementation must give mutual exclusion: after `acquire` returns, or
/// `try_acquire`/`acquire_deadline` return `Some`, the calling thread holds the lock
/// and no other thread of any process does until it calls `unlock`.
/// [`Acquired::OwnerDied`] means the lock is held as well; only the data may
/// be in the state a dead holder left. A [`Guard`] relies on this to hand out
/// `&mut T` to the protected data.
pub unsafe trait RawLock {
    /// Acquires the lock, blocking until it is free or its holder has died.
    fn acquire(&self) -> Acquired;

    /// Acquires the lock if that is possible without waiting.
    fn try_acquire(&self) -> Option<Acquired>;

    /// Acquires the lock, waiting until `deadline` at most (a deadline in the
    /// past tries once). `None` when the time ran out.
    fn acquire_deadline(&self, deadline: Instant) -> Option<Acquired>;

    /// Releases the lock (one acquisition of it).
    ///
    /// # Safety
    /// The calling thread holds the lock (one acquisition of it), and no
    /// reference to the protected data derived from that acquisition
    /// outlives this call.
    unsafe fn unlock(&self);
}

// SAFETY: RawMutex is a cross-process mutex: its lock/try_lock/lock_deadline
// return only with the lock word holding the caller's id, and `unlock`
// releases it (see mutex.rs for the protocol).
unsafe impl RawLock for RawMutex {
    #[inline]
    fn acquire(&self) -> Acquired {
        self.lock()
    }

    #[inline]
    fn try_acquire(&self) -> Option<Acquired> {
        self.try_lock()
    }

    #[inline]
    fn acquire_deadline(&self, deadline: Instant) -> Option<Acquired> {
        self.lock_deadline(deadline)
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: forwarded from the caller.
        unsafe { RawMutex::unlock(self) }
    }
}

/// Writes the four public ways into a locked type — `lock`, `try_lock`,
/// `lock_timeout` and `lock_deadline` — as forwards to the type's own
/// `fn lock_ref(&self) -> LockRef<'_, L, T>`, inside an inherent `impl`.
///
/// `$guard` is the guard type, its borrow of `self` written `'_`; `$what`
/// names the lock in the docs (`"the value's lock"`). The caller's crate
/// root must have `LockError`, `TryLockError` and `LockTimeoutError` (the
/// docs link to them there).
///
/// For mproc's own crates (`Value`, `Array`, `Lock`, `RLock`); not a stable
/// API.
#[doc(hidden)]
#[macro_export]
macro_rules! lock_forms {
    ($guard:ty, $what:literal) => {
        #[doc = concat!("Acquires ", $what, ", blocking until it is free.")]
        ///
        /// # Errors
        /// [`LockError::OwnerDied`](crate::LockError::OwnerDied) (holding
        /// the guard: the lock is held) if the previous holder died holding
        /// the lock.
        #[inline]
        pub fn lock(&self) -> ::core::result::Result<$guard, $crate::LockError<$guard>> {
            self.lock_ref().lock()
        }

        #[doc = concat!("Acquires ", $what, " if that is possible without waiting.")]
        ///
        /// # Errors
        /// [`TryLockError::WouldBlock`](crate::TryLockError::WouldBlock) if
        /// the lock is held;
        /// [`TryLockError::OwnerDied`](crate::TryLockError::OwnerDied)
        /// (holding the guard) if its holder had died.
        #[inline]
        pub fn try_lock(&self) -> ::core::result::Result<$guard, $crate::TryLockError<$guard>> {
            self.lock_ref().try_lock()
        }

        #[doc = concat!("Acquires ", $what, ", waiting at most `timeout` (zero: try once).")]
        ///
        /// # Errors
        /// [`LockTimeoutError::Timeout`](crate::LockTimeoutError::Timeout)
        /// when the time runs out;
        /// [`LockTimeoutError::OwnerDied`](crate::LockTimeoutError::OwnerDied)
        /// (holding the guard) if the previous holder died holding the lock.
        pub fn lock_timeout(
            &self,
            timeout: ::std::time::Duration,
        ) -> ::core::result::Result<$guard, $crate::LockTimeoutError<$guard>> {
            self.lock_ref().lock_timeout(timeout)
        }

        #[doc = concat!("Acquires ", $what, ", waiting until `deadline` at most (past: try once).")]
        ///
        /// # Errors
        /// As `lock_timeout`.
        pub fn lock_deadline(
            &self,
            deadline: ::std::time::Instant,
        ) -> ::core::result::Result<$guard, $crate::LockTimeoutError<$guard>> {
            self.lock_ref().lock_deadline(deadline)
        }
    };
}

/// A lock and the data it protects: the four ways to take it.
///
/// Locked types build one over their lock and their data and forward their
/// `lock`, `try_lock`, `lock_timeout` and `lock_deadline` to it.
pub struct LockRef<'a, L: RawLock + ?Sized, T: ?Sized = ()> {
    lock: &'a L,
    data: NonNull<T>,
}

impl<'a, L: RawLock + ?Sized, T: ?Sized> LockRef<'a, L, T> {
    /// Pairs `lock` with the data it protects.
    ///
    /// # Safety
    /// `data` is valid for reads and writes of a `T` for `'a`, properly
    /// aligned, holds a valid `T` whatever another holder may have written
    /// (a `Pod` type, or `()`), and is touched — in every process — only by a
    /// thread holding `lock`.
    #[inline]
    pub unsafe fn new(lock: &'a L, data: NonNull<T>) -> Self {
        Self { lock, data }
    }

    /// Blocks until the lock is held.
    ///
    /// # Errors
    /// [`LockError::OwnerDied`] (with the guard: the lock is held) if the
    /// previous holder died holding it.
    #[inline]
    pub fn lock(self) -> Result<Guard<'a, L, T>, LockError<Guard<'a, L, T>>> {
        let how = self.lock.acquire();
        self.guard(how)
    }

    /// Takes the lock if that is possible without waiting.
    ///
    /// # Errors
    /// [`TryLockError::WouldBlock`] if it is held; [`TryLockError::OwnerDied`]
    /// (with the guard) if its holder had died.
    #[inline]
    pub fn try_lock(self) -> Result<Guard<'a, L, T>, TryLockError<Guard<'a, L, T>>> {
        match self.lock.try_acquire() {
            Some(how) => self.guard(how).map_err(Into::into),
            None => Err(TryLockError::WouldBlock),
        }
    }

    /// Takes the lock, waiting at most `timeout` (zero: try once; a timeout
    /// too large for an `Instant` waits without limit).
    ///
    /// # Errors
    /// [`LockTimeoutError::Timeout`] when the time runs out;
    /// [`LockTimeoutError::OwnerDied`] (with the guard).
    pub fn lock_timeout(
        self,
        timeout: Duration,
    ) -> Result<Guard<'a, L, T>, LockTimeoutError<Guard<'a, L, T>>> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.lock_deadline(deadline),
            None => self.lock().map_err(Into::into),
        }
    }

    /// Takes the lock, waiting until `deadline` at most (past: try once).
    ///
    /// # Errors
    /// As [`LockRef::lock_timeout`].
    pub fn lock_deadline(
        self,
        deadline: Instant,
    ) -> Result<Guard<'a, L, T>, LockTimeoutError<Guard<'a, L, T>>> {
        match self.lock.acquire_deadline(deadline) {
            Some(how) => self.guard(how).map_err(Into::into),
            None => Err(LockTimeoutError::Timeout),
        }
    }

    /// The guard for an acquisition that just happened.
    #[inline]
    fn guard(self, how: Acquired) -> Result<Guard<'a, L, T>, LockError<Guard<'a, L, T>>> {
        let g = Guard {
            lock: self.lock,
            data: self.data,
            _marker: PhantomData,
        };
        match how {
            Acquired::Clean => Ok(g),
            Acquired::OwnerDied => Err(LockError::OwnerDied(g)),
        }
    }
}

/// A held lock: dereferences to the data it protects and releases the lock
/// when dropped.
///
/// A guard stays on the thread that locked (a lock may record its owner
/// thread), as std's `MutexGuard` does:
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<mproc_shm::ValueGuard<'static, u64>>();
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct Guard<'a, L: RawLock + ?Sized, T: ?Sized = ()> {
    lock: &'a L,
    data: NonNull<T>,
    /// Borrows the data mutably for `'a`; `*const ()` keeps it off other threads.
    _marker: PhantomData<(&'a mut T, *const ())>,
}

impl<'a, L: RawLock + ?Sized, T: ?Sized> Guard<'a, L, T> {
    /// The lock this guard holds. (The protected data of every locked type
    /// is plain data or a slice of it, which has no `lock` method of its own
    /// for this one to hide.)
    #[inline]
    pub fn lock(&self) -> &'a L {
        self.lock
    }

    /// Gives up the guard without releasing the lock, which stays held
    /// until released by other means (e.g. a CPython-style `release`).
    #[inline]
    pub fn leak(this: Self) -> &'a L {
        let lock = this.lock;
        std::mem::forget(this);
        lock
    }
}

// SAFETY: sharing `&Guard` across threads only gives `&T` and `&L`, which is
// fine when both are Sync (as for std's MutexGuard).
unsafe impl<L: RawLock + Sync + ?Sized, T: Sync + ?Sized> Sync for Guard<'_, L, T> {}

impl<L: RawLock + ?Sized, T: ?Sized> Deref for Guard<'_, L, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the lock is held for the guard's lifetime, so no other thread
        // of any process touches the data (LockRef::new's contract); the pointer
        // is valid, aligned and holds a valid T for 'a (same contract).
        unsafe { self.data.as_ref() }
    }
}

impl<L: RawLock + ?Sized, T: ?Sized> DerefMut for Guard<'_, L, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference
        // derived from the guard.
        unsafe { self.data.as_mut() }
    }
}

impl<L: RawLock + ?Sized, T: ?Sized> Drop for Guard<'_, L, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: a guard exists only while this thread holds the lock (one
        // acquisition), and every reference derived from it borrows the guard,
        // so none outlives this call.
        unsafe { self.lock.unlock() };
    }
}

impl<L: RawLock + ?Sized, T: ?Sized> fmt::Debug for Guard<'_, L, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

impl<L: RawLock + ?Sized, T: ?Sized> fmt::Debug for LockRef<'_, L, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockRef").finish_non_exhaustive()
    }
}
