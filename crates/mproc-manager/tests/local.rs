//! CPython §1.8 behaviours of managers, in one process talking to a server.

mod common;

use std::time::{Duration, Instant};

use common::{wait_gone, with_manager, with_manager_from};
use mproc_manager::{
    Acquired, Dict, Error, GetTimeoutError, JoinTimeoutError, Kind, List, LockTimeoutError,
    Manager, Proxy, PutTimeoutError, Queue, TryGetError, TryLockError, TryPutError,
};

#[test]
fn dict_operations_follow_python() {
    with_manager(60, |m| {
        let d = m.dict::<String, i64>().unwrap();
        assert_eq!(d.insert(&"a".into(), &1).unwrap(), None);
        assert_eq!(d.insert(&"b".into(), &2).unwrap(), None);
        assert_eq!(d.insert(&"a".into(), &10).unwrap(), Some(1));
        assert_eq!(d.get("a").unwrap(), Some(10));
        assert_eq!(d.get("zz").unwrap(), None);
        assert!(matches!(d.get_item("zz"), Err(Error::KeyMissing)));
        assert!(matches!(d.pop("zz"), Err(Error::KeyMissing)));
        assert!(d.contains_key("b").unwrap());
        assert_eq!(d.len().unwrap(), 2);
        assert_eq!(d.keys().unwrap(), ["a", "b"]);
        assert_eq!(d.values().unwrap(), [10, 2]);
        assert_eq!(d.setdefault(&"c".into(), &3).unwrap(), 3);
        assert_eq!(d.setdefault(&"c".into(), &99).unwrap(), 3);
        d.update([(&"d".to_string(), &4), (&"e".to_string(), &5)])
            .unwrap();
        assert_eq!(
            d.items().unwrap(),
            [
                ("a".into(), 10),
                ("b".into(), 2),
                ("c".into(), 3),
                ("d".into(), 4),
                ("e".into(), 5)
            ]
        );
        assert_eq!(
            d.get_many([&"e".to_string(), &"x".to_string()]).unwrap(),
            [Some(5), None]
        );
        assert_eq!(d.pop("b").unwrap(), 2);
        assert_eq!(d.remove("c").unwrap(), Some(3));
        assert_eq!(d.pop_item().unwrap(), Some(("e".into(), 5)));
        // Insertion order survives removal and re-insertion.
        d.insert(&"b".into(), &20).unwrap();
        assert_eq!(d.keys().unwrap(), ["a", "d", "b"]);
        d.clear().unwrap();
        assert!(d.is_empty().unwrap());
        assert_eq!(d.pop_item().unwrap(), None);
        m.shutdown().unwrap();
    });
}

#[test]
fn list_operations_follow_python() {
    with_manager(60, |m| {
        let l = m.list_from([1, 2, 3]).unwrap();
        l.push(&4).unwrap();
        l.extend(&[5, 6]).unwrap();
        assert_eq!(l.get(0).unwrap(), 1);
        assert_eq!(l.get(-1).unwrap(), 6);
        assert!(matches!(
            l.get(6),
            Err(Error::IndexOutOfRange { index: 6, len: 6 })
        ));
        assert!(matches!(l.get(-7), Err(Error::IndexOutOfRange { .. })));
        l.set(1, &20).unwrap();
        l.insert(0, &0).unwrap();
        l.insert(-100, &-1).unwrap();
        l.insert(100, &7).unwrap();
        assert_eq!(l.snapshot().unwrap(), [-1, 0, 1, 20, 3, 4, 5, 6, 7]);
        assert_eq!(l.pop().unwrap(), 7);
        assert_eq!(l.pop_at(0).unwrap(), -1);
        l.remove(&20).unwrap();
        assert!(matches!(l.remove(&20), Err(Error::ValueMissing)));
        assert_eq!(l.index(&3).unwrap(), 2);
        l.push(&3).unwrap();
        assert_eq!(l.count(&3).unwrap(), 2);
        assert_eq!(l.len().unwrap(), 7);
        l.clear().unwrap();
        assert!(matches!(l.pop(), Err(Error::IndexOutOfRange { .. })));
    });
}

