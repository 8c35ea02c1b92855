//! Shared helpers of the mproc-process integration tests.
#![allow(dead_code, unreachable_pub)]

use mproc_process::{Process, ProcessHandle, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use mproc_testkit::watchdog_secs as watchdog;

/// Runs `scenario(method)` for each start method, all within a 120 s
/// watchdog. The fork method is refused in the (multi-threaded) test runner,
/// so its run happens inside a spawned, single-threaded child, which forks its
/// own children.
pub fn each_method<S>(scenario: S)
where
    S: Fn(String) -> Result<(), String> + Copy + Send + 'static,
{
    watchdog(120, move || {
        for m in ["forkserver", "spawn"] {
            if let Err(e) = scenario(m.to_owned()) {
                panic!("{m}: {e}");
            }
        }
        let mut h = Process::new(scenario, "fork".to_owned())
            .start_method(StartMethod::Spawn)
            .start()
            .expect("start");
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("fork: {e}"),
            Err(e) => panic!("fork scenario child failed: {e}"),
        }
    });
}

/// Starts `p` with start method `m`; a failed start as its message.
pub fn start<F, A, R>(p: Process<F, A>, m: StartMethod) -> Result<ProcessHandle<R>, String>
where
    F: Fn(A) -> R + Copy + Send + 'static,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    p.start_method(m).start().map_err(|e| e.to_string())
}

/// Parses a method name.
pub fn method(name: &str) -> StartMethod {
    name.parse().expect("method name")
}

/// One `#[test]` per `test_name => scenario` row, each running its scenario
/// under every start method ([`each_method`]).
#[macro_export]
macro_rules! each_method_tests {
    ($($test:ident => $scenario:ident,)+) => {
        $(
            #[test]
            fn $test() {
                $crate::common::each_method($scenario);
            }
        )+
    };
}

/// `Err(message)` unless `cond`.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("{}:{}: {}", file!(), line!(), format!($($fmt)+)));
        }
    };
}

/// Makes this process the subreaper of its descendants, so that orphans
/// (children of a killed middle process) are re-parented to it and can be
/// reaped by the test.
pub fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an int flag.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");
}

/// Reaps `pid` (an orphan re-parented to this subreaper), waiting up to 5 s.
pub fn reap(pid: i32) -> Option<i32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid writable int.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
        if r == pid {
            return Some(status);
        }
        // ECHILD: not re-parented to us yet (its parent is still exiting).
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits up to 5 s for `pid` to be gone: reaped here if it was re-parented
/// to this subreaper, or by its own parent (a fork server reaps its
/// children while it lives). Returns whether it is gone.
pub fn reap_or_gone(pid: i32) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid writable int.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG | libc::__WALL) };
        // SAFETY: signal 0 only checks that the process exists.
        if r == pid || (r == -1 && unsafe { libc::kill(pid, 0) } == -1) {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
