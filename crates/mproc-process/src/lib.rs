//! Processes for mproc, started the way Python's `multiprocessing` starts
//! them, without its traps: safe from multi-threaded parents, no
//! `if __name__ == "__main__"` bootstrap, daemons that really die with their
//! parent, and return values (and panics) that come back on `join`.
//!
//! # Hello, world!
//!
//! ```
//! use mproc_process::Process;
//!
//! fn add((a, b): (u64, u64)) -> u64 {
//!     a + b
//! }
//!
//! let mut child = Process::new(add, (2, 3)).start()?;
//! assert_eq!(child.join()?, 5);
//! assert_eq!(child.exitcode(), Some(0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Functions and arguments
//!
//! A child runs a `fn` item or a non-capturing closure `Fn(A) -> R`.
//! Functions reach the child *by reference*: the child runs the same
//! executable, and the parent sends where the function is, not what it is. A
//! capturing closure (or a fn pointer) is a compile-time error, because its
//! state could not follow. Data goes by value, encoded with a codec of
//! [`mproc_shm::codec`]: [`Postcard`] by default (the arguments `A` and the
//! result `R` are `Serialize + DeserializeOwned`), or the one
//! [`Process::codec`] chooses ([`Pod`] for plain data, [`Bytes`] for a
//! `Vec<u8>`). mproc handles inside postcard arguments or results (shared
//! memory segments, and the locks, queues and connections built on them)
//! travel as file descriptors, so the child works on the same shared memory
//! under every start method.
//!
//! # Start methods
//!
//! * [`StartMethod::ForkServer`] (the default): on first use this process
//!   starts a fork server by exec of its own executable. The server is
//!   single-threaded and small, and forks one child per request. Starting a
//!   child is therefore safe from a parent with many threads, and cheap.
//! * [`StartMethod::Spawn`]: each child is a fresh exec of this executable
//!   (`posix_spawn` of `/proc/self/exe`).
//! * [`StartMethod::Fork`]: the caller forks. Fastest, but only safe when the
//!   caller has a single thread, so it is refused otherwise
//!   ([`StartError::ThreadedFork`]) unless the caller accepts the hazard
//!   through the `unsafe` [`Process::allow_fork_with_threads`]. A `cargo
//!   test` binary always has several threads.
//!
//! Choose per process with [`Process::start_method`], or make a [`Context`]
//! with [`get_context`] that fixes it for everything made through it. A
//! builder without a method uses the process-wide default
//! ([`get_start_method`]): the one given to [`set_start_method`], else the
//! environment variable [`START_METHOD_ENV`] (`MPROC_START_METHOD`), else the
//! fork server; a child inherits its parent's.
//!
//! # Who am I
//!
//! [`current_process`] names this process and says how it was started;
//! [`parent_process`] describes the parent, with a sentinel that sees its
//! death even before it is reaped; each process has an [`AuthKey`]
//! (32 random bytes in the main process) that its children inherit, whatever
//! the start method, and that a manager uses when given no key.
//!
//! # Child dispatch: programs, examples and tests alike
//!
//! A spawned child and the fork server are new runs of the same binary. They
//! must never run its `main`. This crate puts a function in the ELF
//! `.init_array`, which the C runtime runs before `main` in every kind of
//! binary, including a libtest `cargo test` harness whose `main` is not
//! yours. It finds an environment variable that marks a child, serves the
//! request and exits. Nothing is needed in your `main`. On platforms without
//! such constructors, call [`init`] first thing in `main`; on Linux it is a
//! harmless no-op.
//!
//! A child's `main` never runs, so whatever `main` sets up (loggers, global
//! configuration) is not there in a spawned or fork-server child: pass what
//! the child needs as arguments. Forked children inherit the memory of the
//! caller.
//!
//! # Exit status
//!
//! [`ProcessHandle::join`] returns the function's value, or a [`JoinError`]
//! that carries the [`ExitStatus`] (`Exited(code)` / `Signaled(sig)`) and,
//! for a panic, its message (which the child also printed to its stderr; its
//! exit code is 1). [`ProcessHandle::exitcode`] follows CPython: `None` while
//! running, the code, or `-N` for signal N.
//!
//! # Daemons
//!
//! A daemon is a child that dies with its parent, also when the parent is
//! killed with SIGKILL (`PR_SET_PDEATHSIG`, plus a parent-pid check right
//! after setting it). Daemons may start children of their own.
//!
//! # Waiting on many things, and async
//!
//! [`ProcessHandle`] and [`ProcessInfo`] are
//! [`Waitable`](mproc_shm::ready::Waitable): `mproc_pipe::wait` takes them
//! beside connections, queues and events, and reports a process once it has
//! ended. With the `tokio` feature, `ProcessHandle::join_async` awaits the
//! end through the runtime's reactor (no thread per waiter).
//!
//! # Features
//!
//! * `tokio`: `ProcessHandle::join_async` (see above).
//! * `tracing`: `tracing` events (`warn`) when the fork server is lost (its
//!   pid, the error that showed it, how it ended) and when it is restarted
//!   (the old and the new pid).
//!
//! # CPU count
//!
//! [`cpu_count`] is the number of CPUs this process may use (affinity mask,
//! cgroup quota, and the cluster scheduler's allocation when set), and
//! [`cpu_count_source`] says which of them decided.

