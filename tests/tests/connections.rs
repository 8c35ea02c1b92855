//! Connections and listeners across processes started with mproc's start
//! methods: an address passed to a child, one writer shared by several
//! children.

use std::time::Duration;

use mproc::connection::Address;
use mproc::{Client, Connection, Listener, StartMethod, get_context, pipe};
use mproc_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);
const METHODS: [StartMethod; 2] = [StartMethod::ForkServer, StartMethod::Spawn];

fn dial(addr: Address) -> u64 {
    let c = Client::new(addr).authkey(b"k").connect().expect("connect");
    c.send(&format!("hello from {}", std::process::id()))
        .expect("send");
    c.recv::<u64>().expect("reply")
}

/// Python passes `listener.address` to a child, which calls `Client(address)`;
/// an `Address` is a process argument the same way.
#[test]
fn a_listener_address_reaches_a_child() {
    watchdog(LIMIT, || {
        for m in METHODS {
            for at in ["127.0.0.1:0", "@"] {
                let l = if at == "@" {
                    Listener::builder_auto().authkey(b"k").bind().unwrap()
                } else {
                    Listener::builder(at).authkey(b"k").bind().unwrap()
                };
                let mut child = get_context(m)
                    .process(dial, l.address().clone())
                    .start()
                    .unwrap();
                let c = l.accept().unwrap();
                let hello: String = c.recv().unwrap();
                assert_eq!(
                    hello,
                    format!("hello from {}", child.pid().as_raw()),
                    "{m:?} {at}"
                );
                c.send(&42u64).unwrap();
                assert_eq!(child.join().unwrap(), 42, "{m:?} {at}");
            }
        }
    });
}

/// Message `seq` of sender `who`: its length and bytes say who sent it, so
/// a torn or mixed message shows.
fn message(who: u8, seq: usize) -> Vec<u8> {
    // Small, above the kernel's ~36 KiB socket buffer piece (so one write is
    // split), and above the shared-memory threshold.
    let len = [10, 100 << 10, 300 << 10][seq % 3] + seq;
    let mut m = vec![who; len];
    m[..8].copy_from_slice(&(seq as u64).to_le_bytes());
    m
}

const PER_CHILD: usize = 30;

fn send_all((who, tx): (u8, Connection)) -> usize {
    for seq in 0..PER_CHILD {
        tx.send_bytes(&message(who, seq)).expect("send");
    }
    PER_CHILD
}

/// CPython hands one writer to many children; each child's messages arrive
/// whole. Here one end is cloned into three children started by mproc (no
/// raw descriptors), with and without the shared-memory path for large
/// messages.
#[test]
fn one_writer_shared_by_three_children() {
    watchdog(LIMIT, || {
        for m in METHODS {
            for shm in [true, false] {
                let (rx, mut tx) = pipe(false).unwrap();
                if !shm {
                    tx.set_shm_threshold(None);
                }
                let kids: Vec<_> = (1..=3u8)
                    .map(|who| {
                        get_context(m)
                            .process(send_all, (who, tx.try_clone().unwrap()))
                            .start()
                            .unwrap()
                    })
                    .collect();
                drop(tx);
                let mut next = [0usize; 3];
                for _ in 0..3 * PER_CHILD {
                    let msg = rx.recv_bytes().unwrap();
                    let who = *msg.last().unwrap();
                    assert!((1..=3).contains(&who), "{m:?} shm={shm}: sender {who}");
                    let seq = next[usize::from(who - 1)];
                    assert!(
                        msg == message(who, seq),
                        "{m:?} shm={shm}: message {seq} of {who} is torn"
                    );
                    next[usize::from(who - 1)] += 1;
                }
                for mut k in kids {
                    assert_eq!(k.join().unwrap(), PER_CHILD, "{m:?}");
                }
                assert_eq!(next, [PER_CHILD; 3], "{m:?} shm={shm}");
                assert!(rx.recv_bytes().unwrap_err().is_eof(), "{m:?} shm={shm}");
            }
        }
    });
}
