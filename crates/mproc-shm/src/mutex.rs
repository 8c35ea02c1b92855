//! The raw cross-process mutex that every mproc lock is built on.
//!
//! # Protocol
//!
//! The lock word is a shared futex. Bits 0–30 hold the **process id of the
//! owner** (0: unlocked) and bit 31 says that some process or thread may be
//! asleep waiting for it.
//!
//! * Locking when nobody holds the lock is one compare-and-swap in user space
//!   (`0 → pid`); unlocking is one swap, and a `FUTEX_WAKE` system call only
//!   when the waiters bit was set. Because the word records a process, not a
//!   thread, a lock may be released by another process (CPython's `Lock`
//!   allows that).
//! * A contender first spins for up to [`SPIN_MAX`], so that two busy
//!   processes on different CPUs hand the lock over without sleeping. It
//!   stops spinning when the waiters bit is set (others already sleep: the
//!   lock is held long). The spin budget is the process's, shared with
//!   every mproc primitive ([`crate::wait`]): when spinning does not pay
//!   off (the owner cannot run while we spin, because both are pinned to
//!   one CPU), it shrinks to nothing. With a single CPU online there is no
//!   spin at all.
//! * Then it sets the waiters bit and sleeps on the futex, in slices of at
//!   most [`LIVENESS_SLICE`]. After each slice it checks whether the owner
//!   process still lives; if it has exited (a zombie counts as exited), the
//!   contender takes the lock over and reports [`Acquired::OwnerDied`]. So a
//!   lock whose holder was killed is recovered within about one slice, never
//!   a hang.
//! * A word naming an impossible owner (pid 0 with the waiters bit, or a pid
//!   above Linux's `PID_MAX_LIMIT`) is treated as a dead owner, not trusted.
//!
//! # Limitations
//!
//! * **Fairness.** The lock is not fair (like glibc's default mutex and
//!   CPython's semaphores): an unlocker that locks again at once usually
//!   wins over a waiter that is being woken, which is what makes a
//!   contended lock fast (few owner changes), but a process that releases
//!   and re-takes the lock in a tight loop can keep a sleeping waiter out
//!   for as long as it keeps doing so.
//! * **Pid reuse.** Ownership is recorded as a process id. If the holder dies
//!   and the kernel gives its pid to a new process before anybody notices, the
//!   lock is considered held until that new process exits. Linux hands out
//!   pids sequentially, so this needs the pid space to wrap within one
//!   liveness slice.
//! * All processes sharing a lock must live in the same pid namespace.
//! * The process id is cached and refreshed in the child of every `fork()`
//!   made through libc (`pthread_atfork`). A child made by a raw `clone`
//!   system call that does not exec would keep its parent's id: it would
//!   still lock correctly, but its death would not be detected.
//! * Owner death of a *thread* whose process lives on is not detected.

use std::cell::Cell;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::futex;
use crate::layout::SharedSync;
use crate::sys;
pub use crate::wait::{refresh_affinity, spin_useful};

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
///
/// See the [module documentation](self) for the protocol, owner-death
/// recovery and its limits.
#[repr(C)]
#[derive(Debug, Default)]
pub struct RawMutex {
    word: AtomicU32,
    /// Reserved (always zero in this version); keeps the size at 8 bytes.
    aux: AtomicU32,
}

// SAFETY: repr(C) of atomics only; all zeros is the unlocked state and every
// bit pattern is a valid (if possibly meaningless) lock word: an impossible
// owner is treated as a dead one.
unsafe impl SharedSync for RawMutex {}

const _: () = assert!(std::mem::size_of::<RawMutex>() == 8);

/// The waiters bit of the lock word.
const WAITERS: u32 = 1 << 31;
/// The owner-pid bits of the lock word.
const PID_MASK: u32 = !WAITERS;

/// Linux's `PID_MAX_LIMIT` (2^22): no process id is ever larger.
pub const PID_MAX_LIMIT: u32 = 1 << 22;

/// The longest a blocked locker sleeps before checking whether the owner
/// process is still alive ([`crate::wait::LIVENESS_SLICE`]).
pub const LIVENESS_SLICE: Duration = crate::wait::LIVENESS_SLICE;

impl RawMutex {
    /// An unlocked mutex.
    pub const fn new() -> Self {
        Self {
            word: AtomicU32::new(0),
            aux: AtomicU32::new(0),
        }
    }

