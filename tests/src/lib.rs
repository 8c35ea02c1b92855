//! Shared helpers for the cross-crate tests: watchdogs and leak checks
//! (one copy of each, in mproc-testkit).

pub use mproc_testkit::{pid_alive, shm_entries, watchdog};
