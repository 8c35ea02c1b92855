//! Reference counting: the server frees an object once no proxy, name or
//! stored value refers to it any more (CPython's incref/decref), including
//! proxies held by children, proxies in flight and proxies nested in other
//! objects; a killed child's references go with its connections.

mod common;

use std::time::{Duration, Instant};

use common::with_manager_from;
use mproc_manager::{Dict, Event, List, Manager, Proxy, Value};
use mproc_process::Process;

/// Polls the server's object count until it is `want` (a dead client's
/// connections close asynchronously), returning the last count seen.
fn settle(m: &Manager, want: usize) -> usize {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let n = m.object_count().unwrap();
        if n == want || Instant::now() > end {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `body` under a watchdog with a freshly started manager and its
/// object count before the test made anything.
fn with_manager(body: impl FnOnce(Manager, usize) + Send + 'static) {
    common::with_manager(60, |m| {
        let base = m.object_count().unwrap();
        body(m, base)
    })
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn create_and_drop(m: &Manager, n: usize) {
    for i in 0..n {
        let d = m.dict::<u32, String>().unwrap();
        d.insert(&(i as u32), &"x".repeat(1000)).unwrap();
    }
}

#[test]
fn a_thousand_dropped_dicts_leave_the_object_count_and_the_server_memory_as_they_were() {
    common::with_manager(120, |m| {
        let pid = m.pid().unwrap().as_raw();
        let base = m.object_count().unwrap();
        create_and_drop(&m, 1000);
        assert_eq!(m.object_count().unwrap(), base);
        // Warmed up: a further 5,000 cycles must not grow the server.
        let before = rss_kib(pid);
        for _ in 0..5 {
            create_and_drop(&m, 1000);
        }
        let after = rss_kib(pid);
        eprintln!("server RSS: {before} KiB before, {after} KiB after 5,000 create/drop cycles");
        assert_eq!(m.object_count().unwrap(), base);
        assert!(
            after < before + 512,
            "the server grew from {before} KiB to {after} KiB"
        );
        m.shutdown().unwrap();
    });
}

#[test]
fn clones_share_the_reference_and_the_last_drop_frees() {
    with_manager(|m, base| {
        let d = m.dict::<u32, u32>().unwrap();
        let copies: Vec<_> = (0..10).map(|_| d.clone()).collect();
        drop(d);
        assert_eq!(m.object_count().unwrap(), base + 1);
        for (i, c) in copies.iter().enumerate() {
            c.insert(&(i as u32), &1).unwrap();
        }
        assert_eq!(copies[0].len().unwrap(), 10);
        drop(copies);
        assert_eq!(m.object_count().unwrap(), base);
        // A registered name keeps its object alive until it is unregistered.
        let v = m.value(5u32).unwrap();
        m.register("five", &v).unwrap();
        drop(v);
        assert_eq!(m.object_count().unwrap(), base + 1);
        let back: Value<u32> = m.lookup("five").unwrap();
        assert_eq!(back.get().unwrap(), 5);
        m.unregister("five").unwrap();
        assert_eq!(m.object_count().unwrap(), base + 1, "`back` still holds it");
        drop(back);
        assert_eq!(m.object_count().unwrap(), base);
    });
}

/// Waits until the parent has dropped its copies, then uses the proxy and
/// sends it back as its result.
fn outlive((d, go): (Dict<u32, String>, Event)) -> Dict<u32, String> {
    assert!(go.wait_timeout(Duration::from_secs(30)).unwrap());
    assert_eq!(d.get(&1).unwrap().as_deref(), Some("one"));
    d.insert(&2, &"two".into()).unwrap();
    d
}

#[test]
fn a_proxy_sent_to_a_child_outlives_the_parents_copy_and_comes_back() {
    with_manager(|m, base| {
        let d = m.dict::<u32, String>().unwrap();
        d.insert(&1, &"one".into()).unwrap();
        let go = m.event().unwrap();
        let mut child = Process::new(outlive, (d.clone(), go.clone()))
            .start()
            .unwrap();
        // The parent's copies go (the one in the arguments went at start,
        // maybe before the child read them).
        drop(d);
        assert_eq!(m.object_count().unwrap(), base + 2, "the child keeps both");
        go.set().unwrap();
        drop(go);
        // The child exits before its result, a proxy, is read here.
        let back = child.join().unwrap();
        assert_eq!(back.len().unwrap(), 2);
        assert_eq!(back.get(&2).unwrap().as_deref(), Some("two"));
        assert_eq!(settle(&m, base + 1), base + 1, "only `back` is left");
        drop(back);
        assert_eq!(m.object_count().unwrap(), base);
    });
}

#[test]
fn a_proxy_sent_over_a_connection_keeps_its_object_while_in_flight() {
    with_manager(|m, base| {
        let (a, b) = mproc_pipe::pipe(true).unwrap();
        {
            let d = m.dict::<u32, u32>().unwrap();
            d.insert(&1, &10).unwrap();
            a.send(&d).unwrap();
        }
        // Serialized, not yet read: the message holds the reference.
        assert_eq!(m.object_count().unwrap(), base + 1);
        let d: Dict<u32, u32> = b.recv().unwrap();
        assert_eq!(d.get(&1).unwrap(), Some(10));
        drop(d);
        assert_eq!(m.object_count().unwrap(), base);
    });
}

#[test]
fn a_nested_proxy_keeps_its_object_until_removed_and_dropped() {
    with_manager(|m, base| {
        let l = m.list::<Dict<u32, String>>().unwrap();
        {
            let inner = m.dict::<u32, String>().unwrap();
            inner.insert(&1, &"x".into()).unwrap();
            l.push(&inner).unwrap();
        }
        assert_eq!(m.object_count().unwrap(), base + 2, "the list keeps it");
        let read = l.get(0).unwrap();
        assert_eq!(read.get(&1).unwrap().as_deref(), Some("x"));
        drop(read);
        assert_eq!(m.object_count().unwrap(), base + 2);
        let popped = l.pop().unwrap();
        assert_eq!(m.object_count().unwrap(), base + 2, "`popped` keeps it");
        popped.insert(&2, &"y".into()).unwrap();
        drop(popped);
        assert_eq!(
            m.object_count().unwrap(),
            base + 1,
            "freed once removed and dropped"
        );

        // In a dict; overwritten values and cleared containers let go too.
        let d = m.dict::<String, List<u32>>().unwrap();
        d.insert(&"a".into(), &m.list_from([1u32, 2]).unwrap())
            .unwrap();
        d.insert(&"b".into(), &m.list_from([3u32]).unwrap())
            .unwrap();
        assert_eq!(m.object_count().unwrap(), base + 4);
        d.get_item("a").unwrap().push(&7).unwrap();
        assert_eq!(d.get_item("a").unwrap().snapshot().unwrap(), [1, 2, 7]);
        drop(d.insert(&"a".into(), &m.list().unwrap()).unwrap());
        assert_eq!(m.object_count().unwrap(), base + 4, "the old list went");
        d.clear().unwrap();
        assert_eq!(m.object_count().unwrap(), base + 2);

        // Freeing a container frees what only it referred to.
        let outer = m.value(Some(m.dict_from([(1u32, 1u32)]).unwrap())).unwrap();
        assert_eq!(m.object_count().unwrap(), base + 4);
        drop(outer);
        assert_eq!(m.object_count().unwrap(), base + 2);
        drop((l, d));
        assert_eq!(m.object_count().unwrap(), base);
    });
}

#[test]
fn a_proxy_in_a_queue_stays_alive_until_taken_and_dropped() {
    with_manager(|m, base| {
        let q = m.queue::<Value<u64>>(0).unwrap();
        q.put(m.value(42u64).unwrap()).unwrap();
        assert_eq!(m.object_count().unwrap(), base + 2);
        let v = q.get().unwrap();
        assert_eq!(v.get().unwrap(), 42);
        assert_eq!(v.raw().kind(), mproc_manager::Kind::Value);
        drop(v);
        assert_eq!(m.object_count().unwrap(), base + 1);
    });
}

/// Holds its proxies, says so, then waits to be killed.
fn hold_and_hang((d, _l, ready): (Dict<u32, u32>, List<u32>, Event)) {
    d.insert(&1, &1).unwrap();
    ready.set().unwrap();
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_sigkilled_childs_references_are_released() {
    with_manager(|m, base| {
        let ready = m.event().unwrap();
        let mut child = Process::new(
            hold_and_hang,
            (m.dict().unwrap(), m.list().unwrap(), ready.clone()),
        )
        .start()
        .unwrap();
        assert!(ready.wait_timeout(Duration::from_secs(30)).unwrap());
        drop(ready);
        assert_eq!(m.object_count().unwrap(), base + 3, "the child holds them");
        child.kill().unwrap();
        let _ = child.join_timeout(Duration::from_secs(10));
        assert_eq!(
            settle(&m, base),
            base,
            "its connections closed, its refs went"
        );
    });
}

#[test]
fn a_proxy_that_fails_to_serialize_takes_no_reference() {
    with_manager(|m, base| {
        let d = m.dict::<u32, u32>().unwrap();
        // Plain postcard cannot carry the key's descriptor: refused before
        // any reference for a receiver is taken.
        for _ in 0..10 {
            assert!(postcard::to_stdvec(&d).is_err());
        }
        drop(d);
        assert_eq!(m.object_count().unwrap(), base);
    });
}

#[test]
fn a_call_that_times_out_does_not_cost_the_process_its_references() {
    let b = Manager::builder().call_timeout(Duration::from_secs(1));
    with_manager_from(60, b, |m| {
        let base = m.object_count().unwrap();
        let d = m.dict::<u32, u32>().unwrap();
        d.insert(&1, &1).unwrap();
        // The server takes longer than the call timeout: the connection the
        // call used is given up, and it was this process's only one.
        let r = d.update_with(
            &1,
            |_: &mut u32, ms: u64| std::thread::sleep(Duration::from_millis(ms)),
            2000u64,
        );
        assert!(
            matches!(r, Err(mproc_manager::Error::Disconnected(_))),
            "{r:?}"
        );
        // Once the server is done with it, the process still counts as
        // connected: its dict lives on.
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(m.object_count().unwrap(), base + 1);
        assert_eq!(d.get(&1).unwrap(), Some(1));
        drop(d);
        assert_eq!(m.object_count().unwrap(), base);
    });
}