#[test]
fn results_are_copies_and_nested_proxies_propagate() {
    with_manager(60, |m| {
        // The trap: a plain nested container read back is a copy.
        let d = m.dict::<String, Vec<u32>>().unwrap();
        d.insert(&"plain".into(), &vec![1]).unwrap();
        let mut copy = d.get("plain").unwrap().unwrap();
        copy.push(2);
        assert_eq!(
            d.get("plain").unwrap().unwrap(),
            [1],
            "mutating a copy must not reach the server"
        );
        // The fix: a server-side update.
        d.update_with(&"plain".into(), |v: &mut Vec<u32>, x: u32| v.push(x), 2u32)
            .unwrap();
        assert_eq!(d.get("plain").unwrap().unwrap(), [1, 2]);
        // Nested proxies do propagate.
        let outer = m.dict::<String, List<u32>>().unwrap();
        let inner = m.list::<u32>().unwrap();
        outer.insert(&"n".into(), &inner).unwrap();
        outer.get("n").unwrap().unwrap().push(&5).unwrap();
        assert_eq!(inner.snapshot().unwrap(), [5]);
        assert_eq!(outer.get("n").unwrap().unwrap().snapshot().unwrap(), [5]);
    });
}

#[test]
fn namespace_and_value() {
    with_manager(60, |m| {
        let ns = m.namespace().unwrap();
        ns.set("name", "Bob").unwrap();
        ns.set("age", &41u32).unwrap();
        ns.update_with("age", |a: &mut u32, n: u32| *a += n, 1u32)
            .unwrap();
        assert_eq!(ns.get::<u32>("age").unwrap(), 42);
        assert!(matches!(ns.get::<u32>("nope"), Err(Error::KeyMissing)));
        assert!(
            ns.set("_private", &1u8).is_err(),
            "underscore names stay local in CPython"
        );
        let shown = ns
            .describe(|name, ns| {
                Ok(match name {
                    "name" => format!("{:?}", ns.get::<String>(name)?),
                    _ => ns.get::<u32>(name)?.to_string(),
                })
            })
            .unwrap();
        assert_eq!(shown, "Namespace(age=42, name=\"Bob\")");
        ns.remove("age").unwrap();
        assert_eq!(ns.names().unwrap(), ["name"]);

        let v = m.value((1u8, String::from("x"))).unwrap();
        assert_eq!(v.get().unwrap(), (1, "x".into()));
        assert_eq!(v.swap(&(2, "y".into())).unwrap(), (1, "x".into()));
        let len = v.update_with(
            |t: &mut (u8, String), c: char| {
                t.1.push(c);
                t.1.len()
            },
            'z',
        );
        assert_eq!(len.unwrap(), 2);
        assert_eq!(v.get().unwrap(), (2, "yz".into()));
        // A panicking update leaves the value as it was, and the server alive.
        let r = v.update_with(|_t: &mut (u8, String), ()| -> u8 { panic!("boom") }, ());
        assert!(
            matches!(r, Err(Error::Panicked(ref m)) if m.contains("boom")),
            "{r:?}"
        );
        assert_eq!(v.get().unwrap(), (2, "yz".into()));
    });
}

