//! [`StartMethod`]: how a child process is created, and the environment
//! variable that chooses the default.

use std::fmt;
use std::str::FromStr;

/// How a child process is created. See the crate docs for the trade-offs.
///
/// `StartMethod::default()` is the built-in default, the fork server; the
/// process-wide default that builders follow is [`get_start_method`](crate::get_start_method).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum StartMethod {
    /// A single-threaded server process, started by exec of this binary on
    /// first use, forks each child. Safe from threaded parents; fast.
    #[default]
    #[serde(rename = "forkserver")]
    ForkServer,
    /// Re-execute this binary for each child. Safe from threaded parents.
    #[serde(rename = "spawn")]
    Spawn,
    /// Fork the calling process. Fastest; refused when the caller has more
    /// than one thread.
    #[serde(rename = "fork")]
    Fork,
}

impl StartMethod {
    /// The name Python uses: `"forkserver"`, `"spawn"` or `"fork"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ForkServer => "forkserver",
            Self::Spawn => "spawn",
            Self::Fork => "fork",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::ForkServer),
            1 => Some(Self::Spawn),
            2 => Some(Self::Fork),
            _ => None,
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::ForkServer => 0,
            Self::Spawn => 1,
            Self::Fork => 2,
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "forkserver" => Ok(Self::ForkServer),
            "spawn" => Ok(Self::Spawn),
            "fork" => Ok(Self::Fork),
            other => Err(UnknownStartMethod(other.to_owned())),
        }
    }
}

/// The environment variable that chooses the process-wide default start
/// method (`forkserver`, `spawn` or `fork`) without code changes; see
/// [`get_start_method`](crate::get_start_method).
pub const START_METHOD_ENV: &str = "MPROC_START_METHOD";

/// Error of parsing a [`StartMethod`] name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStartMethod(pub String);

impl fmt::Display for UnknownStartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot find context for '{}' (expected forkserver, spawn or fork)",
            self.0
        )
    }
}

impl std::error::Error for UnknownStartMethod {}
