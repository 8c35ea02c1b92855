//! `wait` over every kind of waitable object, across processes: a child
//! puts into one of several queues, sets an event, exits, sends on a
//! connection, or a pool finishes a task, and `wait` returns exactly that
//! index.

use std::time::{Duration, Instant};

use mproc::{
    AsyncResult, Event, JoinableQueue, Pool, Process, Queue, SimpleQueue, Waitable, pipe, wait,
    wait_timeout,
};
use mproc_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);
/// Long enough that `wait` is asleep when the child acts (not asserted:
/// the test is right either way, it only exercises the sleeping path).
const PAUSE: Duration = Duration::from_millis(30);
const WAIT: Duration = Duration::from_secs(20);

fn put_after_pause((qs, k): (Vec<Queue<u64>>, usize)) {
    std::thread::sleep(PAUSE);
    qs[k].put(100 + k as u64).unwrap();
}

#[test]
fn wait_returns_the_queue_a_child_put_into() {
    watchdog(LIMIT, || {
        let qs: Vec<Queue<u64>> = (0..6).map(|_| Queue::new(0).unwrap()).collect();
        for k in [0, 3, 5] {
            let mut h = Process::new(put_after_pause, (qs.clone(), k))
                .start()
                .unwrap();
            let objs: Vec<&dyn Waitable> = qs.iter().map(|q| q as &dyn Waitable).collect();
            assert_eq!(wait_timeout(&objs, WAIT).unwrap(), [k]);
            // Level-triggered: still ready until the item is taken.
            assert_eq!(wait_timeout(&objs, Duration::ZERO).unwrap(), [k]);
            assert_eq!(qs[k].get().unwrap(), 100 + k as u64);
            assert!(wait_timeout(&objs, Duration::ZERO).unwrap().is_empty());
            h.join().unwrap();
        }
    });
}

/// A queue's descriptor for a poll loop of one's own: a `watch` keeps its
/// doorbell rung by the child's put, and a plain poll of the bare
/// descriptor (no mproc wait logic) sees it.
#[test]
fn a_watched_queue_descriptor_turns_readable_on_a_childs_put() {
    use std::os::fd::AsFd;
    watchdog(LIMIT, || {
        let qs: Vec<Queue<u64>> = vec![Queue::new(0).unwrap()];
        let w = mproc::watch(&qs[0]);
        let fd = w.as_fd();
        assert!(wait_timeout(&[&fd], Duration::ZERO).unwrap().is_empty());
        assert!(!w.is_ready());
        let mut h = Process::new(put_after_pause, (qs.clone(), 0))
            .start()
            .unwrap();
        assert_eq!(wait_timeout(&[&fd], WAIT).unwrap(), [0]);
        assert!(w.is_ready());
        assert_eq!(qs[0].get().unwrap(), 100);
        // Taken: after a rearm the descriptor is quiet again.
        assert!(!w.is_ready());
        w.rearm();
        assert!(wait_timeout(&[&fd], Duration::ZERO).unwrap().is_empty());
        // A process handle's descriptor is its sentinel: readable once the
        // child has ended (a pipe end without a message never is).
        let (a, _b) = pipe(true).unwrap();
        assert_eq!(wait_timeout(&[&h.as_fd(), &a.as_fd()], WAIT).unwrap(), [0]);
        h.join().unwrap();
    });
}

type Kinds = (SimpleQueue<String>, JoinableQueue<String>, Event, usize);

fn act_on_one((sq, jq, ev, k): Kinds) {
    std::thread::sleep(PAUSE);
    match k {
        0 => sq.put("simple".into()).unwrap(),
        1 => jq.put("joinable".into()).unwrap(),
        2 => ev.set(),
        _ => std::process::exit(3),
    }
}

