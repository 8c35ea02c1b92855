//! CPython fidelity of the manager (cpython-semantics.md §1.8): iterators,
//! arrays, list slices and sorting, namespace repr, shutdown outcomes,
//! encode errors, and the handshake bound.

mod common;

use common::{watchdog, with_manager};
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
    with_manager(60, |m| {
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

    use crate::common::{wait_gone, watchdog, with_manager, with_manager_from};

    fn signal(pid: i32, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    #[test]
    fn a_server_that_exits_on_request_reports_a_clean_exit() {
        with_manager(60, |m| {
            assert_eq!(
                m.shutdown().unwrap(),
                ShutdownStatus::Exited(ExitStatus::Exited(0))
            );
        });
    }

    #[test]
    fn a_server_killed_before_shutdown_reports_already_gone() {
        with_manager(60, |m| {
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
        let b = Manager::builder().shutdown_timeout(Duration::from_millis(200));
        with_manager_from(60, b, |m| {
            let pid = m.pid().unwrap().as_raw();
            // A stopped server reads no request, and SIGTERM stays pending:
            // only SIGKILL ends it.
            signal(pid, libc::SIGSTOP);
            // The stop takes effect asynchronously: wait until it has.
            let stopped = || {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('T')
                })
            };
            let end = std::time::Instant::now() + Duration::from_secs(10);
            while !stopped() && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(stopped());
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
            // The owner then finds it gone, having exited on a request.
            let pid = owner.pid().unwrap().as_raw();
            assert!(wait_gone(pid, 10));
            assert_eq!(
                owner.shutdown().unwrap(),
                ShutdownStatus::Exited(ExitStatus::Exited(0))
            );
        });
    }
}

mod iterators {
    use mproc_manager::Error;

    use crate::common::with_manager;

    #[test]
    fn dict_iteration_goes_in_insertion_order_across_batches() {
        with_manager(60, |m| {
            let d = m.dict_from((0..200u32).map(|i| (i, i * 10))).unwrap();
            d.remove(&5).unwrap();
            for batch in [1, 7, 64, 4096] {
                let got: Vec<(u32, u32)> = d.iter_batched(batch).collect::<Result<_, _>>().unwrap();
                let want: Vec<(u32, u32)> =
                    (0..200).filter(|&i| i != 5).map(|i| (i, i * 10)).collect();
                assert_eq!(got, want, "batch {batch}");
            }
            let keys: Vec<u32> = d.iter_keys().collect::<Result<_, _>>().unwrap();
            assert_eq!(keys.len(), 199);
            assert_eq!(keys[..6], [0, 1, 2, 3, 4, 6]);
            m.shutdown().unwrap();
        });
    }

    #[test]
    fn a_dict_that_changes_size_during_iteration_is_an_error() {
        with_manager(60, |m| {
            let d = m.dict_from([(1u8, 'a'), (2, 'b'), (3, 'c')]).unwrap();
            // CPython test_dict_iter: RuntimeError, then the iterator is spent.
            let mut it = d.iter_batched(1);
            assert_eq!(it.next().unwrap().unwrap(), (1, 'a'));
            d.insert(&4, &'d').unwrap();
            let e = it.next().unwrap().unwrap_err();
            assert!(matches!(e, Error::ChangedSize), "{e:?}");
            assert_eq!(e.to_string(), "dictionary changed size during iteration");
            assert!(it.next().is_none());
            // A removal is caught too, even after the last item (CPython
            // checks before it notices the end).
            let mut it = d.iter_keys_batched(64);
            let first: Vec<u8> = it.by_ref().take(4).collect::<Result<_, _>>().unwrap();
            assert_eq!(first, [1, 2, 3, 4]);
            d.remove(&1).unwrap();
            assert!(matches!(it.next(), Some(Err(Error::ChangedSize))));
            // A change of value only is allowed, as in CPython.
            let mut it = d.iter_batched(1);
            assert_eq!(it.next().unwrap().unwrap(), (2, 'b'));
            d.insert(&3, &'z').unwrap();
            let rest: Vec<(u8, char)> = it.collect::<Result<_, _>>().unwrap();
            assert_eq!(rest, [(3, 'z'), (4, 'd')]);
            m.shutdown().unwrap();
        });
    }

    #[test]
    fn list_iteration_is_live_by_index_as_in_cpython() {
        with_manager(60, |m| {
            let l = m.list_from(0..5i32).unwrap();
            let all: Vec<i32> = l.iter_batched(2).collect::<Result<_, _>>().unwrap();
            assert_eq!(all, [0, 1, 2, 3, 4]);
            // CPython: appending while iterating is seen, no error.
            let mut it = l.iter_batched(1);
            assert_eq!(it.next().unwrap().unwrap(), 0);
            l.push(&5).unwrap();
            l.remove(&1).unwrap(); // [0, 2, 3, 4, 5]: index 1 is now 2
            let rest: Vec<i32> = it.collect::<Result<_, _>>().unwrap();
            assert_eq!(rest, [2, 3, 4, 5]);
            m.shutdown().unwrap();
        });
    }

    #[test]
    fn iterators_keep_their_object_alive_and_leave_nothing_in_the_server() {
        with_manager(60, |m| {
            let inner = m.list_from([7u8]).unwrap();
            let d = m.dict::<u8, mproc_manager::List<u8>>().unwrap();
            d.insert(&1, &inner).unwrap();
            drop(inner);
            assert_eq!(m.object_count().unwrap(), 2);
            let mut it = d.iter_batched(1);
            drop(d);
            // The iterator's clone of the proxy keeps the dict.
            assert_eq!(m.object_count().unwrap(), 2);
            let (k, l) = it.next().unwrap().unwrap();
            assert_eq!((k, l.snapshot().unwrap()), (1, vec![7]));
            drop(l);
            // Dropping the iterator gives the dict back.
            drop(it);
            assert_eq!(m.object_count().unwrap(), 0);
            m.shutdown().unwrap();
        });
    }
}

mod lists {
    use mproc_manager::{Error, Slice};

    use crate::common::with_manager;

    #[test]
    fn slices_follow_python() {
        with_manager(60, |m| {
            let l = m.list_from(0..10i64).unwrap();
            // Values checked against CPython 3.12: list(range(10))[...]
            assert_eq!(l.get_slice(2..5).unwrap(), [2, 3, 4]);
            assert_eq!(l.get_slice(-3..).unwrap(), [7, 8, 9]);
            assert_eq!(l.get_slice(..-8).unwrap(), [0, 1]);
            assert_eq!(
                l.get_slice(Slice::new(Some(5), Some(2))).unwrap(),
                Vec::<i64>::new()
            );
            assert_eq!(l.get_slice(-100..100).unwrap().len(), 10);
            assert_eq!(l.get_slice(Slice::from(..).step(3)).unwrap(), [0, 3, 6, 9]);
            assert_eq!(l.get_slice(Slice::from(..).step(-3)).unwrap(), [9, 6, 3, 0]);
            assert_eq!(
                l.get_slice(Slice::new(Some(8), Some(2)).step(-2)).unwrap(),
                [8, 6, 4]
            );
            assert_eq!(l.get_slice(Slice::from(..).step(i64::MIN)).unwrap(), [9]);
            assert!(l.get_slice(Slice::from(..).step(0)).is_err());
            // l[2:5] = [20]; l[:0] = [-1, -2]
            l.set_slice(2..5, &[20]).unwrap();
            assert_eq!(l.snapshot().unwrap(), [0, 1, 20, 5, 6, 7, 8, 9]);
            l.set_slice(..0, &[-1, -2]).unwrap();
            assert_eq!(l.snapshot().unwrap(), [-1, -2, 0, 1, 20, 5, 6, 7, 8, 9]);
            // l[5:3] = [99] inserts at 5.
            l.set_slice(Slice::new(Some(5), Some(3)), &[99]).unwrap();
            assert_eq!(l.get_slice(4..7).unwrap(), [20, 99, 5]);
            // Extended slices need the same length (ValueError in CPython).
            let e = l.set_slice(Slice::from(..).step(2), &[1, 2]).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::SizeMismatch {
                        expected: 6,
                        found: 2
                    }
                ),
                "{e:?}"
            );
            l.set_slice(Slice::from(..4).step(2), &[100, 200]).unwrap();
            assert_eq!(l.get_slice(..4).unwrap(), [100, -2, 200, 1]);
            // del l[::2]; del l[-2:]
            l.del_slice(Slice::from(..).step(2)).unwrap();
            assert_eq!(l.snapshot().unwrap(), [-2, 1, 99, 6, 8]);
            l.del_slice(-2..).unwrap();
            assert_eq!(l.snapshot().unwrap(), [-2, 1, 99]);
            m.shutdown().unwrap();
        });
    }

    #[test]
    fn sort_reverse_repeat_concat() {
        with_manager(60, |m| {
            let l = m
                .list_from(["pear", "fig", "apple", "kiwi", "date"].map(String::from))
                .unwrap();
            l.sort(false).unwrap();
            assert_eq!(
                l.snapshot().unwrap(),
                ["apple", "date", "fig", "kiwi", "pear"]
            );
            // Stable, also reversed: Python's sorted(key=len, reverse=True)
            // gives ['apple', 'date', 'kiwi', 'pear', 'fig'].
            l.sort_by_key(|s: &String| s.len(), true).unwrap();
            assert_eq!(
                l.snapshot().unwrap(),
                ["apple", "date", "kiwi", "pear", "fig"]
            );
            l.reverse().unwrap();
            assert_eq!(l.get(0).unwrap(), "fig");
            let n = m.list_from([1u8, 2]).unwrap();
            n.repeat_in_place(3).unwrap();
            assert_eq!(n.snapshot().unwrap(), [1, 2, 1, 2, 1, 2]);
            assert_eq!(n.concat(&[9]).unwrap(), [1, 2, 1, 2, 1, 2, 9]);
            assert_eq!(n.len().unwrap(), 6, "concat leaves the list as it was");
            n.repeat_in_place(0).unwrap();
            assert!(n.is_empty().unwrap());
            let big = m.list_from([0u8; 1024]).unwrap();
            assert!(matches!(
                big.repeat_in_place(1 << 20),
                Err(Error::Remote(_))
            ));
            assert_eq!(big.len().unwrap(), 1024);
            // A key that panics leaves the list as it was.
            let e = l
                .sort_by_key(|s: &String| -> usize { panic!("no key for {s}") }, false)
                .unwrap_err();
            assert!(matches!(e, Error::Panicked(_)), "{e:?}");
            assert_eq!(l.get(0).unwrap(), "fig");
            m.shutdown().unwrap();
        });
    }

    #[test]
    fn sorting_moves_nested_proxies_with_their_references() {
        with_manager(60, |m| {
            let l = m.list::<(u8, mproc_manager::Value<u8>)>().unwrap();
            for k in [3u8, 1, 2] {
                l.push(&(k, m.value(k * 10).unwrap())).unwrap();
            }
            assert_eq!(m.object_count().unwrap(), 4);
            // Proxies do not decode inside the server: sorting by key there
            // is refused, and nothing changes.
            assert!(matches!(
                l.sort_by_key(|p: &(u8, mproc_manager::Value<u8>)| p.0, false),
                Err(Error::Update(_))
            ));
            // Reversing and slicing move them, references and all.
            l.reverse().unwrap();
            l.del_slice(..1).unwrap();
            assert_eq!(m.object_count().unwrap(), 3);
            let firsts: Vec<(u8, u8)> = l
                .snapshot()
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k, v.get().unwrap()))
                .collect();
            assert_eq!(firsts, [(1, 10), (3, 30)]);
            drop(l);
            assert_eq!(m.object_count().unwrap(), 0);
            m.shutdown().unwrap();
        });
    }

    #[test]
    fn an_array_has_a_fixed_length() {
        with_manager(60, |m| {
            let a = m.array([1i32, 2, 3, 4]).unwrap();
            assert_eq!(a.len().unwrap(), 4);
            a.set(-1, &40).unwrap();
            assert_eq!(a.get(3).unwrap(), 40);
            assert!(matches!(
                a.get(4),
                Err(Error::IndexOutOfRange { index: 4, len: 4 })
            ));
            a.set_slice(Slice::from(..).step(2), &[10, 30]).unwrap();
            assert_eq!(a.to_vec().unwrap(), [10, 2, 30, 40]);
            assert_eq!(a.get_slice(1..3).unwrap(), [2, 30]);
            let e = a.set_slice(..2, &[0]).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::SizeMismatch {
                        expected: 2,
                        found: 1
                    }
                ),
                "{e:?}"
            );
            assert_eq!(
                a.iter().collect::<Result<Vec<_>, _>>().unwrap(),
                [10, 2, 30, 40]
            );
            // It is no list: a list proxy cannot reach it.
            m.register("arr", &a).unwrap();
            let e = m.lookup::<mproc_manager::List<i32>>("arr").unwrap_err();
            assert!(matches!(e, Error::WrongKind { .. }), "{e:?}");
            m.shutdown().unwrap();
        });
    }

    #[test]
    fn queue_is_full() {
        with_manager(60, |m| {
            let q = m.queue::<u8>(2).unwrap();
            assert!(!q.is_full().unwrap());
            q.put(1).unwrap();
            q.put(2).unwrap();
            assert!(q.is_full().unwrap());
            q.get().unwrap();
            assert!(!q.is_full().unwrap());
            let unbounded = m.joinable_queue::<u8>(0).unwrap();
            unbounded.put(1).unwrap();
            assert!(!unbounded.is_full().unwrap());
            m.shutdown().unwrap();
        });
    }
}

