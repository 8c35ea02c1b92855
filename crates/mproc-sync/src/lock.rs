//! `Lock`: a non-recursive lock that any process may release.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::{Acquired, Guard, RawLock, RawMutex, SharedSync};

use crate::error::{LockTimeoutError, OverRelease};
use crate::shared::{Shared, kind};
use crate::sys::current_tid;

const TAG: &str = "mproc-sync LockState v1";

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct LockState {
    pub(crate) mutex: RawMutex,
    /// The kernel thread id of the last acquirer (0 when unlocked); only the
    /// holder writes it. Used for `Condition`'s ownership check.
    owner_tid: AtomicU32,
    _reserved: AtomicU32,
}

// SAFETY: repr(C) of SharedSync fields (atomics); every bit pattern is valid.
unsafe impl SharedSync for LockState {}

/// A lock shared between processes, like CPython's `multiprocessing.Lock`.
///
/// It is not recursive (a second `lock()` by the holder blocks), and it is
/// not owner-checked: any thread or process may [`Lock::release`] it. If the
/// process holding it dies, the next acquirer gets the lock with
/// [`LockError::OwnerDied`](crate::LockError::OwnerDied) instead of waiting for ever.
///
/// A `Lock` is a handle: `clone` gives another handle to the same lock, and
/// serializing it (inside [`mproc_shm::handle::collect_fds`]) sends it to
/// another process, which gets the same lock. It is inherited over `fork`.
///
/// # Examples
///
/// ```
/// let lock = mproc_sync::Lock::new()?;
/// {
///     let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
///     assert!(lock.is_locked());
///     assert!(lock.try_lock().is_err());
/// }
/// assert!(!lock.is_locked());
///
/// // CPython style, without a guard: any thread may release it.
/// assert_eq!(lock.acquire(), mproc_sync::Acquired::Clean);
/// assert_eq!(lock.try_acquire(), None);
/// let l2 = lock.clone();
/// std::thread::spawn(move || l2.release()).join().unwrap()?;
/// assert!(lock.release().is_err()); // released too many times
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    shared: Shared<LockState>,
}

/// The guard-less acquisitions of [`Lock`] and [`RLock`](crate::RLock)
/// (CPython's `acquire(block, timeout)`), built on their guard forms.
macro_rules! guardless_acquire {
    () => {
        /// Acquires without a guard, blocking until it is acquired: CPython's
        /// `acquire()`. Release it with `release`.
        ///
        /// Returns [`Acquired::OwnerDied`] if the previous holder process died
        /// holding it (the lock is held either way).
        pub fn acquire(&self) -> Acquired {
            match self.lock() {
                Ok(g) => crate::lock::keep(g, Acquired::Clean),
                Err(e) => crate::lock::keep(e.into_inner(), Acquired::OwnerDied),
            }
        }

        /// Acquires without a guard if that is possible without waiting:
        /// CPython's `acquire(False)`. `None` if it is held.
        pub fn try_acquire(&self) -> Option<Acquired> {
            self.acquire_timeout(Some(Duration::ZERO))
        }

        /// Acquires without a guard, waiting at most `timeout` (`None`: for
        /// ever; zero: try once): CPython's `acquire(timeout=…)`. `None` if
        /// the time ran out.
        pub fn acquire_timeout(&self, timeout: Option<Duration>) -> Option<Acquired> {
            let Some(timeout) = timeout else {
                return Some(self.acquire());
            };
            match self.lock_timeout(timeout) {
                Ok(g) => Some(crate::lock::keep(g, Acquired::Clean)),
                Err(LockTimeoutError::OwnerDied(g)) => {
                    Some(crate::lock::keep(g, Acquired::OwnerDied))
                }
                Err(LockTimeoutError::Timeout) => None,
            }
        }
    };
}

