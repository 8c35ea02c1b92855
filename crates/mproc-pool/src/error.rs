//! Errors of pool construction, of pool operations and of single tasks
//! (the error of [`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout),
//! which hands the result back, is defined next to it).

use std::error::Error;
use std::fmt;
use std::io;

use mproc_process::{ExitStatus, StartError};

use crate::wire::{PANIC_STR, PANIC_STRING, Panic};

/// Why a [`PoolBuilder::build`](crate::PoolBuilder::build) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// `processes(0)`: a pool needs at least one worker.
    NoProcesses,
    /// `max_tasks_per_child(0)`.
    ZeroMaxTasks,
    /// A worker process could not be started.
    Start(StartError),
    /// The initializer failed (panicked) in a worker; the pool was torn down.
    Initializer {
        /// The panic message.
        message: String,
    },
    /// A worker ended before it was ready.
    WorkerLost {
        /// How it ended.
        status: ExitStatus,
    },
    /// An operating-system call failed (shared memory, sockets, threads).
    Io(io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoProcesses => f.write_str("the number of processes must be at least 1"),
            Self::ZeroMaxTasks => f.write_str("max_tasks_per_child must be at least 1"),
            Self::Start(_) => f.write_str("failed to start a pool worker"),
            Self::Initializer { message } => write!(f, "the pool initializer failed: {message}"),
            Self::WorkerLost { status } => write!(f, "a pool worker {status} before it was ready"),
            Self::Io(_) => f.write_str("failed to set up the pool"),
        }
    }
}

impl Error for BuildError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Start(e) => Some(e),
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// What a task's panic payload was (the value given to `panic!` or
/// [`std::panic::panic_any`]), as [`TaskError::Panicked`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PanicPayload {
    /// A `&'static str` (`panic!("literal")`): the message is the string.
    Str,
    /// A `String` (`panic!("{x}")`, `.unwrap()`, `.expect(..)`): the message
    /// is the string.
    String,
    /// Another type ([`std::panic::panic_any`]): it cannot travel, and the
    /// message is `Box<dyn Any>`.
    Other,
}

/// Why one task (one call of the function on one item) produced no value.
///
/// Matchable by kind, e.g. `TaskError::Panicked { message, .. }`; new kinds
/// and fields may be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskError {
    /// The function panicked; the worker survived. (CPython re-raises the
    /// remote exception with the worker's traceback text.)
    #[non_exhaustive]
    Panicked {
        /// The panic message: the payload when it is a `String` or `&str`.
        message: String,
        /// What the payload was.
        payload: PanicPayload,
        /// Where it panicked (`file:line:column`), if known.
        location: Option<String>,
        /// The worker's backtrace, when backtraces are enabled there
        /// (`RUST_BACKTRACE=1`, which workers inherit).
        backtrace: Option<String>,
    },
    /// The worker running the task died (killed by a signal, aborted, out of
    /// memory, exited). It was replaced; other tasks were not affected.
    WorkerLost {
        /// The dead worker's process id.
        pid: i32,
        /// How it ended.
        status: ExitStatus,
    },
    /// The task was cancelled ([`Pool::cancel`](crate::Pool::cancel),
    /// Ctrl-C, [`Pool::terminate`](crate::Pool::terminate), or the pool was
    /// dropped) before it finished.
    Cancelled,
    /// A value of the task could not be serialized: its argument, in this
    /// process (the task never ran), or its result, in the worker (the task
    /// ran; its result is lost). The message says which, and keeps the
    /// reason a `Serialize` impl gave (`serde::ser::Error::custom`).
    Encode(String),
    /// The argument or the result did not travel: the worker could not
    /// decode the argument, or the parent could not decode the result.
    Decode(String),
    /// Replacement workers kept failing their initializer, so the pool gave
    /// up running tasks.
    InitializerFailed(String),
    /// No worker could be started to run the task (the fork server could
    /// not fork, or died, again and again): the message says why.
    WorkerStart(String),
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panicked {
                message,
                location: Some(at),
                ..
            } => write!(f, "the task panicked at {at}: {message}"),
            Self::Panicked { message, .. } => write!(f, "the task panicked: {message}"),
            Self::WorkerLost { pid, status } => {
                write!(f, "the worker running the task (pid {pid}) {status}")
            }
            Self::Cancelled => f.write_str("the task was cancelled"),
            Self::Encode(m) => write!(f, "could not serialize {m}"),
            Self::Decode(m) => write!(f, "a task's value could not be deserialized: {m}"),
            Self::InitializerFailed(m) => {
                write!(f, "pool workers keep failing their initializer: {m}")
            }
            Self::WorkerStart(m) => write!(f, "no pool worker could be started: {m}"),
        }
    }
}

