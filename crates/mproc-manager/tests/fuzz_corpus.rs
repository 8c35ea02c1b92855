//! Replays the `manager_request` fuzz corpus (and mutations of it) through
//! the request decoder and dispatcher, so CI exercises it on stable.

use std::path::PathBuf;

fn corpus() -> Vec<Vec<u8>> {
    mproc_testkit::fuzz_corpus("manager_request")
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect()
}

#[test]
fn corpus_replays_without_panicking() {
    let inputs = corpus();
    assert!(inputs.len() >= 20, "the corpus has {} files", inputs.len());
    let decoded = inputs
        .iter()
        .filter(|i| mproc_manager::__private::fuzz_request(i))
        .count();
    assert!(
        decoded >= 15,
        "most seeds are valid requests ({decoded} decoded)"
    );
}

#[test]
fn truncations_and_bit_flips_of_the_corpus_never_panic() {
    for input in corpus() {
        for cut in 0..input.len() {
            mproc_manager::__private::fuzz_request(&input[..cut]);
        }
        for i in 0..input.len() {
            for bit in [0x01u8, 0x80, 0xff] {
                let mut m = input.clone();
                m[i] ^= bit;
                mproc_manager::__private::fuzz_request(&m);
            }
        }
    }
}

#[test]
fn the_seeds_match_the_current_protocol() {
    // Every encoded sample is in the corpus, so the corpus follows the protocol.
    let inputs = corpus();
    for s in mproc_manager::__private::sample_requests() {
        assert!(
            inputs.contains(&s),
            "fuzz/corpus/manager_request lacks a sample; regenerate it"
        );
    }
}

/// Rewrites the seed files: `MPROC_REGEN_CORPUS=1 cargo test -p mproc-manager
/// --test fuzz_corpus -- --ignored regenerate`.
#[test]
#[ignore = "writes the corpus; run by hand after protocol changes"]
fn regenerate() {
    if std::env::var_os("MPROC_REGEN_CORPUS").is_none() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/manager_request");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, s) in mproc_manager::__private::sample_requests()
        .iter()
        .enumerate()
    {
        std::fs::write(dir.join(format!("seed-{i:02}")), s).unwrap();
    }
    // Hostile shapes: empty, a huge length prefix, an unknown variant, deep nesting.
    std::fs::write(dir.join("junk-empty"), b"").unwrap();
    std::fs::write(
        dir.join("junk-huge-len"),
        [
            7, 1, 27, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ],
    )
    .unwrap();
    std::fs::write(dir.join("junk-variant"), [0xee, 0x01, 0x02]).unwrap();
    std::fs::write(
        dir.join("junk-batch-len"),
        [10, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 0],
    )
    .unwrap();
}
