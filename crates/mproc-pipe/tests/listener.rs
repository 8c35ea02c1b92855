//! Listener and Client between Rust processes' threads: Unix and TCP,
//! authkeys, failures and limits of the handshake.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{pattern, watchdog};
use mproc_pipe::{
    Address, AuthError, Client, ConnectError, Connection, Digest, Listener, RecvError, Wire,
    encode_frame, wait_timeout,
};
use mproc_testkit::TempDir;

fn tcp_any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Runs `client` on a thread, given `l`'s address, while `l` accepts: what
/// `accept` returned, then what the client returned (so the client must not
/// wait for the accepted connection).
fn accept_from<T: Send + 'static>(
    l: &Listener,
    client: impl FnOnce(Address) -> T + Send + 'static,
) -> (Result<Connection, ConnectError>, T) {
    let addr = l.address().clone();
    let t = std::thread::spawn(move || client(addr));
    let accepted = l.accept();
    (accepted, t.join().unwrap())
}

#[test]
fn unix_and_tcp_with_authkey() {
    watchdog(30, || {
        for l in [
            Listener::builder_auto().authkey(b"k").bind().unwrap(),
            Listener::builder(tcp_any()).authkey(b"k").bind().unwrap(),
        ] {
            let addr = l.address().clone();
            let t = std::thread::spawn(move || {
                let c = Client::new(addr).authkey(b"k").connect().unwrap();
                c.send(&("hi", 1u8)).unwrap();
                c.recv_bytes().unwrap()
            });
            let (c, peer) = l.accept_with_peer().unwrap();
            if let Address::Tcp(_) = l.address() {
                assert!(matches!(peer, Some(Address::Tcp(_))));
            }
            assert_eq!(c.recv::<(String, u8)>().unwrap(), ("hi".to_string(), 1));
            c.send_bytes(&pattern(2 << 20)).unwrap();
            assert_eq!(t.join().unwrap(), pattern(2 << 20));
        }
    });
}

#[test]
fn every_digest_and_no_auth() {
    watchdog(30, || {
        for d in [
            Digest::Sha256,
            Digest::Sha384,
            Digest::Sha3_256,
            Digest::Sha3_384,
        ] {
            let l = Listener::builder_auto()
                .authkey(b"k")
                .digest(d)
                .bind()
                .unwrap();
            let (server, client) = accept_from(&l, move |addr| {
                Client::new(addr)
                    .authkey(b"k")
                    .digest(d)
                    .connect()
                    .map(|_| ())
            });
            server.unwrap();
            client.unwrap();
        }
        let l = Listener::bind(tcp_any()).unwrap();
        let (c, ()) = accept_from(&l, |addr| {
            Client::new(addr)
                .connect()
                .unwrap()
                .send_bytes(b"plain")
                .unwrap()
        });
        assert_eq!(c.unwrap().recv_bytes().unwrap(), b"plain");
    });
}

#[test]
fn wrong_key_fails_on_both_sides() {
    watchdog(30, || {
        let l = Listener::builder_auto().authkey(b"right").bind().unwrap();
        let (server, client) = accept_from(&l, |addr| {
            Client::new(addr).authkey(b"wrong").connect().unwrap_err()
        });
        let server = server.unwrap_err();
        assert!(
            matches!(server, ConnectError::Auth(AuthError::WrongDigest)),
            "{server:?}"
        );
        assert!(
            matches!(client, ConnectError::Auth(AuthError::Rejected)),
            "{client:?}"
        );
        assert!(server.is_auth() && client.is_auth());
    });
}

