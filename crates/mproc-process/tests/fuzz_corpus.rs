//! Replays the `process_wire` fuzz corpus (start requests and result frames
//! from another process) on stable: nothing panics, valid samples decode.

use std::path::PathBuf;

use mproc_process::__private::{fuzz_wire, wire_samples};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/process_wire")
}

/// Regenerates the sample files: `cargo test -p mproc-process --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes the corpus"]
fn write_corpus() {
    std::fs::create_dir_all(corpus()).unwrap();
    for (name, bytes) in wire_samples() {
        std::fs::write(corpus().join(name), bytes).unwrap();
    }
}

#[test]
fn corpus_replays_without_panics() {
    let mut n = 0;
    for (name, data) in mproc_testkit::fuzz_corpus("process_wire") {
        let ok = fuzz_wire(&data);
        assert_eq!(ok, name.starts_with("valid_"), "{name}");
        // Every prefix and a few corruptions must be handled too.
        for cut in 0..data.len() {
            let _ = fuzz_wire(&data[..cut]);
        }
        for i in 1..data.len() {
            let mut d = data.clone();
            d[i] ^= 0xa5;
            let _ = fuzz_wire(&d);
        }
        n += 1;
    }
    assert!(n >= 8, "corpus has only {n} files");
}

#[test]
fn samples_match_the_checked_in_corpus() {
    for (name, bytes) in wire_samples() {
        let on_disk = std::fs::read(corpus().join(name)).unwrap_or_default();
        assert_eq!(on_disk, bytes, "{name} is stale: rerun write_corpus");
    }
}
