//! Every scenario, one module per crate.

use crate::harness::{Role, Scenario};

pub(crate) use floor::{PAIRS, floors_of, is_floor};

mod floor;
mod manager;
#[cfg(feature = "mpi")]
pub(crate) mod mpi;
mod pipe;
mod pool;
mod process;
mod queue;
mod ready;
mod shm;
mod sync;

/// All scenarios, in the order they run by default.
pub(crate) fn all() -> Vec<Scenario> {
    let mut v = Vec::new();
    // Floors first: a report prints each one under the figures it bounds.
    v.extend(floor::scenarios());
    v.extend(shm::scenarios());
    v.extend(sync::scenarios());
    v.extend(process::scenarios());
    v.extend(pipe::scenarios());
    v.extend(queue::scenarios());
    v.extend(ready::scenarios());
    v.extend(pool::scenarios());
    v.extend(manager::scenarios());
    #[cfg(feature = "mpi")]
    v.extend(mpi::scenarios());
    v
}

/// All child roles.
pub(crate) fn roles() -> Vec<Role> {
    let mut v = Vec::new();
    v.extend(floor::roles());
    v.extend(shm::roles());
    v.extend(sync::roles());
    v.extend(process::roles());
    v.extend(pipe::roles());
    v.extend(queue::roles());
    v.extend(ready::roles());
    v.extend(pool::roles());
    v.extend(manager::roles());
    v
}
