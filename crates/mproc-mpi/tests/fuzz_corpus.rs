//! Replays the `mpi_message` fuzz corpus (bytes a rank could receive)
//! through the parsers: none may panic. Needs no MPI.

#[test]
fn mpi_message_corpus_replays() {
    let corpus = mproc_testkit::fuzz_corpus("mpi_message");
    for (_, data) in &corpus {
        mproc_mpi::__private::mpi_message(data);
        // Every prefix too: torn messages.
        for cut in 0..data.len() {
            mproc_mpi::__private::mpi_message(&data[..cut]);
        }
    }
    assert!(corpus.len() >= 10, "corpus has {} files", corpus.len());
}
