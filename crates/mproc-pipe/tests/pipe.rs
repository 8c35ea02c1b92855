//! Connections within one process: typed and raw messages, sizes, errors,
//! poll and wait, handles sent over connections.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{pattern, watchdog};
use mproc_pipe::{
    Connection, RecvError, RecvTimeoutError, SendBytesError, TryRecvError, Wire, pipe, wait,
    wait_timeout,
};
use mproc_shm::Segment;
use serde::{Deserialize, Serialize};

/// A duplex pair speaking plain CPython framing (no shared-memory path).
fn cpython_pair() -> (Connection, Connection) {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    (
        Connection::from_fd(OwnedFd::from(a)).unwrap(),
        Connection::from_fd(OwnedFd::from(b)).unwrap(),
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Circle { r: f64 },
    Poly(Vec<(i32, i32)>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
    tags: Vec<String>,
    weights: HashMap<String, f32>,
    shape: Option<Shape>,
    raw: Vec<u8>,
    nested: BTreeMap<i8, Vec<Option<bool>>>,
    ch: char,
    t: (u8, i128, ()),
}

fn round_trip<T: Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    a: &Connection,
    b: &Connection,
    v: T,
) {
    a.send_ref(&v).unwrap();
    assert_eq!(b.recv::<T>().unwrap(), v);
}

#[test]
fn typed_round_trips() {
    watchdog(30, || {
        for (a, b) in [pipe(true).unwrap(), cpython_pair()] {
            round_trip(&a, &b, 0u8);
            round_trip(&a, &b, -12345i64);
            round_trip(&a, &b, u128::MAX);
            round_trip(&a, &b, 1.5f64);
            round_trip(&a, &b, true);
            round_trip(&a, &b, 'é');
            round_trip(&a, &b, String::from("héllo wörld"));
            round_trip(&a, &b, ());
            round_trip(&a, &b, Some(3u16));
            round_trip(&a, &b, None::<u16>);
            round_trip(&a, &b, vec![1u32, 2, 3]);
            round_trip(&a, &b, Vec::<String>::new());
            round_trip(&a, &b, (1u8, "two".to_string(), [3.0f32; 4]));
            round_trip(&a, &b, Shape::Unit);
            round_trip(&a, &b, Shape::Circle { r: 2.5 });
            round_trip(&a, &b, Shape::Poly(vec![(1, -1), (i32::MAX, i32::MIN)]));
            round_trip(&a, &b, Ok::<u8, String>(1));
            round_trip(&a, &b, Err::<u8, String>("no".into()));
            let job = Job {
                id: 7,
                name: "job".into(),
                tags: vec!["a".into(), "b".into()],
                weights: [("x".to_string(), 0.5f32)].into_iter().collect(),
                shape: Some(Shape::Poly(vec![(0, 0)])),
                raw: pattern(100_000),
                nested: [(-1, vec![Some(true), None])].into_iter().collect(),
                ch: '∑',
                t: (9, -1, ()),
            };
            round_trip(&a, &b, job.clone());
            // And back the other way.
            round_trip(&b, &a, job);
        }
    });
}

#[test]
fn raw_sizes() {
    watchdog(60, || {
        for (a, b) in [pipe(true).unwrap(), cpython_pair()] {
            let (a, b) = (Arc::new(a), Arc::new(b));
            for n in [0usize, 1, 64 << 10, 16 << 20] {
                let msg = pattern(n);
                let a2 = a.clone();
                let m2 = msg.clone();
                // A sender thread: 16 MiB does not fit in the socket buffer.
                let t = std::thread::spawn(move || a2.send_bytes(&m2).unwrap());
                assert_eq!(b.recv_bytes().unwrap(), msg, "size {n}");
                t.join().unwrap();
                let b2 = b.clone();
                let m2 = msg.clone();
                let t = std::thread::spawn(move || b2.send_bytes(&m2).unwrap());
                let mut buf = vec![0u8; n + 10];
                assert_eq!(a.recv_bytes_into(&mut buf).unwrap(), n);
                assert_eq!(&buf[..n], &msg[..]);
                t.join().unwrap();
            }
        }
    });
}

#[test]
fn large_messages_through_shared_memory() {
    watchdog(60, || {
        let (a, b) = pipe(true).unwrap();
        assert_eq!(a.wire(), Wire::Mproc);
        let (a, b) = (Arc::new(a), Arc::new(b));
        // Many large messages of varying sizes: the ring wraps and fills, and
        // the sender waits for the receiver to free space.
        let sizes: Vec<usize> = (0..60).map(|i| (256 << 10) + i * 97_000).collect();
        let s2 = sizes.clone();
        let a2 = a.clone();
        let t = std::thread::spawn(move || {
            for (i, n) in s2.iter().enumerate() {
                let mut m = pattern(*n);
                m[0] = i as u8;
                a2.send_bytes(&m).unwrap();
            }
            // A message bigger than the ring makes a new arena.
            a2.send_bytes(&pattern(20 << 20)).unwrap();
            a2.send(&pattern(1 << 20)).unwrap();
        });
        for (i, n) in sizes.iter().enumerate() {
            let mut want = pattern(*n);
            want[0] = i as u8;
            let got = b.recv_bytes().unwrap();
            assert!(got == want, "message {i} of {n} bytes differs");
        }
        assert!(b.recv_bytes().unwrap() == pattern(20 << 20));
        assert!(b.recv::<Vec<u8>>().unwrap() == pattern(1 << 20));
        t.join().unwrap();
    });
}

/// A `pipe()` end writes a message that is too large for its ring (or
/// carries handles) on the socket: one larger than the socket's buffer can
/// only be written while the receiver reads it, so the receiver must learn
/// of it before the sender has written it all.
#[test]
fn socket_frames_larger_than_the_socket_buffer_arrive() {
    watchdog(60, || {
        let (a, b) = pipe(true).unwrap();
        let t = std::thread::spawn(move || {
            // Below the shared-memory threshold: a plain socket frame.
            a.send_bytes(&pattern(250 << 10)).unwrap();
            // A handle keeps even a large message on the socket.
            let seg = Segment::anonymous(4096).unwrap();
            a.send(&(seg, pattern(4 << 20))).unwrap();
            a
        });
        let got = b.recv_bytes_timeout(Duration::from_secs(30)).unwrap();
        assert!(got == pattern(250 << 10), "the 250 KiB frame differs");
        let (seg, big): (Segment, Vec<u8>) = b.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(seg.len(), 4096);
        assert!(
            big == pattern(4 << 20),
            "the 4 MiB frame with a handle differs"
        );
        drop(t.join().unwrap());
    });
}

#[test]
fn concurrent_senders_never_interleave() {
    watchdog(60, || {
        let (a, b) = cpython_pair();
        let a = Arc::new(a);
        let threads: Vec<_> = (0..4u8)
            .map(|k| {
                let a = a.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        a.send_bytes(&vec![k; 300_000]).unwrap();
                    }
                })
            })
            .collect();
        for _ in 0..80 {
            let m = b.recv_bytes().unwrap();
            assert_eq!(m.len(), 300_000);
            assert!(m.iter().all(|&x| x == m[0]));
        }
        for t in threads {
            t.join().unwrap();
        }
    });
}

