//! Shared helpers: run a test body under a watchdog, see whether a worker
//! still exists.

#[allow(unused_imports)] // not every test binary uses it
pub(crate) use mproc_testkit::pid_alive as alive;
pub(crate) use mproc_testkit::watchdog_secs as watchdog;
