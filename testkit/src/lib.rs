//! Test support shared by every mproc crate (a dev-dependency only).
//!
//! It depends on no mproc crate, so even the bottom of the stack
//! (`mproc-shm`) can use it without a dependency cycle.

use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

mod fixtures;

pub use fixtures::{fuzz_corpus, only_failure_at, tag, tagged};

/// Runs `f` on its own thread and returns its result, panicking if it takes
/// longer than `limit`: a test that could block can never hang the run.
///
/// # Panics
/// If `f` panics (the panic is propagated) or does not finish within `limit`.
#[track_caller]
pub fn watchdog<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            let _ = h.join();
            r
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the body ends only after sending its result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("watchdog: test did not finish within {limit:?}")
        }
    }
}

/// [`watchdog`] with the limit in whole seconds.
///
/// # Panics
/// As [`watchdog`].
#[track_caller]
pub fn watchdog_secs<R: Send + 'static>(secs: u64, f: impl FnOnce() -> R + Send + 'static) -> R {
    watchdog(Duration::from_secs(secs), f)
}

/// In a child that runs this test binary again (see [`reexec`]): plays the
/// role named by the environment variable `var`. Does nothing in a normal
/// test run (`var` unset), so a dispatcher test can be run by hand.
pub fn play_role(var: &str, play: impl FnOnce(&str)) {
    if let Ok(role) = std::env::var(var) {
        play(&role);
    }
}

/// A child process running this test binary again: killed and reaped if
/// the test fails before it waits for it.
#[derive(Debug)]
pub struct Kid {
    child: Option<Child>,
    out: BufReader<ChildStdout>,
}

/// A command that runs this test binary again to execute only the test
/// `name` (usually `#[ignore]`d: a role played in a child process), its
/// output not captured.
///
/// # Panics
/// If the test binary's path is unknown.
pub fn test_command(name: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary"));
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd
}

/// Runs this test binary again to execute only the test `name` (usually
/// `#[ignore]`d: a role played in a child process), with `envs` added to
/// the environment. The child's standard output is piped to [`Kid::line`].
///
/// # Panics
/// If the process cannot start.
pub fn reexec(name: &str, envs: &[(&str, &OsStr)]) -> Kid {
    let mut child = test_command(name)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the test binary again");
    let out = BufReader::new(child.stdout.take().expect("piped stdout"));
    Kid {
        child: Some(child),
        out,
    }
}

impl Kid {
    /// The child's process id.
    ///
    /// # Panics
    /// Never: the child is there until waited for.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// The rest of the first output line that contains `prefix`, after it
    /// (the test harness's output before it is skipped, including its
    /// `test name ... ` that begins the child's first line).
    ///
    /// # Panics
    /// If the output ends first.
    pub fn line(&mut self, prefix: &str) -> String {
        let mut s = String::new();
        loop {
            s.clear();
            let n = self.out.read_line(&mut s).expect("read the child's output");
            assert!(n > 0, "the child ended without printing {prefix:?}");
            if let Some(at) = s.find(prefix) {
                return s[at + prefix.len()..].trim_end().to_owned();
            }
        }
    }

    /// Waits for the child to exit (run it under a [`watchdog`]).
    ///
    /// # Panics
    /// If waiting fails.
    pub fn wait(mut self) -> ExitStatus {
        let mut c = self.child.take().expect("a child not yet waited for");
        c.wait().expect("wait for the child")
    }

    /// Kills the child with SIGKILL and reaps it.
    ///
    /// # Panics
    /// If it was not killed by that signal (it had exited already).
    pub fn sigkill(mut self) {
        let mut c = self.child.take().expect("a child not yet waited for");
        c.kill().expect("SIGKILL the child");
        let st = c.wait().expect("wait for the child");
        assert_eq!(st.signal(), Some(9), "{st:?}");
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits for `child` at most `limit`; after that kills it, reaps it and
/// panics, naming it `what`.
///
/// # Panics
/// If the child does not finish in time, or waiting fails.
#[track_caller]
pub fn wait_within(child: &mut Child, limit: Duration, what: &dyn std::fmt::Display) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return st,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(2)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child {what} did not finish within {limit:?}");
            }
            Err(e) => panic!("waiting for child {what}: {e}"),
        }
    }
}

/// Where a child started with [`give_payload`] finds its descriptors.
const PAYLOAD_FD_BASE: RawFd = 100;
/// The hex-encoded message for the child.
const PAYLOAD_MSG: &str = "MPROC_TEST_MSG";
/// How many descriptors the child finds from [`PAYLOAD_FD_BASE`] on.
const PAYLOAD_NFDS: &str = "MPROC_TEST_NFDS";

/// Hands the child `cmd` starts a message and descriptors (a serialized
/// handle message, typically), for it to pick up with [`take_payload`].
/// The caller keeps `fds` open until the child has started.
///
/// At most 64 descriptors (see [`pass_fds`]).
pub fn give_payload(cmd: &mut Command, bytes: &[u8], fds: &[RawFd]) {
    cmd.env(PAYLOAD_MSG, hex(bytes))
        .env(PAYLOAD_NFDS, fds.len().to_string());
    pass_fds(cmd, fds, PAYLOAD_FD_BASE);
}