#[test]
fn handshake_limits() {
    watchdog(30, || {
        let l = Listener::builder_auto()
            .authkey(b"k")
            .handshake_timeout(Some(Duration::from_millis(300)))
            .bind()
            .unwrap();
        let addr = l.address().clone();
        // A client that sends an oversized answer is rejected without reading it.
        let a2 = addr.clone();
        let t = std::thread::spawn(move || {
            let mut s = raw_connect(&a2);
            let mut hdr = [0u8; 4];
            s.read_exact(&mut hdr).unwrap();
            let mut challenge = vec![0u8; u32::from_be_bytes(hdr) as usize];
            s.read_exact(&mut challenge).unwrap();
            let _ = s.write_all(&encode_frame(&[b'x'; 257]));
        });
        let e = l.accept().unwrap_err();
        assert!(
            matches!(e, ConnectError::Auth(AuthError::AnswerExpected)),
            "{e:?}"
        );
        t.join().unwrap();
        // A client that connects and says nothing is dropped after the timeout.
        let s = raw_connect(&addr);
        let t0 = Instant::now();
        let e = l.accept().unwrap_err();
        assert!(e.is_timeout(), "{e:?}");
        assert!(t0.elapsed() >= Duration::from_millis(300));
        drop(s);
        // A client that hangs up mid-handshake.
        let s = raw_connect(&addr);
        drop(s);
        let e = l.accept().unwrap_err();
        assert!(matches!(e, ConnectError::Auth(AuthError::Closed)), "{e:?}");
    });
}

#[test]
fn message_sent_right_after_the_handshake_is_kept() {
    watchdog(30, || {
        // A client that pushes a message right after its handshake answer: the
        // listener must not have consumed it when accept returns, and it is
        // then the first message received.
        let l = Listener::builder_auto().authkey(b"k").bind().unwrap();
        let (c, client) = accept_from(&l, |addr| {
            let c = Client::new(addr).authkey(b"k").connect().unwrap();
            c.send_bytes(b"first").unwrap();
            c
        });
        assert_eq!(c.unwrap().recv_bytes().unwrap(), b"first");
        drop(client);
    });
}

#[test]
fn mproc_peers_use_shared_memory() {
    watchdog(30, || {
        let l = Listener::builder_auto()
            .authkey(b"k")
            .mproc_peers(true)
            .bind()
            .unwrap();
        let addr = l.address().clone();
        let t = std::thread::spawn(move || {
            let c = Client::new(addr)
                .authkey(b"k")
                .mproc_peer(true)
                .connect()
                .unwrap();
            assert_eq!(c.wire(), Wire::Mproc);
            c.send_bytes(&pattern(4 << 20)).unwrap();
            c.recv_bytes().unwrap()
        });
        let c = l.accept().unwrap();
        assert_eq!(c.wire(), Wire::Mproc);
        let m = c.recv_bytes().unwrap();
        assert!(m == pattern(4 << 20));
        c.send_bytes(b"ok").unwrap();
        assert_eq!(t.join().unwrap(), b"ok");
        // Over TCP the option is ignored: no descriptors can travel.
        let l = Listener::builder(tcp_any())
            .mproc_peers(true)
            .bind()
            .unwrap();
        let addr = l.address().clone();
        let t = std::thread::spawn(move || {
            Client::new(addr).mproc_peer(true).connect().unwrap().wire()
        });
        assert_eq!(l.accept().unwrap().wire(), Wire::Cpython);
        assert_eq!(t.join().unwrap(), Wire::Cpython);
    });
}

#[test]
fn listener_errors_and_cleanup() {
    watchdog(30, || {
        let dir = TempDir::new();
        let path = dir.path().join("sock");
        let l = Listener::bind(path.clone()).unwrap();
        assert_eq!(l.address(), &Address::Unix(path.clone()));
        assert!(path.exists());
        // Binding the same address twice fails.
        assert!(Listener::bind(path.clone()).is_err());
        // A listener is waitable: ready once a client connects.
        assert!(
            wait_timeout(&[&l], Duration::from_millis(20))
                .unwrap()
                .is_empty()
        );
        let _c = UnixStream::connect(&path).unwrap();
        assert_eq!(wait_timeout(&[&l], Duration::from_secs(5)).unwrap(), [0]);
        drop(l);
        assert!(!path.exists());
    });
}

