//! Locks, semaphores, events, conditions and barriers that live in the
//! manager (CPython's `AcquirerProxy`, `EventProxy`, `ConditionProxy`,
//! `BarrierProxy`).
//!
//! They follow `threading` semantics, as CPython's manager objects do, with
//! one improvement: when a client process disconnects (dies) while holding a
//! `Lock`, `RLock` or `Condition`, the server releases it, and the next
//! acquirer gets it with [`LockError::OwnerDied`] (holding the guard)
//! instead of waiting for ever.
//!
//! Their API has mproc-sync's shape: `lock`, `try_lock`, `lock_timeout`,
//! `lock_deadline` give a guard (a semaphore's `acquire` forms too), owner
//! death is an error that carries the guard, and the guard-less CPython
//! spelling (`acquire`, `try_acquire`, `acquire_timeout`, `release`) is
//! there as in `mproc_sync::Lock`. Each call can also fail as a call
//! (`Call(Error)`: the server is gone).

use std::fmt;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::client::{RawProxy, owner};
use crate::error::{Error, LockError, LockTimeoutError, TryLockError};
use crate::proto::{Acquired as Wire, Kind, Op, Owner, RemoteError, Reply, WaitMs};
use crate::proxy::{boolean, count, proxy_type, unexpected, unit};
use mproc_shm::Acquired;

/// The wire form of a timeout: whole milliseconds, rounded up, so that a
/// wait never ends before the time asked for.
pub(crate) fn wait_ms(timeout: Option<Duration>) -> WaitMs {
    timeout.map(|t| t.as_nanos().div_ceil(1_000_000).min(u64::MAX as u128) as u64)
}

/// The wire form of a deadline (see [`wait_ms`]).
pub(crate) fn until(deadline: Instant) -> WaitMs {
    wait_ms(Some(deadline.saturating_duration_since(Instant::now())))
}

/// Held while a [`Lock`], [`RLock`] or [`Condition`] is acquired through its
/// `lock` methods; releases it when dropped (errors ignored: call
/// [`LockGuard::unlock`] to see them).
///
/// The holder is the acquiring thread, so a guard stays on it:
///
/// ```compile_fail,E0277
/// fn assert_send<T: Send>() {}
/// assert_send::<mproc_manager::LockGuard<'static>>();
/// ```
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockGuard<'a> {
    raw: &'a RawProxy,
    owner: Owner,
    released: bool,
    /// The owner is this thread: the guard must stay on it.
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("id", &self.raw.id)
            .finish()
    }
}

impl LockGuard<'_> {
    /// Releases the lock now.
    ///
    /// # Errors
    /// [`Error::Disconnected`] if the server is gone.
    pub fn unlock(mut self) -> Result<(), Error> {
        self.released = true;
        unit(self.raw.call(Op::Release { owner: self.owner })?)
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = self.raw.call(Op::Release { owner: self.owner });
        }
    }
}

fn acquire(raw: &RawProxy, wait: WaitMs) -> Result<Wire, Error> {
    match raw.call(Op::Acquire {
        owner: owner(),
        wait,
    })? {
        Reply::Acquired(a) => Ok(a),
        r => Err(unexpected(r)),
    }
}

/// Acquires, waiting while `wait` allows: `Ok(None)` if the lock stayed
/// held, `Err(LockError::OwnerDied)` with the guard if its holder had died.
fn guard(raw: &RawProxy, wait: WaitMs) -> Result<Option<LockGuard<'_>>, LockError<LockGuard<'_>>> {
    let held = || LockGuard {
        raw,
        owner: owner(),
        released: false,
        _not_send: PhantomData,
    };
    match acquire(raw, wait)? {
        Wire::No => Ok(None),
        Wire::Yes => Ok(Some(held())),
        Wire::OwnerDied => Err(LockError::OwnerDied(held())),
    }
}

/// The guard forms of `lock`, `try_lock` and `lock_timeout`, from [`guard`].
fn lock_forever(raw: &RawProxy) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
    // Without a limit, the server waits until the lock is free.
    guard(raw, None)?.ok_or_else(|| LockError::Call(Error::from_remote(RemoteError::Timeout)))
}

fn lock_now(raw: &RawProxy) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
    guard(raw, Some(0))?.ok_or(TryLockError::WouldBlock)
}

fn lock_until(
    raw: &RawProxy,
    wait: WaitMs,
) -> Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
    guard(raw, wait)?.ok_or(LockTimeoutError::Timeout)
}