impl Error for TaskError {}

impl TaskError {
    /// A panic as it came from a worker.
    pub(crate) fn from_panic(p: Panic) -> Self {
        Self::Panicked {
            message: p.message,
            payload: match p.payload {
                PANIC_STR => PanicPayload::Str,
                PANIC_STRING => PanicPayload::String,
                _ => PanicPayload::Other,
            },
            location: p.location,
            backtrace: p.backtrace,
        }
    }

    /// A panic caught somewhere else than a local worker (for example on an
    /// MPI rank by mproc-mpi), known only by its message: the payload was a
    /// `String`, and neither location nor backtrace are known.
    pub fn panicked(message: impl Into<String>) -> Self {
        Self::Panicked {
            message: message.into(),
            payload: PanicPayload::String,
            location: None,
            backtrace: None,
        }
    }

    /// Whether the task's function panicked.
    pub fn is_panicked(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }

    /// Whether the worker running the task died.
    pub fn is_worker_lost(&self) -> bool {
        matches!(self, Self::WorkerLost { .. })
    }

    /// Whether the task was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled)
    }
}

/// Why an item of [`Pool::try_imap`](crate::Pool::try_imap) (or its
/// chunked and unordered forms) has no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryImapError<E> {
    /// The item's task failed.
    Task(TaskError),
    /// The input yielded this error at this position: the input ends there,
    /// so this is the last item.
    Input(E),
}

impl<E> fmt::Display for TryImapError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Task(_) => f.write_str("the task failed"),
            Self::Input(_) => f.write_str("the input yielded an error"),
        }
    }
}

impl<E: Error + 'static> Error for TryImapError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Task(e) => Some(e),
            Self::Input(e) => Some(e),
        }
    }
}

impl<E> From<TaskError> for TryImapError<E> {
    fn from(e: TaskError) -> Self {
        Self::Task(e)
    }
}

/// Why a pool operation (`map`, `apply`, `get` on an [`AsyncResult`](crate::AsyncResult), …)
/// failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolError {
    /// The pool was closed or terminated, so it takes no new work (Python's
    /// `ValueError("Pool not running")`).
    NotRunning,
    /// `join` was called on a pool that was neither closed nor terminated
    /// (Python's `ValueError("Pool is still running")`).
    StillRunning,
    /// An explicit chunk size of 0 (CPython silently returns `None`s).
    ZeroChunksize,
    /// A task failed. For `map` this is the first failure in input order
    /// (every other task still ran, as in CPython).
    Task {
        /// The position of the failed item in the input (0 for `apply`).
        index: usize,
        /// Why it failed.
        error: TaskError,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRunning => f.write_str("the pool is not running"),
            Self::StillRunning => {
                f.write_str("the pool is still running (close or terminate it before join)")
            }
            Self::ZeroChunksize => f.write_str("the chunk size must be at least 1"),
            Self::Task { index, .. } => write!(f, "task {index} failed"),
        }
    }
}

impl Error for PoolError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Task { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl PoolError {
    /// The task error, if a task failed.
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            Self::Task { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether a worker died running the failed task.
    pub fn is_worker_lost(&self) -> bool {
        self.task_error().is_some_and(TaskError::is_worker_lost)
    }

    /// Whether the work was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.task_error().is_some_and(TaskError::is_cancelled)
    }
}

/// Why [`Imap::next_timeout`](crate::Imap::next_timeout) (or
/// `next_deadline`, or those of [`TryImap`](crate::TryImap)) returned
/// without an item (Python's `next(timeout)` raising `TimeoutError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextTimeoutError {
    /// No result was ready in time; the iterator stays usable.
    Timeout,
}

impl fmt::Display for NextTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out waiting for the next result")
    }
}

impl Error for NextTimeoutError {}
