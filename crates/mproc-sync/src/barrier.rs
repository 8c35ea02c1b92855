//! `Barrier`: parties wait until all have arrived.

use std::fmt;
use std::marker::PhantomData;
use std::panic::{catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mproc_fnref::{Desc, ExeId, FnRef, FnRefError};

use mproc_shm::mutex::{current_pid, process_alive};
use mproc_shm::{RawMutex, Segment, SharedSync, futex};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{BrokenBarrier, CreateError, OpenError};
use crate::shared::{Shared, deserialize_shared, kind};
use crate::wait::{Slept, deadline_after, sleep, spin_until};

/// How many distinct processes that waited are remembered, to notice one
/// that dies.
const KNOWN: usize = 64;

/// The largest number of parties.
pub const MAX_PARTIES: usize = MAX_PARTIES_U32 as usize;

/// [`MAX_PARTIES`] in the width of the in-segment counts.
const MAX_PARTIES_U32: u32 = 1 << 20;

#[repr(C)]
pub(crate) struct BarrierState {
    /// Protects everything below (held only for a few instructions, and
    /// while the last arriver runs the action).
    lock: RawMutex,
    /// The generation number; bumped when a generation ends. The futex word.
    generation: AtomicU32,
    /// How many parties have arrived in the current generation.
    count: AtomicU32,
    /// Non-zero while broken (until `reset`).
    broken: AtomicU32,
    _reserved: AtomicU32,
    /// Bit `g % 64` is set iff generation `g` ended broken.
    history: AtomicU64,
    /// Processes that have waited on this barrier (0: free slot).
    known: [AtomicU32; KNOWN],
    /// The default timeout of `wait`, in nanoseconds plus one (0: none).
    timeout: AtomicU64,
    /// Non-zero when `action` holds an action. Written under the lock.
    has_action: AtomicU32,
    _reserved2: AtomicU32,
    /// The action: a function reference (offset, then the identity of the
    /// executable that made it). Written and read under the lock.
    action: [AtomicU64; 6],
}

// SAFETY: repr(C) of SharedSync fields (atomics); every bit pattern is valid
// (counts are checked against the parties, impossible pids are dead).
unsafe impl SharedSync for BarrierState {}

const TAG: &str = "mproc-sync BarrierState v2";

/// What an action is called through.
type ActionFn = fn();

/// Carries the descriptor of one action.
struct Tramp<F>(PhantomData<F>);

impl<F: Fn() + Copy + Send + 'static> Tramp<F> {
    const DESC: Desc<ActionFn> = Desc::new(run_action::<F>);
}

/// Runs the action `F` (in whichever process arrives last).
fn run_action<F: Fn() + Copy + Send + 'static>() {
    mproc_fnref::assert_zst::<F>();
    // SAFETY: `F` is zero-sized (checked at compile time above) and `Copy`:
    // its one value has no bytes, so conjuring it is copying the one that
    // `Barrier::with_action` was given.
    let f: F = unsafe { std::mem::zeroed() };
    f()
}

/// A barrier shared between processes, like CPython's
/// `multiprocessing.Barrier` (`threading.Barrier`).
///
/// `parties` processes (or threads) call [`Barrier::wait`]; they all block
/// until the last arrives, then all return, each with a distinct arrival
/// index (the first arriver gets 0). The last arriver first runs the
/// barrier's action, if it has one: exactly once per generation, in
/// whichever process arrives last.
///
/// The barrier breaks, making every current and future `wait` fail with
/// [`BrokenBarrier`] until [`Barrier::reset`], when: [`Barrier::abort`] is
/// called; a waiter's timeout passes (it breaks the barrier for all, as in
/// CPython); the action panics; or a process that has waited on the barrier
/// is found dead by a waiter (checked every liveness slice, so within tens of
/// milliseconds). `reset` while parties wait makes them fail with
/// `BrokenBarrier` and leaves the barrier usable.
///
/// The barrier remembers up to 64 processes that waited on it. One that has
/// since exited, even normally, breaks the next wait that notices it: a
/// barrier that outlives some of its parties (for example to be reused by
/// new processes) must be [`Barrier::reset`] first, which forgets them.
///
/// The action ([`Barrier::with_action`]) and the default timeout
/// ([`Barrier::with_timeout`]) are part of the barrier, in its shared
/// memory: every handle, in every process, sees them. The action travels by
/// reference (a `fn` item or a closure that captures nothing, like every
/// function mproc runs in another process), so the processes that may
/// arrive last must run the same executable as the one that set it; in
/// another one, resolving it fails and the barrier breaks instead.
///
/// # Examples
///
/// ```
/// let b = mproc_sync::Barrier::new(1)?;
/// assert_eq!(b.wait(), Ok(0)); // one party: never blocks
/// b.abort();
/// assert!(b.wait().is_err());
/// b.reset();
/// assert_eq!(b.wait(), Ok(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    shared: Shared<BarrierState>,
    parties: u32,
}

