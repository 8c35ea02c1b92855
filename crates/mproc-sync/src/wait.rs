//! Waiting helpers shared by the primitives: bounded spinning and futex
//! sleeps in liveness slices.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use mproc_shm::futex;
use mproc_shm::mutex::{LIVENESS_SLICE, spin_useful};

/// How long a waiter spins before it sleeps, when spinning can help.
pub(crate) const SPIN_LIMIT: Duration = Duration::from_micros(30);

/// How a sleep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slept {
    /// Woken, or the word no longer held the expected value, or a signal.
    Woken,
    /// A whole liveness slice passed: time to check on other processes.
    SliceOver,
    /// The deadline has passed (nothing was slept).
    DeadlinePassed,
}

/// Sleeps on `word` while it holds `expected`, for at most one liveness
/// slice and never past `deadline` (`None`: no deadline).
pub(crate) fn sleep(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> Slept {
    let slice = match deadline {
        None => LIVENESS_SLICE,
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return Slept::DeadlinePassed;
            }
            (d - now).min(LIVENESS_SLICE)
        }
    };
    if futex::wait(word, expected, Some(slice)) {
        Slept::Woken
    } else {
        Slept::SliceOver
    }
}

/// Spins until `done()` or [`SPIN_LIMIT`] passes; returns the last `done()`.
/// Does not spin at all when this process may only use one CPU.
pub(crate) fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    if done() {
        return true;
    }
    if !spin_useful() {
        return false;
    }
    let start = Instant::now();
    let mut i = 0u32;
    loop {
        std::hint::spin_loop();
        if done() {
            return true;
        }
        i = i.wrapping_add(1);
        if i % 16 == 0 && start.elapsed() > SPIN_LIMIT {
            return false;
        }
    }
}

/// The deadline `timeout` from now; `None` when it is too far to represent
/// (wait for ever).
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
