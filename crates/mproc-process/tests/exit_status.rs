//! Exit codes, panics, signals and join timeouts, under every start method.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::time::{Duration, Instant};

use common::{method, start};
use mproc_process::{ExitStatus, JoinError, JoinTimeoutError, Process, ProcessHandle};

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn returns_unit(_: ()) {}

fn boom(n: u32) -> u32 {
    panic!("boom {n}")
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Runs `f` with `timeout` and checks that it took at least that long;
/// returns what `f` returned.
fn at_least<T>(timeout: Duration, f: impl FnOnce(Duration) -> T) -> Result<T, String> {
    let t0 = Instant::now();
    let r = f(timeout);
    ensure!(
        t0.elapsed() >= timeout,
        "returned after {:?}, before its timeout {timeout:?}",
        t0.elapsed()
    );
    Ok(r)
}

/// Joins `h`, which must report an exit with `code` and no value; `what`
/// names the join in the error.
fn join_exited(h: &mut ProcessHandle<()>, code: i32, what: &str) -> Result<(), String> {
    match h.join() {
        Err(JoinError::Failed(ExitStatus::Exited(c))) if c == code => Ok(()),
        other => Err(format!("{what} joined as {other:?}")),
    }
}

fn exit_codes(m: String) -> Result<(), String> {
    let m = method(&m);
    let mut ok = start(Process::new(returns_unit, ()), m)?;
    ensure!(ok.join().is_ok(), "a returning child joins Ok");
    ensure!(ok.exitcode() == Some(0), "exitcode {:?}", ok.exitcode());
    for code in [0, 3, 255] {
        let mut h = start(Process::new(exit_with, code), m)?;
        join_exited(&mut h, code, &format!("exit({code})"))?;
        ensure!(
            h.exitcode() == Some(code),
            "exit({code}) gave exitcode {:?}",
            h.exitcode()
        );
        ensure!(!h.is_alive(), "dead child reported alive");
    }
    Ok(())
}

fn panics(m: String) -> Result<(), String> {
    let mut h = start(Process::new(boom, 42), method(&m))?;
    match h.join() {
        Err(JoinError::Panicked { message, status }) => {
            ensure!(message == "boom 42", "message {message:?}");
            ensure!(status == ExitStatus::Exited(1), "status {status:?}");
        }
        other => return Err(format!("panic joined as {other:?}")),
    }
    ensure!(h.exitcode() == Some(1), "exitcode {:?}", h.exitcode());
    // Joining again is CPython's idempotent join: the same outcome, again.
    for _ in 0..2 {
        match h.join() {
            Err(JoinError::Panicked { message, status }) => {
                ensure!(message == "boom 42", "second join: message {message:?}");
                ensure!(status == ExitStatus::Exited(1), "second join: {status:?}");
            }
            other => return Err(format!("second join of a panic: {other:?}")),
        }
    }
    Ok(())
}

fn joins_twice(m: String) -> Result<(), String> {
    let m = method(&m);
    // The value comes back once; later joins report the same exit status.
    let mut h = start(Process::new(sleep_ms, 1), m)?;
    ensure!(h.join().ok() == Some(1), "first join returns the value");
    for _ in 0..2 {
        match h.join() {
            Err(e @ JoinError::AlreadyJoined { .. }) => {
                ensure!(e.status() == Some(ExitStatus::Exited(0)), "{e:?}");
            }
            other => return Err(format!("second join of a value: {other:?}")),
        }
        match h.join_timeout(Duration::from_secs(1)) {
            Err(JoinTimeoutError::Join(JoinError::AlreadyJoined { status })) => {
                ensure!(status == ExitStatus::Exited(0), "{status:?}")
            }
            other => return Err(format!("join_timeout after join: {other:?}")),
        }
    }
    ensure!(h.exitcode() == Some(0), "exitcode {:?}", h.exitcode());
    // A child that exited without a value: every join says so.
    let mut h = start(Process::new(exit_with, 7), m)?;
    for i in 0..3 {
        join_exited(&mut h, 7, &format!("join #{i} of exit(7)"))?;
    }
    Ok(())
}

fn signals(m: String) -> Result<(), String> {
    let m = method(&m);
    for (sig, code) in [(libc::SIGKILL, -9), (libc::SIGTERM, -15)] {
        let mut h = start(Process::new(sleep_ms, 30_000).kill_on_drop(true), m)?;
        ensure!(h.is_alive(), "alive after start");
        ensure!(h.exitcode().is_none(), "exitcode while running");
        if sig == libc::SIGKILL {
            h.kill()
        } else {
            h.terminate()
        }
        .map_err(|e| e.to_string())?;
        match h.join() {
            Err(JoinError::Failed(ExitStatus::Signaled(s))) if s == sig => {}
            other => return Err(format!("signal {sig} joined as {other:?}")),
        }
        ensure!(
            h.exitcode() == Some(code),
            "exitcode {:?} for signal {sig}",
            h.exitcode()
        );
        // Signalling a finished child is a silent no-op.
        h.kill().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn join_timeout(m: String) -> Result<(), String> {
    let mut h = start(
        Process::new(sleep_ms, 30_000).kill_on_drop(true),
        method(&m),
    )?;
    let r = at_least(Duration::from_millis(200), |t| h.join_timeout(t))?;
    ensure!(
        matches!(r, Err(JoinTimeoutError::Timeout)),
        "join_timeout gave {r:?}"
    );
    ensure!(h.is_alive(), "child died after join_timeout");
    ensure!(
        matches!(h.try_join(), Err(mproc_process::TryJoinError::Running)),
        "try_join while running"
    );
    let st = h
        .terminate_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    ensure!(
        st == ExitStatus::Signaled(libc::SIGTERM),
        "terminate gave {st:?}"
    );
    Ok(())
}

fn ignore_term_then_sleep(ms: u64) {
    // SAFETY: SIG_IGN for SIGTERM has no memory-safety preconditions.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    std::thread::sleep(Duration::from_millis(ms));
}

fn escalation(m: String) -> Result<(), String> {
    let h = start(
        Process::new(ignore_term_then_sleep, 30_000).kill_on_drop(true),
        method(&m),
    )?;
    // Give the child time to ignore SIGTERM.
    std::thread::sleep(Duration::from_millis(300));
    let st = at_least(Duration::from_millis(200), |t| h.terminate_timeout(t))?
        .map_err(|e| e.to_string())?;
    ensure!(
        st == ExitStatus::Signaled(libc::SIGKILL),
        "escalation gave {st:?}"
    );
    Ok(())
}

/// `wait_ended_*`: at least the timeout while the child runs; true once it
/// ended (whether or not its status is known yet); join still reports it.
fn wait_ended(m: String) -> Result<(), String> {
    let m = method(&m);
    let mut h = start(Process::new(sleep_ms, 60_000), m)?;
    ensure!(
        !at_least(Duration::from_millis(50), |t| h.wait_ended_timeout(t))?,
        "a sleeping child reported ended"
    );
    ensure!(h.is_alive(), "alive after wait_ended_timeout");
    h.kill().map_err(|e| e.to_string())?;
    ensure!(
        h.wait_ended_timeout(Duration::from_secs(10)),
        "a killed child not ended after 10 s"
    );
    match h.join() {
        Err(JoinError::Failed(s)) if s.signal() == Some(libc::SIGKILL) => {}
        other => return Err(format!("killed child joined as {other:?}")),
    }
    ensure!(
        h.wait_ended_deadline(Instant::now()),
        "a joined child not ended"
    );

    let mut q = start(Process::new(exit_with, 7), m)?;
    ensure!(
        q.wait_ended_timeout(Duration::from_secs(10)),
        "an exiting child not ended after 10 s"
    );
    join_exited(&mut q, 7, "exit(7)")
}

// Each test runs its scenario under every start method.
each_method_tests! {
    children_exit_with_0_3_and_255 => exit_codes,
    joining_again_returns_the_same_outcome => joins_twice,
    a_panicking_child_exits_1_with_its_message => panics,
    killed_children_report_minus_the_signal => signals,
    join_timeout_waits_at_least_the_timeout => join_timeout,
    terminate_escalates_to_sigkill => escalation,
    wait_ended_waits_for_the_end_but_not_the_status => wait_ended,
}
