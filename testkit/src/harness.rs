//! The harness of multi-process tests: a child process that never outlives
//! its test ([`TestChild`]), started with a payload ([`spawn_with_payload`]),
//! and pinning the calling thread to a CPU ([`pin_to_cpu`]).

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::{give_payload, wait_within};

/// A child process that is killed and reaped when dropped unwaited (for
/// example when its test panics), so a failing test leaves no process
/// behind.
#[derive(Debug)]
pub struct TestChild {
    child: Child,
    what: String,
}

impl TestChild {
    /// Guards `child`, naming it `what` in failure messages.
    pub fn new(child: Child, what: impl Into<String>) -> Self {
        Self {
            child,
            what: what.into(),
        }
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the child has finished, without waiting.
    ///
    /// # Panics
    /// If asking fails.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait for the child")
    }

    /// Waits for the child until `deadline`; after that kills it, reaps it
    /// and panics.
    ///
    /// # Panics
    /// If the child does not finish in time, or waiting fails.
    #[track_caller]
    pub fn wait_until(&mut self, deadline: Instant) -> ExitStatus {
        let limit = deadline.saturating_duration_since(Instant::now());
        wait_within(&mut self.child, limit, &self.what)
    }

    /// Waits for the child at most `limit` (as [`TestChild::wait_until`]).
    ///
    /// # Panics
    /// As [`TestChild::wait_until`].
    #[track_caller]
    pub fn wait(mut self, limit: Duration) -> ExitStatus {
        self.wait_until(Instant::now() + limit)
    }

    /// Waits (as [`TestChild::wait_until`]) and asserts a zero exit status.
    ///
    /// # Panics
    /// As [`TestChild::wait_until`], or if the child failed.
    #[track_caller]
    pub fn wait_success_until(&mut self, deadline: Instant) {
        let st = self.wait_until(deadline);
        assert!(st.success(), "child {} failed: {st:?}", self.what);
    }

    /// Waits at most `limit` and asserts a zero exit status.
    ///
    /// # Panics
    /// As [`TestChild::wait_success_until`].
    #[track_caller]
    pub fn wait_success(mut self, limit: Duration) {
        self.wait_success_until(Instant::now() + limit);
    }

    /// Sends the child SIGKILL without reaping it (it stays a zombie until
    /// waited for or dropped).
    ///
    /// # Panics
    /// If the signal cannot be sent.
    pub fn signal_kill(&self) {
        // SAFETY: kill with the pid of our own child, not yet reaped (so not
        // reused), and a valid signal number.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(r, 0, "SIGKILL child {}", self.what);
    }

    /// Sends the child SIGKILL (unless it was reaped already) and reaps it.
    ///
    /// # Panics
    /// If reaping fails.
    pub fn kill(&mut self) -> ExitStatus {
        // An error means it had exited already.
        let _ = self.child.kill();
        self.child.wait().expect("reap a killed child")
    }

    /// Reaps the child within 10 s and asserts that SIGKILL ended it.
    ///
    /// # Panics
    /// If it ended otherwise, or does not end in time.
    #[track_caller]
    pub fn expect_killed(mut self) {
        let st = self.wait_until(Instant::now() + Duration::from_secs(10));
        assert_eq!(
            st.signal(),
            Some(libc::SIGKILL),
            "child {} was not killed: {st:?}",
            self.what
        );
    }

    /// The child itself (to take its piped standard streams, say).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        // Both fail harmlessly once the child has been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` (usually a [`test_command`](crate::test_command)) with a
/// payload for the child to pick up with [`take_payload`](crate::take_payload):
/// `bytes` and `fds`, typically a serialized handle message. The descriptors
/// are closed here once the child has started.
///
/// # Panics
/// If the process cannot start.
pub fn spawn_with_payload(
    cmd: &mut Command,
    (bytes, fds): (Vec<u8>, Vec<OwnedFd>),
    what: impl Into<String>,
) -> TestChild {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    give_payload(cmd, &bytes, &raw);
    let child = cmd.spawn().expect("spawn the child");
    drop(fds);
    TestChild::new(child, what)
}

/// The CPUs the calling thread may run on, in increasing order.
///
/// # Panics
/// If the kernel does not say (Linux); elsewhere it is `[0]`.
pub fn allowed_cpus() -> Vec<usize> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a zeroed cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable cpu_set_t of the size passed.
        let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(r, 0, "sched_getaffinity failed");
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: CPU_ISSET reads the set at an index below CPU_SETSIZE.
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    vec![0]
}

/// Pins the calling thread to CPU `cpu` (Linux; elsewhere it does nothing).
///
/// # Panics
/// If the kernel refuses (`cpu` is not one of [`allowed_cpus`]).
pub fn pin_to_cpu(cpu: usize) {
    #[cfg(target_os = "linux")]
    {
        assert!(cpu < libc::CPU_SETSIZE as usize, "no CPU {cpu}");
        // SAFETY: a zeroed cpu_set_t is a valid empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` is below CPU_SETSIZE (checked) and `set` is valid.
        unsafe { libc::CPU_SET(cpu, &mut set) };
        // SAFETY: `set` is a valid cpu_set_t of the size passed.
        let r = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
        assert_eq!(r, 0, "sched_setaffinity({cpu}) failed");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cpu;
}

/// Pins the calling thread to the `i`-th of its [`allowed_cpus`] (counting
/// round), and returns that CPU: `0` and `1` are two different CPUs
/// wherever there are two.
///
/// # Panics
/// As [`pin_to_cpu`].
pub fn pin_to_nth_cpu(i: usize) -> usize {
    let cpus = allowed_cpus();
    let cpu = cpus[i % cpus.len()];
    pin_to_cpu(cpu);
    cpu
}
