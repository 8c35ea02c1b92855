//! Blocking: spin, then yield, then sleep on a futex word, never losing a
//! wake-up.
//!
//! A sleeper *prepares* (see [`Prepare`]): it reads `seq`, registers in
//! `waiters` (which arms the word), re-checks its condition, and sleeps only
//! while `seq` is unchanged. A waker changes the condition, then reads
//! `waiters`; only when the word is armed does it disarm it, bump `seq` and
//! call `futex_wake`, so of many wakers in a row (a consumer taking item
//! after item while a producer waits for room) only the first makes a
//! system call until a sleeper registers again. Registration and the
//! waker's read must be ordered, either
//!
//! * by a lock: a consumer that wants to sleep registers while holding the
//!   producer lock, under which producers publish and read `waiters`, so
//!   publishing costs no extra fence;
//! * by a fence on the sleeper's side: consumers free room with a SeqCst
//!   swap of `head` (they take most records without a lock) and then read
//!   `waiters` with SeqCst; a producer that wants to sleep registers, issues
//!   a SeqCst fence, then looks at `head` ([`WaitWord::register_fenced`]),
//!   so the frequent side pays nothing beyond its swap; or
//! * by SeqCst on both words (task counts, which change without a lock).
//!
//! The spin policy, deadlines and slices are [`mproc_shm::wait`]'s.
//! Sleeps are cut into slices of at most [`SLICE`] so that a waker killed
//! between changing the condition and waking (SIGKILL) delays a sleeper by at
//! most a slice instead of for ever.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mproc_shm::futex;

use crate::layout::WaitWord;

pub(crate) use mproc_shm::wait::{Deadline, SLICE};
use mproc_shm::wait::{YIELDS, spin_until};

/// Set in [`WaitWord::waiters`] while a registered sleeper has not been
/// woken since it registered; the low bits count registrations.
const ARMED: u32 = 1 << 31;

impl WaitWord {
    /// Wakes every sleeper if the registration word read (under the lock
    /// that orders registrations) says one registered since the last wake.
    ///
    /// Only the first of several wakers pays for the system call: the wake
    /// disarms the word until a sleeper registers again (a sleeper that
    /// slept on an older `seq` wakes at once, since `seq` moved).
    /// Returns whether this call woke the word (then the caller also rings
    /// the queue's doorbell if anybody waits on it).
    pub(crate) fn notify_if(&self, waiters: u32) -> bool {
        waiters & ARMED != 0 && self.wake_armed()
    }

    /// Wakes every sleeper, if one registered since the last wake, for
    /// conditions changed with a SeqCst store or RMW (no lock).
    pub(crate) fn notify(&self) {
        // SeqCst: pairs with the SeqCst registration in `register_seqcst`.
        if self.waiters.load(Ordering::SeqCst) & ARMED != 0 {
            self.wake_armed();
        }
    }

    /// Disarms the word and, if it was armed, wakes every sleeper; returns
    /// whether it did.
    fn wake_armed(&self) -> bool {
        // SeqCst: ordered after the caller's change of the condition and
        // before the `seq` bump.
        let armed = self.waiters.fetch_and(!ARMED, Ordering::SeqCst) & ARMED != 0;
        if armed {
            self.notify_always();
        }
        armed
    }

