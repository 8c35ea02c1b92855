//! Connections and listeners across processes started with mproc's start
//! methods: an address passed to a child, one writer shared by several
//! children.

use std::time::Duration;

use mproc::connection::Address;
use mproc::{Client, Listener, StartMethod, get_context};
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
                assert_eq!(hello, format!("hello from {}", child.pid().as_raw()), "{m:?} {at}");
                c.send(&42u64).unwrap();
                assert_eq!(child.join().unwrap(), 42, "{m:?} {at}");
            }
        }
    });
}
