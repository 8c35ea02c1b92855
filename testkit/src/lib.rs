//! Test support shared by every mproc crate (a dev-dependency only).
//!
//! It depends on no mproc crate, so even the bottom of the stack
//! (`mproc-shm`) can use it without a dependency cycle.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Runs `f` on its own thread and returns its result, panicking if it takes
/// longer than `limit`: a test that could block can never hang the run.
///
/// # Panics
/// If `f` panics (the panic is propagated) or does not finish within `limit`.
#[track_caller]
pub fn watchdog<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            let _ = h.join();
            r
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the body ends only after sending its result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: test did not finish within {limit:?}")
        }
    }
}

/// [`watchdog`] with the limit in whole seconds.
///
/// # Panics
/// As [`watchdog`].
#[track_caller]
pub fn watchdog_secs<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    watchdog(Duration::from_secs(secs), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_result() {
        assert_eq!(watchdog_secs(10, || 6 * 7), 42);
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn propagates_a_panic() {
        watchdog_secs(10, || panic!("boom"));
    }

    #[test]
    #[should_panic(expected = "did not finish")]
    fn fails_a_body_that_overruns() {
        watchdog(Duration::from_millis(20), || {
            thread::sleep(Duration::from_secs(2))
        });
    }
}