    /// Acquires the lock, blocking until it is free or its owner has died.
    #[inline]
    pub fn lock(&self) -> Acquired {
        let me = current_pid();
        // Acquire: pairs with the Release swap in `unlock`.
        if self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Acquired::Clean;
        }
        loop {
            if let Some(a) = self.lock_slow(me, None) {
                return a;
            }
        }
    }

    /// Acquires the lock if it is free right now, or if its owner has died.
    ///
    /// When the lock is held, this checks (at most once per millisecond and
    /// owner, per thread) whether the owner still lives, so that a caller
    /// polling with `try_lock` recovers a lock whose holder was killed.
    #[inline]
    pub fn try_lock(&self) -> Option<Acquired> {
        let me = current_pid();
        // Acquire: pairs with the Release swap in `unlock`.
        match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(Acquired::Clean),
            Err(w) => self.take_over_if_dead(w, me, true),
        }
    }

    /// Acquires the lock, waiting at most `timeout`. A zero timeout tries
    /// once, as [`RawMutex::try_lock`].
    pub fn lock_timeout(&self, timeout: Duration) -> Option<Acquired> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.lock_deadline(d),
            None => Some(self.lock()),
        }
    }

    /// Acquires the lock, waiting until `deadline` at most. A deadline in the
    /// past tries once, as [`RawMutex::try_lock`].
    pub fn lock_deadline(&self, deadline: Instant) -> Option<Acquired> {
        let me = current_pid();
        // Acquire: pairs with the Release swap in `unlock`.
        match self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Some(Acquired::Clean),
            Err(w) => {
                if Instant::now() >= deadline {
                    return self.take_over_if_dead(w, me, true);
                }
                self.lock_slow(me, Some(deadline))
            }
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    /// The lock must be held (by this or, for a non-owner-checked lock,
    /// another process), and the caller must not touch the protected data
    /// after this call until it locks again.
    #[inline]
    pub unsafe fn unlock(&self) {
        // Release: publishes the protected data; pairs with the Acquire CAS in
        // the lock operations.
        if self.word.swap(0, Ordering::Release) & WAITERS != 0 {
            futex::wake(&self.word, 1);
        }
    }

    /// Releases the lock if it is held, whoever holds it, and returns whether
    /// it was held (`false`: it was already unlocked, and nothing changed).
    ///
    /// # Safety
    /// As for [`RawMutex::unlock`]: the caller takes responsibility for the
    /// holder (who may be another process) no longer touching the protected
    /// data.
    pub unsafe fn unlock_if_locked(&self) -> bool {
        let mut w = self.word.load(Ordering::Relaxed);
        loop {
            if w == 0 {
                return false;
            }
            // Release: as in `unlock`.
            match self
                .word
                .compare_exchange_weak(w, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if w & WAITERS != 0 {
                        futex::wake(&self.word, 1);
                    }
                    return true;
                }
                Err(x) => w = x,
            }
        }
    }

    /// Whether the lock is held right now (a snapshot).
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// The process id recorded as the owner right now (a snapshot), if any.
    pub fn owner_pid(&self) -> Option<u32> {
        match self.word.load(Ordering::Relaxed) & PID_MASK {
            0 => None,
            pid => Some(pid),
        }
    }

    /// Whether the calling process holds the lock (a snapshot; with several
    /// threads, any thread of this process counts).
    pub fn is_held_by_current_process(&self) -> bool {
        self.word.load(Ordering::Relaxed) & PID_MASK == current_pid()
    }

    /// Takes the lock over if `w` (a value just read) names a dead or
    /// impossible owner. With `rate_limit`, a live owner is re-checked at
    /// most once per millisecond per thread.
    #[cold]
    fn take_over_if_dead(&self, w: u32, me: u32, rate_limit: bool) -> Option<Acquired> {
        if w == 0 {
            // Freed meanwhile: one more plain attempt.
            // Acquire: pairs with the Release swap in `unlock`.
            return self
                .word
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .ok()
                .map(|_| Acquired::Clean);
        }
        let pid = w & PID_MASK;
        if pid == me {
            return None;
        }
        if rate_limit && recently_alive(pid) {
            return None;
        }
        if process_alive(pid) {
            note_alive(pid);
            return None;
        }
        // Keep the waiters bit: others may sleep on the word.
        // Acquire: the dead owner's writes are as visible as they will ever be.
        let taken = self
            .word
            .compare_exchange(w, me | (w & WAITERS), Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if taken {
            // The one place every mproc lock learns of a dead owner. The
            // address names the lock within this process.
            crate::trace_event!(
                warn,
                dead_owner_pid = pid,
                pid = me,
                lock = ?std::ptr::from_ref(self),
                "lock recovered from a dead owner"
            );
        }
        taken.then_some(Acquired::OwnerDied)
    }

    /// Spins (when useful), then sleeps in liveness slices, until the lock is
    /// taken or `deadline` passes.
    #[cold]
    fn lock_slow(&self, me: u32, deadline: Option<Instant>) -> Option<Acquired> {
        // Once this thread has slept, others may sleep too (their wake-up may
        // have been spent on us): take the lock with the waiters bit set, so
        // that our unlock wakes the next one.
        let mut flag = 0;
        loop {
            if let Some(a) = self.spin(me | flag) {
                return Some(a);
            }
            // Announce a sleeper, or take the lock if it became free.
            let mut w = self.word.load(Ordering::Relaxed);
            loop {
                if w == 0 {
                    // Others may still sleep: keep the waiters bit set.
                    // Acquire: pairs with the Release swap in `unlock`.
                    match self.word.compare_exchange(
                        0,
                        me | WAITERS,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return Some(Acquired::Clean),
                        Err(x) => {
                            w = x;
                            continue;
                        }
                    }
                }
                if w & WAITERS != 0 {
                    break;
                }
                match self.word.compare_exchange_weak(
                    w,
                    w | WAITERS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        w |= WAITERS;
                        break;
                    }
                    Err(x) => w = x,
                }
            }
            if w & PID_MASK == 0 {
                // An impossible word (waiters bit, no owner): a dead owner.
                if let Some(a) = self.take_over_if_dead(w, me, false) {
                    return Some(a);
                }
                continue;
            }
            let slice = match deadline {
                None => LIVENESS_SLICE,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return self.take_over_if_dead(
                            self.word.load(Ordering::Relaxed),
                            me,
                            false,
                        );
                    }
                    (d - now).min(LIVENESS_SLICE)
                }
            };
            flag = WAITERS;
            if !futex::wait(&self.word, w, Some(slice)) {
                // A whole slice without a wake-up: is the owner still there?
                if let Some(a) =
                    self.take_over_if_dead(self.word.load(Ordering::Relaxed), me, false)
                {
                    return Some(a);
                }
            }
        }
    }

    /// Spins (adaptively, see [`adaptive_spin`]) while the owner is running
    /// (no waiters bit), trying to take the lock whenever it looks free, by
    /// storing `me` (the pid, possibly with the waiters bit).
    fn spin(&self, me: u32) -> Option<Acquired> {
        let took = adaptive_spin(|| {
            let w = self.word.load(Ordering::Relaxed);
            if w == 0 {
                // Acquire: pairs with the Release swap in `unlock`.
                let ok = self
                    .word
                    .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok();
                return ok.then_some(true);
            }
            // Waiters already sleep: the lock is held long, stop spinning.
            (w & WAITERS != 0).then_some(false)
        });
        took.then_some(Acquired::Clean)
    }
}