#[test]
fn eof_after_close() {
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        a.send_bytes(b"last").unwrap();
        a.close().unwrap();
        // Poll is true at EOF too, the message still arrives, then Eof for ever.
        assert!(b.poll(Duration::ZERO).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), b"last");
        assert!(b.poll(Duration::ZERO).unwrap());
        assert!(matches!(b.recv_bytes(), Err(RecvError::Eof)));
        assert!(matches!(b.recv::<u32>(), Err(RecvError::Eof)));
        assert!(matches!(
            b.send_bytes(b"x"),
            Err(SendBytesError::Disconnected)
        ));
    });
}

#[test]
fn failed_send_hands_the_value_back() {
    let (a, b) = pipe(true).unwrap();
    drop(b);
    let err = a.send(vec![String::from("keep me")]).unwrap_err();
    assert!(matches!(err.error(), SendBytesError::Disconnected));
    assert_eq!(err.into_inner(), ["keep me"]);
}

#[test]
fn buffer_too_short_carries_the_whole_message() {
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        a.send_bytes(b"0123456789").unwrap();
        a.send_bytes(b"next").unwrap();
        let mut small = [0u8; 4];
        match b.recv_bytes_into(&mut small) {
            Err(RecvError::BufferTooShort(m)) => assert_eq!(m, b"0123456789"),
            other => panic!("expected BufferTooShort, got {other:?}"),
        }
        // The message was consumed; the next one follows.
        assert_eq!(b.recv_bytes_into(&mut small).unwrap(), 4);
        assert_eq!(&small, b"next");
    });
}