/// One list holding a SimpleQueue, a JoinableQueue, an Event and the child's
/// own handle; whichever the child acts on is the one reported.
#[test]
fn wait_returns_the_simple_or_joinable_queue_event_or_process() {
    watchdog(LIMIT, || {
        for k in 0..4 {
            let sq: SimpleQueue<String> = SimpleQueue::new().unwrap();
            let jq: JoinableQueue<String> = JoinableQueue::new(0).unwrap();
            let ev = Event::new().unwrap();
            let mut h = Process::new(act_on_one, (sq.clone(), jq.clone(), ev.clone(), k))
                .start()
                .unwrap();
            // A process handle is reported once the child exits, so it goes
            // in only where the child ends by exiting.
            let ready = if k == 3 {
                wait_timeout(&[&sq, &jq, &ev, &h], WAIT).unwrap()
            } else {
                let r = wait_timeout(&[&sq, &jq, &ev], WAIT).unwrap();
                h.join().unwrap();
                r
            };
            assert_eq!(ready, [k], "case {k}");
            match k {
                0 => assert_eq!(sq.get().unwrap(), "simple"),
                1 => assert_eq!(jq.get().unwrap(), "joinable"),
                2 => assert!(ev.is_set()),
                _ => assert_eq!(h.status(), Some(mproc::process::ExitStatus::Exited(3))),
            }
        }
    });
}

fn wait_for_go(go: Event) -> u32 {
    go.wait();
    7
}

fn quick(_: ()) -> u32 {
    std::thread::sleep(PAUSE);
    1
}

#[test]
fn wait_returns_the_process_that_ended_and_the_parent_sentinel_is_waitable() {
    watchdog(LIMIT, || {
        let go = Event::new().unwrap();
        let mut slow = Process::new(wait_for_go, go.clone()).start().unwrap();
        let mut fast = Process::new(quick, ()).start().unwrap();
        let (a, b) = pipe(true).unwrap();
        assert_eq!(wait_timeout(&[&slow, &a, &fast], WAIT).unwrap(), [2]);
        assert_eq!(fast.join().unwrap(), 1);
        // The ended child stays ready; the other is not.
        assert!(wait_timeout(&[&slow], Duration::ZERO).unwrap().is_empty());
        go.set();
        assert_eq!(wait_timeout(&[&a, &slow], WAIT).unwrap(), [1]);
        assert_eq!(slow.join().unwrap(), 7);
        drop(b);
        // The main process has no parent handle; a child's is tested below.
        assert_eq!(
            Process::new(parent_is_alive, ())
                .start()
                .unwrap()
                .join()
                .unwrap(),
            (true, false)
        );
    });
}

/// In a child: its parent (the test) is alive, so its handle is not ready,
/// and the current process is never ready.
fn parent_is_alive(_: ()) -> (bool, bool) {
    let parent = mproc::process::parent_process().expect("a child has a parent");
    let me = mproc::process::current_process();
    let parent_ready = !wait_timeout(&[&parent], Duration::from_millis(20))
        .unwrap()
        .is_empty();
    let me_ready = !wait_timeout(&[&me], Duration::ZERO).unwrap().is_empty();
    (!parent_ready, me_ready)
}

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(50));
    x * x
}

#[test]
fn wait_returns_the_async_result_that_is_done() {
    watchdog(LIMIT, || {
        let pool = Pool::new(2).unwrap();
        let (a, _b) = pipe(true).unwrap();
        let r: AsyncResult<u64> = pool.apply_async(slow_square, 9).unwrap();
        let ev = Event::new().unwrap();
        assert_eq!(wait_timeout(&[&ev, &a, &r], WAIT).unwrap(), [2]);
        assert_eq!(wait_timeout(&[&r], Duration::ZERO).unwrap(), [0]);
        assert_eq!(r.get().unwrap(), 81);
        // A result that was done before anybody polled it is ready at once.
        let r = pool.apply_async(slow_square, 3).unwrap();
        r.wait();
        assert_eq!(wait_timeout(&[&r], Duration::ZERO).unwrap(), [0]);
        assert_eq!(r.get().unwrap(), 9);
        pool.close();
        pool.join().unwrap();
    });
}