/// The lock methods shared by `Lock`, `RLock` and `Condition`.
macro_rules! lock_methods {
    () => {
        /// Acquires the lock, waiting as long as it takes.
        ///
        /// # Errors
        /// [`LockError::OwnerDied`] (holding the guard) if the previous
        /// holder's process disconnected while holding it;
        /// [`LockError::Call`] with [`Error::Disconnected`] if the server is
        /// gone (checked every call timeout while waiting).
        pub fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
            lock_forever(&self.raw)
        }

        /// Acquires the lock if it is free.
        ///
        /// # Errors
        /// [`TryLockError::WouldBlock`] if it is held;
        /// [`TryLockError::OwnerDied`] and [`TryLockError::Call`] as for `lock`.
        pub fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
            lock_now(&self.raw)
        }

        /// Acquires the lock, waiting up to `timeout`.
        ///
        /// # Errors
        /// [`LockTimeoutError::Timeout`] if it stayed held;
        /// [`LockTimeoutError::OwnerDied`] and [`LockTimeoutError::Call`] as
        /// for `lock`.
        pub fn lock_timeout(
            &self,
            timeout: Duration,
        ) -> Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
            lock_until(&self.raw, wait_ms(Some(timeout)))
        }

        /// Acquires the lock, waiting until `deadline`.
        ///
        /// # Errors
        /// As for `lock_timeout`.
        pub fn lock_deadline(
            &self,
            deadline: Instant,
        ) -> Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
            lock_until(&self.raw, until(deadline))
        }

        /// Acquires without a guard, waiting as long as it takes: CPython's
        /// `acquire()`. Release it with `release`. Returns
        /// [`Acquired::OwnerDied`] if the previous holder's process
        /// disconnected while holding it (the lock is held either way), as
        /// `mproc_sync::Lock::acquire` does.
        ///
        /// # Errors
        /// [`Error::Disconnected`] if the server is gone.
        pub fn acquire(&self) -> Result<Acquired, Error> {
            // Without a limit, the server waits until the lock is free.
            self.acquire_timeout(None)?
                .ok_or_else(|| Error::from_remote(RemoteError::Timeout))
        }

        /// Acquires without a guard if it is free: CPython's
        /// `acquire(False)`. `None` if it is held.
        ///
        /// # Errors
        /// [`Error::Disconnected`].
        pub fn try_acquire(&self) -> Result<Option<Acquired>, Error> {
            self.acquire_timeout(Some(Duration::ZERO))
        }

        /// Acquires without a guard, waiting at most `timeout` (`None`: for
        /// ever): CPython's `acquire(timeout=…)`. `None` if the time ran out.
        ///
        /// # Errors
        /// [`Error::Disconnected`].
        pub fn acquire_timeout(
            &self,
            timeout: Option<Duration>,
        ) -> Result<Option<Acquired>, Error> {
            Ok(match acquire(&self.raw, wait_ms(timeout))? {
                Wire::Yes => Some(Acquired::Clean),
                Wire::OwnerDied => Some(Acquired::OwnerDied),
                Wire::No => None,
            })
        }

        /// CPython's `release()`. A `Lock` may be released by any thread or
        /// process; an `RLock` or `Condition` only by its owning thread.
        ///
        /// # Errors
        /// [`Error::Unlocked`] if it is not held, [`Error::NotOwner`] if
        /// another thread holds an `RLock` or `Condition`.
        pub fn release(&self) -> Result<(), Error> {
            unit(self.raw.call(Op::Release { owner: owner() })?)
        }

        /// Whether the lock is held by anyone.
        ///
        /// # Errors
        /// [`Error::Disconnected`].
        pub fn is_locked(&self) -> Result<bool, Error> {
            match self.raw.call(Op::LockState)? {
                Reply::Held(h, _) => Ok(h),
                r => Err(unexpected(r)),
            }
        }
    };
}

proxy_type! {
    /// A lock in the manager (`threading.Lock` semantics: any process may
    /// release it; releasing it unlocked is [`Error::Unlocked`]; taking it
    /// twice from one thread waits for ever, use [`RLock`] for that).
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc_manager::TryLockError;
    ///
    /// let m = mproc_manager::Manager::start()?;
    /// let lock = m.lock()?;
    /// {
    ///     // `unwrap`, as with std's `Mutex`: the error borrows the lock.
    ///     let _g = lock.lock().unwrap();
    ///     assert!(matches!(lock.try_lock(), Err(TryLockError::WouldBlock)));
    /// }
    /// assert!(lock.try_lock().is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Lock<>, Lock, Kind::Lock
}

impl Lock {
    lock_methods!();
}