    /// Arms the word again if anybody is registered (a doorbell waiter that
    /// stays registered across wake-ups: see `Core::bell_rearm`). Call as
    /// [`register`](Self::register) would be: under the lock, or followed
    /// by a SeqCst fence.
    pub(crate) fn rearm(&self) {
        // SeqCst: as in `register_seqcst` when the caller has no lock.
        let _ = self
            .waiters
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |w| {
                (w & !ARMED != 0).then_some(w | ARMED)
            });
    }

    /// Wakes every sleeper unconditionally.
    pub(crate) fn notify_always(&self) {
        // SeqCst: a sleeper that reads the new value does not sleep.
        self.seq.fetch_add(1, Ordering::SeqCst);
        futex::wake(&self.seq, u32::MAX);
    }

    /// Counts a registration and arms the word.
    fn arm(&self, order: Ordering) {
        let _ = self.waiters.fetch_update(order, Ordering::Relaxed, |w| {
            Some(((w & !ARMED).saturating_add(1) & !ARMED) | ARMED)
        });
    }

    /// Registers a sleeper; returns the `seq` to sleep on. Call while holding
    /// the lock under which wakers read `waiters`, then re-check.
    ///
    /// `seq` is read before arming: a waker that disarms the word after that
    /// (even one whose change does not satisfy this sleeper) has moved `seq`
    /// on, so the sleep returns at once and the caller registers again.
    pub(crate) fn register(&self) -> u32 {
        // Acquire: pairs with `notify_always`, so a sleeper that reads a
        // bumped `seq` also sees what was stored before the bump (`closed`).
        let seq = self.seq.load(Ordering::Acquire);
        // Relaxed: ordered by the lock the caller holds.
        self.arm(Ordering::Relaxed);
        seq
    }

    /// Registers a sleeper without a lock; the condition must be re-checked
    /// after this, and changed by wakers with SeqCst before [`WaitWord::notify`].
    pub(crate) fn register_seqcst(&self) -> u32 {
        // SeqCst: registration precedes the re-check in the single total
        // order; `seq` first, as in `register`.
        let seq = self.seq.load(Ordering::SeqCst);
        self.arm(Ordering::SeqCst);
        seq
    }

    /// Registers a sleeper whose waker changes the condition with a SeqCst
    /// read-modify-write and then reads `waiters` with
    /// [`WaitWord::waiters_seqcst`]; returns the `seq` to sleep on. Re-check
    /// the condition after this.
    pub(crate) fn register_fenced(&self) -> u32 {
        // Acquire: as in `register` (and read first, as there).
        let seq = self.seq.load(Ordering::Acquire);
        // Relaxed: the fence below orders it.
        self.arm(Ordering::Relaxed);
        // SeqCst fence: the waker's SeqCst change either precedes it, and
        // the caller's re-check (after it) sees the change; or follows it,
        // and the waker's SeqCst load of `waiters` sees this registration.
        std::sync::atomic::fence(Ordering::SeqCst);
        seq
    }

    /// The registration word, read after a SeqCst change of the condition
    /// (see [`WaitWord::register_fenced`]).
    pub(crate) fn waiters_seqcst(&self) -> u32 {
        // SeqCst: see `register_fenced`.
        self.waiters.load(Ordering::SeqCst)
    }

    /// Withdraws a registration; the last one disarms the word.
    pub(crate) fn unregister(&self) {
        // Relaxed: a stale word costs at most one spurious wake.
        let _ = self
            .waiters
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                let count = (w & !ARMED).saturating_sub(1);
                Some(if count == 0 { 0 } else { count | (w & ARMED) })
            });
    }

    /// The registration word (read under the ordering lock).
    pub(crate) fn waiters(&self) -> u32 {
        // Relaxed: ordered by the lock the caller holds.
        self.waiters.load(Ordering::Relaxed)
    }
}

/// What a sleeper found when preparing to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepare {
    /// The condition may hold: try again now (nothing registered).
    Ready,
    /// Registered on the word: sleep while `seq` is unchanged, at most `max`.
    Sleep {
        /// The `seq` value read after registering.
        seq: u32,
        /// The longest sleep before trying again.
        max: Duration,
    },
}