/// In a child started with [`give_payload`]: its message and descriptors.
/// `None` in a process started without one (a test run on its own).
///
/// # Safety
/// Call it at most once per process, and only where nothing else owns the
/// descriptors from 100 on (which [`give_payload`] placed there).
///
/// # Panics
/// If the parent's environment entries are malformed.
pub unsafe fn take_payload() -> Option<(Vec<u8>, Vec<OwnedFd>)> {
    let msg = std::env::var(PAYLOAD_MSG).ok()?;
    let n: usize = std::env::var(PAYLOAD_NFDS)
        .expect("descriptor count")
        .parse()
        .expect("descriptor count");
    // SAFETY: the parent placed exactly `n` descriptors from PAYLOAD_FD_BASE
    // on for this process (give_payload), and by the caller's promise
    // nothing else here owns them.
    let fds = unsafe { take_passed_fds(PAYLOAD_FD_BASE, n) };
    Some((unhex(&msg), fds))
}

/// A fresh directory under the system's temporary directory, removed with
/// its contents on drop.
#[derive(Debug)]
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    /// Creates the directory (`mproc-test-<pid>-<n>`).
    ///
    /// # Panics
    /// If it cannot be created.
    pub fn new() -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        // Relaxed: only uniqueness matters.
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("mproc-test-{}-{n}", std::process::id()));
        std::fs::create_dir(&p).expect("create a temporary directory");
        Self(p)
    }

    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// The names of its entries.
    ///
    /// # Panics
    /// If it cannot be read.
    pub fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .expect("read the temporary directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The processes descended from `pid` (children, their children, …),
/// from `/proc`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // After the command name in parentheses: state, then the parent's pid.
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<i32>().ok());
        if let Some(pp) = ppid {
            parent_of.push((p, pp));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(q) = frontier.pop() {
        for &(p, pp) in &parent_of {
            if pp == q && !out.contains(&p) {
                out.push(p);
                frontier.push(p);
            }
        }
    }
    out
}

/// Makes the child `cmd` starts find `fds` as its descriptors `first`,
/// `first + 1`, … (inherited: close-on-exec cleared), whatever numbers they
/// have here — even numbers that overlap that range.
///
/// At most 64 descriptors; more make the spawn fail with `InvalidInput`.
pub fn pass_fds(cmd: &mut Command, fds: &[RawFd], first: RawFd) {
    let raw = fds.to_vec();
    // SAFETY: the closure runs in the forked child before exec and calls only
    // fcntl and dup2, which are async-signal-safe; it allocates nothing (`raw`
    // was built before the fork and is only read).
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way (above any target number), then into place,
            // so that a descriptor already sitting on a target is not lost.
            let mut tmp = [0 as RawFd; 64];
            if raw.len() > tmp.len() {
                return Err(io::ErrorKind::InvalidInput.into());
            }
            for (i, &fd) in raw.iter().enumerate() {
                let t = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, first + 64);
                if t < 0 {
                    return Err(io::Error::last_os_error());
                }
                tmp[i] = t;
            }
            for (i, &t) in tmp[..raw.len()].iter().enumerate() {
                // dup2 clears close-on-exec on the new descriptor.
                if libc::dup2(t, first + i as RawFd) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Makes the child `cmd` starts die with SIGKILL when the thread that
/// started it ends (Linux's `PR_SET_PDEATHSIG`), so a test killed midway
/// leaves no child behind. Elsewhere this does nothing.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and makes one
    // async-signal-safe system call (prctl) with constant arguments.
    #[cfg(target_os = "linux")]
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// In a child started with [`pass_fds`]: takes ownership of the `n`
/// descriptors from `first` on.
///
/// # Safety
/// The parent passed exactly `n` descriptors from `first` on, and nothing
/// else in this process owns them.
pub unsafe fn take_passed_fds(first: RawFd, n: usize) -> Vec<OwnedFd> {
    (0..n)
        // SAFETY: guaranteed by the caller.
        .map(|i| unsafe { OwnedFd::from_raw_fd(first + i as RawFd) })
        .collect()
}

/// Bytes as lower-case hex (for passing a message in the environment).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of a [`hex`] string.
///
/// # Panics
/// If `s` is not hex of even length.
pub fn unhex(s: &str) -> Vec<u8> {
    try_unhex(s).expect("hex of even length")
}

/// The bytes of a [`hex`] string; `None` if `s` is not hex of even length.
pub fn try_unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The names of `/dev/shm` entries that start with `prefix`, sorted.
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

/// Whether a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            // The state follows the parenthesised command name.
            let state = s
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

mod harness;
pub use harness::{TestChild, allowed_cpus, pin_to_cpu, pin_to_nth_cpu, spawn_with_payload};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_result() {
        assert_eq!(watchdog_secs(10, || 6 * 7), 42);
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn propagates_a_panic() {
        watchdog_secs(10, || panic!("boom"));
    }

    #[test]
    #[should_panic(expected = "did not finish")]
    fn fails_a_body_that_overruns() {
        watchdog(Duration::from_millis(20), || {
            thread::sleep(Duration::from_secs(2))
        });
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0x7f]), "00ab7f");
        assert_eq!(unhex("00ab7f"), vec![0, 0xab, 0x7f]);
        assert_eq!(try_unhex("0"), None);
        assert_eq!(try_unhex("zz"), None);
    }
}
