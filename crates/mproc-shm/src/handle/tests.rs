use super::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

#[test]
fn serializing_outside_a_sink_is_an_error() {
    let f = std::fs::File::open("/dev/null").unwrap();
    let h = HandleFd::new(f.as_fd().try_clone_to_owned().unwrap());
    let err = postcard::to_stdvec(&h).unwrap_err();
    let _ = err; // postcard folds custom errors; what matters is that it failed
}

#[test]
fn deserializing_without_fds_is_an_error() {
    let bytes = postcard::to_stdvec(&0u32).unwrap();
    assert!(postcard::from_bytes::<HandleFd>(&bytes).is_err());
    assert!(from_bytes_with_fds::<HandleFd>(&bytes, Vec::new()).is_err());
}

#[test]
fn round_trip_through_a_socket() {
    let (a, b) = UnixStream::pair().unwrap();
    let (mut r, mut w) = UnixStream::pair().unwrap();
    let payload = (
        7u32,
        HandleFd::new(OwnedFd::from(w.try_clone().unwrap())),
        String::from("x"),
    );
    let (bytes, fds) = to_bytes_with_fds(&payload).unwrap();
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    assert_eq!(
        send_with_fds(a.as_fd(), &bytes, &borrowed).unwrap(),
        bytes.len()
    );
    drop(fds);
    let mut buf = vec![0u8; 256];
    let mut got = Vec::new();
    let n = recv_with_fds(b.as_fd(), &mut buf, &mut got).unwrap();
    assert_eq!(got.len(), 1);
    let (seven, h, s): (u32, HandleFd, String) = from_bytes_with_fds(&buf[..n], got).unwrap();
    assert_eq!((seven, s.as_str()), (7, "x"));
    // The received descriptor is the write end of our second socket.
    let mut w2 = std::fs::File::from(h.into_inner());
    w2.write_all(b"ping").unwrap();
    let mut four = [0u8; 4];
    r.read_exact(&mut four).unwrap();
    assert_eq!(&four, b"ping");
    w.write_all(b"!").unwrap();
}

#[test]
fn descriptors_in_every_count_arrive_in_order() {
    // 0 to 8 fit the sender's stack buffer, more take the heap; the most
    // a message may carry, too.
    for n in [0usize, 1, 2, 7, 8, 9, 40, MAX_FDS_PER_MESSAGE] {
        let (a, b) = UnixStream::pair().unwrap();
        let pipes: Vec<(UnixStream, UnixStream)> =
            (0..n).map(|_| UnixStream::pair().unwrap()).collect();
        let borrowed: Vec<_> = pipes.iter().map(|(w, _)| w.as_fd()).collect();
        assert_eq!(send_with_fds(a.as_fd(), b"x", &borrowed).unwrap(), 1);
        let mut buf = [0u8; 1];
        let mut got = Vec::new();
        assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut got).unwrap(), 1);
        assert_eq!(got.len(), n);
        // Each received descriptor is the write end of the pair at its index.
        for (i, fd) in got.into_iter().enumerate() {
            let mut w = std::fs::File::from(fd);
            w.write_all(&[i as u8]).unwrap();
            let mut one = [0u8; 1];
            (&pipes[i].1).read_exact(&mut one).unwrap();
            assert_eq!(one[0], i as u8);
        }
    }
    let (a, _b) = UnixStream::pair().unwrap();
    let too_many: Vec<_> = (0..=MAX_FDS_PER_MESSAGE).map(|_| a.as_fd()).collect();
    assert!(send_with_fds(a.as_fd(), b"x", &too_many).is_err());
}

#[test]
fn a_peeked_message_stays_queued_and_its_descriptors_are_duplicates() {
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let (w, mut r) = UnixStream::pair().unwrap();
    assert_eq!(send_with_fds(a.as_fd(), b"m1", &[w.as_fd()]).unwrap(), 2);
    drop(w);
    let mut buf = [0u8; 2];
    let mut peeked = Vec::new();
    for _ in 0..2 {
        assert_eq!(peek_with_fds(b.as_fd(), &mut buf, &mut peeked).unwrap(), 2);
        assert_eq!(&buf, b"m1");
    }
    assert_eq!(peeked.len(), 2);
    let mut got = Vec::new();
    assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut got).unwrap(), 2);
    assert_eq!(got.len(), 1);
    // Every copy is the same write end, and owned here.
    for (k, fd) in peeked.into_iter().chain(got).enumerate() {
        std::fs::File::from(fd).write_all(&[k as u8]).unwrap();
    }
    let mut three = Vec::new();
    r.read_to_end(&mut three).unwrap();
    assert_eq!(three, [0, 1, 2]);
    // Gone now.
    let e = peek_with_fds(b.as_fd(), &mut buf, &mut Vec::new()).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
}
