//! The `tokio` forms across processes, on a multi-threaded runtime, each
//! under a timeout: `get_async`/`put_async` on the three queues,
//! `join_async`, `Event::wait_async`, and awaiting an `AsyncResult`.

use std::time::Duration;

use mproc::{Event, JoinableQueue, Pool, Process, Queue, SimpleQueue};
use mproc_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(30);

/// Runs `f` on a fresh multi-threaded runtime under the watchdog and a
/// tokio timeout.
fn run<F: std::future::Future<Output = ()> + Send + 'static>(
    f: impl FnOnce() -> F + Send + 'static,
) {
    watchdog(LIMIT, || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tokio::time::timeout(WAIT, f())
                .await
                .expect("async test timed out");
        });
    });
}

fn echo_plus_one((rx, tx, n): (Queue<u64>, Queue<u64>, u64)) -> u64 {
    for _ in 0..n {
        let v = rx.get().unwrap();
        tx.put(v + 1).unwrap();
    }
    n
}

#[test]
fn get_async_and_put_async_round_trip_through_a_child() {
    run(|| async {
        let (to, from): (Queue<u64>, Queue<u64>) = (Queue::new(1).unwrap(), Queue::new(0).unwrap());
        let mut h = Process::new(echo_plus_one, (to.clone(), from.clone(), 200))
            .start()
            .unwrap();
        for i in 0..200 {
            to.put_async(i * 10).await.unwrap();
            assert_eq!(from.get_async().await.unwrap(), i * 10 + 1);
        }
        assert_eq!(h.join_async().await.unwrap(), 200);
    });
}

/// A bounded queue (maxsize 2) that a slow child drains: `put_async` waits
/// for room many times, and every item arrives in order.
fn drain_slowly(q: Queue<u64>) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(2));
        match q.get() {
            Ok(v) => got.push(v),
            Err(_) => return got,
        }
    }
}

#[test]
fn put_async_waits_for_room_in_a_bounded_queue() {
    run(|| async {
        let q: Queue<u64> = Queue::new(2).unwrap();
        let mut h = Process::new(drain_slowly, q.clone()).start().unwrap();
        for i in 0..40 {
            q.put_async(i).await.unwrap();
        }
        while !q.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        q.close();
        assert_eq!(h.join_async().await.unwrap(), (0..40).collect::<Vec<_>>());
    });
}

fn put_strings((sq, jq): (SimpleQueue<String>, JoinableQueue<String>)) {
    for i in 0..50 {
        std::thread::sleep(Duration::from_micros(300));
        sq.put(format!("s{i}")).unwrap();
        jq.put(format!("j{i}")).unwrap();
    }
    jq.join();
}

#[test]
fn simple_and_joinable_queues_have_async_forms() {
    run(|| async {
        let sq: SimpleQueue<String> = SimpleQueue::new().unwrap();
        let jq: JoinableQueue<String> = JoinableQueue::new(0).unwrap();
        let mut h = Process::new(put_strings, (sq.clone(), jq.clone()))
            .start()
            .unwrap();
        for i in 0..50 {
            assert_eq!(sq.get_async().await.unwrap(), format!("s{i}"));
            assert_eq!(jq.get_async().await.unwrap(), format!("j{i}"));
            jq.task_done().unwrap();
        }
        h.join_async().await.unwrap();
    });
}

fn produce_range((q, from, to): (Queue<u64>, u64, u64)) {
    for i in from..to {
        q.put(i).unwrap();
        if i % 16 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// Eight tasks await one queue (clones) that two children fill: every item
/// is taken exactly once.
#[test]
fn many_tasks_get_async_from_one_queue() {
    run(|| async {
        const N: u64 = 4000;
        let q: Queue<u64> = Queue::new(0).unwrap();
        let mut kids: Vec<_> = [(0, N / 2), (N / 2, N)]
            .into_iter()
            .map(|(a, b)| {
                Process::new(produce_range, (q.clone(), a, b))
                    .start()
                    .unwrap()
            })
            .collect();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (q, count) = (q.clone(), count.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    while count.load(std::sync::atomic::Ordering::SeqCst) < N {
                        // Short timeouts: also exercise cancelled get_async futures.
                        if let Ok(r) =
                            tokio::time::timeout(Duration::from_millis(5), q.get_async()).await
                        {
                            got.push(r.unwrap());
                            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                    got
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        for k in &mut kids {
            k.join_async().await.unwrap();
        }
        all.sort_unstable();
        assert_eq!(all, (0..N).collect::<Vec<_>>());
    });
}

/// A cancelled `get_async` takes nothing: the item put afterwards is there.
#[test]
fn a_cancelled_get_async_loses_nothing() {
    run(|| async {
        let q: Queue<u64> = Queue::new(0).unwrap();
        let r = tokio::time::timeout(Duration::from_millis(20), q.get_async()).await;
        assert!(r.is_err(), "nothing was put");
        let mut h = Process::new(produce_range, (q.clone(), 5, 6))
            .start()
            .unwrap();
        h.join_async().await.unwrap();
        assert_eq!(q.try_get().unwrap(), 5);
    });
}

fn set_later(ev: Event) {
    std::thread::sleep(Duration::from_millis(20));
    ev.set();
}

#[test]
fn event_wait_async_sees_a_set_from_a_child() {
    run(|| async {
        let ev = Event::new().unwrap();
        let mut h = Process::new(set_later, ev.clone()).start().unwrap();
        ev.wait_async().await.unwrap();
        assert!(ev.is_set());
        h.join_async().await.unwrap();
        // Already set: returns at once.
        ev.wait_async().await.unwrap();
    });
}

fn exit_with(code: i32) {
    std::thread::sleep(Duration::from_millis(10));
    std::process::exit(code);
}

#[test]
fn join_async_reports_how_the_child_ended() {
    run(|| async {
        let mut h = Process::new(exit_with, 4).start().unwrap();
        let e = h.join_async().await.unwrap_err();
        assert!(e.to_string().contains('4'), "{e}");
        assert_eq!(h.exitcode(), Some(4));
    });
}

fn cube(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(20));
    x * x * x
}

#[test]
fn an_async_result_can_be_awaited() {
    run(|| async {
        let pool = Pool::new(2).unwrap();
        let rs: Vec<_> = (0..6).map(|i| pool.apply_async(cube, i).unwrap()).collect();
        let mut got = Vec::new();
        for r in rs {
            got.push(r.await.unwrap());
        }
        assert_eq!(got, [0, 1, 8, 27, 64, 125]);
        let m = pool.map_async(cube, 0..4u64).unwrap();
        assert_eq!(m.await.unwrap(), [0, 1, 8, 27]);
        pool.close();
        pool.join().unwrap();
    });
}

#[test]
fn an_executor_future_can_be_awaited() {
    run(|| async {
        let ex = mproc::ProcessPoolExecutor::new(2).unwrap();
        let fs: Vec<_> = (0..5).map(|i| ex.submit(cube, i).unwrap()).collect();
        let mut got = Vec::new();
        for f in fs {
            got.push(f.await.unwrap());
        }
        assert_eq!(got, [0, 1, 8, 27, 64]);
        // Several awaited at once from other tasks.
        let hs: Vec<_> = (5..8)
            .map(|i| tokio::spawn(ex.submit(cube, i).unwrap().into_future()))
            .collect();
        let mut got = Vec::new();
        for h in hs {
            got.push(h.await.unwrap().unwrap());
        }
        assert_eq!(got, [125, 216, 343]);
        ex.shutdown(true, false);
    });
}
