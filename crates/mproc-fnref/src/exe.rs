//! The identity of the running executable file.

use std::io;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::sys;

/// Identifies an executable file: device, inode, size and modification time
/// of what `/proc/self/exe` names.
///
/// Two processes with equal identities run the same image, so code offsets
/// made in one hold in the other. Rebuilding or replacing the binary changes
/// the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExeId {
    /// The device the file lives on.
    pub dev: u64,
    /// Its inode number.
    pub ino: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, seconds.
    pub mtime: i64,
    /// Its modification time, nanoseconds within the second.
    pub mtime_nsec: i64,
}

/// The identity of this process's executable file, computed once per
/// process.
///
/// # Errors
/// The error of `stat("/proc/self/exe")`, or
/// [`io::ErrorKind::Unsupported`] off Linux.
pub fn exe_id() -> io::Result<ExeId> {
    static EXE: OnceLock<Result<ExeId, i32>> = OnceLock::new();
    // An error without an OS code is the non-Linux stub's `Unsupported`.
    EXE.get_or_init(|| sys::exe_id().map_err(|e| e.raw_os_error().unwrap_or(-1)))
        .map_err(|code| match code {
            -1 => io::ErrorKind::Unsupported.into(),
            code => io::Error::from_raw_os_error(code),
        })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_and_names_this_file() {
        let a = exe_id().unwrap();
        assert_eq!(a, exe_id().unwrap());
        let meta = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(a.size, meta.len());
    }
}
