//! Cross-process Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event
//! and Barrier in shared memory: the synchronisation primitives of CPython's
//! `multiprocessing`, that survive a dead holder.
//!
//! # Hello, world!
//!
//! ```
//! use mproc_sync::Lock;
//!
//! let lock = Lock::new()?;
//! let guard = match lock.lock() {
//!     Ok(g) => g,
//!     // The previous holder process died holding the lock: the guard is
//!     // handed over anyway, so the protected data can be repaired.
//!     Err(died) => died.into_inner(),
//! };
//! assert!(lock.is_locked());
//! drop(guard);
//! assert!(!lock.is_locked());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Handles
//!
//! Every primitive lives in its own small anonymous shared memory segment
//! (a memfd) whose header is checked on open. The Rust value is a handle:
//! `clone` gives another handle to the same primitive, a forked child
//! inherits it, and serializing it inside
//! [`mproc_shm::handle::collect_fds`] sends its descriptor, so another
//! process (spawned, or started by a fork server) gets the same primitive.
//! Deserializing a segment of another kind, or a corrupt one, is an error.
//!
//! # Blocking operations
//!
//! Each comes as `op()`, `try_op()`, `op_timeout(Duration)` and
//! `op_deadline(Instant)`. A zero timeout tries once. Locks hand out RAII
//! guards.
//!
//! Waiting is a short bounded spin, then a shared futex sleep. The spin
//! budget adapts per thread ([`mproc_shm::mutex::adaptive_spin`]): it
//! shrinks to nothing where spinning does not pay off (the other process is
//! pinned to the same CPU), and there is none with one CPU online; a lock
//! contender also stops spinning when others already sleep. An uncontended
//! lock and unlock is one atomic compare-and-swap and one swap, with no
//! system call; `set` on an [`Event`] nobody waits for makes none either.
//!
//! Handles are `Send + Sync`; guards stay on the thread that took them (an
//! [`RLock`] is owned by a thread):
//!
//! ```compile_fail,E0277
//! fn assert_send<T: Send>() {}
//! assert_send::<mproc_sync::RLockGuard<'static>>();
//! ```
//!
//! ```compile_fail,E0277
//! fn assert_send<T: Send>() {}
//! assert_send::<mproc_sync::LockGuard<'static>>();
//! ```
//!
//! ```
//! fn assert_send_sync<T: Send + Sync>() {}
//! assert_send_sync::<mproc_sync::Lock>();
//! assert_send_sync::<mproc_sync::Barrier>();
//! assert_send_sync::<mproc_sync::Condition>();
//! ```
//!
//! # Dead processes
//!
//! * [`Lock`], [`RLock`]: the lock word names the owner process. A waiter
//!   sleeps in slices of at most
//!   [`LIVENESS_SLICE`](mproc_shm::mutex::LIVENESS_SLICE) and then checks
//!   whether the owner lives; if it died (zombies count as dead), the waiter
//!   takes the lock over and gets [`LockError::OwnerDied`] carrying the
//!   guard. `try_lock` checks too.
//! * [`Semaphore`], [`BoundedSemaphore`]: units held through a
//!   [`SemaphoreGuard`] are recorded per process; a dead process's units go
//!   back, and the acquirer that gets the first sees `OwnerDied`.
//! * [`Barrier`]: a waiter that finds a process that waited on the barrier
//!   dead breaks the barrier, so nobody waits for a dead party for ever.
//! * [`Condition`], [`Event`]: nobody owns them; use the timeout forms.
//!
//! Liveness is judged by process id, so a pid reused by a new process within
//! one slice would look alive (see [`mproc_shm::mutex`]).
//!
//! # Several values under one lock
//!
//! [`Lock`] and [`RLock`] implement [`mproc_shm::ValueLock`], so they can
//! guard shared values: CPython's `Value('q', 0, lock=L)` is
//! [`mproc_shm::Synchronized::new`]`(0i64, &l)`. The values carry (a handle
//! to) the lock to children. Take the lock once and open each value under
//! the guard to keep an invariant between them:
//!
//! ```
//! use mproc_shm::Synchronized;
//!
//! let lock = mproc_sync::Lock::new()?;
//! let a = Synchronized::new(100i64, &lock)?;
//! let b = Synchronized::new(0i64, &lock)?;
//! {
//!     let g = lock.lock().unwrap_or_else(|e| e.into_inner());
//!     let (a, b) = (a.locked(&g)?, b.locked(&g)?); // each checks the guard
//!     a.set(a.get() - 10);
//!     b.set(b.get() + 10);
//!     assert_eq!(a.get() + b.get(), 100);
//! }
//! b.with_lock(|x| *x += 1); // one value, one acquisition
//! assert_eq!((a.get(), b.get()), (90, 11));
//! let other = mproc_sync::Lock::new()?;
//! let g = other.lock().unwrap_or_else(|e| e.into_inner());
//! assert!(a.locked(&g).is_err()); // not a's lock
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Raw forms
//!
//! [`RawSemaphore`], [`RawEvent`] and [`RawCondition`] (with
//! [`mproc_shm::RawMutex`]) are the in-segment forms, [`SharedSync`](mproc_shm::SharedSync),
//! for crates that lay out their own segments.
//!
//! # Waiting on many things, and async
//!
//! [`Event`] is [`Waitable`](mproc_shm::ready::Waitable): `mproc_pipe::wait`
//! reports it while it is set. Its descriptor is a doorbell (an eventfd that
//! travels with the event) rung by `set` only while somebody waits.
//!
//! # Features
//!
//! * `tokio`: `Event::wait_async`, through tokio's reactor (no thread per
//!   waiter; cancellation-safe).
//! * `tracing`: a `tracing` event (`warn`) when any lock here is taken over
//!   from a dead owner: the dead owner's pid and the taker's (emitted by
//!   [`RawMutex`], under every lock).

#![doc(test(attr(deny(warnings))))]

mod barrier;
mod condition;
mod error;
mod event;
mod fuzzing;
#[macro_use]
mod lock;
mod rlock;
mod semaphore;
mod shared;
mod sys;
mod wait;

pub use crate::barrier::{Barrier, MAX_PARTIES};
pub use crate::condition::{Condition, ConditionGuard, RawCondition};
pub use crate::error::{
    BrokenBarrier, CreateError, LockError, LockTimeoutError, NotOwner, OpenError, OverRelease,
    TryLockError, WaitError,
};
pub use crate::event::{Event, RawEvent};
pub use crate::lock::{Lock, LockGuard, LockOwner};
pub use crate::rlock::{RLock, RLockGuard};
pub use crate::semaphore::{
    BoundedSemaphore, RawSemaphore, SEM_VALUE_MAX, Semaphore, SemaphoreGuard,
};
pub use mproc_fnref::FnRefError;
pub use mproc_shm::{Acquired, RawMutex};

/// The entry points of the fuzz targets in `fuzz/` and their corpus-replay
/// tests. Not part of the supported API.
#[doc(hidden)]
pub mod __private {
    pub use crate::fuzzing::open_segment;
}