/// What [`Lock`] and [`RLock`](crate::RLock) have in the same form, over
/// their state `$state` in a segment of kind `$kind`: `new`, `from_segment`,
/// `segment`, the private `state` and `lock_ref`, the four lock forms
/// ([`mproc_shm::lock_forms!`]), [`mproc_shm::ValueLock`], and serde as the
/// segment. `$noun` names one in the docs (`"lock"`), `$what` the
/// docs' `$what` of the lock forms.
macro_rules! lock_handle {
    ($ty:ident, $guard:ident, $state:ty, $kind:ident, $noun:literal, $what:literal) => {
        impl $ty {
            #[doc = concat!("A new unlocked ", $noun, " in its own shared memory segment.")]
            ///
            /// # Errors
            /// [`CreateError::Segment`](crate::CreateError::Segment) if the
            /// segment cannot be made.
            pub fn new() -> Result<Self, crate::CreateError> {
                Ok(Self {
                    shared: crate::shared::Shared::create(kind::$kind, TAG, [0; 4], |_| {})?,
                })
            }

            #[doc = concat!("Opens a segment that holds a `", stringify!($ty), "` (made by [`", stringify!($ty), "::new`] in this or another process).")]
            ///
            /// # Errors
            /// [`OpenError`](crate::OpenError) if the segment holds something
            /// else or is corrupt.
            pub fn from_segment(seg: ::mproc_shm::Segment) -> Result<Self, crate::OpenError> {
                Ok(Self {
                    shared: crate::shared::Shared::open(seg, kind::$kind, TAG)?.0,
                })
            }

            #[doc = concat!("The shared memory segment of this ", $noun, ".")]
            pub fn segment(&self) -> &::mproc_shm::Segment {
                self.shared.segment()
            }

            fn state(&self) -> &$state {
                self.shared.get()
            }

            /// The lock as a [`LockRef`](mproc_shm::LockRef): its four ways
            /// in, as guards.
            #[inline]
            fn lock_ref(&self) -> ::mproc_shm::LockRef<'_, Self> {
                // SAFETY: the protected data is `()`, for which a dangling,
                // aligned pointer is valid; there is nothing another process
                // could write.
                unsafe { ::mproc_shm::LockRef::new(self, ::std::ptr::NonNull::dangling()) }
            }

            ::mproc_shm::lock_forms!($guard<'_>, $what);
        }

        impl ::mproc_shm::ValueLock for $ty {
            type Guard<'a> = $guard<'a>;

            fn acquire_guard(&self) -> Result<$guard<'_>, crate::LockError<$guard<'_>>> {
                self.lock()
            }

            fn identity(&self) -> u128 {
                self.shared.identity()
            }

            fn guard_identity(guard: &$guard<'_>) -> u128 {
                guard.lock().shared.identity()
            }
        }

        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                ::serde::Serialize::serialize(&self.shared, s)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Ok(Self {
                    shared: crate::shared::deserialize_shared(d, kind::$kind, TAG)?.0,
                })
            }
        }
    };
}

/// Keeps a lock held without its guard and returns `how`.
pub(crate) fn keep<G>(guard: G, how: Acquired) -> Acquired {
    std::mem::forget(guard);
    how
}

/// Who holds a [`Lock`] or [`RLock`](crate::RLock): a snapshot, readable
/// from any process.
///
/// Its `Debug` form is `pid 1234, thread 1240`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LockOwner {
    /// The holder's process id.
    pub pid: u32,
    /// The holder's kernel thread id (0 for a moment right after it took the
    /// lock, or when a [`Lock`] was released on its behalf).
    pub tid: u32,
}

impl fmt::Debug for LockOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}, thread {}", self.pid, self.tid)
    }
}

/// Holds a [`Lock`]; releases it when dropped. It is the workspace's one
/// [`Guard`] type (see [`mproc_shm::lock_api`]): [`Guard::lock`] gives the
/// lock, and it stays on the thread that locked.
pub type LockGuard<'a> = Guard<'a, Lock>;

lock_handle!(Lock, LockGuard, LockState, LOCK, "lock", "the lock");