/// Calls `attempt` until it returns `Some`, waiting between calls (first
/// spinning and yielding while `probe` says nothing changed, then sleeping on
/// `word` when `prepare` registers), until `deadline`. `None` means the
/// deadline passed.
///
/// `spin: false` skips the busy-wait, for waits that are bound to be long
/// (the process waited for has plenty of work): spinning there would only
/// slow it down, by pulling the lines it writes and, on machines whose CPUs
/// share a core, by taking the core's cycles.
/// `probe` is a cheap, lock-free hint that `attempt` may now succeed.
/// `prepare` registers on `word` (see [`Prepare`]); `block_on` unregisters
/// after each sleep.
pub(crate) fn block_on<R>(
    word: &WaitWord,
    deadline: Deadline,
    spin: bool,
    probe: impl Fn() -> bool,
    mut attempt: impl FnMut() -> Option<R>,
    mut prepare: impl FnMut() -> Prepare,
) -> Option<R> {
    if let Some(r) = attempt() {
        return Some(r);
    }
    if deadline == Deadline::Now {
        return None;
    }
    // Spin only when another CPU may run the process we wait for: on a
    // single CPU it would only burn the time slice the other one needs.
    if spin {
        let mut got = None;
        if spin_until(deadline, || {
            got = if probe() { attempt() } else { None };
            got.is_some()
        }) {
            return got;
        }
    }
    for _ in 0..YIELDS {
        crate::sys::yield_now();
        if probe() {
            if let Some(r) = attempt() {
                return Some(r);
            }
        }
        if deadline.passed() {
            return attempt();
        }
    }
    loop {
        if let Prepare::Sleep { seq, max } = prepare() {
            if let Some(t) = deadline.sleep_for(max.min(SLICE)) {
                futex::wait(&word.seq, seq, Some(t));
            }
            word.unregister();
        }
        if let Some(r) = attempt() {
            return Some(r);
        }
        if deadline.passed() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::time::Instant;

    fn word() -> WaitWord {
        WaitWord {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        }
    }

    #[test]
    fn only_the_first_waker_after_a_registration_wakes() {
        let w = word();
        // Nobody registered: no wake.
        w.notify_if(w.waiters());
        assert_eq!(w.seq.load(Ordering::Relaxed), 0);
        let seq = w.register();
        assert_eq!(seq, 0);
        // The first waker moves `seq` on; those after it do not.
        w.notify_if(w.waiters());
        assert_eq!(w.seq.load(Ordering::Relaxed), 1);
        w.notify_if(w.waiters());
        w.notify();
        assert_eq!(w.seq.load(Ordering::Relaxed), 1);
        // A new registration (the woken sleeper looking again) re-arms.
        assert_eq!(w.register(), 1);
        w.notify();
        assert_eq!(w.seq.load(Ordering::Relaxed), 2);
        // Both registrations withdrawn: nothing left to wake.
        w.unregister();
        w.unregister();
        assert_eq!(w.waiters(), 0);
    }

    #[test]
    fn the_last_withdrawal_disarms() {
        let w = word();
        w.register();
        w.register_fenced();
        w.unregister();
        // One sleeper is still registered and not woken: armed.
        assert_eq!(w.waiters(), 1 | ARMED);
        w.notify_if(w.waiters());
        assert_eq!(w.seq.load(Ordering::Relaxed), 1);
        assert_eq!(w.waiters(), 1);
        w.register_seqcst();
        assert_eq!(w.waiters(), 2 | ARMED);
        w.unregister();
        w.unregister();
        // A sleeper that found its condition and withdrew leaves no wake.
        assert_eq!(w.waiters(), 0);
        w.notify();
        assert_eq!(w.seq.load(Ordering::Relaxed), 1);
        // Withdrawing more than registered does not wrap.
        w.unregister();
        assert_eq!(w.waiters(), 0);
    }

    /// Threads hand items to each other through a counter with sleeps on
    /// the word: nothing is lost and nobody sleeps for ever (each sleep is
    /// cut at a slice, so a lost wake-up would show as a very slow run, and
    /// the deadline fails the test instead of hanging it).
    #[test]
    fn sleepers_are_woken_by_many_wakers() {
        use std::sync::atomic::AtomicU64;
        let w = word();
        let items = AtomicU64::new(0);
        let deadline = Instant::now() + Duration::from_secs(60);
        const N: u64 = 3000;
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..N / 2 {
                        items.fetch_add(1, Ordering::SeqCst);
                        w.notify();
                    }
                });
            }
            let mut taken = 0;
            while taken < N {
                let got = block_on(
                    &w,
                    Deadline::At(deadline),
                    false,
                    || items.load(Ordering::SeqCst) > 0,
                    || {
                        let n = items.load(Ordering::SeqCst);
                        (n > 0
                            && items
                                .compare_exchange(n, n - 1, Ordering::SeqCst, Ordering::SeqCst)
                                .is_ok())
                        .then_some(())
                    },
                    || {
                        let seq = w.register_seqcst();
                        if items.load(Ordering::SeqCst) > 0 {
                            w.unregister();
                            Prepare::Ready
                        } else {
                            Prepare::Sleep { seq, max: SLICE }
                        }
                    },
                );
                assert!(got.is_some(), "timed out after {taken} items");
                taken += 1;
            }
        });
        assert_eq!(items.load(Ordering::SeqCst), 0);
    }
}