mod namespaces {
    use serde::{Deserialize, Serialize};

    use crate::common::with_manager;

    #[derive(Serialize, Deserialize)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[test]
    fn a_namespace_prints_like_cpythons() {
        with_manager(60, |m| {
            let ns = m.namespace().unwrap();
            assert_eq!(ns.to_string(), "Namespace()");
            // CPython test_namespace: str(n) == "Namespace(name='Bob')".
            ns.set("name", "Bob").unwrap();
            assert_eq!(ns.to_string(), "Namespace(name='Bob')");
            ns.set("age", &41u32).unwrap();
            ns.set("tags", &vec!["a", "b"]).unwrap();
            ns.set("at", &Point { x: 1, y: -2 }).unwrap();
            ns.set("ok", &Some(true)).unwrap();
            // A server-side update remakes the repr.
            ns.update_with("age", |a: &mut u32, n: u32| *a += n, 1u32)
                .unwrap();
            assert_eq!(
                ns.repr().unwrap(),
                "Namespace(age=42, at=Point(x=1, y=-2), name='Bob', ok=True, tags=['a', 'b'])"
            );
            // A proxy as a field: stored as usual; its repr says it has none.
            let l = m.list_from([1u8]).unwrap();
            ns.set("l", &l).unwrap();
            drop(l);
            assert_eq!(m.object_count().unwrap(), 2);
            let r = ns.repr().unwrap();
            assert!(r.contains("l=<unrepresentable: "), "{r}");
            assert_eq!(
                ns.get::<mproc_manager::List<u8>>("l")
                    .unwrap()
                    .get(0)
                    .unwrap(),
                1
            );
            ns.remove("l").unwrap();
            assert_eq!(m.object_count().unwrap(), 1);
            m.shutdown().unwrap();
        });
    }
}
