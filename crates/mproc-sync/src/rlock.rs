//! `RLock`: a recursive lock owned by one thread of one process.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::{Acquired, Guard, RawLock, RawMutex, SharedSync};

use crate::error::{LockTimeoutError, NotOwner};
use crate::lock::LockOwner;
use crate::shared::{Shared, kind};
use crate::sys::current_tid;

const TAG: &str = "mproc-sync RLockState v1";

#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct RLockState {
    mutex: RawMutex,
    /// The owning thread's kernel id (0: none); only the owner writes it.
    owner_tid: AtomicU32,
    /// The recursion count; only the owner touches it.
    count: AtomicU32,
}

// SAFETY: repr(C) of SharedSync fields (atomics); every bit pattern is valid.
unsafe impl SharedSync for RLockState {}

/// A recursive lock shared between processes, like CPython's
/// `multiprocessing.RLock`.
///
/// Its owner is one thread of one process (process id and thread id), which
/// may acquire it again and again; it is free when every acquisition is
/// released. Only the owner may release it. If the owning process dies, the
/// next acquirer gets it with [`LockError::OwnerDied`](crate::LockError::OwnerDied).
///
/// # Examples
///
/// ```
/// let rlock = mproc_sync::RLock::new()?;
/// let a = rlock.lock().unwrap_or_else(|e| e.into_inner());
/// let b = rlock.lock().unwrap_or_else(|e| e.into_inner()); // re-entered
/// assert_eq!(rlock.count(), 2);
/// drop(b);
/// drop(a);
/// assert!(!rlock.is_locked());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct RLock {
    shared: Shared<RLockState>,
}

/// One acquisition of an [`RLock`]; released when dropped. It is the
/// workspace's one [`Guard`] type (see [`mproc_shm::lock_api`]):
/// [`Guard::lock`] gives the lock, and it stays on the thread that locked.
pub type RLockGuard<'a> = Guard<'a, RLock>;

lock_handle!(
    RLock,
    RLockGuard,
    RLockState,
    RLOCK,
    "recursive lock",
    "the lock (or re-enters it)"
);

impl RLock {
    /// Whether the calling thread owns the lock.
    pub fn is_owned_by_current_thread(&self) -> bool {
        let s = self.state();
        // Relaxed: the pair (pid, tid) can only name this thread if this
        // thread wrote it and has not released since.
        s.mutex.is_held_by_current_process() && s.owner_tid.load(Ordering::Relaxed) == current_tid()
    }

    /// Re-enters if owned, else acquires with `how` and becomes the owner.
    fn enter(&self, how: impl FnOnce(&RawMutex) -> Option<Acquired>) -> Option<Acquired> {
        let s = self.state();
        if self.is_owned_by_current_thread() {
            // Relaxed: only the owner thread touches the count.
            let c = s.count.load(Ordering::Relaxed);
            s.count.store(c.saturating_add(1), Ordering::Relaxed);
            return Some(Acquired::Clean);
        }
        let a = how(&s.mutex)?;
        // Relaxed: published to later owners by the mutex's Release/Acquire.
        s.owner_tid.store(current_tid(), Ordering::Relaxed);
        s.count.store(1, Ordering::Relaxed);
        Some(a)
    }

    guardless_acquire!();

    /// Releases one acquisition (CPython's `RLock.release()`): pairs with
    /// [`RLock::acquire`] or a [`std::mem::forget`]-ed guard. Unlike a
    /// [`Lock`](crate::Lock), only the owning thread may release it.
    ///
    /// # Errors
    /// [`NotOwner`] if the calling thread does not own the lock.
    pub fn release(&self) -> Result<(), NotOwner> {
        if !self.is_owned_by_current_thread() {
            return Err(NotOwner);
        }
        let s = self.state();
        // Relaxed: only the owner thread touches the count.
        let c = s.count.load(Ordering::Relaxed);
        if c > 1 {
            s.count.store(c - 1, Ordering::Relaxed);
            return Ok(());
        }
        s.count.store(0, Ordering::Relaxed);
        s.owner_tid.store(0, Ordering::Relaxed);
        // SAFETY: the calling thread owns the lock (checked above), and this
        // was its last acquisition.
        unsafe { s.mutex.unlock() };
        Ok(())
    }

    /// Releases every acquisition at once and returns how many there were
    /// (for `Condition::wait`).
    pub(crate) fn release_all(&self) -> Result<u32, NotOwner> {
        if !self.is_owned_by_current_thread() {
            return Err(NotOwner);
        }
        let s = self.state();
        // Relaxed: only the owner thread touches the count.
        let c = s.count.swap(0, Ordering::Relaxed).max(1);
        s.owner_tid.store(0, Ordering::Relaxed);
        // SAFETY: the calling thread owns the lock (checked above).
        unsafe { s.mutex.unlock() };
        Ok(c)
    }

    /// Re-acquires `count` times at once after [`RLock::release_all`].
    pub(crate) fn relock(&self, count: u32) -> Acquired {
        let s = self.state();
        let a = s.mutex.lock();
        // Relaxed: see `enter`.
        s.owner_tid.store(current_tid(), Ordering::Relaxed);
        s.count.store(count, Ordering::Relaxed);
        a
    }

    /// Whether the lock is held by anyone right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.state().mutex.is_locked()
    }

    /// The owner's process id right now (a snapshot), if any.
    pub fn owner_pid(&self) -> Option<u32> {
        self.state().mutex.owner_pid()
    }

    /// The owner right now (a snapshot), if any: its process and thread,
    /// readable from any process (CPython's repr shows the owner).
    pub fn owner(&self) -> Option<LockOwner> {
        let s = self.state();
        let pid = s.mutex.owner_pid()?;
        // Relaxed: a snapshot for display; the owner writes it right after
        // taking the mutex, so it may still read 0 for a moment.
        let tid = s.owner_tid.load(Ordering::Relaxed);
        Some(LockOwner { pid, tid })
    }

    /// The recursion count right now (a snapshot): how many acquisitions
    /// the owner holds, 0 when free. Readable from any thread or process,
    /// as in CPython's `<RLock(SomeOtherProcess, 2)>`.
    pub fn count(&self) -> usize {
        if !self.is_locked() {
            return 0;
        }
        // Relaxed: a snapshot; only the owner thread writes the count.
        self.state().count.load(Ordering::Relaxed) as usize
    }
}

// SAFETY: the state's RawMutex gives mutual exclusion across processes;
// re-entry is counted only by the owner thread, and the mutex is released
// with the last acquisition.
unsafe impl RawLock for RLock {
    fn acquire(&self) -> Acquired {
        self.enter(|m| Some(m.lock())).unwrap_or(Acquired::Clean)
    }

    fn try_acquire(&self) -> Option<Acquired> {
        self.enter(RawMutex::try_lock)
    }

    fn acquire_deadline(&self, deadline: Instant) -> Option<Acquired> {
        self.enter(|m| m.lock_deadline(deadline))
    }

    unsafe fn unlock(&self) {
        // A guard is !Send and released on its owner thread, so this cannot
        // fail unless the count was corrupted by another process.
        let r = self.release();
        debug_assert!(r.is_ok(), "RLock guard released by a non-owner");
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // CPython: `<RLock(owner, count)>`.
        f.debug_struct("RLock")
            .field("owner", &self.owner())
            .field("count", &self.count())
            .finish()
    }
}
