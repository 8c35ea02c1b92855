//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::Duration;

pub(crate) use mproc_testkit::watchdog_secs as watchdog;

/// Whether process `pid` still exists (as a non-zombie).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Waits up to `secs` for `pid` to be gone.
pub(crate) fn wait_gone(pid: i32, secs: u64) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    !alive(pid)
}