impl Barrier {
    /// A barrier for `parties` parties (1 to [`MAX_PARTIES`]).
    ///
    /// # Errors
    /// [`CreateError::InvalidArgument`] for 0 or too many parties;
    /// [`CreateError::Segment`] if the segment cannot be made.
    pub fn new(parties: usize) -> Result<Self, CreateError> {
        let parties = u32::try_from(parties)
            .ok()
            .filter(|&p| p > 0 && p <= MAX_PARTIES_U32)
            .ok_or(CreateError::InvalidArgument(
                "a barrier needs 1 to MAX_PARTIES parties",
            ))?;
        let shared = Shared::create(kind::BARRIER, TAG, [u64::from(parties), 0, 0, 0], |_| {})?;
        Ok(Self { shared, parties })
    }

    /// Opens a segment that holds a `Barrier`.
    ///
    /// # Errors
    /// [`OpenError`] if the segment holds something else or is corrupt.
    pub fn from_segment(seg: Segment) -> Result<Self, OpenError> {
        let (shared, params) = Shared::open(seg, kind::BARRIER, TAG)?;
        Ok(Self {
            shared,
            parties: check_parties(params[0])?,
        })
    }

    /// The barrier with `action`, run by the last arriver of each
    /// generation, in whichever process that is, before anyone is released
    /// (CPython's `Barrier(parties, action)`). If it panics, the barrier
    /// breaks and the panic continues in that party.
    ///
    /// `action` is a `fn` item or a closure that captures nothing (anything
    /// else does not compile): it reaches other processes by reference. It
    /// finds shared state the way any function run in another process does,
    /// for example through a static set up in each process.
    ///
    /// # Errors
    /// [`FnRefError`] if the running executable cannot be identified (off
    /// Linux: [`FnRefError::Unsupported`]).
    ///
    /// # Examples
    ///
    /// ```
    /// fn report() {
    ///     println!("all here");
    /// }
    ///
    /// let b = mproc_sync::Barrier::new(1)?.with_action(report)?;
    /// assert_eq!(b.wait(), Ok(0)); // prints "all here"
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_action<F>(self, action: F) -> Result<Self, FnRefError>
    where
        F: Fn() + Copy + Send + 'static,
    {
        self.set_action(action)?;
        Ok(self)
    }

    /// Sets or replaces the barrier's action (for every handle, in every
    /// process), as [`Barrier::with_action`].
    ///
    /// # Errors
    /// As [`Barrier::with_action`].
    pub fn set_action<F>(&self, action: F) -> Result<(), FnRefError>
    where
        F: Fn() + Copy + Send + 'static,
    {
        mproc_fnref::assert_zst::<F>();
        let _ = action;
        let r = FnRef::new(&Tramp::<F>::DESC)?;
        let e = r.exe();
        let words = [
            r.offset() as u64,
            e.dev,
            e.ino,
            e.size,
            e.mtime as u64,
            e.mtime_nsec as u64,
        ];
        let g = self.lock();
        for (slot, w) in g.s.action.iter().zip(words) {
            // Relaxed: under the internal lock, which the last arriver holds
            // when it reads them.
            slot.store(w, Ordering::Relaxed);
        }
        g.s.has_action.store(1, Ordering::Relaxed);
        Ok(())
    }

    /// The barrier's action, if it has one. Call with the state locked.
    fn action(g: &StateGuard<'_>) -> Option<FnRef<ActionFn>> {
        // Relaxed: under the internal lock.
        if g.s.has_action.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let w = g.s.action.each_ref().map(|a| a.load(Ordering::Relaxed));
        let exe = ExeId {
            dev: w[1],
            ino: w[2],
            size: w[3],
            mtime: w[4] as i64,
            mtime_nsec: w[5] as i64,
        };
        Some(FnRef::from_parts(w[0] as i64, exe))
    }

    /// Whether the barrier has an action (a snapshot).
    pub fn has_action(&self) -> bool {
        // Relaxed: a snapshot.
        self.state().has_action.load(Ordering::Relaxed) != 0
    }

