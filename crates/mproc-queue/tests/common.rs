//! Shared helpers for the integration tests (included with `mod common;`).

#![allow(dead_code, unused_imports)] // cargo also builds this file as a test target of its own

pub(crate) use mproc_testkit::watchdog;

/// A queue's parts as another process receives them (white-box tests):
/// its segment and the two ends of its side channel.
pub(crate) type RawQueue = (
    mproc_shm::Segment,
    mproc_shm::handle::HandleFd,
    mproc_shm::handle::HandleFd,
);

/// Opens `q`'s parts as another process would (white-box tests).
pub(crate) fn raw_parts<Q: serde::Serialize>(q: &Q) -> RawQueue {
    let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(q).unwrap();
    mproc_shm::handle::from_bytes_with_fds(&bytes, fds).unwrap()
}
