//! Replays the `pool_message` fuzz corpus (bytes a worker or parent could
//! send) through the parsers: none may panic.

#[test]
fn pool_message_corpus_replays() {
    let corpus = mproc_testkit::fuzz_corpus("pool_message");
    for (_, data) in &corpus {
        mproc_pool::__private::pool_message(data);
    }
    assert!(corpus.len() >= 5, "corpus has {} files", corpus.len());
    // Arbitrary short inputs too.
    for len in 0..64u8 {
        let data: Vec<u8> = (0..len)
            .map(|i| i.wrapping_mul(37).wrapping_add(len))
            .collect();
        mproc_pool::__private::pool_message(&data);
    }
}