#![doc(test(attr(deny(warnings))))]

mod authkey;
mod boot;
mod child;
mod context;
mod cpu;
mod error;
mod handle;
mod info;
mod method;
mod process;
mod ready;
mod server;
mod start;
mod state;
mod status;
mod sys;
mod watch;
mod wire;

pub use crate::authkey::{AuthKey, set_authkey};
pub use crate::context::{
    Context, all_start_methods, get_context, get_start_method, set_start_method,
    set_start_method_force,
};
pub use crate::cpu::{CpuCount, CpuSource, cpu_count, cpu_count_source};
pub use crate::error::{
    JoinError, JoinTimeoutError, StartError, StartMethodError, TryJoinError, panic_text,
};
pub use crate::handle::{PendingStart, ProcessHandle};
pub use crate::info::{ProcessInfo, active_children, current_process, parent_process};
pub use crate::method::{START_METHOD_ENV, StartMethod, UnknownStartMethod};
pub use crate::process::Process;
pub use crate::status::{ExitStatus, Pid};
pub use mproc_shm::codec::{Bytes, Codec, CodecError, Encode, Pod, Postcard};

/// Serves the child or fork-server role if this process was started as one
/// (and then exits); returns at once otherwise.
///
/// On Linux this already happens before `main`, so calling it is optional
/// and harmless. Where the platform has no constructors, call it first thing
/// in `main`, before any other thread exists.
pub fn init() {
    boot::keep_constructor();
    #[cfg(not(target_os = "linux"))]
    child::wrap_default_hook();
    boot::dispatch();
}

/// Internals for mproc's own tests and fuzz targets. Not a stable API.
#[doc(hidden)]
pub mod __private {
    /// The pid of this process's fork server, if one runs.
    pub fn fork_server_pid() -> Option<i32> {
        crate::server::server_pid()
    }

    /// The `process_wire` fuzz target: the first byte chooses the parser
    /// (even: start-request frame, odd: result frame fed in pieces); the
    /// rest is the input. Returns whether a complete, valid frame decoded.
    pub fn fuzz_wire(data: &[u8]) -> bool {
        match data.split_first() {
            None => false,
            Some((sel, rest)) if sel % 2 == 0 => crate::wire::fuzz_request(rest).is_ok(),
            Some((_, rest)) => matches!(crate::wire::fuzz_result(rest), Ok(Some(_))),
        }
    }

    /// Sample inputs for the `process_wire` corpus: `(file name, bytes)`.
    pub fn wire_samples() -> Vec<(&'static str, Vec<u8>)> {
        crate::wire::samples()
    }
}