#[test]
fn wrong_end_errors() {
    let (r, w) = pipe(false).unwrap();
    assert!(r.readable() && !r.writable());
    assert!(!w.readable() && w.writable());
    assert!(matches!(
        r.send_bytes(b"x"),
        Err(SendBytesError::NotWritable)
    ));
    assert!(matches!(
        r.send(1u8).unwrap_err().error(),
        SendBytesError::NotWritable
    ));
    assert!(matches!(w.recv_bytes(), Err(RecvError::NotReadable)));
    assert!(matches!(
        w.poll(Duration::ZERO),
        Err(RecvError::NotReadable)
    ));
    assert_eq!(
        r.send_bytes(b"x").unwrap_err().to_string(),
        "connection is read-only"
    );
    assert_eq!(
        w.recv_bytes().unwrap_err().to_string(),
        "connection is write-only"
    );
    w.send(&42u32).unwrap();
    assert_eq!(r.recv::<u32>().unwrap(), 42);
    drop(w);
    assert!(r.recv_bytes().unwrap_err().is_eof());
}

#[test]
fn send_bytes_range_checks_like_python() {
    let (a, b) = pipe(true).unwrap();
    let buf = b"abcdef";
    a.send_bytes_range(buf, 2, Some(3)).unwrap();
    a.send_bytes_range(buf, 4, None).unwrap();
    a.send_bytes_range(buf, 6, None).unwrap(); // offset == len: empty message
    assert!(matches!(
        a.send_bytes_range(buf, 7, None),
        Err(SendBytesError::OutOfRange { .. })
    ));
    assert!(matches!(
        a.send_bytes_range(buf, 2, Some(5)),
        Err(SendBytesError::OutOfRange { .. })
    ));
    assert!(matches!(
        a.send_bytes_range(buf, usize::MAX, Some(2)),
        Err(SendBytesError::OutOfRange { .. })
    ));
    assert_eq!(b.recv_bytes().unwrap(), b"cde");
    assert_eq!(b.recv_bytes().unwrap(), b"ef");
    assert_eq!(b.recv_bytes().unwrap(), b"");
}

#[test]
fn max_length_and_max_message() {
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        a.send_bytes(b"12345").unwrap();
        assert!(matches!(
            b.recv_bytes_max(4),
            Err(RecvError::TooLarge { len: 5, max: 4 })
        ));
        // As in CPython, the connection is then unreadable but still writable.
        assert!(matches!(b.recv_bytes(), Err(RecvError::Broken)));
        b.send_bytes(b"still writable").unwrap();
        assert_eq!(a.recv_bytes().unwrap(), b"still writable");

        let (a, mut b) = cpython_pair();
        b.set_max_message(1000);
        assert_eq!(b.max_message(), 1000);
        a.send_bytes(&[0u8; 1000]).unwrap();
        assert_eq!(b.recv_bytes_max(2000).unwrap().len(), 1000);
        a.send_bytes(&[0u8; 1001]).unwrap();
        assert!(matches!(
            b.recv_bytes(),
            Err(RecvError::TooLarge {
                len: 1001,
                max: 1000
            })
        ));
    });
}

