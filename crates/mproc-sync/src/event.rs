//! `Event`, and the raw in-segment event.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::ready::{Doorbell, Waitable};
use mproc_shm::{Segment, SharedSync, futex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use crate::error::{CreateError, OpenError};
use crate::shared::{Shared, kind};
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

const TAG: &str = "mproc-sync Event v3";

/// An [`Event`]'s segment: the flag, and how many wait on its doorbell.
#[repr(C)]
#[derive(Debug, Default)]
struct EventState {
    raw: RawEvent,
    /// Doorbell waiters (see [`Waitable`]): `set` rings only while non-zero.
    bells: AtomicU32,
}

// SAFETY: repr(C) of a RawEvent (SharedSync) and an atomic; every bit
// pattern is valid.
unsafe impl SharedSync for EventState {}

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
///
/// An event is [`Waitable`]: `mproc_pipe::wait` reports it while it is set.
/// Its descriptor is a doorbell (an eventfd that travels with the event)
/// that `set` rings only while somebody waits on it.
#[derive(Clone)]
pub struct Event {
    shared: Shared<EventState>,
    bell: Arc<Doorbell>,
}

impl Event {
    /// A new clear event in its own shared memory segment.
    ///
    /// # Errors
    /// [`CreateError::Segment`] if the segment cannot be made.
    pub fn new() -> Result<Self, CreateError> {
        Ok(Self {
            shared: Shared::create(kind::EVENT, TAG, [0; 4], |_| {})?,
            bell: Arc::new(
                Doorbell::new()
                    .map_err(|e| CreateError::Segment(mproc_shm::SegmentError::Io(e)))?,
            ),
        })
    }

    /// Opens a segment that holds an `Event`.
    ///
    /// The segment does not carry the event's doorbell, so this handle gets
    /// one of its own: [`wait`](Self::wait) and friends see every `set`, but
    /// `mproc_pipe::wait` and `wait_async` on this handle are woken only by
    /// sets made through it (pass the `Event` itself to other processes to
    /// keep one doorbell).
    ///
    /// # Errors
    /// [`OpenError`] if the segment holds something else or is corrupt, or
    /// no doorbell can be made.
    pub fn from_segment(seg: Segment) -> Result<Self, OpenError> {
        Ok(Self {
            shared: Shared::open(seg, kind::EVENT, TAG)?.0,
            bell: Arc::new(
                Doorbell::new().map_err(|e| OpenError::Segment(mproc_shm::SegmentError::Io(e)))?,
            ),
        })
    }

    fn raw(&self) -> &RawEvent {
        &self.shared.get().raw
    }

    /// The shared memory segment of this event.
    pub fn segment(&self) -> &Segment {
        self.shared.segment()
    }

    /// Whether the flag is set (a snapshot).
    pub fn is_set(&self) -> bool {
        self.raw().is_set()
    }

    /// Sets the flag (idempotent) and wakes every waiter.
    pub fn set(&self) {
        self.raw().set();
        // SeqCst: after the SeqCst update of the flag in `RawEvent::set`;
        // pairs with the count and fence in `register`, so a doorbell
        // waiter either is counted here or sees the flag.
        if self.shared.get().bells.load(Ordering::SeqCst) != 0 {
            self.bell.ring();
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.raw().clear();
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) {
        self.raw().wait();
    }

    /// Awaits the flag (the async [`wait`](Self::wait)), through the
    /// event's doorbell and the tokio runtime's reactor: no thread waits.
    /// Cancellation-safe (dropping the future withdraws its registration).
    ///
    /// # Errors
    /// The OS error if the doorbell cannot be watched (no tokio runtime,
    /// out of descriptors).
    #[cfg(feature = "tokio")]
    pub async fn wait_async(&self) -> std::io::Result<()> {
        mproc_shm::ready::ready(self).await
    }

    /// Waits at most `timeout` (zero: check once); returns whether the flag
    /// is set on return (CPython's `wait(timeout)`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.raw().wait_timeout(timeout)
    }

    /// Waits until `deadline` at most; returns whether the flag is set.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.raw().wait_deadline(deadline)
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
        (&self.shared, &*self.bell).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        /// The segment, then the doorbell (see `serialize`).
        #[derive(Deserialize)]
        struct Wire(Segment, Doorbell);
        let Wire(seg, bell) = Wire::deserialize(d)?;
        let shared = Shared::open(seg, kind::EVENT, TAG)
            .map_err(D::Error::custom)?
            .0;
        Ok(Self {
            shared,
            bell: Arc::new(bell),
        })
    }
}

/// Ready while the flag is set.
impl Waitable for Event {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    fn ready_now(&self) -> bool {
        self.is_set()
    }

    fn is_doorbell(&self) -> bool {
        true
    }

    fn register(&self) {
        // SeqCst, then a fence before the caller looks at the flag: pairs
        // with the SeqCst flag update and count load in `set`.
        self.shared.get().bells.fetch_add(1, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    fn unregister(&self) {
        // Relaxed: a stale count costs at most a spurious ring.
        let _ = self
            .shared
            .get()
            .bells
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1));
    }

    fn rearm(&self) {
        self.bell.drain();
        // SeqCst: as in `register`; `set` rings while the count is non-zero,
        // so only a set that came before the drain needs ringing again.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.is_set() {
            self.bell.ring();
        }
    }
}
