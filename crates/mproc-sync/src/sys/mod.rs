//! The OS calls of mproc-sync. The helpers every mproc crate shares come
//! from mproc-shm's OS layer (`mproc_shm::sys`); `linux.rs` holds the
//! Linux-only call (the kernel thread id) and `unsupported.rs` its stand-in
//! elsewhere.

#[cfg_attr(target_os = "linux", path = "linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "unsupported.rs")]
mod platform;
pub(crate) use platform::*;
