//! Listener and Client between Rust processes' threads: Unix and TCP,
//! authkeys, failures and limits of the handshake.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{pattern, watchdog};
use mproc_pipe::{
    Address, AuthError, Client, ConnectError, Digest, Listener, Wire, encode_frame, wait_timeout,
};

fn tcp_any() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
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
            let addr = l.address().clone();
            let t = std::thread::spawn(move || {
                Client::new(addr)
                    .authkey(b"k")
                    .digest(d)
                    .connect()
                    .map(|_| ())
            });
            l.accept().unwrap();
            t.join().unwrap().unwrap();
        }
        let l = Listener::bind(tcp_any()).unwrap();
        let addr = l.address().clone();
        let t = std::thread::spawn(move || {
            Client::new(addr)
                .connect()
                .unwrap()
                .send_bytes(b"plain")
                .unwrap()
        });
        assert_eq!(l.accept().unwrap().recv_bytes().unwrap(), b"plain");
        t.join().unwrap();
    });
}

#[test]
fn wrong_key_fails_on_both_sides() {
    watchdog(30, || {
        let l = Listener::builder_auto().authkey(b"right").bind().unwrap();
        let addr = l.address().clone();
        let t =
            std::thread::spawn(move || Client::new(addr).authkey(b"wrong").connect().unwrap_err());
        let server = l.accept().unwrap_err();
        let client = t.join().unwrap();
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
fn auth_client_against_plain_listener_times_out() {
    watchdog(30, || {
        // The client waits for a challenge that never comes: its handshake times out.
        let l = Listener::bind(tcp_any()).unwrap();
        let addr = l.address().clone();
        let t = std::thread::spawn(move || {
            Client::new(addr)
                .authkey(b"k")
                .handshake_timeout(Some(Duration::from_millis(200)))
                .connect()
                .unwrap_err()
        });
        let _c = l.accept().unwrap();
        let t0 = Instant::now();
        let e = t.join().unwrap();
        assert!(
            matches!(&e, ConnectError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
            "{e:?}"
        );
        assert!(t0.elapsed() < Duration::from_secs(20));
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
        let Address::Unix(path) = l.address().clone() else {
            unreachable!()
        };
        // A client that sends an oversized answer is rejected without reading it.
        let p2 = path.clone();
        let t = std::thread::spawn(move || {
            let mut s = UnixStream::connect(&p2).unwrap();
            let mut hdr = [0u8; 4];
            s.read_exact(&mut hdr).unwrap();
            let mut challenge = vec![0u8; u32::from_be_bytes(hdr) as usize];
            s.read_exact(&mut challenge).unwrap();
            let _ = s.write_all(&encode_frame(&[b'x'; 257]));
        });
        let e = l.accept().unwrap_err();
        assert!(
            matches!(e, ConnectError::Auth(AuthError::Protocol(_))),
            "{e:?}"
        );
        t.join().unwrap();
        // A client that connects and says nothing is dropped after the timeout.
        let s = UnixStream::connect(&path).unwrap();
        let t0 = Instant::now();
        let e = l.accept().unwrap_err();
        assert!(
            matches!(&e, ConnectError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut),
            "{e:?}"
        );
        assert!(t0.elapsed() >= Duration::from_millis(300));
        drop(s);
        // A client that hangs up mid-handshake.
        let s = UnixStream::connect(&path).unwrap();
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
        let addr = l.address().clone();
        let t = std::thread::spawn(move || {
            let c = Client::new(addr).authkey(b"k").connect().unwrap();
            c.send_bytes(b"first").unwrap();
            c
        });
        let c = l.accept().unwrap();
        assert_eq!(c.recv_bytes().unwrap(), b"first");
        drop(t.join().unwrap());
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
        let l = Listener::builder_auto().bind().unwrap();
        let Address::Unix(path) = l.address().clone() else {
            unreachable!()
        };
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
        let dir = path.parent().unwrap().to_owned();
        drop(l);
        assert!(!path.exists() && !dir.exists());
        // Abstract addresses are refused.
        assert!(Listener::bind(std::path::PathBuf::from("\0abstract")).is_err());
    });
}
