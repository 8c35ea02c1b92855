//! Helpers for multi-process tests: children are this test binary run again
//! (`--exact <child test> --ignored`), handed mproc handles as descriptors
//! placed at known numbers, and always waited for under a deadline.

#![allow(dead_code, unreachable_pub)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The environment variable naming a child's role (its test returns at once
/// without it, so `cargo test -- --ignored` passes).
const ROLE: &str = "MPROC_SHM_TEST_ROLE";
/// The hex-encoded postcard message for the child.
const MSG: &str = "MPROC_SHM_TEST_MSG";
/// How many descriptors the child finds from `FD_BASE` on.
const NFDS: &str = "MPROC_SHM_TEST_NFDS";
/// Where a child finds its descriptors.
const FD_BASE: RawFd = 100;

pub use mproc_testkit::watchdog;

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
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(st)) => return st,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("child {} did not finish within {limit:?}", self.what);
                }
                Err(e) => panic!("waiting for child {}: {e}", self.what),
            }
        }
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
    // Move the descriptors far above FD_BASE first, so placing them at
    // FD_BASE.. in the child cannot clobber one not yet placed.
    let high: Vec<OwnedFd> = fds
        .iter()
        .map(|fd| {
            // SAFETY: `fd` is open; F_DUPFD_CLOEXEC returns a new descriptor we own.
            let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 1000) };
            assert!(r >= 0, "dup: {}", std::io::Error::last_os_error());
            // SAFETY: `r` was just returned by fcntl and nothing else owns it.
            unsafe { OwnedFd::from_raw_fd(r) }
        })
        .collect();
    drop(fds);
    let raw: Vec<RawFd> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args([
        "--exact",
        test,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "-q",
    ])
    .env(ROLE, role)
    .env(MSG, hex(&bytes))
    .env(NFDS, raw.len().to_string())
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (dup2, prctl) on pre-computed values.
    unsafe {
        cmd.pre_exec(move || {
            for (i, &fd) in raw.iter().enumerate() {
                // dup2 clears close-on-exec on the new descriptor.
                if libc::dup2(fd, FD_BASE + i as RawFd) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // The child dies with the test's thread, even if the test is killed.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn child");
    drop(high);
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
    let bytes = unhex(&std::env::var(MSG).expect("payload"));
    let n: usize = std::env::var(NFDS)
        .expect("fd count")
        .parse()
        .expect("fd count");
    let fds = (0..n)
        .map(|i| {
            // SAFETY: the parent placed exactly `n` descriptors at FD_BASE.. for
            // us, and nothing else in this process owns them.
            unsafe { mproc_shm::handle::adopt_raw_fd(FD_BASE + i as RawFd) }
        })
        .collect();
    let payload = mproc_shm::handle::from_bytes_with_fds(&bytes, fds).expect("deserialize payload");
    Some((role, payload))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// The names of `/dev/shm` entries that start with `prefix`.
pub fn shm_entries(prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
