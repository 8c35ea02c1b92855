//! Helpers for multi-process tests: re-execute this test binary as a child
//! running one `#[ignore]`d test, handing it mproc handles.
#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Starts this test binary running only the ignored test `name`, with
/// `payload` (which may contain handles) available through [`payload`].
/// The child is killed if the test fails before waiting for it.
pub fn spawn_child<T: Serialize>(name: &str, payload: &T) -> TestChild {
    let mut cmd = test_command(name);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let payload = mproc_shm::handle::to_bytes_with_fds(payload).expect("serialize payload");
    spawn_with_payload(&mut cmd, payload, name)
}

/// In a child started by [`spawn_child`]: its payload. `None` when the test
/// runs on its own (then the test does nothing).
pub fn payload<T: DeserializeOwned>() -> Option<T> {
    // SAFETY: called once per child (its one test reads its payload), and
    // nothing else in a test process owns the descriptors placed for it.
    let (bytes, fds) = unsafe { take_payload() }?;
    Some(mproc_shm::handle::from_bytes_with_fds(&bytes, fds).expect("deserialize payload"))
}

pub use mproc_testkit::{TestChild, watchdog};
use mproc_testkit::{spawn_with_payload, take_payload, test_command};

/// A shared counter in its own segment, updated non-atomically (load, then
/// store) so that a lost update would show.
#[derive(Serialize, serde::Deserialize)]
pub struct Counter(pub mproc_shm::Segment);

impl Counter {
    pub fn new() -> Self {
        Self(mproc_shm::Segment::anonymous(64).expect("segment"))
    }

    fn cell(&self) -> &std::sync::atomic::AtomicU64 {
        self.0.get(0).expect("counter cell")
    }

    pub fn get(&self) -> u64 {
        self.cell().load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set(&self, v: u64) {
        self.cell().store(v, std::sync::atomic::Ordering::Relaxed)
    }

    /// A non-atomic increment with a pause between the read and the write,
    /// which widens the window for a lost update and makes processes that
    /// hammer a lock overlap (must be done under a lock).
    pub fn bump_slowly(&self) {
        let v = self.get();
        for _ in 0..20 {
            std::hint::spin_loop();
        }
        self.set(v + 1);
    }

    /// A non-atomic increment (must be done under a lock).
    pub fn bump(&self) {
        let v = self.get();
        std::hint::black_box(());
        self.set(v + 1);
    }
}
