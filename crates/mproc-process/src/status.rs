//! What identifies a process and how it ended: [`Pid`], [`ExitStatus`].

use std::fmt;

use crate::sys::{self, RawPid};

/// A process id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(pub(crate) RawPid);

impl Pid {
    /// The raw OS id.
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code (0–255).
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }

    /// The exit code, if it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            Self::Exited(c) => Some(c),
            Self::Signaled(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            Self::Exited(_) => None,
            Self::Signaled(s) => Some(s),
        }
    }

    /// CPython's `exitcode`: the code, or `-N` for signal N.
    pub fn exitcode(self) -> i32 {
        match self {
            Self::Exited(c) => c,
            Self::Signaled(s) => -s,
        }
    }

    pub(crate) fn from_raw(status: libc::c_int) -> Self {
        match sys::decode_status(status) {
            (true, c) => Self::Exited(c),
            (false, s) => Self::Signaled(s),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(c) => write!(f, "exited with code {c}"),
            Self::Signaled(s) => write!(f, "was killed by signal {s}"),
        }
    }
}
