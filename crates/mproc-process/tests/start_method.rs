//! The process-wide default start method: `set_start_method`,
//! `get_start_method` and `MPROC_START_METHOD`. Each scenario changes
//! process-global state, so each runs in its own re-executed copy of this
//! test binary, with the environment it needs.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use mproc_process::{
    Process, START_METHOD_ENV, StartError, StartMethod, StartMethodError, current_process,
    get_start_method, set_start_method, set_start_method_force,
};

/// What a child reports: how it was started, and its own default.
fn report(_: ()) -> (Option<StartMethod>, Result<StartMethod, StartMethodError>) {
    (current_process().start_method(), get_start_method())
}

/// In a child: whether its default is fixed already (inherited, forced).
fn try_set_in_child(m: StartMethod) -> Result<(), StartMethodError> {
    set_start_method(m)
}

/// Checks that a child started without a method is started with `m` and
/// has `m` as its own default.
#[track_caller]
fn assert_default_start_uses(m: StartMethod) {
    let child = Process::new(report, ())
        .start()
        .expect("start")
        .join()
        .expect("join");
    assert_eq!(child, (Some(m), Ok(m)));
}

/// What setting the default says once it is fixed to `current`.
fn already_set(current: StartMethod) -> Result<(), StartMethodError> {
    Err(StartMethodError::AlreadySet { current })
}

/// Runs `role` in a re-executed copy of this binary with the variable set
/// (or removed) and asserts that it passed.
fn run_role(role: &str, env: Option<&str>) {
    let mut cmd = mproc_testkit::test_command(role);
    match env {
        Some(v) => cmd.env(START_METHOD_ENV, v),
        None => cmd.env_remove(START_METHOD_ENV),
    };
    let out = common::watchdog(120, move || cmd.output().unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{role} with {env:?}: {out:?}"
    );
}

#[test]
#[ignore = "role of the default start method test"]
fn role_set_start_method() {
    // Nothing fixed it yet: the first call succeeds, a second one fails
    // (CPython: RuntimeError("context has already been set")).
    set_start_method(StartMethod::Spawn).unwrap();
    assert_eq!(
        set_start_method(StartMethod::Fork),
        already_set(StartMethod::Spawn)
    );
    assert_eq!(
        set_start_method(StartMethod::Fork).unwrap_err().to_string(),
        "context has already been set (the start method is spawn)"
    );
    assert_eq!(get_start_method(), Ok(StartMethod::Spawn));
    // A builder without a method follows it, and the child inherits it as
    // its own default, fixed.
    assert_default_start_uses(StartMethod::Spawn);
    let mut h = Process::new(try_set_in_child, StartMethod::Fork)
        .start()
        .unwrap();
    assert_eq!(h.join().unwrap(), already_set(StartMethod::Spawn));
    // An explicit method still wins.
    let mut h = Process::new(report, ())
        .start_method(StartMethod::ForkServer)
        .start()
        .unwrap();
    assert_eq!(h.join().unwrap().0, Some(StartMethod::ForkServer));
    // force changes it.
    set_start_method_force(StartMethod::ForkServer);
    assert_eq!(get_start_method(), Ok(StartMethod::ForkServer));
    assert_default_start_uses(StartMethod::ForkServer);
}

#[test]
#[ignore = "role of the default start method test"]
fn role_first_use_fixes_the_default() {
    // Like CPython's get_start_method(), whose first use fixes the context.
    assert_default_start_uses(StartMethod::ForkServer);
    assert_eq!(
        set_start_method(StartMethod::Spawn),
        already_set(StartMethod::ForkServer)
    );
}

#[test]
#[ignore = "role of the default start method test"]
fn role_environment_spawn() {
    assert_eq!(get_start_method(), Ok(StartMethod::Spawn));
    assert_default_start_uses(StartMethod::Spawn);
}

#[test]
#[ignore = "role of the default start method test"]
fn role_environment_invalid() {
    let bad = StartMethodError::BadEnvironment {
        value: "sapwn".to_owned(),
    };
    assert_eq!(get_start_method(), Err(bad.clone()));
    assert_eq!(
        bad.to_string(),
        "MPROC_START_METHOD=\"sapwn\" names no start method (expected forkserver, spawn or fork)"
    );
    // No fallback: a start that relies on the default fails, saying why.
    match Process::new(report, ()).start() {
        Err(StartError::StartMethod(e)) => assert_eq!(e, bad),
        other => panic!("started with a misspelt default: {other:?}"),
    }
    // An explicit choice does not read the variable; the child does not
    // inherit a default its parent lacks, and reads the same variable.
    let mut h = Process::new(report, ())
        .start_method(StartMethod::Spawn)
        .start()
        .unwrap();
    assert_eq!(h.join().unwrap(), (Some(StartMethod::Spawn), Err(bad)));
    // Code may still choose.
    set_start_method(StartMethod::Spawn).unwrap();
    assert_default_start_uses(StartMethod::Spawn);
}

#[test]
fn set_start_method_fixes_the_default_once() {
    run_role("role_set_start_method", None);
}

#[test]
fn the_first_start_fixes_the_default() {
    run_role("role_first_use_fixes_the_default", None);
    run_role("role_first_use_fixes_the_default", Some(""));
}

#[test]
fn the_environment_chooses_the_default() {
    run_role("role_environment_spawn", Some("spawn"));
}

#[test]
fn a_misspelt_environment_variable_is_an_error_at_first_use() {
    run_role("role_environment_invalid", Some("sapwn"));
}
