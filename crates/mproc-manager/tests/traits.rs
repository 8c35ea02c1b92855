//! Proxies and managers can be shared between threads.

use mproc_manager::*;

fn send_sync<T: Send + Sync>() {}

#[test]
fn proxies_and_managers_are_send_and_sync() {
    send_sync::<Manager>();
    send_sync::<Dict<String, Vec<u8>>>();
    send_sync::<List<u64>>();
    send_sync::<Value<String>>();
    send_sync::<Namespace>();
    send_sync::<Lock>();
    send_sync::<RLock>();
    send_sync::<Semaphore>();
    send_sync::<Event>();
    send_sync::<Condition>();
    send_sync::<Barrier>();
    send_sync::<Queue<u8>>();
    send_sync::<JoinableQueue<u8>>();
    send_sync::<RawProxy>();
    send_sync::<Error>();
}
