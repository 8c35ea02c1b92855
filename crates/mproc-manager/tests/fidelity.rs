//! CPython fidelity of the manager (cpython-semantics.md §1.8): iterators,
//! arrays, list slices and sorting, namespace repr, shutdown outcomes,
//! encode errors, and the handshake bound.

mod common;

use common::watchdog;
use mproc_manager::{Error, Manager};
use serde::ser::{Error as _, Serialize, Serializer};

/// A value whose `Serialize` refuses with a reason.
struct Refuses;

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("refused: 42 is not allowed here"))
    }
}

#[test]
fn an_encode_error_keeps_the_serialize_impls_reason() {
    watchdog(60, || {
        let m = Manager::start().unwrap();
        let ns = m.namespace().unwrap();
        let e = ns.set("x", &Refuses).unwrap_err();
        assert!(matches!(e, Error::Encode(_)), "{e:?}");
        assert!(
            e.to_string().contains("refused: 42 is not allowed here"),
            "{e}"
        );
        let e = m.value(Refuses).unwrap_err();
        assert!(e.to_string().contains("refused: 42"), "{e}");
        m.shutdown().unwrap();
    });
}

/// The server's thread count.
fn threads(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn silent_connections_cost_no_thread_each_and_an_honest_client_is_served() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::time::Duration;
    watchdog(120, || {
        let m = Manager::builder()
            .address("127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap())
            .start()
            .unwrap();
        let pid = m.pid().unwrap().as_raw();
        let addr = m.address().to_string();
        let silent: Vec<TcpStream> = (0..300)
            .map(|_| TcpStream::connect(&addr).unwrap())
            .collect();
        // An honest client after them is served (CPython: accept order).
        let c = Manager::connect(m.address().clone(), m.authkey()).unwrap();
        let d = c.dict::<u32, u32>().unwrap();
        d.insert(&1, &2).unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(2));
        // Before the bound this was one thread per silent connection.
        let n = threads(pid);
        assert!(
            n < 100,
            "the server runs {n} threads for 300 silent clients"
        );
        // The oldest silent client was dropped: its stream ends.
        let mut first = &silent[0];
        first
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut got = Vec::new();
        first.read_to_end(&mut got).unwrap();
        assert!(
            got.windows(11).any(|w| w == b"#CHALLENGE#"),
            "a challenge, then the end: {got:?}"
        );
        drop(silent);
        drop(d);
        drop(c);
        m.shutdown().unwrap();
    });
}

mod shutdown {
    use std::time::Duration;

    use mproc_manager::{Manager, ShutdownStatus};
    use mproc_process::ExitStatus;

    use crate::common::{wait_gone, watchdog};

    fn signal(pid: i32, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    #[test]
    fn a_server_that_exits_on_request_reports_a_clean_exit() {
        watchdog(60, || {
            let m = Manager::start().unwrap();
            assert_eq!(
                m.shutdown().unwrap(),
                ShutdownStatus::Exited(ExitStatus::Exited(0))
            );
        });
    }

    #[test]
    fn a_server_killed_before_shutdown_reports_already_gone() {
        watchdog(60, || {
            let m = Manager::start().unwrap();
            let pid = m.pid().unwrap().as_raw();
            signal(pid, libc::SIGKILL);
            assert!(wait_gone(pid, 10));
            assert_eq!(
                m.shutdown().unwrap(),
                ShutdownStatus::AlreadyGone(ExitStatus::Signaled(libc::SIGKILL))
            );
        });
    }

    #[test]
    fn a_server_that_does_not_exit_in_time_is_terminated_then_killed() {
        watchdog(60, || {
            let m = Manager::builder()
                .shutdown_timeout(Duration::from_millis(200))
                .start()
                .unwrap();
            let pid = m.pid().unwrap().as_raw();
            // A stopped server reads no request, and SIGTERM stays pending:
            // only SIGKILL ends it.
            signal(pid, libc::SIGSTOP);
            assert_eq!(
                m.shutdown().unwrap(),
                ShutdownStatus::Terminated(ExitStatus::Signaled(libc::SIGKILL))
            );
            assert!(wait_gone(pid, 10));
        });
    }

    #[test]
    fn a_connected_manager_reports_that_it_asked() {
        watchdog(60, || {
            let owner = Manager::start().unwrap();
            let c = Manager::connect(owner.address().clone(), owner.authkey()).unwrap();
            assert_eq!(c.shutdown().unwrap(), ShutdownStatus::Requested);
            // The owner then finds it gone, having exited cleanly.
            let pid = owner.pid().unwrap().as_raw();
            assert!(wait_gone(pid, 10));
            assert_eq!(
                owner.shutdown().unwrap(),
                ShutdownStatus::AlreadyGone(ExitStatus::Exited(0))
            );
        });
    }
}
