//! Python's `multiprocessing` for Rust: processes started safely, duplex
//! pipes, MPMC queues, cross-process locks, typed shared memory, a manager
//! server and a process pool.
//!
//! This crate is the facade: it re-exports the mproc crates under the names
//! Python users know. Each part is also usable on its own (`mproc-shm`,
//! `mproc-sync`, `mproc-process`, `mproc-pipe`, `mproc-queue`, `mproc-pool`,
//! `mproc-manager`).
//!
//! # Hello, world!
//!
//! ```
//! use mproc::{Process, Queue, Value};
//!
//! // A child runs a fn item (or a non-capturing closure); handles such as a
//! // Value or a Queue travel to it as file descriptors.
//! fn work((total, results): (Value<u64>, Queue<String>)) -> u64 {
//!     for _ in 0..1000 {
//!         *total.lock().unwrap() += 1;
//!     }
//!     results.put(format!("hello from {}", std::process::id())).unwrap();
//!     total.get()
//! }
//!
//! let total = Value::new(0u64)?;
//! let results = Queue::new(0)?;
//! let mut children = Vec::new();
//! for _ in 0..2 {
//!     children.push(Process::new(work, (total.clone(), results.clone())).start()?);
//! }
//! for c in &mut children {
//!     c.join()?;
//! }
//! assert_eq!(total.get(), 2000);
//! assert!(results.get()?.starts_with("hello from"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Where things are
//!
//! | Python | mproc |
//! |---|---|
//! | `Process`, `current_process`, `parent_process`, `active_children`, `cpu_count` | [`Process`], [`current_process`], [`parent_process`], [`active_children`], [`cpu_count`] ([`process`]) |
//! | `set_start_method`, `get_start_method`, `get_all_start_methods`, `get_context` | [`set_start_method`], [`get_start_method`], [`all_start_methods`], [`get_context`] / [`default_context`] (a [`Context`] offers the whole API) |
//! | `current_process().authkey` | [`ProcessInfo::authkey`], [`set_authkey`] |
//! | `Pipe`, `Connection`, `connection.wait`, `Listener`, `Client` | [`pipe()`], [`Connection`], [`wait`] / [`wait_timeout`], [`Listener`], [`Client`] ([`connection`]) |
//! | `Queue`, `SimpleQueue`, `JoinableQueue` | [`Queue`], [`SimpleQueue`], [`JoinableQueue`] ([`queue`]) |
//! | `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`, `Condition`, `Event`, `Barrier` | same names ([`sync`]) |
//! | `Value`, `Array`, `RawValue`, `RawArray` | [`Value`], [`Array`], [`RawValue`], [`RawArray`] ([`shm`]) |
//! | `shared_memory.SharedMemory` | [`shared_memory::SharedMemory`] |
//! | `Pool`, `AsyncResult` | [`Pool`], [`AsyncResult`] ([`pool`]) |
//! | `concurrent.futures.ProcessPoolExecutor`, `Future`, `wait`, `as_completed` | [`ProcessPoolExecutor`], [`futures::Future`], [`futures::wait`], [`futures::as_completed`] ([`futures`]) |
//! | `Manager()`, `.dict()`, `.list()`, `.Namespace()`, `BaseManager` | [`Manager`], proxies in [`managers`] |
//! | `mpi4py.futures.MPIPoolExecutor`, `mpi4py.util.pool.Pool` | `MpiPool` (module `mpi`, feature `mpi`) |
//!
//! # Child processes and `main`
//!
//! Children started with the fork server (the default) or spawn are new runs
//! of the same executable; mproc serves them before `main` runs, in programs,
//! examples and `cargo test` binaries alike. See [`process`] for details.
//!
//! # Features
//!
//! * `mpi`: `mpi::MpiPool`, the Pool API on
//!   the ranks of an MPI job (module `mpi`), for work that outgrows one
//!   machine. Needs Open MPI and libclang to build (`scripts/install-mpi.sh`).
//! * `tokio`: async forms built on readiness descriptors (no thread per
//!   waiter): `Queue::get_async`/`put_async` (and on `SimpleQueue`,
//!   `JoinableQueue`), `ProcessHandle::join_async`, `Event::wait_async`, and
//!   `AsyncResult` is `IntoFuture`. Without it nothing depends on tokio.
//! * `tracing`: [`tracing`](https://docs.rs/tracing) events for what mproc
//!   does on its own, with the pids involved: a pool worker replaced
//!   (`info`), a pool task retried after its worker died, the fork server
//!   lost and restarted, a lock taken over from a dead owner, a lease taken
//!   back for redelivery (all `warn`), and the item redelivered (`info`).
//!   Their targets are the emitting modules (`mproc_pool::…`,
//!   `mproc_shm::mutex`, …). Without it nothing depends on tracing.
//!
//! [`wait`] takes connections, listeners, process handles, queues, events,
//! pool results and raw descriptors in one list ([`Waitable`]).

#![doc(test(attr(deny(warnings))))]

pub use mproc_manager as managers;
/// The Pool API across machines, on MPI (feature `mpi`).
#[cfg(feature = "mpi")]
pub use mproc_mpi as mpi;
pub use mproc_pipe as connection;
pub use mproc_pool as pool;
pub use mproc_process as process;
pub use mproc_queue as queue;
pub use mproc_shm as shm;
/// How typed values become bytes: one set of codecs (`Postcard`, the
/// default; `Pod`; `Bytes`) for connections and queues (`Connection<C>`,
/// `Queue<T, C>`), process arguments and results (`Process::codec`), pools
/// (`PoolBuilder::codec`) and manager values (`ManagerBuilder::codec`).
pub use mproc_shm::codec;
pub use mproc_sync as sync;

/// CPython's `multiprocessing.shared_memory`: named segments Python can open.
pub mod shared_memory {
    pub use mproc_shm::{PYTHON_NAME_PREFIX, SharedMemory};
}

/// Python's `concurrent.futures`, on processes: [`ProcessPoolExecutor`],
/// its [`Future`](futures::Future)s, [`wait`](futures::wait) and
/// [`as_completed`](futures::as_completed).
pub mod futures {
    pub use mproc_pool::{
        AsCompleted, AsFuture, ExecutorBuilder, Future, FutureError, FutureRef, Map,
        ProcessPoolExecutor, ReturnWhen, as_completed, as_completed_timeout, wait, wait_timeout,
    };
}

mod context;

pub use crate::context::{Context, default_context, get_context};
pub use mproc_manager::Manager;
pub use mproc_pipe::{
    Client, Connection, Listener, Waitable, Watch, pipe, wait, wait_timeout, watch,
};
pub use mproc_pool::{AsyncResult, Pool, ProcessPoolExecutor};
pub use mproc_process::{
    AuthKey, ExitStatus, JoinError, Pid, Process, ProcessHandle, ProcessInfo, StartError,
    StartMethod, StartMethodError, active_children, all_start_methods, cpu_count, current_process,
    get_start_method, init, parent_process, set_authkey, set_start_method, set_start_method_force,
};
pub use mproc_queue::{JoinableQueue, LeaseQueue, Queue, SimpleQueue};
pub use mproc_shm::{Array, RawArray, RawValue, Synchronized, SynchronizedArray, Value};
pub use mproc_sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};

/// The README's examples, compiled and run as doc tests.
// `README.md` here is a symbolic link to the repository's README: the path
// stays inside this package, so the doc test also builds from the packaged
// crate (`cargo package` stores the link's target as a plain file).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