#[test]
fn abstract_addresses() {
    watchdog(30, || {
        // Automatic private addresses are abstract names: nothing in the
        // filesystem, and the name is free again once the listener closes.
        let l = Listener::builder_auto().bind().unwrap();
        let addr = l.address().clone();
        let Address::Abstract(name) = &addr else {
            panic!("not abstract: {addr:?}")
        };
        assert!(name.starts_with(b"mproc-"), "{addr}");
        assert_eq!(addr.to_string().parse::<Address>().unwrap(), addr);
        let t = std::thread::spawn(move || Client::new(addr).connect().unwrap().send_bytes(b"hi"));
        let (c, peer) = l.accept_with_peer().unwrap();
        assert_eq!(peer, None);
        assert_eq!(c.recv_bytes().unwrap(), b"hi");
        t.join().unwrap().unwrap();
        let addr = l.address().clone();
        drop(l);
        // A process that other tests are starting may hold a copy of the
        // socket for a moment, until it executes its program.
        loop {
            match Client::new(addr.clone()).connect() {
                Err(ConnectError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    break;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(1)),
                Err(e) => panic!("{e:?}"),
            }
        }
        // An explicit abstract name, in CPython's spelling or ours.
        let name = format!("mproc-test-{}", std::process::id());
        let cpython = std::path::PathBuf::from(format!("\0{name}"));
        let l = Listener::builder(cpython.clone())
            .authkey(b"k")
            .bind()
            .unwrap();
        assert_eq!(l.address(), &Address::Abstract(name.clone().into_bytes()));
        assert_eq!(l.address().to_string(), format!("@{name}"));
        // Taken while it is bound.
        assert!(Listener::bind(Address::Abstract(name.clone().into_bytes())).is_err());
        let t = std::thread::spawn(move || {
            let at: Address = format!("@{name}").parse().unwrap();
            Client::new(at)
                .authkey(b"k")
                .connect()
                .unwrap()
                .recv_bytes()
        });
        l.accept().unwrap().send_bytes(b"abstract").unwrap();
        assert_eq!(t.join().unwrap().unwrap(), b"abstract");
        // `Address::Unix` with a leading NUL, built by hand, is abstract too.
        let (server, client) = accept_from(&l, |_| {
            Client::new(Address::Unix(cpython))
                .authkey(b"k")
                .connect()
                .map(|_| ())
        });
        server.unwrap();
        client.unwrap();
    });
}

/// A raw socket connected to a Unix-domain listener (path or abstract).
fn raw_connect(addr: &Address) -> UnixStream {
    match addr {
        Address::Unix(p) => UnixStream::connect(p).unwrap(),
        Address::Abstract(name) => {
            use std::os::linux::net::SocketAddrExt;
            let a = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
            UnixStream::connect_addr(&a).unwrap()
        }
        Address::Tcp(_) => panic!("not a Unix address: {addr}"),
    }
}

/// Reads until end of file (a displaced client); panics on anything else.
fn read_to_eof(s: &mut UnixStream) {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    assert!(buf.len() < 256, "{} bytes before end of file", buf.len());
}

/// Reads one whole frame (the challenge).
fn read_frame(s: &mut UnixStream) -> Vec<u8> {
    let mut hdr = [0u8; 4];
    s.read_exact(&mut hdr).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(hdr) as usize];
    s.read_exact(&mut body).unwrap();
    body
}

/// How long an honest client may wait while silent ones hold the listener.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

/// What the listener's thread reports: the first connection it accepted,
/// with the first message on it.
type Served = Result<(Vec<u8>, mproc_pipe::Connection), ConnectError>;

/// A keyed listener with 100 silent clients, accepting once on a thread;
/// its address, the silent clients, and what it accepted.
fn listener_among_silent_clients() -> (Address, Vec<UnixStream>, std::sync::mpsc::Receiver<Served>)
{
    let l = Listener::builder_auto().authkey(b"k").bind().unwrap();
    let addr = l.address().clone();
    let quiet: Vec<UnixStream> = (0..100).map(|_| raw_connect(&addr)).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = l.accept().map(|c| (c.recv_bytes().unwrap(), c));
        let _ = tx.send(r);
        l
    });
    (addr, quiet, rx)
}

