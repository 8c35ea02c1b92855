//! Replays the fuzz corpora of `fuzz/corpus/{frame_decode,auth_handshake}`
//! through the fuzz targets' bodies, so CI exercises them on stable.

use std::path::PathBuf;

fn replay(name: &str, target: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| target(&data));
        assert!(r.is_ok(), "corpus file {} fails", path.display());
        n += 1;
    }
    assert!(n >= 10, "only {n} corpus files in {}", dir.display());
}

#[test]
fn frame_decode_corpus() {
    replay("frame_decode", mproc_pipe::__private::frame_decode);
}

#[test]
fn auth_handshake_corpus() {
    replay("auth_handshake", mproc_pipe::__private::auth_handshake);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// A little fuzzing on stable: random inputs through both target bodies.
    #[test]
    fn random_inputs(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        mproc_pipe::__private::frame_decode(&data);
        mproc_pipe::__private::auth_handshake(&data);
    }
}
