//! Replays the `pool_message` fuzz corpus (bytes a worker or parent could
//! send) through the parsers: none may panic.

use std::path::Path;

#[test]
fn pool_message_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pool_message");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        mproc_pool::__private::pool_message(&data);
        n += 1;
    }
    assert!(n >= 5, "corpus has {n} files");
    // Arbitrary short inputs too.
    for len in 0..64u8 {
        let data: Vec<u8> = (0..len)
            .map(|i| i.wrapping_mul(37).wrapping_add(len))
            .collect();
        mproc_pool::__private::pool_message(&data);
    }
}
