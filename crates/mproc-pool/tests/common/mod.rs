//! Shared helpers: run a test body under a watchdog (with a fresh pool or
//! executor), see whether a worker still exists, collect what an `imap`
//! yields, check a run in which one item fails.
#![allow(dead_code, unused_imports)] // not every test binary uses each

pub(crate) use mproc_testkit::only_failure_at;
pub(crate) use mproc_testkit::pid_alive as alive;
pub(crate) use mproc_testkit::watchdog_secs as watchdog;

use mproc_pool::{Pool, PoolBuilder, ProcessPoolExecutor};

/// Runs `body` under a watchdog of `secs` with a new pool of `processes`
/// workers.
pub(crate) fn with_pool<R: Send + 'static>(
    secs: u64,
    processes: usize,
    body: impl FnOnce(Pool) -> R + Send + 'static,
) -> R {
    watchdog(secs, move || body(Pool::new(processes).unwrap()))
}

/// Runs `body` under a watchdog of `secs` with a pool that `configure`
/// sets up from `Pool::builder()`.
pub(crate) fn with_built_pool<R: Send + 'static>(
    secs: u64,
    configure: impl FnOnce(PoolBuilder) -> PoolBuilder + Send + 'static,
    body: impl FnOnce(Pool) -> R + Send + 'static,
) -> R {
    watchdog(secs, move || {
        body(configure(Pool::builder()).build().unwrap())
    })
}

/// Runs `body` under a watchdog of `secs` with a new executor of
/// `max_workers` workers.
pub(crate) fn with_executor<R: Send + 'static>(
    secs: u64,
    max_workers: usize,
    body: impl FnOnce(ProcessPoolExecutor) -> R + Send + 'static,
) -> R {
    watchdog(secs, move || {
        body(ProcessPoolExecutor::new(max_workers).unwrap())
    })
}

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