proxy_type! {
    /// A re-entrant lock in the manager (`threading.RLock`): the holding
    /// thread may take it again, and only it may release it.
    RLock<>, RLock, Kind::RLock
}

impl RLock {
    lock_methods!();
}

proxy_type! {
    /// A condition variable in the manager, with its own re-entrant lock
    /// (`threading.Condition`).
    Condition<>, Condition, Kind::Condition
}

impl Condition {
    lock_methods!();

    /// Releases the lock (which the caller must hold), waits for a notify,
    /// and takes the lock back.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the caller does not hold the lock.
    pub fn wait(&self) -> Result<(), Error> {
        self.wait_inner(None).map(|_| ())
    }

    /// Like [`Condition::wait`], giving up after `timeout`; returns whether
    /// it was notified (the lock is held again either way).
    ///
    /// # Errors
    /// As for [`Condition::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        self.wait_inner(wait_ms(Some(timeout)))
    }

    /// Like [`Condition::wait`], giving up at `deadline`; returns whether it
    /// was notified.
    ///
    /// # Errors
    /// As for [`Condition::wait`].
    pub fn wait_deadline(&self, deadline: Instant) -> Result<bool, Error> {
        self.wait_inner(until(deadline))
    }

    fn wait_inner(&self, wait: WaitMs) -> Result<bool, Error> {
        boolean(self.raw.call(Op::CondWait {
            owner: owner(),
            wait,
        })?)
    }

    /// Wakes up to `n` waiters; returns how many. The caller must hold the lock.
    ///
    /// # Errors
    /// [`Error::NotOwner`] if the caller does not hold the lock.
    pub fn notify(&self, n: usize) -> Result<usize, Error> {
        Ok(count(self.raw.call(Op::CondNotify {
            owner: owner(),
            n: n as u64,
        })?)? as usize)
    }

    /// Wakes every waiter; returns how many.
    ///
    /// # Errors
    /// As for [`Condition::notify`].
    pub fn notify_all(&self) -> Result<usize, Error> {
        self.notify(usize::MAX)
    }
}

proxy_type! {
    /// A semaphore in the manager (`threading.Semaphore`, or
    /// `BoundedSemaphore` when made with
    /// [`Manager::bounded_semaphore`](crate::Manager::bounded_semaphore)).
    Semaphore<>, Semaphore | BoundedSemaphore, Kind::Semaphore
}

/// One unit of a manager [`Semaphore`]; given back when dropped (errors
/// ignored), like `mproc_sync::SemaphoreGuard`.
///
/// Unlike a lock's, a unit is not recovered when its holder's process dies
/// (the server does not know who holds units, as in CPython).
#[must_use = "the unit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    raw: &'a RawProxy,
}

impl SemaphoreGuard<'_> {
    /// Keeps the unit taken for good (for semaphores used as signals, where
    /// someone else releases).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        let _ = self.raw.call(Op::Release { owner: owner() });
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard")
            .field("id", &self.raw.id)
            .finish()
    }
}

impl Semaphore {
    /// Takes one unit, waiting `wait`: `None` if there was none.
    fn take(&self, wait: WaitMs) -> Result<Option<SemaphoreGuard<'_>>, Error> {
        Ok(match acquire(&self.raw, wait)? {
            Wire::No => None,
            // A semaphore's units are never marked: `OwnerDied` cannot come.
            Wire::Yes | Wire::OwnerDied => Some(SemaphoreGuard { raw: &self.raw }),
        })
    }

    /// Takes one unit, waiting as long as it takes.
    ///
    /// # Errors
    /// [`LockError::Call`] with [`Error::Disconnected`] if the server is
    /// gone. (Never [`LockError::OwnerDied`]: units are not recovered from
    /// dead holders.)
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>, LockError<SemaphoreGuard<'_>>> {
        // Without a limit, the server waits until a unit is free.
        self.take(None)?
            .ok_or_else(|| LockError::Call(Error::from_remote(RemoteError::Timeout)))
    }

    /// Takes one unit if one is available now.
    ///
    /// # Errors
    /// [`TryLockError::WouldBlock`] if none is; [`TryLockError::Call`] as
    /// for `acquire`.
    pub fn try_acquire(&self) -> Result<SemaphoreGuard<'_>, TryLockError<SemaphoreGuard<'_>>> {
        self.take(Some(0))?.ok_or(TryLockError::WouldBlock)
    }

    /// Takes one unit, waiting up to `timeout`.
    ///
    /// # Errors
    /// [`LockTimeoutError::Timeout`] when the time runs out;
    /// [`LockTimeoutError::Call`] as for `acquire`.
    pub fn acquire_timeout(
        &self,
        timeout: Duration,
    ) -> Result<SemaphoreGuard<'_>, LockTimeoutError<SemaphoreGuard<'_>>> {
        self.take(wait_ms(Some(timeout)))?
            .ok_or(LockTimeoutError::Timeout)
    }

    /// Takes one unit, waiting until `deadline`.
    ///
    /// # Errors
    /// As for [`Semaphore::acquire_timeout`].
    pub fn acquire_deadline(
        &self,
        deadline: Instant,
    ) -> Result<SemaphoreGuard<'_>, LockTimeoutError<SemaphoreGuard<'_>>> {
        self.take(until(deadline))?.ok_or(LockTimeoutError::Timeout)
    }

    /// Adds one unit (CPython's `release()`); any thread or process may.
    ///
    /// # Errors
    /// [`Error::OverRelease`] for a bounded semaphore at its initial value.
    pub fn release(&self) -> Result<(), Error> {
        unit(self.raw.call(Op::Release { owner: owner() })?)
    }

    /// The current value.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn value(&self) -> Result<usize, Error> {
        match self.raw.call(Op::LockState)? {
            // Lossless on the 64-bit targets mproc supports.
            Reply::Held(_, v) => Ok(v as usize),
            r => Err(unexpected(r)),
        }
    }
}