#[test]
fn locks_follow_threading_semantics() {
    with_manager(60, |m| {
        let lock = m.lock().unwrap();
        assert!(
            matches!(lock.release(), Err(Error::Unlocked)),
            "release unlocked lock"
        );
        assert_eq!(lock.acquire().unwrap(), Acquired::Clean);
        assert!(lock.is_locked().unwrap());
        assert_eq!(lock.try_acquire().unwrap(), None);
        let t0 = Instant::now();
        assert_eq!(
            lock.acquire_timeout(Some(Duration::from_millis(100)))
                .unwrap(),
            None
        );
        assert!(t0.elapsed() >= Duration::from_millis(100));
        let t0 = Instant::now();
        assert!(matches!(
            lock.lock_timeout(Duration::from_millis(100)),
            Err(LockTimeoutError::Timeout)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(100));
        // threading.Lock: another thread may release it.
        let l2 = lock.clone();
        std::thread::spawn(move || l2.release().unwrap())
            .join()
            .unwrap();
        let g = lock.try_lock().expect("free again, from a live owner");
        g.unlock().unwrap();

        let r = m.rlock().unwrap();
        let g1 = r.lock().unwrap();
        let g2 = r.try_lock().expect("re-entrant");
        let r2 = r.clone();
        let other = std::thread::spawn(move || {
            (
                matches!(r2.try_lock(), Err(TryLockError::WouldBlock)),
                matches!(r2.release(), Err(Error::NotOwner)),
            )
        });
        assert_eq!(other.join().unwrap(), (true, true));
        drop(g2);
        drop(g1);
        assert!(!r.is_locked().unwrap());

        let s = m.bounded_semaphore(2).unwrap();
        s.try_acquire().unwrap().forget();
        s.try_acquire().unwrap().forget();
        assert!(matches!(s.try_acquire(), Err(TryLockError::WouldBlock)));
        assert!(matches!(
            s.acquire_timeout(Duration::from_millis(20)),
            Err(LockTimeoutError::Timeout)
        ));
        assert!(matches!(
            s.acquire_deadline(Instant::now() + Duration::from_millis(20)),
            Err(LockTimeoutError::Timeout)
        ));
        s.release().unwrap();
        s.release().unwrap();
        assert!(matches!(s.release(), Err(Error::OverRelease)));
        let u = m.semaphore(0).unwrap();
        u.release().unwrap();
        u.release().unwrap();
        assert_eq!(u.value().unwrap(), 2);
    });
}

#[test]
fn event_condition_barrier() {
    with_manager(60, |m| {
        let e = m.event().unwrap();
        assert!(!e.is_set().unwrap());
        assert!(!e.wait_timeout(Duration::from_millis(30)).unwrap());
        let t0 = Instant::now();
        assert!(!e.wait_deadline(t0 + Duration::from_millis(30)).unwrap());
        assert!(t0.elapsed() >= Duration::from_millis(30));
        let e2 = e.clone();
        let t = std::thread::spawn(move || e2.wait());
        std::thread::sleep(Duration::from_millis(50));
        e.set().unwrap();
        t.join().unwrap().unwrap();
        assert!(e.wait_timeout(Duration::ZERO).unwrap());
        e.clear().unwrap();
        assert!(!e.is_set().unwrap());

        let c = m.condition().unwrap();
        assert!(
            matches!(c.wait(), Err(Error::NotOwner)),
            "wait without the lock"
        );
        assert!(
            matches!(c.notify(1), Err(Error::NotOwner)),
            "notify without the lock"
        );
        let flag = m.value(false).unwrap();
        let (c2, f2) = (c.clone(), flag.clone());
        let waiter = std::thread::spawn(move || {
            let _g = c2.lock().unwrap();
            while !f2.get().unwrap() {
                c2.wait().unwrap();
            }
            true
        });
        loop {
            let g = c.lock().unwrap();
            flag.set(&true).unwrap();
            let n = c.notify_all().unwrap();
            drop(g);
            if n > 0 || waiter.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(waiter.join().unwrap());
        {
            let _g = c.lock().unwrap();
            assert!(
                !c.wait_timeout(Duration::from_millis(20)).unwrap(),
                "nobody notified"
            );
            assert!(
                c.is_locked().unwrap(),
                "the lock is held again after a wait"
            );
        }

        let b = m.barrier(3).unwrap();
        assert_eq!(b.parties().unwrap(), 3);
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.wait())
            })
            .collect();
        while b.n_waiting().unwrap() < 2 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let mine = b.wait().unwrap();
        let mut idx: Vec<usize> = ts.into_iter().map(|t| t.join().unwrap().unwrap()).collect();
        idx.push(mine);
        idx.sort();
        assert_eq!(idx, [0, 1, 2]);
        assert!(matches!(
            b.wait_timeout(Duration::from_millis(20)),
            Err(Error::BrokenBarrier)
        ));
        assert!(b.broken().unwrap());
        b.reset().unwrap();
        assert!(!b.broken().unwrap());
        b.abort().unwrap();
        assert!(matches!(b.wait(), Err(Error::BrokenBarrier)));
    });
}

