//! Scenarios no single crate owns: pool tasks that use a queue and a lock,
//! a manager used from pool workers, and handles that travel through a
//! connection into a pool, and one codec choice (plain data) carrying a
//! pool and a queue together.

use std::time::Duration;

use mproc::codec::Pod;
use mproc::managers::Dict;
use mproc::{Array, Lock, Manager, Pool, Queue, Value, get_context, pipe};
use mproc_tests::watchdog;

const LIMIT: Duration = Duration::from_secs(120);

type Shared = (u64, Queue<u64>, Lock, Value<u64>);

/// One task: a non-atomic increment of `count` under `lock`, then `i²` on the
/// queue. A lost update would show in the count, a lost item in the sum.
fn square_into_queue((i, q, lock, count): Shared) -> u64 {
    {
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        // Read, pause, write, all under `lock`.
        let v = count.get();
        std::thread::yield_now();
        count.set(v + 1);
    }
    q.put(i * i).expect("put");
    i
}

#[test]
fn pool_tasks_share_a_queue_and_a_lock() {
    watchdog(LIMIT, || {
        let q: Queue<u64> = Queue::new(0).unwrap();
        let lock = Lock::new().unwrap();
        let count = Value::new(0u64).unwrap();
        let pool = Pool::builder().processes(2).build().unwrap();
        let args: Vec<Shared> = (0..200)
            .map(|i| (i, q.clone(), lock.clone(), count.clone()))
            .collect();
        let done = pool.map(square_into_queue, args).unwrap();
        assert_eq!(done, (0..200).collect::<Vec<_>>());
        let mut got: Vec<u64> = (0..200)
            .map(|_| q.get_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        got.sort_unstable();
        assert_eq!(got, (0..200u64).map(|i| i * i).collect::<Vec<_>>());
        assert_eq!(count.get(), 200);
        assert!(q.is_empty());
        pool.close();
        pool.join().unwrap();
    });
}

fn record_in_dict((i, d): (u64, Dict<u64, u64>)) -> u64 {
    d.insert(&i, &(i * 10)).expect("insert");
    std::process::id().into()
}

#[test]
fn a_manager_dict_is_filled_by_pool_workers() {
    watchdog(LIMIT, || {
        let m = Manager::start().unwrap();
        let d = m.dict::<u64, u64>().unwrap();
        let pool = Pool::builder().processes(2).build().unwrap();
        let pids = pool
            .map(record_in_dict, (0..50).map(|i| (i, d.clone())))
            .unwrap();
        assert!(pids.iter().all(|&p| p != u64::from(std::process::id())));
        assert_eq!(d.len().unwrap(), 50);
        for i in 0..50 {
            assert_eq!(d.get(&i).unwrap(), Some(i * 10));
        }
        pool.close();
        pool.join().unwrap();
        drop(d);
        m.shutdown().unwrap();
    });
}

fn write_index((a, i): (Array<u32>, usize)) {
    a.set(i, i as u32 * 3).expect("in range");
}

/// In the child: receives an array through the connection, fills it with a
/// pool of its own, and reports the sum it sees.
fn fill_with_a_pool(conn: mproc::Connection) -> u64 {
    let a: Array<u32> = conn.recv().expect("the array");
    let pool = Pool::builder().processes(2).build().expect("pool");
    let n = a.len();
    pool.map(write_index, (0..n).map(|i| (a.clone(), i)))
        .expect("map");
    pool.close();
    pool.join().expect("join");
    a.to_vec().iter().map(|&x| u64::from(x)).sum()
}

#[test]
fn an_array_sent_through_a_connection_is_filled_by_a_pool_in_a_child() {
    watchdog(LIMIT, || {
        let (ours, theirs) = pipe(true).unwrap();
        let mut child = get_context(mproc::StartMethod::Spawn)
            .process(fill_with_a_pool, theirs)
            .start()
            .unwrap();
        let a: Array<u32> = Array::new(64).unwrap();
        ours.send(&a).unwrap();
        let sum = child.join().unwrap();
        let want: Vec<u32> = (0..64).map(|i| i * 3).collect();
        assert_eq!(a.to_vec(), want);
        assert_eq!(sum, want.iter().map(|&x| u64::from(x)).sum::<u64>());
    });
}

/// The worker's end of the results queue, given by the pool's initializer.
static RESULTS: std::sync::OnceLock<Queue<f64, Pod>> = std::sync::OnceLock::new();

fn keep_results(q: Queue<f64, Pod>) {
    let _ = RESULTS.set(q);
}

/// One task in plain data: the vector's norm, also put on the queue.
fn norm(v: [f64; 4]) -> f64 {
    let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    RESULTS
        .get()
        .expect("the initializer ran")
        .put(n)
        .expect("put");
    n
}

#[test]
fn one_codec_choice_carries_a_pool_and_a_queue() {
    // Items, results and queue records are plain data (`Pod`); the queue's
    // handle reaches the workers through the initializer, whose arguments
    // are a serde value (a handle holds a descriptor, which plain data
    // cannot carry).
    watchdog(LIMIT, || {
        let q: Queue<f64, Pod> = Queue::new(0).unwrap();
        let pool = Pool::builder()
            .processes(2)
            .codec::<Pod>()
            .initializer(keep_results, q.clone())
            .build()
            .unwrap();
        let items: Vec<[f64; 4]> = (0..100).map(|i| [f64::from(i), 0.0, 0.0, 0.0]).collect();
        let got = pool.map(norm, items).unwrap();
        assert_eq!(got, (0..100).map(f64::from).collect::<Vec<_>>());
        let mut queued: Vec<f64> = (0..100)
            .map(|_| q.get_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        queued.sort_by(f64::total_cmp);
        assert_eq!(queued, got);
        assert!(q.is_empty());
        pool.close();
        pool.join().unwrap();
    });
}
