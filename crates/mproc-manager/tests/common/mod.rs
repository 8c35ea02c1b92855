//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

use mproc_manager::{Manager, ManagerBuilder};
use mproc_testkit::pid_alive;
pub(crate) use mproc_testkit::watchdog_secs as watchdog;

/// Runs `body` under a watchdog of `secs` with a newly started manager.
pub(crate) fn with_manager<R: Send + 'static>(
    secs: u64,
    body: impl FnOnce(Manager) -> R + Send + 'static,
) -> R {
    with_manager_from(secs, Manager::builder(), body)
}

/// [`with_manager`] with a manager started from `builder`.
pub(crate) fn with_manager_from<R: Send + 'static>(
    secs: u64,
    builder: ManagerBuilder,
    body: impl FnOnce(Manager) -> R + Send + 'static,
) -> R {
    watchdog(secs, || body(builder.start().unwrap()))
}

/// Waits up to `secs` for `pid` to be gone.
pub(crate) fn wait_gone(pid: i32, secs: u64) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if !pid_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    !pid_alive(pid)
}