proxy_type! {
    /// An event in the manager (`threading.Event`).
    Event<>, Event, Kind::Event
}

impl Event {
    /// Sets the flag and wakes every waiter.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn set(&self) -> Result<(), Error> {
        unit(self.raw.call(Op::EventSet)?)
    }

    /// Clears the flag.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn clear(&self) -> Result<(), Error> {
        unit(self.raw.call(Op::EventClear)?)
    }

    /// Whether the flag is set.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn is_set(&self) -> Result<bool, Error> {
        boolean(self.raw.call(Op::EventIsSet)?)
    }

    /// Waits until the flag is set.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn wait(&self) -> Result<(), Error> {
        boolean(self.raw.call(Op::EventWait(None))?).map(|_| ())
    }

    /// Waits up to `timeout` for the flag; returns whether it is set.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        boolean(self.raw.call(Op::EventWait(wait_ms(Some(timeout))))?)
    }

    /// Waits until `deadline` for the flag; returns whether it is set.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn wait_deadline(&self, deadline: Instant) -> Result<bool, Error> {
        boolean(self.raw.call(Op::EventWait(until(deadline)))?)
    }
}

proxy_type! {
    /// A barrier in the manager (`threading.Barrier`, without an action).
    Barrier<>, Barrier, Kind::Barrier
}

impl Barrier {
    /// Waits until `parties` callers wait; returns this caller's arrival
    /// index (0 for the first, as CPython's `wait()`).
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken.
    pub fn wait(&self) -> Result<usize, Error> {
        Ok(count(self.raw.call(Op::BarrierWait(None))?)? as usize)
    }

    /// Like [`Barrier::wait`], giving up after `timeout`, which breaks the
    /// barrier (as in CPython).
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] on a timeout or a broken barrier.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, Error> {
        Ok(count(self.raw.call(Op::BarrierWait(wait_ms(Some(timeout))))?)? as usize)
    }

    /// Like [`Barrier::wait`], giving up at `deadline` (which breaks the barrier).
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] on a timeout or a broken barrier.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<usize, Error> {
        Ok(count(self.raw.call(Op::BarrierWait(until(deadline)))?)? as usize)
    }

    /// Returns the barrier to its initial state; current waiters get
    /// [`Error::BrokenBarrier`].
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn reset(&self) -> Result<(), Error> {
        unit(self.raw.call(Op::BarrierReset)?)
    }

    /// Breaks the barrier: current and future waiters get
    /// [`Error::BrokenBarrier`] until [`Barrier::reset`].
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn abort(&self) -> Result<(), Error> {
        unit(self.raw.call(Op::BarrierAbort)?)
    }

    fn info(&self) -> Result<(u64, u64, bool), Error> {
        match self.raw.call(Op::BarrierInfo)? {
            Reply::Barrier(p, w, b) => Ok((p, w, b)),
            r => Err(unexpected(r)),
        }
    }

    /// How many parties it waits for.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn parties(&self) -> Result<usize, Error> {
        Ok(self.info()?.0 as usize)
    }

    /// How many are waiting now.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn n_waiting(&self) -> Result<usize, Error> {
        Ok(self.info()?.1 as usize)
    }

    /// Whether it is broken.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn broken(&self) -> Result<bool, Error> {
        Ok(self.info()?.2)
    }
}
