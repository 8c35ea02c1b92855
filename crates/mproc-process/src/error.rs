//! Errors of starting and joining processes (the error of parsing a
//! start method's name, [`UnknownStartMethod`](crate::UnknownStartMethod),
//! is defined next to [`StartMethod`]).

use std::error::Error;
use std::fmt;
use std::io;

use mproc_shm::codec::CodecError;

use crate::method::{START_METHOD_ENV, StartMethod};
use crate::status::ExitStatus;

/// Why a process could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The codec could not encode the arguments (with postcard: a type
    /// serde refuses).
    Encode(CodecError),
    /// The arguments hold more mproc handles (file descriptors) than one
    /// start request can carry.
    TooManyHandles {
        /// How many descriptors the arguments hold.
        count: usize,
    },
    /// [`StartMethod::Fork`] was asked for while
    /// this process has more than one thread. Use the fork server (the
    /// default) or spawn instead; see
    /// [`Process::allow_fork_with_threads`](crate::Process::allow_fork_with_threads).
    ThreadedFork {
        /// How many threads the process had.
        threads: usize,
    },
    /// The operating system refused to create the process.
    Os(io::Error),
    /// The fork server could not be started or reached.
    ForkServer(io::Error),
    /// The fork server rejected the request (it reports a different
    /// executable or a malformed request).
    Rejected(&'static str),
    /// No start method was chosen and the process-wide default is unknown
    /// (see [`get_start_method`](crate::get_start_method)).
    StartMethod(StartMethodError),
    /// This platform has no implementation.
    Unsupported,
}

impl From<StartMethodError> for StartError {
    fn from(e: StartMethodError) -> Self {
        Self::StartMethod(e)
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode(e) => write!(f, "failed to serialize the process arguments: {e}"),
            Self::TooManyHandles { count } => write!(
                f,
                "the process arguments hold {count} file descriptors, more than the {} one start request can carry",
                mproc_shm::handle::MAX_FDS_PER_MESSAGE - 2
            ),
            Self::ThreadedFork { threads } => write!(
                f,
                "refusing to fork a process that has {threads} threads (a forked child of a threaded \
                 process can deadlock); use the forkserver or spawn start method"
            ),
            Self::Os(_) => f.write_str("failed to create the child process"),
            Self::ForkServer(_) => f.write_str("failed to start or reach the fork server"),
            Self::Rejected(why) => write!(f, "the fork server rejected the request: {why}"),
            Self::StartMethod(_) => {
                f.write_str("no start method was chosen and the default is unknown")
            }
            Self::Unsupported => {
                f.write_str("starting processes is not supported on this platform")
            }
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Os(e) | Self::ForkServer(e) => Some(e),
            Self::StartMethod(e) => Some(e),
            _ => None,
        }
    }
}

/// Why joining a process did not produce its return value.
#[derive(Debug)]
#[non_exhaustive]
pub enum JoinError {
    /// The function panicked. The message was also written to the child's
    /// stderr; the exit status is `Exited(1)` (`Signaled(SIGABRT)` in a
    /// program built with `panic = "abort"`).
    Panicked {
        /// The panic message.
        message: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child ended without returning a value: it called
    /// `std::process::exit`, was killed by a signal, or crashed.
    Failed(ExitStatus),
    /// The child could not run the function at all (a different executable,
    /// arguments that would not decode, a return value that would not
    /// encode).
    Bootstrap {
        /// What went wrong, as the child reported it.
        message: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child's result message was malformed.
    InvalidResult(String),
    /// The child's return value did not decode as the expected type with
    /// the process's codec.
    Decode(CodecError),
    /// The child's exit status is unknown: the fork server that started it
    /// died, or someone else reaped it. CPython reports exit code 255 here.
    Lost,
    /// The return value was already taken by an earlier join. A later join
    /// reports how the child ended, again (CPython's `join` may be called any
    /// number of times); one whose first join failed returns that same error.
    AlreadyJoined {
        /// How the child ended.
        status: ExitStatus,
    },
    /// Waiting for the child failed.
    Io(io::Error),
}

impl JoinError {
    /// How the child ended, when known.
    pub fn status(&self) -> Option<ExitStatus> {
        match self {
            Self::Panicked { status, .. }
            | Self::Bootstrap { status, .. }
            | Self::AlreadyJoined { status } => Some(*status),
            Self::Failed(s) => Some(*s),
            _ => None,
        }
    }

    /// The same outcome, for a join after the first (an OS error is
    /// repeated by its kind).
    pub(crate) fn replay(&self) -> Self {
        match self {
            Self::Panicked { message, status } => Self::Panicked {
                message: message.clone(),
                status: *status,
            },
            Self::Failed(s) => Self::Failed(*s),
            Self::Bootstrap { message, status } => Self::Bootstrap {
                message: message.clone(),
                status: *status,
            },
            Self::InvalidResult(why) => Self::InvalidResult(why.clone()),
            // The reason's text (a codec error is not `Clone`).
            Self::Decode(e) => Self::Decode(CodecError::new(e.to_string())),
            Self::Lost => Self::Lost,
            Self::AlreadyJoined { status } => Self::AlreadyJoined { status: *status },
            Self::Io(e) => Self::Io(e.kind().into()),
        }
    }

    /// Whether the child panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Panicked { message, .. } => write!(f, "the child process panicked: {message}"),
            Self::Failed(s) => write!(f, "the child process {s} without returning a value"),
            Self::Bootstrap { message, .. } => {
                write!(f, "the child process could not run its function: {message}")
            }
            Self::InvalidResult(why) => {
                write!(f, "the child process sent an invalid result: {why}")
            }
            Self::Decode(e) => write!(
                f,
                "the child process sent an invalid result: the return value did not decode: {e}"
            ),
            Self::Lost => f.write_str(
                "the exit status of the child process is unknown (its fork server died)",
            ),
            Self::AlreadyJoined { status } => write!(
                f,
                "the child process was already joined (it {status}); its value was returned then"
            ),
            Self::Io(_) => f.write_str("failed to wait for the child process"),
        }
    }
}

