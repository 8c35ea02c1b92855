//! The driver of the MPI test binaries (harness-less): each scenario runs in
//! a fresh job (`mpirun -n N <this binary> <scenario>` for static mode, the
//! binary alone for spawn mode) under `timeout`, with the Open MPI settings
//! of `scripts/mpi-env.sh`; the driver checks the job's output and exit
//! status, and that no process of this binary outlives it.

use std::process::Command;
use std::time::{Duration, Instant};

/// One job to run.
pub(crate) struct Case {
    pub(crate) scenario: &'static str,
    /// `Some(n)`: `mpirun -n n`; `None`: the binary alone.
    pub(crate) ranks: Option<usize>,
    /// The job must succeed and print `OK <scenario>`; otherwise it must
    /// fail within the timeout (a killed worker).
    pub(crate) ok: bool,
}

fn run(case: &Case) -> Result<String, String> {
    let exe = std::env::current_exe().unwrap();
    let env = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/mpi-env.sh");
    let limit = if case.ok { 120 } else { 30 };
    let launch = match case.ranks {
        Some(n) => format!("mpirun -n {n} {}", exe.display()),
        None => exe.display().to_string(),
    };
    let script = format!(
        ". {env} && exec timeout -k 5 {limit} {launch} {}",
        case.scenario
    );
    let t0 = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .map_err(|e| e.to_string())?;
    let took = t0.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = format!(
        "$ {script}\nstatus {:?} after {took:?}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    if case.ok {
        if out.status.success() && stdout.contains(&format!("OK {}", case.scenario)) {
            Ok(format!("{:.2?}", took))
        } else {
            Err(log)
        }
    } else if out.status.code() == Some(124)
        || out.status.code() == Some(137) && took >= Duration::from_secs(limit)
    {
        Err(format!("the job hung until the timeout\n{log}"))
    } else if out.status.success()
        || !stdout.contains("killing a worker")
        || stdout.contains("after the kill")
    {
        Err(format!("the job did not fail as it should\n{log}"))
    } else {
        Ok(format!("{:.2?}, status {:?}", took, out.status))
    }
}

/// Other live processes running this executable (a job's ranks, their
/// local pools' processes).
fn others_of_this_exe() -> Vec<i32> {
    let exe = std::env::current_exe().unwrap();
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != me && mproc_testkit::pid_alive(p))
        .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|x| x == exe))
        .collect()
}

/// Runs `cases` one after another, prints a line per case and a summary in
/// the format of the test harness, and exits with status 1 if any failed.
pub(crate) fn drive(cases: &[Case]) {
    let (mut passed, mut failed) = (0, 0);
    for c in cases {
        let name = format!(
            "{}{}",
            c.scenario,
            c.ranks
                .map_or(" (spawn)".to_string(), |n| format!(" -n {n}"))
        );
        let mut outcome = run(c);
        // A job's processes are gone once it ended (a few seconds' grace
        // for a killed job's ranks to be reaped).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut left = others_of_this_exe();
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            left = others_of_this_exe();
        }
        if outcome.is_ok() && !left.is_empty() {
            outcome = Err(format!("processes of the job are left: {left:?}"));
        }
        match outcome {
            Ok(how) => {
                passed += 1;
                println!("test {name} ... ok ({how})");
            }
            Err(log) => {
                failed += 1;
                println!("test {name} ... FAILED\n{log}");
            }
        }
    }
    let verdict = if failed == 0 { "ok" } else { "FAILED" };
    println!("\ntest result: {verdict}. {passed} passed; {failed} failed; 0 ignored");
    if failed > 0 {
        std::process::exit(1);
    }
}