#[test]
fn hostile_header_is_rejected_without_allocation() {
    watchdog(10, || {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let b = Connection::from_fd(OwnedFd::from(b)).unwrap();
        use std::io::Write;
        // -1 then a 2^62-byte length.
        (&a).write_all(&[0xff, 0xff, 0xff, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
        assert!(matches!(b.recv_bytes(), Err(RecvError::TooLarge { len, .. }) if len == 1 << 62));
        // -7 is no valid length.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let b = Connection::from_fd(OwnedFd::from(b)).unwrap();
        (&a).write_all(&(-7i32).to_be_bytes()).unwrap();
        assert!(matches!(b.recv_bytes(), Err(RecvError::Protocol(_))));
        // A shared-memory record on a CPython connection is just as invalid.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let b = Connection::from_fd(OwnedFd::from(b)).unwrap();
        (&a).write_all(&(-2i32).to_be_bytes()).unwrap();
        assert!(matches!(b.recv_bytes(), Err(RecvError::Protocol(_))));
    });
}

#[test]
fn bogus_shm_records_are_errors() {
    watchdog(10, || {
        // A record naming an arena that was never sent.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut b = Connection::from_fd(OwnedFd::from(b)).unwrap();
        b.set_wire(Wire::Mproc);
        let mut rec = (-2i32).to_be_bytes().to_vec();
        rec.extend_from_slice(&[0u8; 24]);
        use std::io::Write;
        (&a).write_all(&rec).unwrap();
        assert!(matches!(b.recv_bytes(), Err(RecvError::Protocol(_))));
        // An unsealed memfd could be truncated under us (SIGBUS): refused before mapping.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut b = Connection::from_fd(OwnedFd::from(b)).unwrap();
        b.set_wire(Wire::Mproc);
        // SAFETY: plain system calls on a descriptor we own; the name is a C string literal.
        let fd = unsafe { libc::memfd_create(c"x".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: `fd` was just created and nothing else owns it.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: `fd` is a valid memfd.
        assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), 1 << 20) }, 0);
        mproc_shm::handle::send_with_fds(a.as_fd(), &rec, &[fd.as_fd()]).unwrap();
        assert!(matches!(b.recv_bytes(), Err(RecvError::Protocol(m)) if m.contains("sealed")));
        // A sealed segment that is not an arena fails the layout check.
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut b = Connection::from_fd(OwnedFd::from(b)).unwrap();
        b.set_wire(Wire::Mproc);
        let seg = Segment::anonymous(1 << 20).unwrap();
        mproc_shm::handle::send_with_fds(a.as_fd(), &rec, &[seg.as_fd()]).unwrap();
        assert!(matches!(
            b.recv_bytes(),
            Err(RecvError::Protocol("bad shared-memory arena"))
        ));
    });
}

