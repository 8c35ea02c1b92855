//! The OS calls of mproc-process. The helpers every mproc crate shares come
//! from mproc-shm's OS layer (`mproc_shm::sys`); `posix.rs` holds this
//! crate's own POSIX calls (Linux and macOS alike), `linux.rs` the
//! Linux-only ones and `unsupported.rs` their stand-ins elsewhere.

pub(crate) use mproc_shm::sys::{
    default_signal, exit_now, getpid, ignore_signal, random, set_cloexec, set_nonblocking,
    socketpair, socketpair_with,
};

mod posix;
pub(crate) use posix::*;

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "unsupported.rs")]
mod platform;
pub(crate) use platform::*;

/// The number of CPUs in this process's affinity mask; `None` where it
/// cannot be read.
pub(crate) fn affinity_count() -> Option<usize> {
    let n = mproc_shm::sys::allowed_cpus()?;
    usize::try_from(n).ok().filter(|&n| n > 0)
}
