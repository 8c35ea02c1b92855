//! Benchmark scenarios of mproc-sync: an uncontended lock, a lock hammered by
//! two processes, and a ping-pong through two Events.

use std::hint::black_box;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::unpack;
use mproc_shm::Segment;
use mproc_sync::{Event, Lock};

use crate::harness::{BenchResult, Ctx, Measurement, Role, Scenario, await_at_least, timed};

/// The scenarios of this crate.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "lock_uncontended",
            about: "Lock lock+unlock (guard) in one process, N=20M, ns per pair",
            run: lock_uncontended,
        },
        Scenario {
            name: "lock_contended_2proc",
            about: "2 processes x 5M lock+increment+unlock of one Lock, M ops/s together, owner changes per 1000 ops",
            run: lock_contended_2proc,
        },
        Scenario {
            name: "event_pingpong",
            about: "round trip through two Events between 2 processes (set, wait, clear), N=200k (20k same), us",
            run: event_pingpong,
        },
    ]
}

/// The child roles these scenarios start.
pub(crate) fn roles() -> Vec<Role> {
    vec![
        Role {
            name: "sync_lock_hammer",
            run: role_lock_hammer,
        },
        Role {
            name: "sync_event_pong",
            run: role_event_pong,
        },
    ]
}

/// A few shared counters: [ops, last owner, owner changes, ready/done].
struct Cells(Segment);

impl Cells {
    fn new() -> BenchResult<Self> {
        Ok(Self(Segment::anonymous(64)?))
    }

    fn at(&self, i: usize) -> &AtomicU64 {
        // The segment is 64 bytes: 8 cells, and callers use indices 0..4.
        self.0.get(i * 8).expect("cell index within the segment")
    }
}

// ------------------------------------------------------------ lock_uncontended

fn lock_uncontended(_: &Ctx) -> BenchResult<Vec<Measurement>> {
    const N: u64 = 20_000_000;
    let lock = Lock::new()?;
    for _ in 0..100_000 {
        drop(black_box(lock.lock()));
    }
    let ((), t) = timed(|| {
        for _ in 0..N {
            let g = lock.lock();
            drop(black_box(g));
        }
    });
    if lock.is_locked() {
        return Err("lock left locked".into());
    }
    Ok(vec![Measurement::lower(
        t.as_nanos() as f64 / N as f64,
        "ns/op",
    )])
}

// -------------------------------------------------------- lock_contended_2proc

const HAMMER_N: u64 = 5_000_000;

/// `n` acquisitions, each incrementing the shared count (non-atomically,
/// under the lock) and counting changes of owner.
fn hammer(lock: &Lock, cells: &Cells, me: u64, n: u64) {
    let (count, last, changes) = (cells.at(0), cells.at(1), cells.at(2));
    for _ in 0..n {
        let _g = lock
            .lock()
            .unwrap_or_else(mproc_sync::LockError::into_inner);
        // Relaxed: all three cells are only touched under the lock.
        count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if last.load(Ordering::Relaxed) != me {
            last.store(me, Ordering::Relaxed);
            changes.store(changes.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }
}

fn role_lock_hammer(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let (lock, cells): (Lock, Segment) = unpack(arg, fds)?;
    let cells = Cells(cells);
    // Release: "ready"; then wait for the parent's "go" (cell 3 = 2).
    cells.at(3).fetch_add(1, Ordering::Release);
    await_at_least(cells.at(3), 2, Duration::from_secs(30))?;
    hammer(&lock, &cells, 2, HAMMER_N);
    // Release: "done".
    cells.at(3).fetch_add(1, Ordering::Release);
    Ok(())
}

fn lock_contended_2proc(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let lock = Lock::new()?;
    let cells = Cells::new()?;
    let child = ctx.spawn_with("sync_lock_hammer", &(&lock, &cells.0))?;
    await_at_least(cells.at(3), 1, Duration::from_secs(30))?;
    let t0 = Instant::now();
    // Release: "go".
    cells.at(3).fetch_add(1, Ordering::Release);
    hammer(&lock, &cells, 1, HAMMER_N);
    await_at_least(cells.at(3), 3, Duration::from_secs(300))?;
    let t = t0.elapsed();
    child.wait()?;
    let count = cells.at(0).load(Ordering::Acquire);
    if count != 2 * HAMMER_N {
        return Err(format!(
            "count is {count}, expected {}: mutual exclusion failed",
            2 * HAMMER_N
        )
        .into());
    }
    let changes = cells.at(2).load(Ordering::Acquire);
    let per_1000 = changes as f64 * 1000.0 / count as f64;
    Ok(vec![
        Measurement::higher(count as f64 / t.as_secs_f64() / 1e6, "M/s").note(format!(
            "{per_1000:.2} owner changes per 1000 ops ({changes} in {count})"
        )),
    ])
}

// -------------------------------------------------------------- event_pingpong

fn role_event_pong(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let (ping, pong, n): (Event, Event, u64) = unpack(arg, fds)?;
    for _ in 0..n {
        ping.wait();
        ping.clear();
        pong.set();
    }
    Ok(())
}

fn event_pingpong(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let same = ctx.placement == crate::harness::Placement::Same;
    let n: u64 = if same { 20_000 } else { 200_000 };
    let warm = n / 10;
    let ping = Event::new()?;
    let pong = Event::new()?;
    let child = ctx.spawn_with("sync_event_pong", &(&ping, &pong, n + warm))?;
    let round = || -> BenchResult<()> {
        ping.set();
        // An untimed wait, as in the CPython counterpart (a timed futex wait
        // costs a timer, about 0.3 us here).
        pong.wait();
        pong.clear();
        Ok(())
    };
    // The first round trip waits with a timeout, so that a child that failed
    // to start is an error rather than a hang.
    ping.set();
    if !pong.wait_timeout(Duration::from_secs(30)) {
        return Err("the child never answered".into());
    }
    pong.clear();
    for _ in 1..warm {
        round()?;
    }
    let t0 = Instant::now();
    for _ in 0..n {
        round()?;
    }
    let t = t0.elapsed();
    child.wait()?;
    Ok(vec![Measurement::lower(
        t.as_secs_f64() * 1e6 / n as f64,
        "us",
    )])
}
