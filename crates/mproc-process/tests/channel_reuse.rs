//! Children started one after another reuse result channels (fork and fork
//! server): whatever the previous child did (returned a large value, a
//! handle, panicked, was killed half-way), the next one's result is its own.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::time::Duration;

use common::{each_method, method, start};
use mproc_process::{JoinError, Process};
use mproc_shm::Segment;

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn echo(s: String) -> String {
    s
}

fn boom(_: ()) -> u64 {
    panic!("boom")
}

fn sleeper(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn segment_with(byte: u8) -> Segment {
    let seg = Segment::anonymous(64).expect("segment");
    seg.write(0, &[byte; 8]).expect("write");
    seg
}

/// One round of children whose results must not leak into one another.
fn rounds(m: String) -> Result<(), String> {
    let method = method(&m);
    for round in 0..5u8 {
        let v = start(Process::new(big, 100_000), method)?
            .join()
            .map_err(|e| e.to_string())?;
        ensure!(v == big(100_000), "round {round}: large value corrupted");

        let seg = start(Process::new(segment_with, round), method)?
            .join()
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 8];
        seg.read(0, &mut b).map_err(|e| e.to_string())?;
        ensure!(b == [round; 8], "round {round}: segment holds {b:?}");

        let r = start(Process::new(boom, ()), method)?.join();
        ensure!(
            matches!(&r, Err(JoinError::Panicked { message, .. }) if message == "boom"),
            "round {round}: panic reported as {r:?}"
        );

        let mut h = start(Process::new(sleeper, 10_000), method)?;
        h.kill().map_err(|e| e.to_string())?;
        let r = h.join();
        ensure!(
            matches!(r, Err(JoinError::Failed(s)) if s.signal() == Some(9)),
            "round {round}: killed child joined as {r:?}"
        );

        let s = format!("round {round}");
        let v = start(Process::new(echo, s.clone()), method)?
            .join()
            .map_err(|e| e.to_string())?;
        ensure!(v == s, "round {round}: echo returned {v:?}");
    }
    Ok(())
}

#[test]
fn results_stay_apart_when_channels_are_reused() {
    each_method(rounds);
}
