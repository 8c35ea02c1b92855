//! Shared helpers of the mproc-process integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mproc_process::{Process, StartMethod};

/// Runs `f` on a thread and fails the test if it does not finish in `secs`.
pub fn watchdog<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(v) => {
            h.join().expect("watchdog thread");
            v
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("sent nothing but returned"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("test body did not finish within {secs} s"),
    }
}

/// Runs `scenario(method)` for each start method. The fork method is refused
/// in the (multi-threaded) test runner, so its run happens inside a spawned,
/// single-threaded child, which forks its own children.
pub fn each_method<S>(scenario: S)
where
    S: Fn(String) -> Result<(), String> + Copy + Send + 'static,
{
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
}

/// Parses a method name.
pub fn method(name: &str) -> StartMethod {
    name.parse().expect("method name")
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
