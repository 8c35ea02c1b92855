//! `MpiPool`: mproc's Pool API across machines, on MPI.
//!
//! When a job outgrows one machine, the same `map`, `imap`, `starmap`,
//! `apply_async` … run on the ranks of an MPI job, launched by `mpirun` or
//! the cluster's scheduler (`srun`), as every HPC job is. The engine is
//! Open MPI through rsmpi; nothing here is a home-made network layer.
//!
//! # Features
//!
//! * `mpi` (off by default): the backend. It needs an MPI library and
//!   libclang at build time (`scripts/install-mpi.sh` installs both on
//!   Debian/Ubuntu). Without it this crate is empty and needs neither.
//!
//! # Hello, world!
//!
//! ```no_run
//! # #[cfg(feature = "mpi")] {
//! use mproc_mpi::MpiPool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! // `mpirun -n 3 prog`: ranks 1 and 2 serve inside `new()` and exit there.
//! let pool = MpiPool::new()?;
//! assert_eq!(pool.map(square, 0..5u64)?, [0, 1, 4, 9, 16]);
//! assert_eq!(pool.apply(square, 12)?, 144);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Launching
//!
//! * **Static** (SPMD): `mpirun -n N prog`, `srun prog`. Every rank runs
//!   `main` up to `MpiPool::new`; rank 0 gets the pool, ranks ≥ 1 serve
//!   tasks inside that call and exit the process when the pool closes. Put
//!   work that only rank 0 should do after `new()`.
//! * **Spawn**: a plain `prog` calls `MpiPool::spawn``(n)`, which starts
//!   `n` workers with `MPI_Comm_spawn` of the current executable. They are
//!   dispatched before `main` (an ELF constructor, as mproc's children are),
//!   so `main` never runs in them. Needs an MPI with dynamic processes
//!   (Open MPI; not Debian's MPICH, built as ch4:ucx).
//!
//! The executable must be the same file at the same path on every node.
//! MPI is initialised and finalised once per process, so there is one
//! `MpiPool` per process run; it finalises MPI when it is joined or
//! dropped.
//!
//! # Tasks
//!
//! As with mproc's local `Pool`: a task is a `fn` item or
//! a non-capturing closure reached by reference (every rank runs the same
//! executable, and a handshake checks it), and integer ranges travel as
//! ranges, never materialised. Nothing is pickled.
//!
//! Arguments and results travel in the pool's codec `C`
//! (`MpiPool<C = Postcard>`, bound `C: Codec<A> + Codec<R>`): by default
//! `Postcard`, for any serde value; `MpiPoolBuilder::codec``::<C>()` picks
//! another (`Pod` for plain-data structs and arrays copied as they are,
//! `Bytes` for byte vectors, or a codec of your own; see
//! `mproc_shm::codec`). Plain numbers (`u64`, `f64`, ...), integer ranges
//! and `()` results keep their fast paths whatever the codec. The worker
//! ranks need not be told the codec: each task names its entry point,
//! compiled for it.
//!
//! # Scheduling
//!
//! Dynamic: the next chunk goes to the first free worker rank, with two
//! more waiting at each so no worker idles for a round trip or while rank 0
//! waits for a core.
//! Chunk sizes follow the measured time per item (about 2 ms of work per
//! chunk and local process), so maps of tiny tasks need no chunk size.
//! `imap` reads its input lazily with a bounded window and yields in order.
//! Rank 0 and idle workers poll briefly and then sleep in short naps, so a
//! waiting rank 0 leaves the cores to the workers. `apply` is the
//! exception for short tasks: the calling thread sends the task and polls
//! for the result itself (MPI runs at `MPI_THREAD_SERIALIZED`, one thread
//! at a time) for up to 50 µs before it hands over to rank 0's MPI thread
//! and sleeps, so a short round trip involves no thread wake-up on rank 0.
//!
//! # Hybrid: one rank per node, one process per core
//!
//! `MpiPoolBuilder::local_processes``(k)` (default: each rank's
//! `cpu_count`) makes every worker rank run its
//! chunks on a local mproc `Pool` of `k` processes. MPI traffic is then one
//! message per chunk, and on-node parallelism is mproc's.
//!
//! # Failures
//!
//! * A task that panics fails that task with
//!   `TaskError::Panicked` and its message; the worker rank carries on.
//! * A worker rank that dies cannot be replaced under MPI. The MPI runtime
//!   then ends the whole job (`mpirun` reports which rank died and how),
//!   so rank 0 never hangs; a panic outside a task on a worker rank calls
//!   `MPI_Abort` for the same reason. Wrap runs in `timeout` in CI anyway.
//! * `MpiPool::terminate` drops queued work, but a chunk already running
//!   on a rank finishes there (MPI cannot kill one rank alone).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

// The message formats and their parsers need no MPI: they build without
// the feature, for `__private`'s fuzz entry.
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
mod buf;
#[cfg(feature = "mpi")]
mod chunk;
#[cfg(feature = "mpi")]
mod comm;
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
mod decode;
#[cfg(feature = "mpi")]
mod error;
#[cfg(feature = "mpi")]
mod job;
#[cfg(feature = "mpi")]
mod lent;
#[cfg(feature = "mpi")]
mod pool;
#[cfg(feature = "mpi")]
mod posted;
#[cfg(feature = "mpi")]
mod sched;
#[cfg(feature = "mpi")]
mod task;
#[cfg_attr(not(feature = "mpi"), allow(dead_code))]
mod wire;
#[cfg(feature = "mpi")]
mod worker;

#[cfg(feature = "mpi")]
pub use crate::{
    error::MpiError,
    job::AsyncResult,
    pool::{Imap, MpiPool, MpiPoolBuilder},
};
#[cfg(feature = "mpi")]
pub use mproc_pool::{
    Bytes, Codec, CodecError, Encode, Pod, PoolError, Postcard, StarFn, TaskError,
};
#[cfg(feature = "mpi")]
pub use mproc_process::cpu_count;

/// Entry points for fuzzing and tests; not a stable API.
#[doc(hidden)]
pub mod __private {
    /// Parses `data` as every message a rank receives and decodes what it
    /// carries (the parsers of bytes from another rank). Never panics.
    pub fn mpi_message(data: &[u8]) {
        crate::decode::fuzz(data);
    }
}

/// Serves the spawned-worker role if this process was started as one (and
/// then exits); returns at once otherwise.
///
/// On Linux this already happens before `main` (an ELF constructor), so
/// calling it is optional. Elsewhere, call it first thing in `main`.
#[cfg(feature = "mpi")]
pub fn init() {
    keep_constructor();
    comm::dispatch_spawned();
}

/// The constructor that lets every binary using this crate act as a
/// spawned worker.
#[cfg(all(feature = "mpi", target_os = "linux"))]
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;

#[cfg(all(feature = "mpi", target_os = "linux"))]
extern "C" fn constructor() {
    comm::dispatch_spawned();
}

/// Keeps the constructor in the link (the pool's build path calls this).
#[cfg(feature = "mpi")]
fn keep_constructor() {
    #[cfg(target_os = "linux")]
    std::hint::black_box(&CONSTRUCTOR);
}
