//! The OS calls of mproc-pool. The helpers every mproc crate shares come
//! from mproc-shm's OS layer (`mproc_shm::sys`); `posix.rs` holds this
//! crate's own POSIX calls (the Ctrl-C handler), `linux.rs` the Linux-only
//! ones (the eventfd) and `unsupported.rs` their stand-ins elsewhere.

pub(crate) use mproc_shm::sys::ignore_signal;

mod posix;
pub(crate) use posix::*;

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "unsupported.rs")]
mod platform;
pub(crate) use platform::*;
