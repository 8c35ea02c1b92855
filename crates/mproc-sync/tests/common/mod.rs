//! Helpers for multi-process tests: re-execute this test binary as a child
//! running one `#[ignore]`d test, handing it mproc handles.
#![allow(dead_code, unreachable_pub)]

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus, Stdio};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Starts this test binary running only the ignored test `name`, with
/// `payload` (which may contain handles) available through [`payload`].
pub fn spawn_child<T: Serialize>(name: &str, payload: &T) -> Child {
    let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(payload).expect("serialize payload");
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let mut cmd = test_command(name);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    give_payload(&mut cmd, &bytes, &raw);
    let child = cmd.spawn().expect("spawn child");
    drop(fds);
    child
}

/// In a child started by [`spawn_child`]: its payload. `None` when the test
/// runs on its own (then the test does nothing).
pub fn payload<T: DeserializeOwned>() -> Option<T> {
    // SAFETY: called once per child (its one test reads its payload), and
    // nothing else in a test process owns the descriptors placed for it.
    let (bytes, fds) = unsafe { take_payload() }?;
    Some(mproc_shm::handle::from_bytes_with_fds(&bytes, fds).expect("deserialize payload"))
}

/// Waits for `child`, killing it (and failing) after `limit`.
pub fn wait_child(child: &mut Child, limit: Duration) -> ExitStatus {
    let id = child.id();
    wait_within(child, limit, &id)
}

/// Waits for `child` and asserts that it exited with status 0.
pub fn expect_success(mut child: Child, limit: Duration) {
    let st = wait_child(&mut child, limit);
    assert!(st.success(), "child failed: {st:?}");
}

/// Kills `child` with SIGKILL, without reaping it (it stays a zombie).
pub fn sigkill(child: &Child) {
    // SAFETY: kill with a valid pid of our own child and a valid signal.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(r, 0, "kill failed");
}

/// Reaps `child` and asserts that SIGKILL ended it.
pub fn expect_killed(mut child: Child) {
    let st = wait_child(&mut child, Duration::from_secs(10));
    assert_eq!(
        st.signal(),
        Some(libc::SIGKILL),
        "child was not killed: {st:?}"
    );
}

pub use mproc_testkit::watchdog;
use mproc_testkit::{give_payload, take_payload, test_command, wait_within};

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

/// Pins the calling thread to one CPU it may use now, and returns it.
pub fn pin_to_one_cpu() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // writes at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(r, 0, "sched_getaffinity failed");
    // SAFETY: CPU_ISSET reads the set at an index below CPU_SETSIZE.
    let cpu = (0..libc::CPU_SETSIZE as usize)
        .find(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .expect("some CPU is allowed");
    pin_to_cpu(cpu);
    cpu
}

/// Pins the calling thread to `cpu`.
pub fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it came from a set) and `set` is valid.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    assert_eq!(r, 0, "sched_setaffinity failed");
}