#[test]
fn partial_message_survives_a_timeout() {
    watchdog(10, || {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let b = Connection::from_fd(OwnedFd::from(b)).unwrap();
        use std::io::Write;
        let frame = mproc_pipe::encode_frame(&pattern(100_000));
        (&a).write_all(&frame[..50_000]).unwrap();
        let t0 = Instant::now();
        assert!(matches!(
            b.recv_bytes_timeout(Duration::from_millis(50)),
            Err(RecvTimeoutError::Timeout)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        (&a).write_all(&frame[50_000..]).unwrap();
        assert_eq!(
            b.recv_bytes_timeout(Duration::from_secs(5)).unwrap(),
            pattern(100_000)
        );
        // And a child-died-mid-message: EOF inside a frame is Truncated, not Eof.
        (&a).write_all(&frame[..10]).unwrap();
        drop(a);
        assert!(matches!(b.recv_bytes(), Err(RecvError::Truncated)));
    });
}

#[test]
fn poll_and_try_recv_timeouts() {
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        let t0 = Instant::now();
        assert!(!b.poll(Duration::from_millis(80)).unwrap());
        assert!(t0.elapsed() >= Duration::from_millis(80));
        assert!(matches!(b.try_recv::<u8>(), Err(TryRecvError::Empty)));
        let t0 = Instant::now();
        assert!(matches!(
            b.recv_timeout::<u8>(Duration::from_millis(60)),
            Err(RecvTimeoutError::Timeout)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(60));
        let t0 = Instant::now();
        assert!(matches!(
            b.recv_deadline::<u8>(t0 + Duration::from_millis(40)),
            Err(RecvTimeoutError::Timeout)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(40));
        a.send(&5u8).unwrap();
        a.send(&6u8).unwrap();
        assert!(b.poll(Duration::from_secs(5)).unwrap());
        assert_eq!(b.try_recv::<u8>().unwrap(), 5);
        // The second message sits in the read-ahead buffer: poll still sees it.
        assert!(b.poll(Duration::ZERO).unwrap());
        assert_eq!(b.recv_timeout::<u8>(Duration::from_secs(5)).unwrap(), 6);
        // An empty message makes poll true too.
        a.send_bytes(b"").unwrap();
        assert!(b.poll(Duration::from_secs(5)).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), b"");
    });
}

#[test]
fn wait_on_many() {
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        let (c, d) = pipe(true).unwrap();
        let (rfd, wfd) = {
            let (r, w) = std::os::unix::net::UnixStream::pair().unwrap();
            (OwnedFd::from(r), OwnedFd::from(w))
        };
        let t0 = Instant::now();
        assert!(
            wait_timeout(&[&b, &d, &rfd], Duration::from_millis(70))
                .unwrap()
                .is_empty()
        );
        assert!(t0.elapsed() >= Duration::from_millis(70));
        c.send_bytes(b"1").unwrap();
        assert_eq!(wait(&[&b, &d, &rfd]).unwrap(), [1]);
        a.send_bytes(b"2").unwrap();
        a.send_bytes(b"3").unwrap();
        drop(wfd);
        let mut ready = wait_timeout(&[&b, &d, &rfd], Duration::from_secs(5)).unwrap();
        ready.sort();
        assert_eq!(ready, [0, 1, 2]);
        // `b` has "3" in its read-ahead buffer once "2" is read: still ready.
        assert_eq!(b.recv_bytes().unwrap(), b"2");
        assert_eq!(wait_timeout(&[&b], Duration::ZERO).unwrap(), [0]);
        assert_eq!(b.recv_bytes().unwrap(), b"3");
        assert!(wait_timeout(&[&b], Duration::ZERO).unwrap().is_empty());
        // A closed peer counts as ready.
        drop(c);
        assert_eq!(
            wait_timeout(&[&b, &d], Duration::from_secs(5)).unwrap(),
            [1]
        );
    });
}

#[derive(Serialize, Deserialize)]
struct WithHandles {
    label: String,
    seg: Segment,
    conn: Connection,
    more: Vec<u32>,
}

