//! SharedMemory against the real CPython, both ways. Skipped (with a
//! message) where python3 is not installed. Every Python child runs under a
//! deadline, and every name is unlinked even when an assertion fails.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{shm_entries, watchdog};
use mproc_shm::{SegmentError, SharedMemory};
use mproc_testkit::TestChild;

const LIMIT: Duration = Duration::from_secs(60);
const SIZE: usize = 10_000;

/// Runs `test` with the Python command, under a watchdog of LIMIT; skips
/// it (with a message) where python3 is not installed.
fn with_python(test: impl FnOnce(&'static str) + Send + 'static) {
    if let Some(py) = python() {
        watchdog(LIMIT, move || test(py));
    }
}

fn python() -> Option<&'static str> {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("import multiprocessing.shared_memory")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some("python3")
    } else {
        eprintln!(
            "skipping Python interop test: python3 with multiprocessing.shared_memory is not available"
        );
        None
    }
}

/// Unlinks a name on drop (ignoring "already gone"), so a failure leaves no
/// /dev/shm entry behind.
struct Unlink(String);
impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = mproc_shm::unlink_named(&self.0);
    }
}

/// Waits for the Python child (at most LIMIT) and asserts that it succeeded
/// (`hint` says what a failure likely means) without a resource-tracker
/// warning on its standard error, `stderr`.
fn expect_success(child: TestChild, stderr: &mpsc::Receiver<String>, hint: &str) {
    let st = child.wait(LIMIT);
    let err = stderr.recv_timeout(LIMIT).unwrap_or_default();
    assert!(st.success(), "python failed{hint}: {st:?}\n{err}");
    assert!(!err.contains("resource_tracker"), "python warned: {err}");
}

/// Reads a child stream to the end on a thread; the result arrives on the
/// returned channel.
fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// Runs `script` in `py` with `args`; its standard error is drained into
/// the returned channel.
fn run_python(
    py: &str,
    script: &str,
    args: &[&str],
    stdin: Stdio,
    stdout: Stdio,
) -> (TestChild, mpsc::Receiver<String>) {
    let mut child = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let stderr = drain(child.stderr.take().unwrap());
    (TestChild::new(child, "python"), stderr)
}

fn rust_pattern(i: usize) -> u8 {
    (i * 13 + 1) as u8
}

const PY_CREATES: &str = r#"
import sys
from multiprocessing import shared_memory
size = int(sys.argv[1])
shm = shared_memory.SharedMemory(create=True, size=size)
ok = False
try:
    shm.buf[:size] = bytes((i * 7 + 3) % 256 for i in range(size))
    print(shm.name, flush=True)
    sys.stdin.readline()               # the Rust side has read and written
    ok = bytes(shm.buf[100:108]) == b"fromrust"
finally:
    shm.close()
    shm.unlink()                       # also unregisters from the resource tracker
sys.exit(0 if ok else 5)
"#;

#[test]
fn python_creates_rust_opens() {
    with_python(|py| {
        let size = SIZE.to_string();
        let (mut child, stderr) =
            run_python(py, PY_CREATES, &[&size], Stdio::piped(), Stdio::piped());
        let mut stdin = child.child_mut().stdin.take().unwrap();
        let stdout = child.child_mut().stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let name = rx
            .recv_timeout(LIMIT)
            .expect("python did not print the segment name")
            .trim()
            .to_owned();
        let _unlink = Unlink(name.clone());
        assert!(
            name.starts_with("psm_") && name.len() == 12,
            "python name {name:?}"
        );

        let shm = SharedMemory::open(&name).unwrap();
        assert_eq!(shm.size(), SIZE);
        assert!(!shm.unlinks_on_drop());
        let bytes = shm.to_vec();
        for (i, &b) in bytes.iter().enumerate() {
            assert_eq!(b, ((i * 7 + 3) % 256) as u8, "byte {i}");
        }
        shm.write(100, b"fromrust").unwrap();
        drop(shm); // an opener never unlinks: Python's unlink must still succeed
        stdin.write_all(b"done\n").unwrap();
        drop(stdin);
        expect_success(child, &stderr, "");
        assert!(matches!(
            SharedMemory::open(&name),
            Err(SegmentError::NotFound(_))
        ));
    });
}

const PY_OPENS: &str = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
name, size = sys.argv[1], int(sys.argv[2])
try:
    shm = shared_memory.SharedMemory(name=name, track=False)     # 3.13+
except TypeError:
    shm = shared_memory.SharedMemory(name=name)
    # Up to 3.12 attaching registers the segment with the resource tracker,
    # which would unlink it (and warn) when this process exits: undo that.
    resource_tracker.unregister(shm._name, "shared_memory")
ok = shm.size == size and bytes(shm.buf[:size]) == bytes((i * 13 + 1) % 256 for i in range(size))
shm.buf[0:10] = b"frompython"
shm.close()
sys.exit(0 if ok else 5)
"#;

#[test]
fn rust_creates_python_opens() {
    with_python(|py| {
        let shm = SharedMemory::create(SIZE).unwrap();
        let name = shm.name().to_owned();
        let data: Vec<u8> = (0..SIZE).map(rust_pattern).collect();
        shm.write(0, &data).unwrap();
        let size = SIZE.to_string();
        let (child, stderr) =
            run_python(py, PY_OPENS, &[&name, &size], Stdio::null(), Stdio::null());
        expect_success(child, &stderr, " (bytes did not match?)");
        let mut back = [0u8; 10];
        shm.read(0, &mut back).unwrap();
        assert_eq!(&back, b"frompython");
        // Python did not unlink it; the creator does, on drop.
        assert_eq!(shm_entries(&name), std::slice::from_ref(&name));
        drop(shm);
        assert!(shm_entries(&name).is_empty());
    });
}
