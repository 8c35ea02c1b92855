//! Shared helpers of the mproc-process integration tests.
#![allow(dead_code, unreachable_pub)]

use mproc_process::{Process, StartMethod};

pub use mproc_testkit::watchdog_secs as watchdog;

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
