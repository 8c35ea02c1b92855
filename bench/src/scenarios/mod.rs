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

/// A module's list of scenarios.
type Scenarios = fn() -> Vec<Scenario>;
/// A module's list of child roles.
type Roles = fn() -> Vec<Role>;

/// Every module's scenarios and child roles, in the order they run by
/// default. Floors first: a report prints each one under the figures it
/// bounds.
const MODULES: &[(Scenarios, Roles)] = &[
    (floor::scenarios, floor::roles),
    (shm::scenarios, shm::roles),
    (sync::scenarios, sync::roles),
    (process::scenarios, process::roles),
    (pipe::scenarios, pipe::roles),
    (queue::scenarios, queue::roles),
    (ready::scenarios, ready::roles),
    (pool::scenarios, pool::roles),
    (manager::scenarios, manager::roles),
    // The MPI scenarios run their children with mpirun, not as roles.
    #[cfg(feature = "mpi")]
    (mpi::scenarios, Vec::new),
];

/// All scenarios, in the order they run by default.
pub(crate) fn all() -> Vec<Scenario> {
    MODULES
        .iter()
        .flat_map(|(scenarios, _)| scenarios())
        .collect()
}

/// All child roles.
pub(crate) fn roles() -> Vec<Role> {
    MODULES.iter().flat_map(|(_, roles)| roles()).collect()
}
