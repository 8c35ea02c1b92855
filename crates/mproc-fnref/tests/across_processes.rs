//! A reference made in one process resolves in another run of the same
//! executable (a new exec, so a new address-space layout under ASLR).
#![cfg(target_os = "linux")]

use std::process::Command;

use mproc_fnref::{Desc, ExeId, FnRef};

fn triple(x: u64) -> u64 {
    x * 3
}

const TRIPLE: Desc<fn(u64) -> u64> = Desc::new(triple);

const ENV: &str = "MPROC_FNREF_TEST_REF";

#[test]
fn resolves_in_a_re_executed_child() {
    let r = FnRef::new(&TRIPLE).unwrap();
    let e = r.exe();
    let text = format!(
        "{} {} {} {} {} {}",
        r.offset(),
        e.dev,
        e.ino,
        e.size,
        e.mtime,
        e.mtime_nsec
    );
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_role", "--nocapture"])
        .env(ENV, text)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {out:?}");
    assert!(stdout.contains("child result: 42"), "child said: {stdout}");
}

#[test]
#[ignore = "runs only as the child of resolves_in_a_re_executed_child"]
fn child_role() {
    let Ok(text) = std::env::var(ENV) else { return };
    let n: Vec<i64> = text.split(' ').map(|w| w.parse().unwrap()).collect();
    let exe = ExeId {
        dev: n[1] as u64,
        ino: n[2] as u64,
        size: n[3] as u64,
        mtime: n[4],
        mtime_nsec: n[5],
    };
    let f = FnRef::<fn(u64) -> u64>::from_parts(n[0], exe)
        .resolve()
        .unwrap();
    println!("child result: {}", f(14));
}