    /// The barrier with a default timeout for [`Barrier::wait`], for every
    /// handle in every process (CPython's `Barrier(parties, action,
    /// timeout)`): a party that waits longer breaks the barrier for all.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX - 1);
        // Relaxed: a plain setting; a wait that starts later in this thread
        // sees it, and other processes receive the barrier after this.
        self.state().timeout.store(ns + 1, Ordering::Relaxed);
        self
    }

    /// The default timeout of [`Barrier::wait`], if any.
    pub fn timeout(&self) -> Option<Duration> {
        // Relaxed: see `with_timeout`.
        match self.state().timeout.load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n - 1)),
        }
    }

    /// The shared memory segment of this barrier.
    pub fn segment(&self) -> &Segment {
        self.shared.segment()
    }

    /// The number of parties.
    pub fn parties(&self) -> usize {
        self.parties as usize
    }

    /// How many parties wait right now (a snapshot).
    pub fn n_waiting(&self) -> usize {
        let s = self.state();
        // Relaxed: a snapshot.
        if s.broken.load(Ordering::Relaxed) != 0 {
            0
        } else {
            s.count.load(Ordering::Relaxed).min(self.parties) as usize
        }
    }

    /// Whether the barrier is broken (a snapshot).
    pub fn broken(&self) -> bool {
        // Relaxed: a snapshot.
        self.state().broken.load(Ordering::Relaxed) != 0
    }

    fn state(&self) -> &BarrierState {
        self.shared.get()
    }

    /// Waits until all parties have arrived (or for the barrier's default
    /// timeout); returns this party's arrival index, `0..parties`.
    ///
    /// # Errors
    /// [`BrokenBarrier`] if the barrier is or becomes broken (see the type's
    /// documentation).
    pub fn wait(&self) -> Result<usize, BrokenBarrier> {
        match self.timeout() {
            Some(t) => self.wait_timeout(t),
            None => self.wait_index(None),
        }
    }

    /// Waits at most `timeout`. A timeout breaks the barrier for everyone.
    ///
    /// # Errors
    /// As [`Barrier::wait`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize, BrokenBarrier> {
        self.wait_index(Some(deadline_after(timeout).unwrap_or_else(far_future)))
    }

    /// Waits until `deadline` at most; breaks the barrier if it passes.
    ///
    /// # Errors
    /// As [`Barrier::wait`].
    pub fn wait_deadline(&self, deadline: Instant) -> Result<usize, BrokenBarrier> {
        self.wait_index(Some(deadline))
    }

    fn wait_index(&self, deadline: Option<Instant>) -> Result<usize, BrokenBarrier> {
        self.wait_inner(deadline).map(|i| i as usize)
    }

    /// Locks the state; a dead holder of the internal lock breaks the barrier.
    fn lock(&self) -> StateGuard<'_> {
        let s = self.state();
        if s.lock.lock() == mproc_shm::Acquired::OwnerDied {
            // The state may be half-updated: break the barrier for everyone.
            let g = StateGuard { s };
            self.break_locked(&g);
            return g;
        }
        StateGuard { s }
    }

    /// Ends the current generation as broken. Call with the state locked.
    fn break_locked(&self, g: &StateGuard<'_>) {
        let s = g.s;
        // Relaxed: all under the internal lock; waiters read after `generation`.
        s.broken.store(1, Ordering::Relaxed);
        if s.count.load(Ordering::Relaxed) > 0 {
            let gen_now = s.generation.load(Ordering::Relaxed);
            s.history.fetch_or(1 << (gen_now % 64), Ordering::Relaxed);
            self.next_generation(g);
        }
    }

    /// Starts a new generation and releases the waiters of the old one.
    fn next_generation(&self, g: &StateGuard<'_>) {
        let s = g.s;
        // Relaxed: under the internal lock.
        s.count.store(0, Ordering::Relaxed);
        let next = s.generation.load(Ordering::Relaxed).wrapping_add(1);
        s.history.fetch_and(!(1 << (next % 64)), Ordering::Relaxed);
        // Release: publishes the outcome (history, broken) to waiters, which
        // read `generation` with Acquire.
        s.generation.store(next, Ordering::Release);
        futex::wake(&s.generation, u32::MAX);
    }

    fn remember_me(&self) {
        let me = current_pid();
        let known = &self.state().known;
        if known.iter().any(|k| k.load(Ordering::Relaxed) == me) {
            return;
        }
        for k in known {
            // Relaxed: bookkeeping for liveness checks only.
            if k.compare_exchange(0, me, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    fn a_party_died(&self) -> bool {
        self.state().known.iter().any(|k| {
            // Relaxed: bookkeeping only.
            let pid = k.load(Ordering::Relaxed);
            pid != 0 && !process_alive(pid)
        })
    }

    fn wait_inner(&self, deadline: Option<Instant>) -> Result<u32, BrokenBarrier> {
        self.remember_me();
        let g = self.lock();
        let s = g.s;
        // Relaxed: under the internal lock.
        if s.broken.load(Ordering::Relaxed) != 0 {
            return Err(BrokenBarrier);
        }
        let index = s.count.load(Ordering::Relaxed);
        if index >= self.parties {
            // Corrupt count: do not trust it.
            self.break_locked(&g);
            return Err(BrokenBarrier);
        }
        if index + 1 == self.parties {
            if let Some(action) = Self::action(&g) {
                // An action this process cannot run (another executable made
                // it, or the memory is corrupt) fails like one that panics,
                // without the panic.
                let Ok(action) = action.resolve() else {
                    s.count.store(index + 1, Ordering::Relaxed);
                    self.break_locked(&g);
                    return Err(BrokenBarrier);
                };
                if let Err(p) = catch_unwind(action) {
                    s.count.store(index + 1, Ordering::Relaxed);
                    self.break_locked(&g);
                    drop(g);
                    resume_unwind(p);
                }
            }
            self.next_generation(&g);
            return Ok(index);
        }
        s.count.store(index + 1, Ordering::Relaxed);
        let generation = s.generation.load(Ordering::Relaxed);
        drop(g);
        loop {
            // Acquire: pairs with the Release store in `next_generation`.
            let done = || s.generation.load(Ordering::Acquire) != generation;
            let slept = if spin_until(done) {
                Slept::Woken
            } else {
                sleep(&s.generation, generation, deadline)
            };
            if done() {
                // Relaxed: ordered by the Acquire load of `generation` above.
                let broken = s.history.load(Ordering::Relaxed) & (1 << (generation % 64)) != 0;
                return if broken {
                    Err(BrokenBarrier)
                } else {
                    Ok(index)
                };
            }
            let give_up = match slept {
                Slept::Woken => false,
                Slept::SliceOver => self.a_party_died(),
                Slept::DeadlinePassed => true,
            };
            if give_up {
                let g = self.lock();
                if g.s.generation.load(Ordering::Relaxed) == generation {
                    self.break_locked(&g);
                    return Err(BrokenBarrier);
                }
                // The generation ended meanwhile: report its outcome.
            }
        }
    }

    /// Breaks the barrier: every current and future `wait` fails with
    /// [`BrokenBarrier`] until [`Barrier::reset`].
    pub fn abort(&self) {
        let g = self.lock();
        self.break_locked(&g);
    }

    /// Returns the barrier to its initial state. Parties waiting now fail
    /// with [`BrokenBarrier`]; the processes remembered for liveness checks
    /// are forgotten.
    pub fn reset(&self) {
        let g = self.lock();
        let s = g.s;
        // Relaxed: under the internal lock.
        if s.count.load(Ordering::Relaxed) > 0 {
            let gen_now = s.generation.load(Ordering::Relaxed);
            s.history.fetch_or(1 << (gen_now % 64), Ordering::Relaxed);
            self.next_generation(&g);
        }
        s.broken.store(0, Ordering::Relaxed);
        for k in &s.known {
            k.store(0, Ordering::Relaxed);
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600)
}

fn check_parties(p: u64) -> Result<u32, OpenError> {
    u32::try_from(p)
        .ok()
        .filter(|&p| p > 0 && p <= MAX_PARTIES_U32)
        .ok_or(OpenError::Corrupt("barrier parties out of range"))
}

struct StateGuard<'a> {
    s: &'a BarrierState,
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: a StateGuard exists only while this thread holds the
        // internal lock (made in `Barrier::lock`).
        unsafe { self.s.lock.unlock() };
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .field("has_action", &self.has_action())
            .finish()
    }
}

impl Serialize for Barrier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shared.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (shared, params) = deserialize_shared(d, kind::BARRIER, TAG)?;
        let parties = check_parties(params[0]).map_err(serde::de::Error::custom)?;
        Ok(Self { shared, parties })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_that_does_not_resolve_breaks_the_barrier() {
        fn nothing() {}
        let b = Barrier::new(1).unwrap().with_action(nothing).unwrap();
        assert_eq!(b.wait(), Ok(0));
        // Another process wrote a reference to no function (or the memory
        // is corrupt): the barrier breaks, nothing is called.
        {
            let g = b.lock();
            let off = g.s.action[0].load(Ordering::Relaxed);
            g.s.action[0].store(off.wrapping_add(8), Ordering::Relaxed);
        }
        assert_eq!(b.wait(), Err(BrokenBarrier));
        assert!(b.broken());
        b.reset();
        // And one made by another executable.
        b.set_action(nothing).unwrap();
        {
            let g = b.lock();
            g.s.action[5].fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(b.wait(), Err(BrokenBarrier));
    }
}