/// Waits at most [`SERVED_WITHIN`] for the listener to serve a client who
/// says `msg`.
fn served(rx: &std::sync::mpsc::Receiver<Served>, msg: &[u8]) {
    match rx.recv_timeout(SERVED_WITHIN) {
        Ok(Ok((m, _))) => assert_eq!(m, msg),
        other => panic!("the honest client was not served within {SERVED_WITHIN:?}: {other:?}"),
    }
}

#[test]
fn silent_clients_do_not_delay_an_honest_one() {
    watchdog(60, || {
        let (addr, quiet, rx) = listener_among_silent_clients();
        let honest = std::thread::spawn(move || {
            let c = Client::new(addr).authkey(b"k").connect().unwrap();
            c.send_bytes(b"honest").unwrap();
        });
        served(&rx, b"honest");
        honest.join().unwrap();
        drop(quiet);
    });
}

#[test]
fn the_pending_limit_displaces_the_longest_waiting() {
    watchdog(60, || {
        let l = Listener::builder_auto()
            .authkey(b"k")
            .max_pending_handshakes(2)
            .bind()
            .unwrap();
        let addr = l.address().clone();
        let mut quiet: Vec<UnixStream> = (0..3).map(|_| raw_connect(&addr)).collect();
        let honest = std::thread::spawn(move || {
            let c = Client::new(addr).authkey(b"k").connect().unwrap();
            c.send_bytes(b"honest").unwrap();
        });
        // Four clients for two places: the two oldest silent ones go.
        assert_eq!(l.accept().unwrap().recv_bytes().unwrap(), b"honest");
        honest.join().unwrap();
        read_to_eof(&mut quiet[0]);
        read_to_eof(&mut quiet[1]);
        // The newest silent one was challenged and is still waited for.
        let challenge = read_frame(&mut quiet[2]);
        assert!(challenge.starts_with(b"#CHALLENGE#{sha256}"));
        quiet[2].set_nonblocking(true).unwrap();
        let e = quiet[2].read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        // It is still served if it answers (it cannot: it has no key), and
        // the listener reports it at the next accept.
        quiet[2].set_nonblocking(false).unwrap();
        quiet[2].write_all(&encode_frame(b"no key")).unwrap();
        let e = l.accept().unwrap_err();
        assert!(
            matches!(e, ConnectError::Auth(AuthError::AnswerExpected)),
            "{e:?}"
        );
    });
}

#[test]
fn keyless_client_against_a_keyed_listener_names_the_cause() {
    watchdog(30, || {
        // The client waits for the listener's first message: it must not
        // take the challenge for one.
        let l = Listener::builder_auto().authkey(b"k").bind().unwrap();
        let (server, client) = accept_from(&l, |addr| {
            let c = Client::new(addr).connect().unwrap();
            c.recv_bytes()
        });
        let server = server.unwrap_err();
        let client = client.unwrap_err();
        assert!(
            matches!(client, RecvError::Protocol(m) if m.contains("requires an authkey")),
            "{client:?}"
        );
        assert_eq!(
            client.to_string(),
            "protocol error: the listener requires an authkey and none was given"
        );
        // The client then hung up.
        assert!(
            matches!(server, ConnectError::Auth(AuthError::Closed)),
            "{server:?}"
        );
        // The client speaks first: the listener names the cause at accept.
        let (server, (first, then)) = accept_from(&l, |addr| {
            let c = Client::new(addr).connect().unwrap();
            c.send_bytes(b"hello, no key here").unwrap();
            let first = c.recv_bytes();
            (first, c.recv_bytes())
        });
        let server = server.unwrap_err();
        assert!(
            matches!(server, ConnectError::Auth(AuthError::AnswerExpected)),
            "{server:?}"
        );
        assert_eq!(
            server.to_string(),
            "authentication failed: the client sent data where an authentication answer \
             was expected: it has no authkey"
        );
        let first = first.unwrap_err();
        assert!(first.to_string().contains("requires an authkey"), "{first}");
        assert!(matches!(then, Err(RecvError::Broken)), "{then:?}");
    });
}

