//! Remote managers: an unrelated process (a re-execution of this test
//! binary) connects over TCP with the authkey; a wrong key reaches nothing.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::watchdog;
use mproc_manager::{Address, Dict, Error, Manager, Queue};

const ROLE: &str = "MPROC_MANAGER_TEST_ROLE";
const ADDR: &str = "MPROC_MANAGER_TEST_ADDR";
const KEY: &str = "MPROC_MANAGER_TEST_KEY";

use mproc_testkit::{hex, unhex};

/// Runs this test binary as the unrelated process, with `role`.
fn run_role(role: &str, addr: &Address, key: &[u8]) -> std::process::ExitStatus {
    run_role_of(&std::env::current_exe().unwrap(), role, addr, key)
}

/// Runs the executable `exe` (this test binary or a copy) with `role`.
fn run_role_of(
    exe: &std::path::Path,
    role: &str,
    addr: &Address,
    key: &[u8],
) -> std::process::ExitStatus {
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "remote_role",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ROLE, role)
        .env(ADDR, addr.to_string())
        .env(KEY, hex(key))
        .spawn()
        .unwrap();
    // The child has its own deadlines; this bounds a hung one.
    for _ in 0..3000 {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let st = child.wait().unwrap();
    panic!("the remote client did not finish in 30 s: {st:?}");
}

/// The unrelated process's side (run only through `run_role`).
#[test]
#[ignore = "run by the remote tests as a separate process"]
fn remote_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let addr: std::net::SocketAddr = std::env::var(ADDR).unwrap().parse().unwrap();
    let key = unhex(&std::env::var(KEY).unwrap());
    match role.as_str() {
        "worker" => {
            let m = Manager::builder()
                .address(addr)
                .authkey(&key)
                .call_timeout(Duration::from_secs(5))
                .connect()
                .unwrap();
            let jobs: Queue<Option<u32>> = m.lookup("jobs").unwrap();
            let results: Dict<u32, u32> = m.lookup("results").unwrap();
            while let Some(x) = jobs.get_timeout(Duration::from_secs(20)).unwrap() {
                results.insert(&x, &(x * x)).unwrap();
                // Same executable, so server-side updates work remotely too.
                results
                    .update_or_insert_with(&u32::MAX, &0, 1, |n: &mut u32, k: u32| *n += k)
                    .unwrap();
            }
            std::process::exit(0);
        }
        "wrong-key" => match Manager::connect(addr, &key) {
            Err(Error::Auth(_)) => std::process::exit(0),
            Err(e) => {
                eprintln!("unexpected error: {e}");
                std::process::exit(2)
            }
            Ok(_) => std::process::exit(3),
        },
        "foreign" => {
            // A copy of this binary is another executable file: plain
            // operations work, server-side updates are refused.
            let m = Manager::connect(addr, &key).unwrap();
            let d: Dict<u32, u32> = m.lookup("results").unwrap();
            d.insert(&1, &10).unwrap();
            let r = d.update_with(&1, 1u32, |v: &mut u32, n: u32| *v += n);
            std::process::exit(if matches!(r, Err(Error::ForeignExecutable)) {
                0
            } else {
                4
            });
        }
        other => panic!("unknown role {other}"),
    }
}

