//! The OS calls of mproc-fnref: `linux.rs` (the executable's identity from
//! `/proc/self/exe`, its loaded segments from `dl_iterate_phdr`) and
//! `unsupported.rs` (stand-ins elsewhere). mproc-fnref sits beside
//! mproc-shm at the bottom of the workspace, so it has no shared OS layer
//! to draw on and needs none.

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "unsupported.rs")]
mod platform;
pub(crate) use platform::*;

/// One loaded segment of this executable: `[start, end)`, executable or not.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Range {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) exec: bool,
}
