//! Connections between processes. Children are this test binary run again
//! (`--exact <role> --ignored`), with a connection handed over as a handle
//! (testkit's payload: its serialized bytes and its descriptors).

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{pattern, watchdog};
use mproc_pipe::{Connection, RecvError, RecvTimeoutError, pipe};
use mproc_shm::Segment;
use mproc_shm::handle::{from_bytes_with_fds, to_bytes_with_fds};
use mproc_testkit::TestChild;

const ROLE: &str = "MPROC_PIPE_TEST_ROLE";
/// How long a child may take.
const CHILD_LIMIT: Duration = Duration::from_secs(30);

/// Starts this binary as `role`, handing it `conn` as a handle (its
/// descriptors: the socket, the write lock that copies of a writable
/// connection share, and the shared-memory ring of a `pipe` end).
fn spawn(role: &str, conn: &Connection) -> TestChild {
    let (bytes, fds) = to_bytes_with_fds(conn).unwrap();
    assert_eq!(fds.len(), if conn.writable() { 3 } else { 2 });
    let mut cmd = mproc_testkit::test_command(role);
    cmd.env(ROLE, role).stdout(std::process::Stdio::null());
    mproc_testkit::spawn_with_payload(&mut cmd, (bytes, fds), role)
}

/// A duplex pipe whose other end went to a child started as `role` (this
/// process keeps no copy of it).
fn pipe_to_child(role: &str) -> (Connection, TestChild) {
    let (a, b) = pipe(true).unwrap();
    let kid = spawn(role, &b);
    (a, kid)
}

/// In a child: the connection handed over, or `None` when run by hand.
fn inherited(role: &str) -> Option<Connection> {
    if std::env::var(ROLE).ok()? != role {
        return None;
    }
    // SAFETY: called once in this child (by its one role), and nothing else
    // here owns the descriptors placed for it.
    let (bytes, fds) = unsafe { mproc_testkit::take_payload() }.expect("a payload");
    Some(from_bytes_with_fds(&bytes, fds).unwrap())
}

