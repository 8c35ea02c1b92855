//! The `tracing` feature's events, each caused the way it happens in use
//! (a worker or a consumer killed, a lock's holder dead, the fork server
//! killed), seen by a capturing subscriber with their real field values.
//!
//! The subscriber is global (the events come from the pool's threads too),
//! so the tests run one at a time (`SERIAL`) and each looks only for the
//! events that name its own pids.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use mproc::{LeaseQueue, Lock, Pool, Process, Queue};
use mproc_tests::{pid_alive, watchdog};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

const LIMIT: Duration = Duration::from_secs(60);

/// One event as the subscriber saw it: its level, target and fields (the
/// message under `message`), each as text.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    target: String,
    fields: HashMap<String, String>,
}

impl Seen {
    fn field(&self, name: &str) -> &str {
        self.fields.get(name).map_or("", String::as_str)
    }
}

static EVENTS: Mutex<Vec<Seen>> = Mutex::new(Vec::new());
static SERIAL: Mutex<()> = Mutex::new(());

/// Records every event; spans are not used by mproc.
struct Capture;

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Id::from_u64(NEXT.fetch_add(1, Ordering::Relaxed))
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, e: &Event<'_>) {
        let mut fields = HashMap::new();
        e.record(&mut Fields(&mut fields));
        let seen = Seen {
            level: *e.metadata().level(),
            target: e.metadata().target().into(),
            fields,
        };
        EVENTS.lock().unwrap_or_else(|e| e.into_inner()).push(seen);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `body` under the watchdog with the subscriber installed (once) and
/// this binary's test lock held.
fn traced(body: impl FnOnce() + Send + 'static) {
    static INSTALL: Once = Once::new();
    watchdog(LIMIT, || {
        INSTALL.call_once(|| tracing::subscriber::set_global_default(Capture).expect("subscriber"));
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        body()
    })
}