impl Error for JoinError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The text of a panic payload, if it has one: what `panic!` with a
/// message carries (a `&str` or a `String`). This is the `message` of
/// [`JoinError::Panicked`]; the manager reports a panicking server-side
/// update with it too.
///
/// # Examples
///
/// ```
/// let p = std::panic::catch_unwind(|| panic!("boom {}", 42)).unwrap_err();
/// assert_eq!(mproc_process::panic_text(&*p), Some("boom 42"));
/// let p = std::panic::catch_unwind(|| std::panic::panic_any(7u8)).unwrap_err();
/// assert_eq!(mproc_process::panic_text(&*p), None);
/// ```
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
}

/// Error of [`ProcessHandle::join_timeout`](crate::ProcessHandle::join_timeout)
/// and [`ProcessHandle::join_deadline`](crate::ProcessHandle::join_deadline).
#[derive(Debug)]
pub enum JoinTimeoutError {
    /// The child was still running at the deadline; the handle stays usable.
    Timeout,
    /// The child ended but did not produce a value.
    Join(JoinError),
}

mproc_shm::own_or_inner_error!(JoinTimeoutError {
    Timeout => "timed out waiting for the child process",
    Join(JoinError)
});

impl JoinTimeoutError {
    /// Whether the deadline passed with the child still running.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

/// Error of [`ProcessHandle::try_join`](crate::ProcessHandle::try_join).
#[derive(Debug)]
pub enum TryJoinError {
    /// The child is still running.
    Running,
    /// The child ended but did not produce a value.
    Join(JoinError),
}

mproc_shm::own_or_inner_error!(TryJoinError {
    Running => "the child process is still running",
    Join(JoinError)
});

impl From<JoinTimeoutError> for TryJoinError {
    fn from(e: JoinTimeoutError) -> Self {
        match e {
            JoinTimeoutError::Timeout => Self::Running,
            JoinTimeoutError::Join(e) => Self::Join(e),
        }
    }
}

/// Error of [`set_start_method`](crate::set_start_method) and
/// [`get_start_method`](crate::get_start_method).
// Serializable so that a child can report it to its parent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum StartMethodError {
    /// The process-wide start method was fixed already, by an earlier
    /// `set_start_method` or by its first use (CPython's
    /// `RuntimeError("context has already been set")`); use
    /// [`set_start_method_force`](crate::set_start_method_force) to change it.
    AlreadySet {
        /// The method in force.
        current: StartMethod,
    },
    /// The environment variable [`START_METHOD_ENV`] names no start method.
    BadEnvironment {
        /// Its value.
        value: String,
    },
}

impl fmt::Display for StartMethodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AlreadySet { current } => {
                write!(
                    f,
                    "context has already been set (the start method is {current})"
                )
            }
            Self::BadEnvironment { value } => write!(
                f,
                "{START_METHOD_ENV}={value:?} names no start method (expected forkserver, spawn or fork)"
            ),
        }
    }
}

impl Error for StartMethodError {}