#[test]
#[ignore = "child role"]
fn role_echo() {
    let Some(c) = inherited("role_echo") else {
        return;
    };
    // Typed: a segment and a connection arrive as handles.
    let (seg, back): (Segment, Connection) = c.recv().unwrap();
    seg.write(0, b"child was here").unwrap();
    back.send(&std::process::id()).unwrap();
    loop {
        match c.recv_bytes() {
            Ok(m) => c.send_bytes(&m).unwrap(),
            Err(RecvError::Eof) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
#[ignore = "child role"]
fn role_die_mid_message() {
    let Some(c) = inherited("role_die_mid_message") else {
        return;
    };
    c.send_bytes(b"complete").unwrap();
    // Half a frame, straight on the socket, then die.
    let frame = mproc_pipe::encode_frame(&pattern(10_000));
    // SAFETY: `frame` holds at least 5000 readable bytes; the descriptor is open.
    let n = unsafe { libc::write(c.as_raw_fd(), frame.as_ptr().cast(), 5000) };
    assert_eq!(n, 5000);
    std::process::exit(7);
}

#[test]
#[ignore = "child role"]
fn role_sleep() {
    let Some(_c) = inherited("role_sleep") else {
        return;
    };
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn echo_child_with_handles_and_shared_memory() {
    watchdog(60, || {
        let (a, kid) = pipe_to_child("role_echo");
        let seg = Segment::anonymous(4096).unwrap();
        let (x, y) = pipe(true).unwrap();
        a.send((seg.try_clone().unwrap(), y)).unwrap();
        let pid: u32 = x.recv().unwrap();
        assert_ne!(pid, std::process::id());
        let mut buf = [0u8; 14];
        seg.read(0, &mut buf).unwrap();
        assert_eq!(&buf, b"child was here");
        // 250 KiB: a socket frame (above the ring's 16 KiB, below the
        // shared-memory threshold) larger than the socket's buffer.
        for n in [0, 1, 64 << 10, 250 << 10, 300 << 10, 16 << 20] {
            let m = pattern(n);
            a.send_bytes(&m).unwrap();
            assert!(a.recv_bytes().unwrap() == m, "echo of {n} bytes");
        }
        drop(a);
        kid.wait_success(CHILD_LIMIT);
    });
}

#[test]
fn child_dying_mid_message_is_an_error_not_a_hang() {
    watchdog(60, || {
        let (a, kid) = pipe_to_child("role_die_mid_message");
        assert_eq!(a.recv_bytes().unwrap(), b"complete");
        assert!(matches!(a.recv_bytes(), Err(RecvError::Truncated)));
        let st = kid.wait(CHILD_LIMIT);
        assert_eq!(st.code(), Some(7));
    });
}

#[test]
fn child_killed_while_parent_waits_gives_eof() {
    watchdog(60, || {
        let (a, kid) = pipe_to_child("role_sleep");
        assert!(matches!(
            a.recv_bytes_timeout(Duration::from_millis(100)),
            Err(RecvTimeoutError::Timeout)
        ));
        kid.signal_kill();
        assert!(matches!(a.recv_bytes(), Err(RecvError::Eof)));
        let st = kid.wait(CHILD_LIMIT);
        assert_eq!(st.signal(), Some(libc::SIGKILL));
    });
}

/// A small xorshift generator: deterministic per seed, no dependency.
fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Sleeps for a random 0..200 µs one time in four, so that the other side
/// finds the message sometimes while spinning and sometimes only after it
/// fell asleep.
fn jitter(s: &mut u64) {
    let r = next_rand(s);
    if r % 4 == 0 {
        std::thread::sleep(Duration::from_micros((r >> 8) % 200));
    }
}

/// Receives one message in one of the ways a receiver can wait: blocking,
/// with a timeout, or after `poll`.
fn recv_some_way(c: &Connection, s: &mut u64) -> Vec<u8> {
    match next_rand(s) % 3 {
        0 => c.recv_bytes().unwrap(),
        1 => c.recv_bytes_timeout(Duration::from_secs(20)).unwrap(),
        _ => {
            assert!(c.poll(Duration::from_secs(20)).unwrap());
            c.try_recv_bytes().unwrap()
        }
    }
}

/// Sends 3000 numbered messages, each after a random pause, and checks
/// that each comes back before sending the next.
fn ping_rounds(c: &Connection, seed: u64) {
    let mut s = seed;
    for i in 0u32..3000 {
        jitter(&mut s);
        c.send_bytes(&i.to_le_bytes()).unwrap();
        assert_eq!(recv_some_way(c, &mut s), i.to_le_bytes(), "round {i}");
    }
}

/// As [`inherited`], with this process pinned to the `i`-th CPU it may use
/// (counting round), so that the receive paths that spin only while pinned
/// run.
fn inherited_pinned(role: &str, i: usize) -> Option<Connection> {
    let c = inherited(role)?;
    mproc_testkit::pin_to_nth_cpu(i);
    mproc_shm::mutex::refresh_affinity();
    Some(c)
}

#[test]
#[ignore = "child role"]
fn role_jittery_pinger() {
    let Some(c) = inherited_pinned("role_jittery_pinger", 0) else {
        return;
    };
    ping_rounds(&c, 0x9e37_79b9_7f4a_7c15);
}

#[test]
#[ignore = "child role"]
fn role_jittery_echo() {
    let Some(c) = inherited_pinned("role_jittery_echo", 1) else {
        return;
    };
    let mut s = u64::from(std::process::id()) | 1;
    loop {
        match c.recv_bytes_timeout(Duration::from_secs(20)) {
            Ok(m) => {
                jitter(&mut s);
                c.send_bytes(&m).unwrap();
            }
            Err(RecvTimeoutError::Eof) => break,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Round trips with random pauses on both sides: each hand-off is caught
/// while the receiver spins, or after it slept (the sender's write must wake
/// it), or while it waits in `poll`. A lost wake-up shows as a timeout.
#[test]
fn round_trips_with_random_pauses_lose_no_wake_up() {
    watchdog(120, || {
        let (a, kid) = pipe_to_child("role_jittery_echo");
        ping_rounds(&a, 0x9e37_79b9_7f4a_7c15);
        drop(a);
        kid.wait_success(CHILD_LIMIT);
    });
}

/// The same between threads of one process, in both directions at once.
#[test]
fn threads_exchange_with_random_pauses_in_both_directions() {
    watchdog(120, || {
        let (a, b) = pipe(true).unwrap();
        let run = |c: Connection, seed: u64| move || ping_rounds(&c, seed);
        let t = std::thread::spawn(run(a, 0x1234_5678_9abc_def1));
        run(b, 0x0fed_cba9_8765_4321)();
        t.join().unwrap();
    });
}

/// As `round_trips_with_random_pauses_lose_no_wake_up`, between two
/// children pinned to different CPUs, where receivers spin before they
/// sleep: messages are caught while spinning, in `poll`, or after a sleep.
#[test]
fn pinned_children_with_random_pauses_lose_no_wake_up() {
    watchdog(120, || {
        let (a, b) = pipe(true).unwrap();
        let pinger = spawn("role_jittery_pinger", &a);
        let echo = spawn("role_jittery_echo", &b);
        drop((a, b));
        pinger.wait_success(CHILD_LIMIT);
        echo.wait_success(CHILD_LIMIT);
    });
}

/// A multi-threaded runtime for the async tests.
#[cfg(feature = "tokio")]
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()
        .unwrap()
}

/// `send_async`/`recv_async` with a child process that echoes, on a
/// multi-threaded runtime: the receiving task is woken by the doorbell
/// the child's sends ring on the socket.
#[cfg(feature = "tokio")]
#[test]
fn async_round_trips_with_a_child() {
    watchdog(120, || {
        let (a, kid) = pipe_to_child("role_jittery_echo");
        let a = std::sync::Arc::new(a);
        runtime().block_on(async {
            let task = tokio::spawn({
                let a = a.clone();
                async move {
                    for i in 0u32..500 {
                        a.send_bytes_async(&i.to_le_bytes()).await.unwrap();
                        assert_eq!(a.recv_bytes_async().await.unwrap(), i.to_le_bytes());
                    }
                    a.send_async((7u8, String::from("typed"))).await.unwrap();
                    a.recv_async::<(u8, String)>().await.unwrap()
                }
            });
            assert_eq!(task.await.unwrap(), (7, String::from("typed")));
        });
        drop(a);
        kid.wait_success(CHILD_LIMIT);
    });
}

/// A receive future dropped before its message came takes nothing: the
/// message sent afterwards, and a message half on the socket when the
/// future was dropped, are received whole.
#[cfg(feature = "tokio")]
#[test]
fn dropped_receive_futures_lose_nothing() {
    watchdog(60, || {
        runtime().block_on(async {
            let (a, b) = pipe(true).unwrap();
            tokio::select! {
                biased;
                _ = b.recv_bytes_async() => panic!("nothing was sent"),
                _ = tokio::task::yield_now() => {}
            }
            a.send_bytes(b"after").unwrap();
            assert_eq!(b.recv_bytes_async().await.unwrap(), b"after");
            // Half a frame on a plain socket connection.
            let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
            let y = Connection::from_fd(std::os::fd::OwnedFd::from(y)).unwrap();
            let frame = mproc_pipe::encode_frame(&pattern(100_000));
            use std::io::Write;
            (&x).write_all(&frame[..30_000]).unwrap();
            tokio::select! {
                biased;
                _ = y.recv_bytes_async() => panic!("half a message"),
                _ = tokio::task::yield_now() => {}
            }
            let writer = std::thread::spawn(move || (&x).write_all(&frame[30_000..]).unwrap());
            assert_eq!(y.recv_bytes_async().await.unwrap(), pattern(100_000));
            writer.join().unwrap();
        });
    });
}

/// `accept_async` runs the authkey handshake on the reactor, for a client
/// in another thread, and refuses a client with the wrong key.
#[cfg(feature = "tokio")]
#[test]
fn accept_async_with_an_authkey() {
    use mproc_pipe::{Client, Listener};
    watchdog(60, || {
        let l = Listener::builder("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
            .authkey(b"k")
            .bind()
            .unwrap();
        let addr = l.address().clone();
        runtime().block_on(async {
            let a2 = addr.clone();
            let bad = std::thread::spawn(move || Client::new(a2).authkey(b"x").connect());
            assert!(l.accept_async().await.unwrap_err().is_auth());
            assert!(bad.join().unwrap().is_err());
            let client = std::thread::spawn(move || {
                let c = Client::new(addr).authkey(b"k").connect().unwrap();
                c.send(&41u32).unwrap();
                c.recv::<u32>().unwrap()
            });
            let c = l.accept_async().await.unwrap();
            let n: u32 = c.recv_async().await.unwrap();
            c.send_async(n + 1).await.unwrap();
            assert_eq!(client.join().unwrap(), 42);
        });
    });
}
