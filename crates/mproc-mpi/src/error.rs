//! Why an [`MpiPool`](crate::MpiPool) could not be made. Operations on a
//! pool fail with the local Pool's [`PoolError`](crate::PoolError) and
//! [`TaskError`](crate::TaskError).

use std::error::Error;
use std::fmt;

/// Why building an [`MpiPool`](crate::MpiPool) failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MpiError {
    /// `MPI_Init_thread` failed, or did not give the threading level the
    /// pool needs.
    Init(String),
    /// MPI was already initialised in this process (by an earlier pool or by
    /// other code): it is initialised and finalised once per process, so
    /// there is one `MpiPool` per process run.
    AlreadyInitialized,
    /// The job has no worker: a static pool needs at least 2 ranks
    /// (`mpirun -n 2` or more), a spawned one at least 1 worker.
    NoWorkers,
    /// `MPI_Comm_spawn` failed (no dynamic processes in this MPI, no free
    /// slots, …).
    Spawn(String),
    /// `local_processes(0)`.
    NoLocalProcesses,
    /// The MPI thread could not be started.
    Thread(String),
}

impl fmt::Display for MpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Init(m) => write!(f, "MPI could not be initialised: {m}"),
            Self::AlreadyInitialized => f.write_str(
                "MPI was already initialised in this process (one MpiPool per process run)",
            ),
            Self::NoWorkers => f.write_str(
                "the MPI job has no worker rank: run it with `mpirun -n 2` (or more), or use MpiPool::spawn",
            ),
            Self::Spawn(m) => write!(f, "MPI could not spawn the worker processes: {m}"),
            Self::NoLocalProcesses => f.write_str("local_processes must be at least 1"),
            Self::Thread(m) => write!(f, "the MPI thread could not be started: {m}"),
        }
    }
}

impl Error for MpiError {}
