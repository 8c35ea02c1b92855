//! How a process becomes an mproc child or fork server: a constructor that
//! runs before `main` (or [`crate::init`], where there are no constructors)
//! reads the environment the parent set, serves that role and exits, so the
//! program's `main` never runs there. The child's work itself is in
//! `child`, the fork server's in `server`.

use std::io::Write;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe};

use crate::child::{self, BOOTSTRAP_EXIT, CHILD_ENV, SERVER_ENV};
use crate::sys;

/// The constructor that makes every binary able to act as a child.
///
/// Linked only if something references it: the start path does (see
/// [`keep_constructor`]), and every process that starts children runs a
/// binary in which that path exists.
#[cfg(target_os = "linux")]
#[used]
#[unsafe(link_section = ".init_array")]
static CONSTRUCTOR: extern "C" fn() = constructor;

#[cfg(target_os = "linux")]
extern "C" fn constructor() {
    child::wrap_default_hook();
    dispatch();
}

/// Keeps the constructor in the link.
pub(crate) fn keep_constructor() {
    #[cfg(target_os = "linux")]
    std::hint::black_box(&CONSTRUCTOR);
}

/// If this process was started as an mproc child or fork server, serves that
/// role and exits; otherwise returns at once.
pub(crate) fn dispatch() {
    let child = std::env::var_os(CHILD_ENV);
    let server = std::env::var_os(SERVER_ENV);
    if child.is_none() && server.is_none() {
        return;
    }
    // SAFETY: this runs before `main` (or first thing in it, as `init`
    // documents), while the process has a single thread.
    unsafe {
        sys::remove_env(CHILD_ENV);
        sys::remove_env(SERVER_ENV);
    }
    sys::set_name_from_argv0();
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        if let Some(v) = server {
            crate::server::serve(parse_fd(v.to_str()))
        } else if let Some(v) = child {
            child::spawned_child(parse_fd(v.to_str()))
        }
    }));
    // Never fall through into the program's `main`.
    let _ = r;
    sys::exit_now(BOOTSTRAP_EXIT)
}

fn parse_fd(v: Option<&str>) -> RawFd {
    let fd = v
        .and_then(|s| s.parse::<RawFd>().ok())
        .filter(|&fd| fd > 2 && sys::fd_is_open(fd));
    match fd {
        Some(fd) => fd,
        None => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "mproc: {CHILD_ENV}/{SERVER_ENV} is set but names no inherited socket; \
                 do not set these variables by hand"
            );
            sys::exit_now(BOOTSTRAP_EXIT)
        }
    }
}