#[test]
fn queues() {
    with_manager(60, |m| {
        let q = m.queue::<u32>(2).unwrap();
        assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
        let t0 = Instant::now();
        assert!(matches!(
            q.get_timeout(Duration::from_millis(50)),
            Err(GetTimeoutError::Timeout)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        q.put(1).unwrap();
        q.put(2).unwrap();
        let e = q.try_put(3).unwrap_err();
        assert!(matches!(e, TryPutError::Full(_)));
        assert_eq!(e.into_inner(), 3, "a failed put hands the item back");
        assert!(matches!(
            q.put_timeout(3, Duration::from_millis(20)),
            Err(PutTimeoutError::Timeout(3))
        ));
        assert_eq!(q.qsize().unwrap(), 2);
        assert_eq!((q.get().unwrap(), q.get().unwrap()), (1, 2));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.get());
        std::thread::sleep(Duration::from_millis(30));
        q.put(9).unwrap();
        assert_eq!(t.join().unwrap().unwrap(), 9);

        let j = m.joinable_queue::<String>(0).unwrap();
        j.put("a".into()).unwrap();
        j.put("b".into()).unwrap();
        assert!(matches!(
            j.join_timeout(Duration::from_millis(20)),
            Err(JoinTimeoutError::Timeout)
        ));
        let j2 = j.clone();
        let worker = std::thread::spawn(move || {
            for _ in 0..2 {
                j2.get().unwrap();
                j2.task_done().unwrap();
            }
        });
        j.join().unwrap();
        worker.join().unwrap();
        assert!(matches!(j.task_done(), Err(Error::TooManyTaskDone)));
    });
}

#[test]
fn registry_and_kinds() {
    with_manager(60, |m| {
        let d = m.dict::<u32, u32>().unwrap();
        m.register("d", &d).unwrap();
        assert!(matches!(m.register("d", &d), Err(Error::NameTaken(_))));
        let back: Dict<u32, u32> = m.lookup("d").unwrap();
        back.insert(&1, &2).unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(2));
        let wrong = m.lookup::<Queue<u32>>("d");
        assert!(
            matches!(
                wrong,
                Err(Error::WrongKind {
                    expected: Kind::Queue,
                    found: Kind::Dict
                })
            ),
            "{wrong:?}"
        );
        assert!(matches!(
            m.lookup::<Dict<u32, u32>>("nope"),
            Err(Error::NoSuchName(_))
        ));
        assert_eq!(m.names().unwrap(), ["d"]);
        let before = m.object_count().unwrap();
        m.release(&d).unwrap();
        assert_eq!(m.object_count().unwrap(), before - 1);
        assert!(matches!(d.len(), Err(Error::NoSuchObject)));
        assert!(m.names().unwrap().is_empty());
        assert!(d.raw().kind() == Kind::Dict);
    });
}

#[test]
fn proxies_never_serialize_their_key_into_plain_bytes() {
    with_manager(60, |m| {
        let d = m.dict::<u32, u32>().unwrap();
        // Outside mproc's handle channels (plain postcard, JSON, a file…) a
        // proxy refuses to serialize: its key travels only as a descriptor.
        assert!(postcard::to_stdvec(&d).is_err());
        // As an mproc handle it travels (fd side table) and works.
        let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(&d).unwrap();
        assert!(
            !bytes.windows(m.authkey().len()).any(|w| w == m.authkey()),
            "the authkey must not be in the bytes"
        );
        let back: Dict<u32, u32> = mproc_shm::handle::from_bytes_with_fds(&bytes, fds).unwrap();
        back.insert(&3, &4).unwrap();
        assert_eq!(d.get(&3).unwrap(), Some(4));
    });
}

#[test]
fn shutdown_stops_the_server_and_calls_report_disconnected() {
    let b = Manager::builder().call_timeout(Duration::from_secs(2));
    with_manager_from(60, b, |m| {
        let pid = m.pid().unwrap().as_raw();
        let d = m.dict::<u32, u32>().unwrap();
        let addr = m.address().clone();
        m.shutdown().unwrap();
        assert!(wait_gone(pid, 10), "the server process must exit");
        assert!(matches!(d.len(), Err(Error::Disconnected(_))));
        if let mproc_manager::Address::Unix(p) = addr {
            assert!(!p.exists(), "the socket file is removed");
        }
        // Drop stops it too.
        let m = Manager::start().unwrap();
        let pid = m.pid().unwrap().as_raw();
        drop(m);
        assert!(wait_gone(pid, 10), "dropping the manager stops the server");
    });
}

#[test]
fn batched_requests_share_one_round_trip() {
    with_manager(60, |m| {
        let d = m.dict::<u32, u32>().unwrap();
        let pairs: Vec<(u32, u32)> = (0..1000).map(|i| (i, i * i)).collect();
        d.update(pairs.iter().map(|(k, v)| (k, v))).unwrap();
        let keys: Vec<u32> = (0..1000).collect();
        let got = d.get_many(&keys).unwrap();
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, v)| *v == Some((i * i) as u32))
        );
    });
}
