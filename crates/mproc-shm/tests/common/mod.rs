//! Helpers for multi-process tests: children are this test binary run again
//! (`--exact <child test> --ignored`), handed mproc handles as descriptors
//! placed at known numbers, and always waited for under a deadline.

#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;
use std::thread;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The environment variable naming a child's role (its test returns at once
/// without it, so `cargo test -- --ignored` passes).
const ROLE: &str = "MPROC_SHM_TEST_ROLE";

#[allow(unused_imports)] // each test binary uses some of these
pub use mproc_testkit::{TestChild, shm_entries, watchdog};
use mproc_testkit::{die_with_parent, spawn_with_payload, take_payload, test_command};

/// Starts this test binary again, running only the ignored test `test`, with
/// `role` and `payload` (which may contain mproc handles) for it to pick up
/// with [`child_payload`].
pub fn spawn_child<P: Serialize>(test: &str, role: &str, payload: &P) -> TestChild {
    let mut cmd = test_command(test);
    cmd.arg("-q")
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    die_with_parent(&mut cmd);
    let payload = mproc_shm::handle::to_bytes_with_fds(payload).expect("serialize payload");
    spawn_with_payload(&mut cmd, payload, format!("{test}/{role}"))
}

/// In a child started by [`spawn_child`]: the role and payload, or `None`
/// when this test was run directly (it should then return at once).
/// Also arms a watchdog that ends this process after `limit`.
pub fn child_payload<P: DeserializeOwned>(limit: Duration) -> Option<(String, P)> {
    let role = std::env::var(ROLE).ok()?;
    thread::spawn(move || {
        thread::sleep(limit);
        eprintln!("child watchdog: {role} did not finish within {limit:?}");
        std::process::exit(3);
    });
    let role = std::env::var(ROLE).ok()?;
    // SAFETY: called once per child (its one test reads its payload), and
    // nothing else in a test process owns the descriptors placed for it.
    let (bytes, fds) = unsafe { take_payload() }.expect("payload");
    let payload = mproc_shm::handle::from_bytes_with_fds(&bytes, fds).expect("deserialize payload");
    Some((role, payload))
}
