//! `Event`, and the raw in-segment event.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::{Segment, SharedSync, futex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{CreateError, OpenError};
use crate::shared::{Shared, deserialize_shared, kind};
use crate::wait::{Slept, deadline_after, sleep, spin_until};

/// A flag that processes can wait on, in shared memory: the raw form of
/// [`Event`] for crates that lay out their own segments.
///
/// `set` makes no system call when nobody sleeps; `wait` spins briefly (when
/// this process may use more than one CPU) before it sleeps on a futex.
///
/// Every `set` of a clear flag starts a new generation, so a waiter that was
/// waiting when the flag was set returns `true` even if the flag was
/// cleared again before it ran (as `threading.Event` does): a quick
/// set-then-clear wakes every waiter instead of being missed.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawEvent {
    /// Bit 0: set; the other bits count the sets of a clear flag (the
    /// generation). The futex word.
    flag: AtomicU32,
    /// How many waiters may be asleep (a hint for `set`).
    waiters: AtomicU32,
}

// SAFETY: repr(C) of atomics; every bit pattern is valid (bit 0 is the flag,
// the rest a wrapping count).
unsafe impl SharedSync for RawEvent {}

impl RawEvent {
    /// A clear event.
    pub const fn new() -> Self {
        Self {
            flag: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    /// Whether the flag is set (a snapshot).
    #[inline]
    pub fn is_set(&self) -> bool {
        // Acquire: pairs with the store in `set`, so what the setter wrote
        // before setting is visible once the flag is seen.
        self.flag.load(Ordering::Acquire) & SET != 0
    }

    /// Sets the flag and wakes every waiter.
    #[inline]
    pub fn set(&self) {
        // SeqCst: publishes the setter's writes (Release) and orders against
        // the waiter count load (pairs with the SeqCst increment in `wait`).
        let was = self
            .flag
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |w| {
                // A new generation (the count in the upper bits), flag set.
                (w & SET == 0).then(|| (w | SET).wrapping_add(2))
            });
        if was.is_ok() && self.waiters.load(Ordering::SeqCst) > 0 {
            futex::wake(&self.flag, u32::MAX);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        // Relaxed: clearing publishes nothing; waiters re-check the flag.
        self.flag.fetch_and(!SET, Ordering::Relaxed);
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        while !self.wait_inner(None) {}
    }

    /// Waits at most `timeout` (zero: check once) for the flag; returns
    /// whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_inner(deadline_after(timeout))
    }

    /// Waits until `deadline` at most for the flag; returns whether it is set.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.wait_inner(Some(deadline))
    }

    fn wait_inner(&self, deadline: Option<Instant>) -> bool {
        // Acquire: as in `is_set`.
        let start = self.flag.load(Ordering::Acquire);
        if start & SET != 0 {
            return true;
        }
        // Set since `start` (now, or set and cleared again meanwhile).
        let signalled = || self.flag.load(Ordering::Acquire) != start;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        if spin_until(signalled) {
            return true;
        }
        loop {
            // SeqCst: see `set`.
            self.waiters.fetch_add(1, Ordering::SeqCst);
            // Nobody owns an event, so there is no liveness to check: without
            // a deadline, sleep until woken.
            let r = match deadline {
                None => {
                    futex::wait(&self.flag, start, None);
                    Slept::Woken
                }
                Some(_) => sleep(&self.flag, start, deadline),
            };
            // Relaxed: a hint only.
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            if signalled() {
                return true;
            }
            if r == Slept::DeadlinePassed {
                return false;
            }
        }
    }
}

/// The flag bit of `RawEvent::flag`.
const SET: u32 = 1;

const TAG: &str = "mproc-sync RawEvent v2";

/// A flag shared between processes, like CPython's `multiprocessing.Event`:
/// [`Event::set`] wakes every process waiting in [`Event::wait`].
///
/// Nobody owns an event, so there is no dead holder to recover: a waiter
/// that must not wait for ever uses [`Event::wait_timeout`].
///
/// # Examples
///
/// ```
/// let ev = mproc_sync::Event::new()?;
/// assert!(!ev.wait_timeout(std::time::Duration::ZERO));
/// ev.set();
/// ev.wait();
/// assert!(ev.is_set());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Event {
    shared: Shared<RawEvent>,
}

impl Event {
    /// A new clear event in its own shared memory segment.
    ///
    /// # Errors
    /// [`CreateError::Segment`] if the segment cannot be made.
    pub fn new() -> Result<Self, CreateError> {
        Ok(Self {
            shared: Shared::create(kind::EVENT, TAG, [0; 4], |_| {})?,
        })
    }

    /// Opens a segment that holds an `Event`.
    ///
    /// # Errors
    /// [`OpenError`] if the segment holds something else or is corrupt.
    pub fn from_segment(seg: Segment) -> Result<Self, OpenError> {
        Ok(Self {
            shared: Shared::open(seg, kind::EVENT, TAG)?.0,
        })
    }

    /// The shared memory segment of this event.
    pub fn segment(&self) -> &Segment {
        self.shared.segment()
    }

    /// Whether the flag is set (a snapshot).
    pub fn is_set(&self) -> bool {
        self.shared.get().is_set()
    }

    /// Sets the flag (idempotent) and wakes every waiter.
    pub fn set(&self) {
        self.shared.get().set();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.shared.get().clear();
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        self.shared.get().wait();
    }

    /// Waits at most `timeout` (zero: check once); returns whether the flag
    /// is set on return (CPython's `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.shared.get().wait_timeout(timeout)
    }

    /// Waits until `deadline` at most; returns whether the flag is set.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.shared.get().wait_deadline(deadline)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shared.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self {
            shared: deserialize_shared(d, kind::EVENT, TAG)?.0,
        })
    }
}