#[test]
fn wait_returns_the_executor_future_that_is_done() {
    watchdog(LIMIT, || {
        let ex = mproc::ProcessPoolExecutor::new(2).unwrap();
        let q: Queue<u64> = Queue::new(0).unwrap();
        let f = ex.submit(slow_square, 7).unwrap();
        assert_eq!(wait_timeout(&[&q, &f], WAIT).unwrap(), [1]);
        assert_eq!(f.result().unwrap(), 49);
        // Resolved before anybody polled it: ready at once.
        let f = ex.submit(slow_square, 4).unwrap();
        f.wait();
        assert_eq!(wait_timeout(&[&f], Duration::ZERO).unwrap(), [0]);
        // A cancelled future is resolved too.
        let g = ex.submit(slow_square, 5).unwrap();
        let h = ex.submit(slow_square, 6).unwrap();
        let i = ex.submit(slow_square, 8).unwrap();
        if i.cancel() {
            assert_eq!(wait_timeout(&[&i], Duration::ZERO).unwrap(), [0]);
        }
        assert_eq!((g.result().unwrap(), h.result().unwrap()), (25, 36));
        ex.shutdown(true, false);
    });
}

fn produce((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
        if i % 7 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Several threads wait on the same queue and take what they can: every
/// item is taken exactly once and no waiter sleeps through an item (a lost
/// doorbell would stall a waiter until the watchdog fires, since the last
/// waiters only stop once everything was taken).
#[test]
fn many_waiters_on_one_queue_miss_nothing() {
    watchdog(LIMIT, || {
        const N: u64 = 3000;
        let q: Queue<u64> = Queue::new(0).unwrap();
        let stop = Event::new().unwrap();
        let mut h = Process::new(produce, (q.clone(), N)).start().unwrap();
        let taken: Vec<Vec<u64>> = std::thread::scope(|s| {
            let ts: Vec<_> = (0..3)
                .map(|_| {
                    let (q, stop) = (q.clone(), stop.clone());
                    s.spawn(move || {
                        let mut got = Vec::new();
                        let deadline = Instant::now() + WAIT;
                        loop {
                            let r =
                                mproc::connection::wait_deadline(&[&q, &stop], deadline).unwrap();
                            assert!(!r.is_empty(), "a waiter timed out");
                            if r.contains(&0) {
                                if let Ok(v) = q.try_get() {
                                    got.push(v);
                                }
                            } else {
                                return got;
                            }
                        }
                    })
                })
                .collect();
            h.join().unwrap();
            while !q.is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
            stop.set();
            ts.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let mut all: Vec<u64> = taken.concat();
        all.sort_unstable();
        assert_eq!(all, (0..N).collect::<Vec<_>>());
    });
}

/// Two waiters in the same process, each with its own `wait` on the same
/// queue, both see one item put by a child (neither drains the other's
/// wake-up).
#[test]
fn two_waiters_both_see_one_item() {
    watchdog(LIMIT, || {
        for _ in 0..20 {
            let q: Queue<u64> = Queue::new(0).unwrap();
            let mut h = Process::new(put_after_pause, (vec![q.clone()], 0))
                .start()
                .unwrap();
            std::thread::scope(|s| {
                let a = s.spawn(|| wait_timeout(&[&q], WAIT).unwrap());
                let b = s.spawn(|| wait(&[&q]).unwrap());
                assert_eq!(a.join().unwrap(), [0]);
                assert_eq!(b.join().unwrap(), [0]);
            });
            assert_eq!(q.get().unwrap(), 100);
            h.join().unwrap();
        }
    });
}

/// A closed queue is ready (`get` returns at once).
#[test]
fn a_closed_queue_is_ready() {
    watchdog(LIMIT, || {
        let q: Queue<u64> = Queue::new(0).unwrap();
        assert!(
            wait_timeout(&[&q], Duration::from_millis(10))
                .unwrap()
                .is_empty()
        );
        let t0 = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(PAUSE);
                q.close();
            });
            assert_eq!(wait_timeout(&[&q], WAIT).unwrap(), [0]);
        });
        assert!(t0.elapsed() >= PAUSE);
    });
}
