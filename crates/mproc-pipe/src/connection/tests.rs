use std::ops::Range;
use std::os::fd::OwnedFd;

use super::recv::{FdBatch, Reader};
use super::{Connection, lock, pipe};
use crate::frame::Wire;

fn fds(n: usize) -> Vec<OwnedFd> {
    (0..n)
        .map(|_| std::fs::File::open("/dev/null").unwrap().into())
        .collect()
}

/// How many of the `n` descriptors that arrived with the bytes `start..end`
/// the frame `first` and then the frame `second` claim, checking that no
/// batch is left.
fn claimed(
    start: u64,
    end: u64,
    n: usize,
    first: Range<u64>,
    second: Range<u64>,
) -> (usize, usize) {
    let mut r = Reader::new(100, Wire::Cpython);
    r.batches.push_back(FdBatch {
        start,
        end,
        fds: fds(n),
    });
    let a = r.claim_fds(first.start, first.end).len();
    let b = r.claim_fds(second.start, second.end).len();
    assert!(r.batches.is_empty());
    (a, b)
}

#[test]
fn fds_go_to_the_last_frame_starting_in_their_read() {
    // One read covered frames at 0 and 10; its descriptors belong to the frame at 10.
    assert_eq!(claimed(0, 30, 2, 0..10, 10..30), (0, 2));
}

#[test]
fn stray_fds_are_dropped() {
    // Descriptors that arrived in the middle of a frame's payload (5..8 inside 0..20).
    assert_eq!(claimed(5, 8, 1, 0..20, 20..30), (0, 0));
}

/// A receiver maps one arena per sending copy of the other end, and unmaps
/// an arena once its sender has given it up (grown out of it, or dropped
/// its end) and every message in it has been read.
#[test]
fn arenas_per_sender_are_unmapped_when_retired() {
    let arenas = |c: &Connection| lock(&c.shared.reader).arenas.len();
    let (rx, tx) = pipe(false).unwrap();
    let big = vec![7u8; 300 << 10];
    // A copy as another process gets it: its own writer, so its own arena.
    let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(&tx).unwrap();
    let copy: Connection = mproc_shm::handle::from_bytes_with_fds(&bytes, fds).unwrap();
    tx.send_bytes(&big).unwrap();
    copy.send_bytes(&big).unwrap();
    assert_eq!(rx.recv_bytes().unwrap(), big);
    assert_eq!(rx.recv_bytes().unwrap(), big);
    assert_eq!(arenas(&rx), 2);
    // The copy gives its arena up; once read to the end, it is unmapped.
    drop(copy);
    tx.send_bytes(&big).unwrap();
    assert_eq!(rx.recv_bytes().unwrap(), big);
    assert_eq!(arenas(&rx), 1);
    // Growing past the arena replaces it; the old one goes too.
    let huge = vec![9u8; (8 << 20) + 1];
    tx.send_bytes(&huge).unwrap();
    assert_eq!(rx.recv_bytes().unwrap(), huge);
    assert_eq!(arenas(&rx), 1);
}
