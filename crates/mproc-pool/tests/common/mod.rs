//! Shared helpers: run a test body under a watchdog.

pub(crate) use mproc_testkit::watchdog_secs as watchdog;

/// Whether a process exists and has not ended: not a zombie (`Z`), nor
/// being reaped (`X`, seen for a moment while its parent reaps it).
#[allow(dead_code)] // not every test binary uses it
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with(['Z', 'X']),
        Err(_) => false,
    }
}
