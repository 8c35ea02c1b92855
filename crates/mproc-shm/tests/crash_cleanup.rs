//! Named segments do not outlive a program that dies without dropping them:
//! a child (this test binary run again) creates one named object of every
//! kind, then is SIGKILLed, or exits without running destructors, and its
//! names must leave `/dev/shm` soon after, except the one it persisted.
//! (The tests run one after the other in their own binary, so looking for
//! this binary's tracker processes sees only theirs.)

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::{TestChild, child_payload, spawn_child, watchdog};
use mproc_shm::{
    Array, NAME_PREFIX, RawArray, RawValue, Segment, SharedAtomicU32, SharedAtomicU64,
    SharedMemory, Value,
};

const LIMIT: Duration = Duration::from_secs(120);
/// How long the tracker may take to act after its program is gone.
const CLEANUP: Duration = Duration::from_secs(10);
const MAILBOX: usize = 4096;
/// What the parent stores into `ready` to let an "exit" child end.
const GO: u32 = 2;
/// The tests look at process-wide state (this binary's trackers).
static SERIAL: Mutex<()> = Mutex::new(());

/// The names a child reports, and the one it persisted.
struct Report {
    tracked: Vec<String>,
    persisted: String,
}

/// Creates one named object of each kind (their names are `tag_…`, or
/// generated), plus one it persists and one it drops, writes their names to
/// `mailbox` and sets `ready`; then, by role, waits to be killed, or for
/// [`GO`] and then exits without dropping anything.
#[test]
#[ignore = "child process of the tests in this file"]
fn child_create_named_and_die() {
    let Some((role, (mailbox, ready, tag))) =
        child_payload::<(RawArray<u8>, SharedAtomicU32, String)>(LIMIT)
    else {
        return;
    };
    let shm = SharedMemory::create(64).unwrap();
    let shm_named = SharedMemory::create_named(&format!("{tag}_shm"), 64).unwrap();
    let seg = Segment::create_unique(NAME_PREFIX, 64).unwrap();
    let seg_named = Segment::create_named(&format!("{tag}_seg"), 64).unwrap();
    let value = Value::create_named(&format!("{tag}_value"), 1u64).unwrap();
    let raw_value = RawValue::create_named(&format!("{tag}_rawvalue"), 2u64).unwrap();
    let array = Array::<u32>::create_named(&format!("{tag}_array"), 8).unwrap();
    let raw_array = RawArray::<u32>::create_named(&format!("{tag}_rawarray"), 8).unwrap();
    let atomic = SharedAtomicU64::create_named(&format!("{tag}_atomic"), 3).unwrap();
    let mut kept = SharedMemory::create_named(&format!("{tag}_kept"), 64).unwrap();
    kept.persist();
    drop(kept);
    // A normal drop still unlinks at once.
    let dropped = format!("{tag}_dropped");
    drop(SharedMemory::create_named(&dropped, 64).unwrap());
    assert!(!Path::new("/dev/shm").join(&dropped).exists());

    let tracked = [
        shm.name(),
        shm_named.name(),
        seg.name().unwrap(),
        seg_named.name().unwrap(),
        value.name().unwrap(),
        raw_value.name().unwrap(),
        array.name().unwrap(),
        raw_array.name().unwrap(),
        atomic.name().unwrap(),
    ];
    let text = format!("{tag}_kept\n{}", tracked.join("\n"));
    assert!(text.len() < MAILBOX);
    mailbox.copy_from(0, text.as_bytes()).unwrap();
    ready.store(1, Ordering::Release);
    match role.as_str() {
        "kill" => loop {
            thread::sleep(Duration::from_secs(1));
        },
        // Once told, ends the process without running a single destructor.
        "exit" => {
            while ready.load(Ordering::Acquire) != GO {
                thread::sleep(Duration::from_millis(2));
            }
            std::process::exit(0)
        }
        _ => panic!("unknown role {role}"),
    }
}