#[test]
fn handles_travel_inside_messages() {
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        let seg = Segment::anonymous(4096).unwrap();
        seg.write(0, b"shared!").unwrap();
        let (x, y) = pipe(true).unwrap();
        a.send(WithHandles {
            label: "h".into(),
            seg,
            conn: y,
            more: vec![1, 2],
        })
        .unwrap();
        // Bytes before and after, with and without descriptors, stay in step.
        a.send_bytes(b"after").unwrap();
        let got: WithHandles = b.recv().unwrap();
        assert_eq!(got.label, "h");
        assert_eq!(got.more, [1, 2]);
        let mut buf = [0u8; 7];
        got.seg.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"shared!");
        x.send(&"via passed conn").unwrap();
        assert_eq!(got.conn.recv::<String>().unwrap(), "via passed conn");
        assert_eq!(b.recv_bytes().unwrap(), b"after");
        // Many handle-carrying messages back to back, read in one go.
        for i in 0..20u32 {
            let s = Segment::anonymous(4096).unwrap();
            s.write(0, &i.to_le_bytes()).unwrap();
            a.send((i, s)).unwrap();
        }
        for i in 0..20u32 {
            let (j, s): (u32, Segment) = b.recv().unwrap();
            let mut four = [0u8; 4];
            s.read(0, &mut four).unwrap();
            assert_eq!((j, u32::from_le_bytes(four)), (i, i));
        }
    });
}

#[test]
fn handles_cannot_cross_tcp() {
    watchdog(10, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        let a = Connection::from_fd(OwnedFd::from(c)).unwrap();
        let b = Connection::from_fd(OwnedFd::from(s)).unwrap();
        assert!(!a.can_pass_handles());
        let seg = Segment::anonymous(4096).unwrap();
        let err = a.send(seg).unwrap_err();
        assert!(matches!(err.error(), SendBytesError::CannotPassHandles));
        a.send(&[1u8, 2, 3]).unwrap();
        assert_eq!(b.recv::<[u8; 3]>().unwrap(), [1, 2, 3]);
        assert!(b.as_raw_fd() >= 0);
    });
}

#[test]
fn decode_errors_are_reported() {
    let (a, b) = pipe(true).unwrap();
    a.send_bytes(&[0xff, 0xff, 0xff]).unwrap();
    assert!(matches!(b.recv::<u64>(), Err(RecvError::Decode(_))));
    // A decode error does not break the stream.
    a.send(&9u64).unwrap();
    assert_eq!(b.recv::<u64>().unwrap(), 9);
}

#[test]
fn poll_and_wait_do_not_block_behind_a_receiving_thread() {
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        let b = Arc::new(b);
        let b2 = b.clone();
        let receiver = std::thread::spawn(move || b2.recv_bytes().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        // `receiver` is blocked inside recv_bytes; these must still time out on their own.
        let t0 = Instant::now();
        assert!(
            wait_timeout(&[&*b], Duration::from_millis(30))
                .unwrap()
                .is_empty()
        );
        assert!(!b.poll(Duration::from_millis(30)).unwrap());
        assert!(t0.elapsed() >= Duration::from_millis(60));
        a.send_bytes(b"wake").unwrap();
        assert_eq!(receiver.join().unwrap(), b"wake");
    });
}

/// CPython: after "bad message length" a connection that can also write
/// stops being readable (`_readable = False`), so `poll` raises and `wait`
/// loops do not spin on it.
#[test]
fn bad_message_length_makes_the_connection_unreadable() {
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        let (c, d) = pipe(true).unwrap();
        a.send_bytes(b"12345").unwrap();
        assert!(b.readable());
        assert!(matches!(
            b.recv_bytes_max(4),
            Err(RecvError::TooLarge { len: 5, max: 4 })
        ));
        assert!(!b.readable());
        assert!(b.writable());
        assert!(matches!(b.poll(Duration::ZERO), Err(RecvError::Broken)));
        // The unread bytes are still in the socket, yet `wait` reports only
        // the connection that has a message.
        c.send_bytes(b"x").unwrap();
        assert_eq!(
            wait_timeout(&[&b, &d], Duration::from_secs(5)).unwrap(),
            [1]
        );
        assert!(
            wait_timeout(&[&b], Duration::from_millis(20))
                .unwrap()
                .is_empty()
        );
        b.send_bytes(b"still writable").unwrap();
        assert_eq!(a.recv_bytes().unwrap(), b"still writable");
    });
}

