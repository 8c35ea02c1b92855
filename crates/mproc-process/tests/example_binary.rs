//! An ordinary program (the `start_methods` example, with its own `main`)
//! starts children under every start method.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("examples").join(name)
}

#[test]
fn the_example_program_starts_children_with_every_method() {
    let path = example("start_methods");
    assert!(
        path.exists(),
        "{} is missing: run the whole suite (`cargo test -p mproc-process`), which builds examples",
        path.display()
    );
    let out = common::watchdog(60, move || {
        Command::new(path).output().expect("run example")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "example failed: {out:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "output: {stdout}");
    // Printed once: the parent's buffer was flushed before the fork.
    assert_eq!(lines[0], "before fork, in the child");
    assert_eq!(lines[1], "fork: Process-2 (child of MainProcess)");
    assert_eq!(lines[2], "forkserver: Process-3 (child of MainProcess)");
    assert_eq!(lines[3], "spawn: Process-4 (child of MainProcess)");
    assert!(lines[4].starts_with("MainProcess may use "), "{}", lines[4]);
}