impl Lock {
    /// Records the calling thread as the holder after an acquisition.
    #[inline]
    fn took(&self, how: Acquired) -> Acquired {
        // Relaxed: read only by this thread's ownership checks, and by others
        // as a hint; the mutex orders the protected data.
        self.state()
            .owner_tid
            .store(current_tid(), Ordering::Relaxed);
        how
    }

    guardless_acquire!();

    /// Releases the lock, whoever holds it: CPython's `Lock.release()`,
    /// which any thread or process may call, not only the one that acquired
    /// it. Pairs with [`Lock::acquire`], or releases on behalf of another
    /// thread or process. A [`LockGuard`] still alive elsewhere would then
    /// release again when dropped (possibly a later holder's acquisition),
    /// so release this way only locks taken without a guard.
    ///
    /// # Errors
    /// [`OverRelease`] if the lock is not locked.
    pub fn release(&self) -> Result<(), OverRelease> {
        // Relaxed: see `took`.
        self.state().owner_tid.store(0, Ordering::Relaxed);
        // SAFETY: releasing a lock held by someone else is this type's
        // documented (CPython) semantics; the data it protects is the
        // caller's responsibility, exactly as with CPython's Lock.
        if unsafe { self.state().mutex.unlock_if_locked() } {
            Ok(())
        } else {
            Err(OverRelease)
        }
    }

    /// Whether the lock is held right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.state().mutex.is_locked()
    }

    /// The process id of the holder right now (a snapshot), if any.
    pub fn owner_pid(&self) -> Option<u32> {
        self.state().mutex.owner_pid()
    }

    /// The holder right now (a snapshot), if any, readable from any process
    /// (CPython's `<Lock(owner=SomeOtherProcess)>`).
    pub fn owner(&self) -> Option<LockOwner> {
        let pid = self.owner_pid()?;
        // Relaxed: a snapshot for display (see `guard`).
        let tid = self.state().owner_tid.load(Ordering::Relaxed);
        Some(LockOwner { pid, tid })
    }

    /// Whether the calling thread acquired the lock last and it is still
    /// held (a snapshot, exact for the calling thread's own state).
    pub fn is_owned_by_current_thread(&self) -> bool {
        // Relaxed: only this thread writes its own id there.
        self.state().mutex.is_held_by_current_process()
            && self.state().owner_tid.load(Ordering::Relaxed) == current_tid()
    }

    /// Releases without a guard (for Condition::wait).
    ///
    /// # Safety
    /// The calling thread holds the lock and keeps its guard alive but unused
    /// until [`Lock::relock`].
    pub(crate) unsafe fn unlock_raw(&self) {
        // Relaxed: see `took`.
        self.state().owner_tid.store(0, Ordering::Relaxed);
        // SAFETY: guaranteed by the caller.
        unsafe { self.state().mutex.unlock() };
    }

    /// Re-acquires after [`Lock::unlock_raw`], for the guard kept by the caller.
    pub(crate) fn relock(&self) -> Acquired {
        self.took(self.state().mutex.lock())
    }
}

// SAFETY: the state's RawMutex gives mutual exclusion across processes;
// every acquisition path goes through it, and `unlock` releases it.
unsafe impl RawLock for Lock {
    #[inline]
    fn acquire(&self) -> Acquired {
        self.took(self.state().mutex.lock())
    }

    #[inline]
    fn try_acquire(&self) -> Option<Acquired> {
        let how = self.state().mutex.try_lock()?;
        Some(self.took(how))
    }

    #[inline]
    fn acquire_deadline(&self, deadline: Instant) -> Option<Acquired> {
        let how = self.state().mutex.lock_deadline(deadline)?;
        Some(self.took(how))
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: the caller holds the lock (RawLock::unlock's contract); if
        // another process force-released it meanwhile, that is CPython's
        // semantics (the release is then that caller's responsibility).
        unsafe { self.unlock_raw() };
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // CPython: `<Lock(owner=…)>`.
        f.debug_struct("Lock")
            .field("owner", &self.owner())
            .finish()
    }
}