fn tcp_manager(key: &[u8]) -> Manager {
    Manager::builder()
        .address("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
        .authkey(key)
        .start()
        .unwrap()
}

#[test]
fn an_unrelated_process_shares_a_queue_and_a_dict_over_tcp() {
    watchdog(60, || {
        let key = b"tcp remote key";
        let m = tcp_manager(key);
        assert!(matches!(m.address(), Address::Tcp(a) if a.ip().is_loopback()));
        let jobs = m.queue::<Option<u32>>(0).unwrap();
        let results = m.dict::<u32, u32>().unwrap();
        m.register("jobs", &jobs).unwrap();
        m.register("results", &results).unwrap();
        for i in 1..=50 {
            jobs.put(Some(i)).unwrap();
        }
        jobs.put(None).unwrap();
        let st = run_role("worker", m.address(), key);
        assert!(st.success(), "remote worker failed: {st:?}");
        assert_eq!(results.len().unwrap(), 51);
        for i in 1..=50 {
            assert_eq!(results.get(&i).unwrap(), Some(i * i));
        }
        assert_eq!(results.get(&u32::MAX).unwrap(), Some(50));
        m.shutdown().unwrap();
    });
}

#[test]
fn a_wrong_key_is_refused_before_any_object_is_reachable() {
    watchdog(60, || {
        let m = tcp_manager(b"the right key");
        let d = m.dict::<u32, u32>().unwrap();
        m.register("secret", &d).unwrap();
        // An unrelated process with the wrong key.
        let st = run_role("wrong-key", m.address(), b"the wrong key");
        assert!(
            st.success(),
            "the wrong key must be refused with an auth error: {st:?}"
        );
        // In process, too.
        assert!(matches!(
            Manager::connect(m.address().clone(), b"nope"),
            Err(Error::Auth(_))
        ));
        // A client that skips the handshake and sends a request gets the
        // challenge, then FAILURE, then the connection closes: no reply.
        let Address::Tcp(addr) = m.address().clone() else {
            unreachable!()
        };
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = postcard::to_stdvec(&(8u32, "secret")).unwrap();
        let mut frame = (req.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&req);
        s.write_all(&frame).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(text.contains("#CHALLENGE#"), "{text:?}");
        assert!(text.contains("#FAILURE#"), "{text:?}");
        assert!(
            got.len() < 200,
            "nothing but the handshake came back: {} bytes",
            got.len()
        );
        // The server is fine.
        d.insert(&1, &1).unwrap();
        assert_eq!(d.len().unwrap(), 1);
    });
}

#[test]
fn a_server_can_be_served_in_process_and_shut_down_by_a_client() {
    watchdog(60, || {
        let (tx, rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            Manager::builder()
                .address("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
                .authkey(b"k")
                .serve(|a| tx.send(a.clone()).unwrap())
        });
        let addr = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let m = Manager::connect(addr, b"k").unwrap();
        let v = m.value(5u8).unwrap();
        assert_eq!(v.get().unwrap(), 5);
        m.shutdown().unwrap();
        server.join().unwrap().unwrap();
        assert!(v.get().unwrap_err().is_disconnected());
    });
}

#[test]
fn a_different_executable_may_use_objects_but_not_run_updates_in_the_server() {
    watchdog(60, || {
        let key = b"foreign key";
        let m = tcp_manager(key);
        let d = m.dict::<u32, u32>().unwrap();
        m.register("results", &d).unwrap();
        let dir =
            std::env::temp_dir().join(format!("mproc-manager-foreign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("foreign-client");
        std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
        let st = run_role_of(&copy, "foreign", m.address(), key);
        let _ = std::fs::remove_file(&copy);
        let _ = std::fs::remove_dir(&dir);
        assert!(
            st.success(),
            "the foreign client must see ForeignExecutable: {st:?}"
        );
        assert_eq!(
            d.get(&1).unwrap(),
            Some(10),
            "its plain insert arrived, its update did not"
        );
    });
}

#[test]
fn connecting_to_nothing_is_disconnected_not_a_hang() {
    watchdog(30, || {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let r = Manager::builder()
            .address(free)
            .authkey(b"k")
            .call_timeout(Duration::from_millis(500))
            .connect();
        assert!(matches!(r, Err(Error::Disconnected(_))), "{r:?}");
    });
}

#[test]
fn silent_half_open_clients_do_not_block_the_others() {
    watchdog(30, || {
        let key = b"busy";
        let m = tcp_manager(key);
        let Address::Tcp(addr) = m.address().clone() else {
            unreachable!()
        };
        // Connections that never answer the challenge.
        let silent: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(addr).unwrap()).collect();
        // Served while 20 handshakes hang (each may wait 10 s; were they
        // handled one by one in the accept loop, the watchdog would fire).
        let other = Manager::connect(addr, key).unwrap();
        let v = other.value(1u8).unwrap();
        assert_eq!(v.get().unwrap(), 1);
        drop(silent);
    });
}
