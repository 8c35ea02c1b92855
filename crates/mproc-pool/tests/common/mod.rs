//! Shared helpers: run a test body under a watchdog, see whether a worker
//! still exists, collect what an `imap` yields.
#![allow(dead_code, unused_imports)] // not every test binary uses each

pub(crate) use mproc_testkit::pid_alive as alive;
pub(crate) use mproc_testkit::watchdog_secs as watchdog;

/// The values an `imap` (or any iterator of results) yields, in its order;
/// panics at an error.
pub(crate) fn values<R, E: std::fmt::Debug>(it: impl IntoIterator<Item = Result<R, E>>) -> Vec<R> {
    it.into_iter().map(Result::unwrap).collect()
}

/// [`values`] sorted: for an unordered `imap`.
pub(crate) fn sorted_values<R: Ord, E: std::fmt::Debug>(
    it: impl IntoIterator<Item = Result<R, E>>,
) -> Vec<R> {
    let mut v = values(it);
    v.sort_unstable();
    v
}
