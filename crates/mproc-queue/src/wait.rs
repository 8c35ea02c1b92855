//! Blocking: spin, then yield, then sleep on a futex word, never losing a
//! wake-up.
//!
//! A sleeper registers in `waiters`, reads `seq`, re-checks its condition
//! and sleeps only while `seq` is unchanged. A waker changes the condition
//! (a SeqCst store or swap), then loads `waiters` (SeqCst); only when it is
//! non-zero does it bump `seq` and call `futex_wake`. Because both sides use
//! SeqCst on both words, either the waker sees the registration or the
//! sleeper's re-check sees the new condition.
//!
//! Sleeps are cut into slices of [`SLICE`] so that a waker killed between
//! changing the condition and waking (SIGKILL) delays a sleeper by at most a
//! slice instead of for ever.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mproc_shm::futex;

use crate::layout::WaitWord;

/// How long to busy-wait before yielding, when another CPU can run the
/// process we wait for.
const SPIN_LIMIT: Duration = Duration::from_micros(50);
/// Rounds of `sched_yield` before sleeping.
const YIELDS: u32 = 16;
/// The longest single sleep.
const SLICE: Duration = Duration::from_millis(100);

/// When a blocking operation gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Never waits.
    Now,
    /// Waits until this instant.
    At(Instant),
    /// Waits for ever.
    Never,
}

impl Deadline {
    /// The deadline `timeout` from now (or never, if that overflows).
    pub(crate) fn after(timeout: Duration) -> Self {
        Instant::now()
            .checked_add(timeout)
            .map_or(Self::Never, Self::At)
    }
}

impl WaitWord {
    /// Wakes every sleeper, if there is one. Call after making the condition
    /// true with a SeqCst store or RMW.
    pub(crate) fn notify(&self) {
        // SeqCst: pairs with the sleeper's SeqCst increment; see the module docs.
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.notify_always();
        }
    }

    /// Wakes every sleeper unconditionally.
    pub(crate) fn notify_always(&self) {
        // SeqCst: a sleeper that reads the new value does not sleep.
        self.seq.fetch_add(1, Ordering::SeqCst);
        futex::wake(&self.seq, u32::MAX);
    }
}

/// Calls `attempt` until it returns `Some`, waiting between calls (first
/// spinning while `probe` is false, then sleeping on `word`), until
/// `deadline`. `None` means the deadline passed.
///
/// `probe` is a cheap, lock-free hint that `attempt` may now succeed.
pub(crate) fn block_on<R>(
    word: &WaitWord,
    deadline: Deadline,
    probe: impl Fn() -> bool,
    mut attempt: impl FnMut() -> Option<R>,
) -> Option<R> {
    if let Some(r) = attempt() {
        return Some(r);
    }
    if deadline == Deadline::Now {
        return None;
    }
    let past = |d: Deadline| matches!(d, Deadline::At(t) if Instant::now() >= t);
    // Spin only when another CPU may run the process we wait for: on a
    // single CPU it would only burn the time slice the other one needs.
    if mproc_shm::mutex::spin_useful() {
        let start = Instant::now();
        let mut i = 0u32;
        loop {
            if probe() {
                if let Some(r) = attempt() {
                    return Some(r);
                }
            }
            for _ in 0..8 {
                std::hint::spin_loop();
            }
            i += 1;
            if i % 16 == 0 && (start.elapsed() > SPIN_LIMIT || past(deadline)) {
                break;
            }
        }
    }
    for _ in 0..YIELDS {
        crate::sys::yield_now();
        if probe() {
            if let Some(r) = attempt() {
                return Some(r);
            }
        }
        if past(deadline) {
            return attempt();
        }
    }
    loop {
        // SeqCst: registration precedes the re-check in the single total order.
        word.waiters.fetch_add(1, Ordering::SeqCst);
        let seq = word.seq.load(Ordering::SeqCst);
        let r = attempt();
        let sleep = match (&r, deadline) {
            (Some(_), _) => None,
            (None, Deadline::Never) => Some(SLICE),
            (None, Deadline::At(d)) => d
                .checked_duration_since(Instant::now())
                .filter(|t| !t.is_zero())
                .map(|t| t.min(SLICE)),
            (None, Deadline::Now) => None,
        };
        if let Some(t) = sleep {
            futex::wait(&word.seq, seq, Some(t));
        }
        // Relaxed: the count only gates wakers' system calls; a stale view
        // costs at most one spurious wake.
        word.waiters.fetch_sub(1, Ordering::Relaxed);
        if r.is_some() || sleep.is_none() {
            return r;
        }
    }
}
