//! What a panicking child writes to its stderr: its message once, a
//! backtrace when `RUST_BACKTRACE` asks for one, and (for a forked child)
//! the output of the panic hook its parent had installed.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd};

use common::watchdog;
use mproc_process::{JoinError, Process, StartMethod};

#[inline(never)]
fn deep_panic_for_the_backtrace(n: u32) -> u32 {
    panic!("boom {n}")
}

/// Captures the stderr of a child that panics: runs in a spawned,
/// single-threaded process (so it may fork, set variables and swap fd 2).
fn capture((method, backtrace, user_hook): (String, String, bool)) -> String {
    // SAFETY: this child has a single thread.
    unsafe { std::env::set_var("RUST_BACKTRACE", backtrace) };
    if user_hook {
        std::panic::set_hook(Box::new(|info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            let _ = writeln!(std::io::stderr(), "USER HOOK SAW: {msg}");
        }));
    }
    // SAFETY: memfd_create takes a NUL-terminated name and flags.
    let fd = unsafe { libc::memfd_create(c"stderr".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: `fd` is a fresh descriptor nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    // SAFETY: dup/dup2 take plain descriptors; 2 is restored below.
    let saved = unsafe { libc::dup(2) };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::dup2(file.as_raw_fd(), 2) }, 2);
    let r = Process::new(deep_panic_for_the_backtrace, 7)
        .start_method(method.parse().unwrap())
        .start()
        .unwrap()
        .join();
    // SAFETY: restores the saved stderr and closes the copy.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    assert!(matches!(r, Err(JoinError::Panicked { .. })), "{r:?}");
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    text
}

fn run(method: &str, backtrace: &str, user_hook: bool) -> String {
    Process::new(
        capture,
        (method.to_owned(), backtrace.to_owned(), user_hook),
    )
    .start_method(StartMethod::Spawn)
    .start()
    .unwrap()
    .join()
    .unwrap()
}

#[test]
fn a_panicking_child_prints_a_backtrace_when_asked() {
    watchdog(120, || {
        for m in ["forkserver", "spawn", "fork"] {
            let text = run(m, "1", false);
            assert_eq!(text.matches("panicked at").count(), 1, "{m}: {text}");
            assert!(text.contains("boom 7"), "{m}: {text}");
            assert!(text.contains("stack backtrace:"), "{m}: {text}");
            assert!(text.contains("deep_panic_for_the_backtrace"), "{m}: {text}");

            let text = run(m, "0", false);
            assert_eq!(text.matches("panicked at").count(), 1, "{m}: {text}");
            assert!(!text.contains("stack backtrace"), "{m}: {text}");
            assert!(text.contains("RUST_BACKTRACE=1"), "{m}: {text}");
        }
    });
}

#[test]
fn a_forked_child_chains_the_parents_panic_hook() {
    watchdog(120, || {
        let text = run("fork", "0", true);
        assert!(text.contains("USER HOOK SAW: boom 7"), "{text}");
        assert_eq!(text.matches("panicked at").count(), 1, "{text}");
        // A spawned child is a new run of the program: its `main` (where a
        // hook would be installed) never ran, so only mproc's hook speaks.
        let text = run("spawn", "0", true);
        assert!(!text.contains("USER HOOK"), "{text}");
        assert_eq!(text.matches("panicked at").count(), 1, "{text}");
    });
}
