//! The raw cross-process mutex that every mproc lock is built on.
//!
//! (Foundation version: a three-state futex mutex. The mproc-sync work
//! replaces its internals with owner-death recovery and spin-then-sleep,
//! keeping this API.)

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::futex;
use crate::layout::SharedSync;

/// How a lock was acquired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "an OwnerDied acquisition means the protected data may be inconsistent"]
pub enum Acquired {
    /// The previous holder released the lock normally.
    Clean,
    /// The previous holder died while holding the lock; the data it protects
    /// may be half-updated.
    OwnerDied,
}

/// A mutex word that lives in shared memory. All zeros is unlocked.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawMutex {
    word: AtomicU32,
    aux: AtomicU32,
}

// SAFETY: repr(C) of atomics only; all zeros is the unlocked state and every
// bit pattern is a valid (if possibly meaningless) lock word.
unsafe impl SharedSync for RawMutex {}

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;
const CONTENDED: u32 = 2;

impl RawMutex {
    /// An unlocked mutex.
    pub const fn new() -> Self {
        Self { word: AtomicU32::new(0), aux: AtomicU32::new(0) }
    }

    /// Acquires the lock, blocking until it is free.
    pub fn lock(&self) -> Acquired {
        loop {
            if let Some(a) = self.lock_deadline(Instant::now() + Duration::from_secs(3600)) {
                return a;
            }
        }
    }

    /// Acquires the lock if it is free right now.
    pub fn try_lock(&self) -> Option<Acquired> {
        // Acquire: pairs with the Release store in `unlock`.
        self.word
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Acquired::Clean)
    }

    /// Acquires the lock, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<Acquired> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.lock_deadline(d),
            None => Some(self.lock()),
        }
    }

    /// Acquires the lock, waiting until `deadline` at most.
    pub fn lock_deadline(&self, deadline: Instant) -> Option<Acquired> {
        if let Some(a) = self.try_lock() {
            return Some(a);
        }
        loop {
            // Acquire: pairs with the Release store in `unlock`.
            if self.word.swap(CONTENDED, Ordering::Acquire) == UNLOCKED {
                return Some(Acquired::Clean);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            futex::wait(&self.word, CONTENDED, Some(deadline - now));
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The lock must be held (by this or, for a non-owner-checked lock,
    /// another process), and the caller must not touch the protected data
    /// after this call until it locks again.
    pub unsafe fn unlock(&self) {
        // Release: publishes the protected data; pairs with Acquire in lock.
        if self.word.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex::wake(&self.word, 1);
        }
    }

    /// Whether the lock is held right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != UNLOCKED
    }
}
