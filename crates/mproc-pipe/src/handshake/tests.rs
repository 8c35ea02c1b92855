use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::*;
use crate::auth::Digest;
use crate::frame::encode_frame;

fn key(k: &[u8]) -> Arc<[u8]> {
    k.into()
}

fn pair() -> (OwnedFd, OwnedFd) {
    sys::socketpair().unwrap()
}

type Outcome = Result<Progress, ConnectError>;

/// Advances both sides in turn, in one thread, until one fails or both
/// have had ten turns.
fn drive(
    a: &mut Handshake,
    fa: BorrowedFd<'_>,
    b: &mut Handshake,
    fb: BorrowedFd<'_>,
) -> (Outcome, Outcome) {
    let (mut ra, mut rb) = (a.advance(fa), b.advance(fb));
    for _ in 0..10 {
        if ra.is_err() || rb.is_err() {
            break;
        }
        ra = a.advance(fa);
        rb = b.advance(fb);
    }
    (ra, rb)
}

#[test]
fn both_roles_complete_without_blocking() {
    for digest in [Digest::Sha256, Digest::Sha3_384] {
        let opts = AuthOptions {
            digest,
            ..AuthOptions::default()
        };
        let (x, y) = pair();
        let mut l = Handshake::new(Role::Listener, key(b"k"), opts, None);
        let mut c = Handshake::new(Role::Client, key(b"k"), opts, None);
        // The client waits for the challenge before anything was sent.
        assert_eq!(c.advance(y.as_fd()).unwrap(), Progress::Wait(libc::POLLIN));
        let (rl, rc) = drive(&mut l, x.as_fd(), &mut c, y.as_fd());
        assert_eq!(rl.unwrap(), Progress::Done);
        assert_eq!(rc.unwrap(), Progress::Done);
        // Nothing is left unread on either side.
        let mut b = [0u8; 1];
        for fd in [&x, &y] {
            let e = sys::recv_nonblock(fd.as_fd(), &mut b).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        }
    }
}

#[test]
fn wrong_key_fails_on_both_sides() {
    let (x, y) = pair();
    let opts = AuthOptions::default();
    let mut l = Handshake::new(Role::Listener, key(b"right"), opts, None);
    let mut c = Handshake::new(Role::Client, key(b"wrong"), opts, None);
    let (rl, rc) = drive(&mut l, x.as_fd(), &mut c, y.as_fd());
    assert!(
        matches!(rl, Err(ConnectError::Auth(AuthError::WrongDigest))),
        "{rl:?}"
    );
    assert!(
        matches!(rc, Err(ConnectError::Auth(AuthError::Rejected))),
        "{rc:?}"
    );
}

#[test]
fn frames_arriving_byte_by_byte_are_reassembled() {
    // The client's side, fed by hand one byte at a time.
    let (x, y) = pair();
    let opts = AuthOptions::default();
    let mut c = Handshake::new(Role::Client, key(b"k"), opts, None);
    let (msg, body) = make_challenge(Digest::Sha256).unwrap();
    for b in encode_frame(&msg) {
        assert_eq!(c.advance(y.as_fd()).unwrap(), Progress::Wait(libc::POLLIN));
        assert_eq!(sys::send_nonblock(x.as_fd(), &[b]).unwrap(), 1);
    }
    // The answer is sent; the client now waits for the verdict.
    assert_eq!(c.advance(y.as_fd()).unwrap(), Progress::Wait(libc::POLLIN));
    let mut got = [0u8; 256];
    let n = sys::recv_nonblock(x.as_fd(), &mut got).unwrap();
    assert_eq!(&got[..4], &((n - 4) as u32).to_be_bytes());
    verify_response(b"k", &body, &got[4..n], &opts).unwrap();
}

#[test]
fn talk_instead_of_a_handshake_names_the_cause() {
    let opts = AuthOptions::default();
    // Our role, what the peer sends (`None`: it hangs up), and the error.
    let cases: [(Role, Option<&[u8]>, AuthError); 4] = [
        // A client without a key sends its first message as the answer ...
        (Role::Listener, Some(b"hello"), AuthError::AnswerExpected),
        // ... or one too long to be an answer.
        (
            Role::Listener,
            Some(&[7u8; 1000]),
            AuthError::AnswerExpected,
        ),
        // A listener without a key greets the client instead of challenging it.
        (Role::Client, Some(b"welcome"), AuthError::ChallengeExpected),
        // A peer that hangs up.
        (Role::Client, None, AuthError::Closed),
    ];
    for (role, peer_sends, why) in cases {
        let (x, y) = pair();
        let (mine, peer) = if role == Role::Listener {
            (x, y)
        } else {
            (y, x)
        };
        let mut h = Handshake::new(role, key(b"k"), opts, None);
        if role == Role::Listener {
            // Its challenge goes out first.
            assert_eq!(
                h.advance(mine.as_fd()).unwrap(),
                Progress::Wait(libc::POLLIN)
            );
        }
        match peer_sends {
            Some(m) => {
                sys::send_nonblock(peer.as_fd(), &encode_frame(m)).unwrap();
            }
            None => drop(peer),
        }
        let e = h.advance(mine.as_fd()).unwrap_err();
        assert!(
            matches!(&e, ConnectError::Auth(a) if *a == why),
            "{role:?}: {e:?}"
        );
    }
}

#[test]
fn a_timeout_says_what_was_awaited() {
    let opts = AuthOptions::default();
    let (_x, y) = pair();
    let wait = Duration::from_millis(50);
    let mut c = Handshake::new(Role::Client, key(b"k"), opts, Some(Instant::now() + wait));
    let t0 = Instant::now();
    let e = c.run(y.as_fd()).unwrap_err();
    assert!(t0.elapsed() >= wait);
    assert!(e.is_timeout(), "{e:?}");
    assert_eq!(
        e.to_string(),
        "timed out waiting for the listener's challenge \
         (a listener without an authkey sends none)"
    );
    let (x, _y) = pair();
    let mut l = Handshake::new(Role::Listener, key(b"k"), opts, None);
    l.advance(x.as_fd()).unwrap();
    assert_eq!(
        l.timed_out().to_string(),
        "timed out waiting for the client's answer to our challenge \
         (a client without an authkey sends none)"
    );
}
