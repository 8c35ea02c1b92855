//! Waiting helpers shared by the primitives: bounded spinning and futex
//! sleeps in liveness slices.

use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

use mproc_shm::futex;
use mproc_shm::mutex::{LIVENESS_SLICE, adaptive_spin};

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

/// Spins until `done()` or the adaptive spin budget runs out (see
/// [`mproc_shm::mutex::adaptive_spin`]); returns the last `done()`.
pub(crate) fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    adaptive_spin(|| done().then_some(true))
}

/// The deadline `timeout` from now; `None` when it is too far to represent
/// (wait for ever).
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
