//! Shared (process-wide, not `FUTEX_PRIVATE_FLAG`) futex operations on words
//! in shared memory.
//!
//! These are the building blocks of every blocking mproc primitive. A waiter
//! sleeps only while the word still holds the value it expects, so a wake-up
//! between its check and its sleep is never lost.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, until woken by [`wake`], interrupted by a
/// signal, or `timeout` passes (`None`: no limit).
///
/// Returns `false` only when the timeout expired. Spurious returns happen:
/// callers re-check their condition in a loop.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> bool {
    crate::sys::futex_wait(word, expected, timeout)
}

/// Wakes up to `n` processes or threads sleeping on `word`; returns how many
/// were woken.
pub fn wake(word: &AtomicU32, n: u32) -> usize {
    crate::sys::futex_wake(word, n)
}