static PID: AtomicU32 = AtomicU32::new(0);
static AT_FORK: Once = Once::new();

extern "C" fn forget_after_fork() {
    // Relaxed: the child is single-threaded right after fork.
    PID.store(0, Ordering::Relaxed);
}

/// The calling process's id, cached (and refreshed in the child after every
/// libc `fork`), so that the lock fast path makes no system call.
#[inline]
pub fn current_pid() -> u32 {
    // Relaxed: the value is only ever this process's own pid or 0.
    match PID.load(Ordering::Relaxed) {
        0 => current_pid_slow(),
        pid => pid,
    }
}

#[cold]
fn current_pid_slow() -> u32 {
    AT_FORK.call_once(|| sys::at_fork_child(forget_after_fork));
    let pid = sys::getpid() as u32;
    PID.store(pid, Ordering::Relaxed);
    pid
}

/// The longest a waiter spins before sleeping ([`crate::wait::SPIN_MAX_NS`]).
pub const SPIN_MAX: Duration = Duration::from_nanos(crate::wait::SPIN_MAX_NS as u64);

/// Spins calling `poll` until it returns `Some(true)` (success: returns
/// `true`) or `Some(false)` (give up: returns `false`), or the spin budget
/// runs out (returns `false`; the caller then sleeps).
///
/// This is [`crate::wait::spin`] without a deadline: the budget is the
/// process's, shared with every other mproc primitive, and adapts as
/// described there (no spinning with one CPU online, none when the other
/// side keeps sharing our CPU).
pub fn adaptive_spin(poll: impl FnMut() -> Option<bool>) -> bool {
    crate::wait::spin(crate::wait::Deadline::Never, poll)
}

/// Whether `pid` names a process that has not exited.
///
/// Zombies (killed but not yet reaped) count as exited; pid 0, negative pids
/// and pids above [`PID_MAX_LIMIT`] are never alive. This process is always
/// alive.
pub fn process_alive(pid: u32) -> bool {
    if pid == 0 || pid > PID_MAX_LIMIT {
        return false;
    }
    if pid == current_pid() {
        return true;
    }
    sys::liveness(pid) == sys::Liveness::Alive
}

thread_local! {
    static LAST_ALIVE: Cell<Option<(u32, Instant)>> = const { Cell::new(None) };
}

fn recently_alive(pid: u32) -> bool {
    LAST_ALIVE.with(
        |c| matches!(c.get(), Some((p, t)) if p == pid && t.elapsed() < Duration::from_millis(1)),
    )
}

fn note_alive(pid: u32) {
    LAST_ALIVE.with(|c| c.set(Some((pid, Instant::now()))));
}

#[cfg(test)]
mod tests;