/// CPython's `wait` raises for a closed descriptor; `poll(2)` reports it as
/// `POLLNVAL`, which is an error, not readiness.
#[test]
fn waiting_on_an_invalid_descriptor_is_an_error() {
    watchdog(10, || {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let raw = a.as_raw_fd();
        drop(a);
        // SAFETY: only polled, never read or closed, and nothing in this
        // test opens a descriptor between the drop above and the wait.
        let closed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
        let err = wait_timeout(&[&closed], Duration::from_secs(5)).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EBADF));
        drop(b);
    });
}

/// Clones share the stream's state: senders on several clones never tear a
/// message (large ones share one arena), and receives through different
/// clones continue each other (the bytes read ahead are shared).
#[test]
fn clones_share_one_stream() {
    watchdog(30, || {
        let (a, b) = pipe(true).unwrap();
        let senders: Vec<_> = (0..3u8)
            .map(|i| {
                let c = a.try_clone().unwrap();
                assert_ne!(c.as_fd().as_raw_fd(), a.as_fd().as_raw_fd());
                std::thread::spawn(move || {
                    for n in [10usize, 100 << 10, 300 << 10, 7] {
                        c.send_bytes(&vec![i; n]).unwrap();
                    }
                })
            })
            .collect();
        let b2 = b.try_clone().unwrap();
        let mut got = Vec::new();
        for k in 0..12 {
            let m = if k % 2 == 0 {
                b.recv_bytes()
            } else {
                b2.recv_bytes()
            }
            .unwrap();
            assert!(m.iter().all(|&x| x == m[0]), "a torn message");
            got.push((m[0], m.len()));
        }
        for s in senders {
            s.join().unwrap();
        }
        got.sort();
        let want: Vec<(u8, usize)> = (0..3u8)
            .flat_map(|i| [(i, 7), (i, 10), (i, 100 << 10), (i, 300 << 10)])
            .collect();
        assert_eq!(got, want);
        // Every clone of `a` is gone once `a` is; until then, no end of file.
        a.send(&5u8).unwrap();
        drop(a);
        assert_eq!(b2.recv::<u8>().unwrap(), 5);
        assert!(b.recv_bytes().unwrap_err().is_eof());
        assert!(b2.recv_bytes().unwrap_err().is_eof());
    });
}

/// A `Serialize` impl's own message reaches the caller of `send`, and
/// postcard's reason the caller of `recv`.
#[test]
fn codec_errors_keep_their_reason() {
    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("this value stays here"))
        }
    }
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        let e = a.send(Refuses).unwrap_err();
        assert!(matches!(e.error(), SendBytesError::Encode(_)));
        assert_eq!(
            e.to_string(),
            "failed to encode the message: this value stays here"
        );
        let e = a.send_ref(&vec![Some(Refuses)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to encode the message: this value stays here"
        );
        a.send_bytes(&[1]).unwrap();
        let e = b.recv::<(u8, String)>().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "failed to decode the message: {}",
                postcard::Error::DeserializeUnexpectedEnd
            )
        );
    });
}

/// Error texts name the state the way users search for it ("connection is
/// closed"), and use CPython's words where it has some.
#[test]
fn error_texts_name_the_state() {
    watchdog(10, || {
        let (a, b) = pipe(true).unwrap();
        drop(b);
        let e = a.recv_bytes().unwrap_err();
        assert_eq!(
            e.to_string(),
            "connection is closed by the peer (end of file)"
        );
        let e = a.send_bytes(b"x").unwrap_err();
        assert_eq!(e.to_string(), "connection is closed by the peer");
        assert_eq!(
            RecvError::Broken.to_string(),
            "connection is unreadable after an earlier bad message"
        );
    });
}

