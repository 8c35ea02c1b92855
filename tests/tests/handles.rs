//! Every kind of mproc handle reaches children under both start methods that
//! are safe from the (multi-threaded) test runner, and handles can also be
//! sent over a Connection after the child has started.

use std::sync::atomic::Ordering;
use std::time::Duration;

use mproc::shm::SharedAtomicU64;
use mproc::{
    Array, Barrier, BoundedSemaphore, Connection, Event, JoinableQueue, Lock, Process, Queue,
    RLock, Semaphore, SimpleQueue, StartMethod, Value, get_context, pipe,
};
use mproc_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(60);
const METHODS: [StartMethod; 2] = [StartMethod::ForkServer, StartMethod::Spawn];

type Shm = (Value<u64>, Array<u32>, SharedAtomicU64);

fn use_shm((v, a, n): Shm) -> u64 {
    *v.lock().expect("value lock") += 5;
    a.copy_from(0, &[7, 8, 9]).expect("in range");
    n.fetch_add(11, Ordering::SeqCst);
    v.get()
}

#[test]
fn shared_memory_handles_reach_children() {
    watchdog(LIMIT, || {
        for m in METHODS {
            let v = Value::new(1u64).unwrap();
            let a = Array::<u32>::new(3).unwrap();
            let n = SharedAtomicU64::new(0).unwrap();
            let args = (v.clone(), a.clone(), n.clone());
            let seen = get_context(m)
                .process(use_shm, args)
                .start()
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(seen, 6, "{m:?}");
            assert_eq!(v.get(), 6, "{m:?}");
            assert_eq!(a.to_vec(), vec![7, 8, 9], "{m:?}");
            assert_eq!(n.load(Ordering::SeqCst), 11, "{m:?}");
        }
    });
}

type Sync = (Lock, RLock, Semaphore, BoundedSemaphore, Event, Barrier);

fn use_sync((lock, rlock, sem, bsem, ev, barrier): Sync) -> usize {
    // The parent holds `lock`: as in CPython any process may release a Lock.
    lock.release().expect("lock was held by the parent");
    {
        let _a = rlock.lock().expect("rlock");
        let _b = rlock.lock().expect("rlock re-entered");
    }
    std::mem::forget(sem.acquire().expect("semaphore has a permit"));
    bsem.release()
        .expect_err("a full bounded semaphore refuses release");
    ev.set();
    barrier.wait().expect("barrier")
}

#[test]
fn sync_handles_reach_children() {
    watchdog(LIMIT, || {
        for m in METHODS {
            let lock = Lock::new().unwrap();
            let guard = lock.lock().unwrap();
            std::mem::forget(guard); // released by the child
            let rlock = RLock::new().unwrap();
            let sem = Semaphore::new(2).unwrap();
            let bsem = BoundedSemaphore::new(1).unwrap();
            let ev = Event::new().unwrap();
            let barrier = Barrier::new(2).unwrap();
            let args = (
                lock.clone(),
                rlock.clone(),
                sem.clone(),
                bsem.clone(),
                ev.clone(),
                barrier.clone(),
            );
            let mut child = get_context(m).process(use_sync, args).start().unwrap();
            let mine = barrier.wait().unwrap();
            let theirs = child.join().unwrap();
            let mut idx = [mine, theirs];
            idx.sort();
            assert_eq!(idx, [0, 1], "{m:?}: each party gets its own arrival index");
            assert!(
                !lock.is_locked(),
                "{m:?}: the child released the parent's lock"
            );
            assert!(ev.is_set(), "{m:?}");
            assert_eq!(sem.value(), 1, "{m:?}: the child kept one permit");
            assert!(
                rlock.try_lock().is_ok(),
                "{m:?}: the child left the RLock free"
            );
        }
    });
}

fn use_queues((q, jq, sq): (Queue<String>, JoinableQueue<u32>, SimpleQueue<Vec<u8>>)) {
    q.put(format!("from {}", std::process::id())).expect("put");
    let job = jq.get().expect("job");
    jq.put(job * 2).expect("put back");
    jq.task_done().expect("one get, one task_done");
    sq.put(vec![1u8; 300_000])
        .expect("a large item goes through shared memory");
}

#[test]
fn queue_handles_reach_children() {
    watchdog(LIMIT, || {
        for m in METHODS {
            let q = Queue::new(0).unwrap();
            let jq = JoinableQueue::new(0).unwrap();
            let sq = SimpleQueue::new().unwrap();
            jq.put(21).unwrap();
            let mut child = get_context(m)
                .process(use_queues, (q.clone(), jq.clone(), sq.clone()))
                .start()
                .unwrap();
            // Join before draining: the large item must not block the child's exit.
            child.join().unwrap();
            let pid = child.pid();
            assert_eq!(q.get().unwrap(), format!("from {pid}"), "{m:?}");
            assert_eq!(jq.get().unwrap(), 42, "{m:?}");
            jq.task_done().unwrap();
            jq.join();
            assert_eq!(sq.get().unwrap(), vec![1u8; 300_000], "{m:?}");
        }
    });
}

/// Receives a queue and a value over a connection after starting, and uses them.
fn late_handles(conn: Connection) -> u64 {
    let (q, v): (Queue<u64>, Value<u64>) = conn.recv().expect("handles over the pipe");
    let mut total = 0;
    while let Ok(x) = q.get_timeout(Duration::from_secs(10)) {
        if x == 0 {
            break;
        }
        total += x;
    }
    v.set(total);
    total
}

#[test]
fn handles_travel_over_a_connection() {
    watchdog(LIMIT, || {
        for m in METHODS {
            let (here, there) = pipe(true).unwrap();
            let mut child = get_context(m).process(late_handles, there).start().unwrap();
            let q = Queue::<u64>::new(0).unwrap();
            let v = Value::new(0u64).unwrap();
            here.send((q.clone(), v.clone()))
                .map_err(|e| e.to_string())
                .unwrap();
            for x in 1..=100 {
                q.put(x).unwrap();
            }
            q.put(0).unwrap();
            assert_eq!(child.join().unwrap(), 5050, "{m:?}");
            assert_eq!(v.get(), 5050, "{m:?}");
        }
    });
}

fn nested((depth, v): (u32, Value<u64>)) -> u64 {
    *v.lock().expect("lock") += 1;
    if depth > 0 {
        Process::new(nested, (depth - 1, v.clone()))
            .daemon(true)
            .start()
            .expect("start")
            .join()
            .expect("join")
    } else {
        v.get()
    }
}

#[test]
fn daemons_may_have_children_and_pass_handles_on() {
    watchdog(LIMIT, || {
        let v = Value::new(0u64).unwrap();
        let got = Process::new(nested, (3, v.clone()))
            .daemon(true)
            .start()
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got, 4);
        assert_eq!(v.get(), 4);
    });
}
