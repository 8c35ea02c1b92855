//! Replays the `mpi_message` fuzz corpus (bytes a rank could receive)
//! through the parsers: none may panic. Needs no MPI.

use std::path::Path;

#[test]
fn mpi_message_corpus_replays() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mpi_message");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        mproc_mpi::__private::mpi_message(&data);
        // Every prefix too: torn messages.
        for cut in 0..data.len() {
            mproc_mpi::__private::mpi_message(&data[..cut]);
        }
        n += 1;
    }
    assert!(n >= 10, "corpus has {n} files");
}