/// `send(())` is the empty message of `send_bytes(b"")`, byte for byte on
/// the wire (a documented difference: CPython's `send(None)` is a pickle).
#[test]
fn unit_and_empty_bytes_are_the_same_message() {
    use std::io::Read;

    watchdog(10, || {
        let (x, mut raw) = std::os::unix::net::UnixStream::pair().unwrap();
        let a = Connection::from_fd(OwnedFd::from(x)).unwrap();
        a.send(()).unwrap();
        a.send_bytes(b"").unwrap();
        a.send(Some(())).unwrap();
        drop(a);
        let mut wire = Vec::new();
        raw.read_to_end(&mut wire).unwrap();
        assert_eq!(wire, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    });
}

/// A `pipe` end carries small messages through a shared-memory ring and the
/// rest (large ones, ones with descriptors) on the socket: mixed sends keep
/// their order, and a sender that fills the ring waits for the receiver.
#[test]
fn mixed_sizes_keep_their_order_through_a_full_ring() {
    watchdog(60, || {
        let (a, b) = pipe(false).unwrap();
        let (a, b) = (b, a);
        let sizes = [0usize, 8, 1000, 16 << 10, (16 << 10) + 1, 40_000, 300_000];
        let sender = std::thread::spawn(move || {
            for i in 0..400usize {
                if i % 50 == 7 {
                    let seg = Segment::anonymous(4096).unwrap();
                    seg.write(0, &(i as u64).to_le_bytes()).unwrap();
                    a.send(&(i as u64, Some(seg))).unwrap();
                } else {
                    let mut m = pattern(sizes[i % sizes.len()]);
                    m.extend_from_slice(&(i as u64).to_le_bytes());
                    a.send_bytes(&m).unwrap();
                }
            }
        });
        // Let the sender fill the ring (64 KiB) and block on it.
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..400usize {
            if i % 50 == 7 {
                let (n, seg): (u64, Option<Segment>) = b.recv().unwrap();
                let mut got = [0u8; 8];
                seg.unwrap().read(0, &mut got).unwrap();
                assert_eq!((n, u64::from_le_bytes(got)), (i as u64, i as u64));
            } else {
                let m = b.recv_bytes().unwrap();
                let (body, tag) = m.split_at(m.len() - 8);
                assert_eq!(u64::from_le_bytes(tag.try_into().unwrap()), i as u64);
                assert_eq!(body, pattern(sizes[i % sizes.len()]));
            }
        }
        sender.join().unwrap();
        assert!(matches!(b.recv_bytes(), Err(RecvError::Eof)));
    });
}

/// A receiver waiting on the descriptor (`wait`, `poll`) is woken by a
/// doorbell on the socket; once the message is received, the doorbell
/// left in the socket does not make the connection look ready.
#[test]
fn doorbells_wake_waiters_and_leave_no_false_readiness() {
    watchdog(30, || {
        let (a, b) = pipe(true).unwrap();
        for round in 0..20u8 {
            let waiter = std::thread::scope(|s| {
                let w = s.spawn(|| wait_timeout(&[&b], Duration::from_secs(20)).unwrap());
                std::thread::sleep(Duration::from_millis(5));
                a.send_bytes(&[round]).unwrap();
                w.join().unwrap()
            });
            assert_eq!(waiter, [0]);
            assert_eq!(b.recv_bytes().unwrap(), [round]);
            assert!(
                wait_timeout(&[&b], Duration::from_millis(10))
                    .unwrap()
                    .is_empty()
            );
            assert!(!b.poll(Duration::ZERO).unwrap());
        }
        // The same with poll.
        std::thread::scope(|s| {
            let p = s.spawn(|| b.poll(Duration::from_secs(20)).unwrap());
            std::thread::sleep(Duration::from_millis(5));
            a.send(&7u32).unwrap();
            assert!(p.join().unwrap());
        });
        assert_eq!(b.recv::<u32>().unwrap(), 7);
        assert!(!b.poll(Duration::from_millis(10)).unwrap());
        assert!(matches!(b.try_recv::<u32>(), Err(TryRecvError::Empty)));
    });
}
