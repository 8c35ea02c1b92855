//! Helpers for multi-process tests: children are this test binary run again
//! (`--exact <child test> --ignored`), handed mproc handles as descriptors
//! placed at known numbers, and always waited for under a deadline.

#![allow(dead_code, unreachable_pub)]

use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The environment variable naming a child's role (its test returns at once
/// without it, so `cargo test -- --ignored` passes).
const ROLE: &str = "MPROC_SHM_TEST_ROLE";

use mproc_testkit::{die_with_parent, give_payload, take_payload, test_command, wait_within};
#[allow(unused_imports)] // each test binary uses some of these
pub use mproc_testkit::{shm_entries, watchdog};

/// A child process that is killed and reaped if dropped before
/// [`TestChild::wait`] (for example when the test panics).
pub struct TestChild {
    child: Option<Child>,
    what: String,
}

impl TestChild {
    /// Waits for the child at most `limit`; kills it and panics after that.
    #[track_caller]
    pub fn wait(mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("waited twice");
        wait_within(&mut child, limit, &self.what)
    }

    /// Waits (as [`TestChild::wait`]) and asserts a zero exit status.
    #[track_caller]
    pub fn wait_success(self, limit: Duration) {
        let what = self.what.clone();
        let st = self.wait(limit);
        assert!(st.success(), "child {what} failed: {st:?}");
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status if the child has finished, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("already waited");
        child.try_wait().expect("try_wait")
    }

    /// Sends the child `SIGKILL` and reaps it.
    #[track_caller]
    pub fn kill(mut self) -> ExitStatus {
        let mut child = self.child.take().expect("waited twice");
        let _ = child.kill();
        child.wait().expect("reaping a killed child")
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts this test binary again, running only the ignored test `test`, with
/// `role` and `payload` (which may contain mproc handles) for it to pick up
/// with [`child_payload`].
pub fn spawn_child<P: Serialize>(test: &str, role: &str, payload: &P) -> TestChild {
    let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(payload).expect("serialize payload");
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = test_command(test);
    cmd.arg("-q")
        .env(ROLE, role)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    give_payload(&mut cmd, &bytes, &raw);
    die_with_parent(&mut cmd);
    let child = cmd.spawn().expect("spawn child");
    drop(fds);
    TestChild {
        child: Some(child),
        what: format!("{test}/{role}"),
    }
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