#[test]
fn keyless_client_reads_a_plain_listener_as_usual() {
    watchdog(30, || {
        // The check looks at the first message only, and only for a challenge.
        let l = Listener::builder_auto().bind().unwrap();
        let addr = l.address().clone();
        let t = std::thread::spawn(move || {
            let c = Client::new(addr).connect().unwrap();
            (c.recv_bytes().unwrap(), c.recv_bytes().unwrap())
        });
        let c = l.accept().unwrap();
        c.send_bytes(b"#CHALLENGE# is just text here").unwrap();
        let (msg, body) = mproc_pipe::make_challenge(mproc_pipe::Digest::Sha256).unwrap();
        drop(body);
        c.send_bytes(&msg).unwrap();
        let (first, second) = t.join().unwrap();
        assert_eq!(first, b"#CHALLENGE# is just text here");
        assert_eq!(second, msg);
    });
}

#[test]
fn keyed_client_against_a_keyless_listener_names_the_cause() {
    watchdog(30, || {
        // The listener speaks first: the client sees no challenge at once.
        let l = Listener::bind(tcp_any()).unwrap();
        let addr = l.address().clone();
        let t = std::thread::spawn(move || Client::new(addr).authkey(b"k").connect().unwrap_err());
        let c = l.accept().unwrap();
        c.send_bytes(b"welcome to a plain server").unwrap();
        let e = t.join().unwrap();
        assert!(
            matches!(e, ConnectError::Auth(AuthError::ChallengeExpected)),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "authentication failed: the listener sent data where a challenge was expected: \
             it has no authkey"
        );
        // The listener waits for the client: the client's handshake times
        // out, and says why.
        let (c, e) = accept_from(&l, |addr| {
            Client::new(addr)
                .authkey(b"k")
                .handshake_timeout(Some(Duration::from_millis(200)))
                .connect()
                .unwrap_err()
        });
        let c = c.unwrap();
        assert!(e.is_timeout(), "{e:?}");
        assert_eq!(
            e.to_string(),
            "timed out waiting for the listener's challenge \
             (a listener without an authkey sends none)"
        );
        assert!(c.recv_bytes().unwrap_err().is_eof());
    });
}

/// The role a re-run of this binary plays in [`child`].
const ROLE: &str = "MPROC_PIPE_LISTENER_ROLE";
const ADDR: &str = "MPROC_PIPE_LISTENER_ADDR";

