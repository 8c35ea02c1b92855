use super::*;

fn fds(n: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|_| std::fs::File::open("/dev/null").unwrap().into())
        .collect()
}

#[test]
fn fds_go_to_the_last_frame_starting_in_their_read() {
    let mut r = Reader::new(100, Wire::Cpython);
    // One read covered frames at 0 and 10; its descriptors belong to the frame at 10.
    r.batches.push_back(FdBatch {
        start: 0,
        end: 30,
        fds: fds(2),
    });
    assert!(r.claim_fds(0, 10).is_empty());
    assert_eq!(r.claim_fds(10, 30).len(), 2);
    assert!(r.batches.is_empty());
}

#[test]
fn stray_fds_are_dropped() {
    let mut r = Reader::new(100, Wire::Cpython);
    // Descriptors that arrived in the middle of a frame's payload (5..8 inside 0..20).
    r.batches.push_back(FdBatch {
        start: 5,
        end: 8,
        fds: fds(1),
    });
    assert!(r.claim_fds(0, 20).is_empty());
    assert_eq!(r.claim_fds(20, 30).len(), 0);
    assert!(r.batches.is_empty());
}