/// Starts a child in `role`, waits until it holds its names, and returns
/// them with the child and its `ready` word.
fn start(role: &str, tag: &str) -> (TestChild, Report, SharedAtomicU32) {
    let mailbox = RawArray::<u8>::new(MAILBOX).unwrap();
    let ready = SharedAtomicU32::new(0).unwrap();
    let mut child = spawn_child(
        "child_create_named_and_die",
        role,
        &(&mailbox, &ready, tag.to_owned()),
    );
    let deadline = Instant::now() + LIMIT;
    while ready.load(Ordering::Acquire) == 0 {
        if let Some(st) = child.try_wait() {
            panic!("child {role} ended before it was ready: {st:?}");
        }
        assert!(Instant::now() < deadline, "child {role} never got ready");
        thread::sleep(Duration::from_millis(2));
    }
    let bytes = mailbox.to_vec();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let text = String::from_utf8(bytes[..end].to_vec()).unwrap();
    let mut lines = text.lines().map(str::to_owned);
    let persisted = lines.next().unwrap();
    let tracked: Vec<String> = lines.collect();
    assert_eq!(tracked.len(), 9, "{text}");
    for name in tracked.iter().chain([&persisted]) {
        assert!(
            exists(name),
            "{name} is not in /dev/shm while its creator lives"
        );
    }
    (child, Report { tracked, persisted }, ready)
}

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// Waits (up to [`CLEANUP`]) until the tracked names are gone and this
/// binary runs no tracker any more; returns the names left behind.
fn leftovers(report: &Report) -> Vec<String> {
    let deadline = Instant::now() + CLEANUP;
    loop {
        let left: Vec<String> = report
            .tracked
            .iter()
            .filter(|n| exists(n))
            .cloned()
            .collect();
        if (left.is_empty() && trackers().is_empty()) || Instant::now() >= deadline {
            return left;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The pids of tracker processes started from this test binary.
fn trackers() -> Vec<i32> {
    let me = std::fs::read_link("/proc/self/exe").unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
        if comm.trim_end() == "mproc-tracker" && exe.is_ok_and(|p| p == me) {
            out.push(pid);
        }
    }
    out
}

/// Checks that the persisted name survived its creator's tracker, then
/// removes it.
fn check_and_remove_persisted(report: &Report) {
    assert!(
        exists(&report.persisted),
        "the persisted {} was removed",
        report.persisted
    );
    mproc_shm::unlink_named(&report.persisted).unwrap();
}

#[test]
fn sigkilled_creators_leave_no_names() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    watchdog(LIMIT * 3, || {
        const TRIALS: usize = 20;
        let id = std::process::id();
        let mut failed = Vec::new();
        for trial in 0..TRIALS {
            let tag = format!("mproc_t_crash_{id}_{trial}");
            let (mut child, report, _) = start("kill", &tag);
            let st = child.kill();
            assert_eq!(st.signal(), Some(libc::SIGKILL), "{st:?}");
            let left = leftovers(&report);
            if !left.is_empty() {
                failed.push((trial, left.clone()));
            }
            // Clean up after a failing run too.
            for n in &left {
                let _ = mproc_shm::unlink_named(n);
            }
            if left.is_empty() {
                check_and_remove_persisted(&report);
            } else {
                let _ = mproc_shm::unlink_named(&report.persisted);
            }
        }
        assert!(
            failed.is_empty(),
            "{}/{TRIALS} SIGKILLed creators left names behind: {failed:?}",
            failed.len()
        );
        assert_eq!(trackers(), Vec::<i32>::new(), "trackers left running");
    });
}

#[test]
fn creators_that_exit_without_dropping_leave_no_names() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    watchdog(LIMIT, || {
        let tag = format!("mproc_t_exit_{}", std::process::id());
        let (child, report, ready) = start("exit", &tag);
        ready.store(GO, Ordering::Release);
        let st = child.wait(LIMIT);
        assert_eq!(st.code(), Some(0), "{st:?}");
        let left = leftovers(&report);
        for n in &left {
            let _ = mproc_shm::unlink_named(n);
        }
        if !left.is_empty() {
            let _ = mproc_shm::unlink_named(&report.persisted);
        }
        assert_eq!(left, Vec::<String>::new(), "names left behind");
        check_and_remove_persisted(&report);
        assert_eq!(trackers(), Vec::<i32>::new(), "trackers left running");
    });
}