/// Child processes' roles (this test binary run again by other tests).
#[test]
#[ignore = "a role played in a child process"]
fn child() {
    mproc_testkit::play_role(ROLE, |role| match role {
        "honest-client" => {
            let addr: Address = std::env::var(ADDR).unwrap().parse().unwrap();
            println!("CONNECTING");
            let c = Client::new(addr).authkey(b"k").connect().unwrap();
            c.send_bytes(b"honest child").unwrap();
        }
        "stranger" => {
            // Another user: only possible when the tests run as root.
            // SAFETY: plain setgid/setuid calls; no memory is involved.
            assert_eq!(unsafe { libc::setgid(65534) }, 0);
            // SAFETY: as above.
            assert_eq!(unsafe { libc::setuid(65534) }, 0);
            let addr: Address = std::env::var(ADDR).unwrap().parse().unwrap();
            let e = Client::new(addr).authkey(b"k").connect().unwrap_err();
            println!("STRANGER {e:?}");
        }
        "listener-owner" => {
            let l = Listener::builder_auto().authkey(b"k").bind().unwrap();
            println!("ADDR {}", l.address());
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown role {other}"),
    });
}

#[test]
fn silent_clients_do_not_delay_an_honest_client_process() {
    watchdog(60, || {
        let (addr, quiet, rx) = listener_among_silent_clients();
        let at = addr.to_string();
        let mut kid = mproc_testkit::reexec(
            "child",
            &[(ROLE, "honest-client".as_ref()), (ADDR, at.as_ref())],
        );
        // From the moment the child starts connecting.
        assert_eq!(kid.line("CONNECTING"), "");
        served(&rx, b"honest child");
        assert!(kid.wait().success());
        drop(quiet);
    });
}

#[test]
fn killed_owners_leave_no_socket_behind() {
    watchdog(120, || {
        // The owners' temporary directory (where sockets used to go) is ours.
        let tmp = TempDir::new();
        for _ in 0..20 {
            let mut kid = mproc_testkit::reexec(
                "child",
                &[
                    (ROLE, "listener-owner".as_ref()),
                    ("TMPDIR", tmp.path().as_os_str()),
                ],
            );
            let addr: Address = kid.line("ADDR ").parse().unwrap();
            // The owner is listening: its name is taken.
            let c = raw_connect(&addr);
            drop(c);
            kid.sigkill();
            // The name went with the process.
            let e = Client::new(addr).connect().unwrap_err();
            assert!(
                matches!(&e, ConnectError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused),
                "{e:?}"
            );
        }
        assert_eq!(tmp.entries(), Vec::<String>::new());
    });
}

#[test]
fn automatic_addresses_admit_only_the_same_user() {
    watchdog(60, || {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: needs root to run a client as another user");
            return;
        }
        for key in [Some(b"k"), None] {
            let b = Listener::builder_auto();
            let l = match key {
                Some(k) => b.authkey(k),
                None => b,
            }
            .bind()
            .unwrap();
            let at = l.address().to_string();
            let mut kid =
                mproc_testkit::reexec("child", &[(ROLE, "stranger".as_ref()), (ADDR, at.as_ref())]);
            let addr = l.address().clone();
            let t = std::thread::spawn(move || {
                // The stranger's error came first: it was turned away.
                let e = kid.line("STRANGER ");
                assert!(kid.wait().success());
                let c = Client::new(addr);
                let c = match key {
                    Some(k) => c.authkey(k),
                    None => c,
                };
                c.connect().unwrap().send_bytes(b"same user").unwrap();
                e
            });
            // Only the client of our user is ever accepted.
            let c = l.accept().unwrap();
            assert_eq!(c.recv_bytes().unwrap(), b"same user");
            let e = t.join().unwrap();
            assert!(e.contains("Closed"), "{e}");
        }
    });
}

/// Addresses come from strings (`Listener::bind("127.0.0.1:0")`, Python's
/// `"\0name"` and mproc's `@name`) and survive serde unchanged, so a
/// listener's address can be handed to another process.
#[test]
fn addresses_from_strings_and_through_serde() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    watchdog(10, || {
        let l = Listener::bind("127.0.0.1:0").unwrap();
        assert!(matches!(l.address(), Address::Tcp(a) if a.ip().is_loopback() && a.port() != 0));
        let c = Client::new(l.address().to_string()).connect().unwrap();
        let s = l.accept().unwrap();
        c.send_bytes(b"over tcp").unwrap();
        assert_eq!(s.recv_bytes().unwrap(), b"over tcp");

        assert_eq!(Address::from("\0srv"), Address::Abstract(b"srv".to_vec()));
        assert_eq!(Address::from("@srv"), Address::Abstract(b"srv".to_vec()));
        assert_eq!(
            Address::from("/tmp/x.sock"),
            Address::Unix("/tmp/x.sock".into())
        );
        assert_eq!(
            Address::from(String::from("[::1]:8080")),
            Address::Tcp("[::1]:8080".parse().unwrap())
        );
        let not_utf8 = PathBuf::from(OsStr::from_bytes(b"/tmp/\xff.sock"));
        for a in [
            Address::from("\0srv"),
            Address::Abstract(b"\xfe\x00odd".to_vec()),
            Address::from(not_utf8.as_path()),
            Address::from("127.0.0.1:5000"),
            l.address().clone(),
        ] {
            let bytes = postcard::to_allocvec(&a).unwrap();
            assert_eq!(postcard::from_bytes::<Address>(&bytes).unwrap(), a);
        }
    });
}
