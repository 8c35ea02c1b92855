//! Benchmark scenarios of mproc-process.

use crate::harness::{Role, Scenario};

/// The scenarios of this crate.
pub(crate) fn scenarios() -> Vec<Scenario> {
    Vec::new()
}

/// The child roles these scenarios start.
pub(crate) fn roles() -> Vec<Role> {
    Vec::new()
}
