//! What can go wrong with a function reference.

use std::{error, fmt, io};

use crate::ExeId;

/// Why a function reference could not be made or resolved.
#[derive(Debug)]
#[non_exhaustive]
pub enum FnRefError {
    /// Functions by reference are not supported on this platform.
    Unsupported,
    /// The running executable could not be identified.
    Exe(io::Error),
    /// The reference was made by a process running another executable (or
    /// this one before it was rebuilt or replaced): its code offsets mean
    /// nothing here.
    ForeignExecutable {
        /// The executable that made the reference.
        made_by: ExeId,
        /// This process's executable.
        this: ExeId,
    },
    /// The offset names no function reference of this type in this
    /// executable (a corrupt or forged reference).
    NotAFunction {
        /// The offending offset.
        offset: i64,
    },
}

impl fmt::Display for FnRefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported => {
                f.write_str("functions by reference are not supported on this platform")
            }
            Self::Exe(_) => f.write_str("failed to identify the running executable"),
            Self::ForeignExecutable { .. } => f.write_str(
                "the function reference was made by a different executable \
                 (was the binary rebuilt or replaced?)",
            ),
            Self::NotAFunction { offset } => write!(
                f,
                "offset {offset} names no function of the expected type in this executable"
            ),
        }
    }
}

impl error::Error for FnRefError {
    fn source(&self) -> Option<&(dyn error::Error + 'static)> {
        match self {
            Self::Exe(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FnRefError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::Unsupported {
            Self::Unsupported
        } else {
            Self::Exe(e)
        }
    }
}