/// The first event with `message` that `pred` accepts, waiting for it up
/// to 30 s (events from the pool's threads come when they come).
fn expect_event(message: &str, pred: impl Fn(&Seen) -> bool) -> Seen {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(e) = EVENTS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|e| e.field("message") == message && pred(e))
        {
            return e.clone();
        }
        if Instant::now() > deadline {
            let all = EVENTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
            panic!("no event {message:?} (events seen: {all:#?})");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn kill(pid: i32) {
    // SAFETY: kill(2) on a pid this test owns (a worker or child of ours).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill {pid}");
}

/// Waits until `pid` (a child of ours or of our fork server) is gone or a
/// zombie.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pid_alive(pid) {
        assert!(Instant::now() < deadline, "{pid} did not die");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Takes `lock` and exits without releasing it.
fn take_and_exit(lock: Lock) {
    std::mem::forget(lock.lock().expect("a fresh lock"));
    std::process::exit(0);
}

#[test]
fn a_lock_taken_over_from_a_dead_owner_is_reported() {
    traced(|| {
        let lock = Lock::new().unwrap();
        let mut child = Process::new(take_and_exit, lock.clone()).start().unwrap();
        let dead = child.pid().as_raw();
        child.join().expect_err("it exited without a result");
        let g = lock.lock().expect_err("its owner died holding it");
        drop(g.into_inner());
        let e = expect_event("lock recovered from a dead owner", |e| {
            e.field("dead_owner_pid") == dead.to_string()
        });
        assert_eq!(e.level, Level::WARN);
        assert_eq!(e.target, "mproc_shm::mutex");
        assert_eq!(e.field("pid"), std::process::id().to_string());
        assert!(e.field("lock").starts_with("0x"), "{e:?}");
    });
}

/// Leases one item, says so, and waits to be killed holding the lease.
fn lease_and_hang((q, started): (LeaseQueue<u64>, Queue<u64>)) {
    let lease = q.get_lease().expect("an item");
    started.put(*lease).expect("put");
    std::thread::sleep(Duration::from_secs(60));
    drop(lease);
}

#[test]
fn a_lease_of_a_killed_consumer_is_reported_taken_back_and_redelivered() {
    traced(|| {
        let q: LeaseQueue<u64> = LeaseQueue::new().unwrap();
        let started: Queue<u64> = Queue::new(0).unwrap();
        q.put(41).unwrap();
        let mut child = Process::new(lease_and_hang, (q.clone(), started.clone()))
            .start()
            .unwrap();
        let dead = child.pid().as_raw();
        assert_eq!(started.get_timeout(Duration::from_secs(30)).unwrap(), 41);
        kill(dead);
        assert!(child.join().unwrap_err().status().is_some());
        let lease = q.get_lease_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!((*lease, lease.delivery_count()), (41, 2));
        lease.ack().unwrap();
        let me = std::process::id().to_string();
        let back = expect_event("lease taken back for redelivery", |e| {
            e.field("consumer_pid") == dead.to_string()
        });
        assert_eq!(back.level, Level::WARN);
        assert_eq!(back.field("reason"), "consumer died");
        assert_eq!(back.field("deliveries"), "1");
        assert_eq!(back.field("pid"), me);
        let slot = back.field("slot").to_string();
        let again = expect_event("lease redelivered", |e| {
            e.field("pid") == me && e.field("slot") == slot
        });
        assert_eq!(again.field("deliveries"), "2");
        assert_eq!(again.level, Level::INFO);
    });
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn a_killed_pool_worker_is_reported_replaced() {
    traced(|| {
        let pool = Pool::builder().processes(2).build().unwrap();
        assert_eq!(pool.map(square, 0..10u64).unwrap()[9], 81);
        let old = pool.pids();
        assert_eq!(old.len(), 2);
        kill(old[0]);
        let e = expect_event("pool worker replaced", |e| {
            e.field("old_pid") == old[0].to_string()
        });
        assert_eq!(e.level, Level::INFO);
        assert_eq!(e.field("status"), "was killed by signal 9");
        let new: i32 = e.field("new_pid").parse().unwrap();
        assert!(!old.contains(&new) && new > 0, "{e:?}");
        assert!(e.field("worker").starts_with("PoolWorker-"), "{e:?}");
        assert!(pool.pids().contains(&new));
        // The replacement works.
        assert_eq!(pool.map(square, 0..10u64).unwrap()[3], 9);
        pool.terminate();
        pool.join().unwrap();
    });
}

/// Item 3 kills its worker if that is the process `victim` (the pool's
/// first worker: its replacement runs it to the end).
fn die_at_three((x, victim): (u64, i32)) -> u64 {
    if x == 3 && std::process::id() == victim as u32 {
        // SAFETY: raise(2) on ourselves.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    x * x
}

#[test]
fn a_task_run_again_after_its_worker_died_is_reported() {
    traced(|| {
        let pool = Pool::builder().processes(1).build().unwrap();
        let worker = pool.pids()[0];
        let args: Vec<(u64, i32)> = (0..8).map(|x| (x, worker)).collect();
        // One task of 8 items; item 3 kills the worker running it: that
        // item fails, the others run again.
        let r = pool.map_chunked(die_at_three, args, 8);
        assert!(r.is_err(), "the item that killed its worker fails");
        let e = expect_event("pool task retried after its worker died", |e| {
            e.field("worker_pid") == worker.to_string()
        });
        assert_eq!(e.level, Level::WARN);
        assert_eq!(e.field("status"), "was killed by signal 9");
        assert_eq!(e.field("attempt"), "2");
        // The items before the one that killed it, which ran once.
        assert_eq!((e.field("first"), e.field("count")), ("0", "3"));
        pool.terminate();
        pool.join().unwrap();
    });
}

fn nothing(_: ()) {}

#[test]
fn a_killed_fork_server_is_reported_restarted() {
    traced(|| {
        // Make sure a fork server runs, then kill it.
        Process::new(nothing, ()).start().unwrap().join().unwrap();
        let old = mproc::process::__private::fork_server_pid().expect("a fork server");
        kill(old);
        wait_gone(old);
        Process::new(nothing, ()).start().unwrap().join().unwrap();
        let new = mproc::process::__private::fork_server_pid().expect("a new fork server");
        assert_ne!(new, old);
        let lost = expect_event("fork server lost", |e| {
            e.field("server_pid") == old.to_string()
        });
        assert_eq!(lost.level, Level::WARN);
        assert_eq!(lost.field("status"), "Some(Signaled(9))");
        let e = expect_event("fork server restarted", |e| {
            e.field("old_pid") == old.to_string()
        });
        assert_eq!(e.field("new_pid"), new.to_string());
        assert_eq!(e.target, "mproc_process::server");
    });
}
