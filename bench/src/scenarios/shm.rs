//! Benchmark scenarios of mproc-shm: shared atomics, a contended locked
//! Value, bulk Array and RawArray copies and a child scanning a large Array.

use std::hint::black_box;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::harness::unpack;
use mproc_shm::{Array, RawArray, SharedAtomicU64, Value};

use crate::harness::{
    BenchResult, Ctx, Measurement, Role, Scenario, await_at_least, copy_bandwidth, timed,
};

/// The scenarios of this crate.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "value_atomic",
            about: "uncontended SharedAtomicU64::fetch_add, N=20M, ns per op",
            run: value_atomic,
        },
        Scenario {
            name: "value_locked_2proc",
            about: "2 processes x 2M increments of one locked Value<u64>, M increments/s together",
            run: value_locked_2proc,
        },
        Scenario {
            name: "array_copy_64mib",
            about: "copy 64 MiB into / out of a locked Array<u8> (warm), GB/s, best of 5",
            run: array_copy_64mib,
        },
        Scenario {
            name: "raw_array_copy_64mib",
            about: "copy 64 MiB into / out of a RawArray<u8> (word-atomic copies, warm), GB/s, best of 5",
            run: raw_array_copy_64mib,
        },
        Scenario {
            name: "array_sum_10m",
            about: "a child sums a shared Array<f64> of 10M elements under its lock, ms",
            run: array_sum_10m,
        },
    ]
}

/// The child roles these scenarios start.
pub(crate) fn roles() -> Vec<Role> {
    vec![
        Role {
            name: "shm_locked_incr",
            run: role_locked_incr,
        },
        Role {
            name: "shm_array_sum",
            run: role_array_sum,
        },
    ]
}

// ---------------------------------------------------------------- value_atomic

fn value_atomic(_: &Ctx) -> BenchResult<Vec<Measurement>> {
    const N: u64 = 20_000_000;
    let a = SharedAtomicU64::new(0)?;
    let ((), t) = timed(|| {
        for _ in 0..N {
            black_box(a.fetch_add(1, Ordering::Relaxed));
        }
    });
    if a.load(Ordering::Relaxed) != N {
        return Err("lost increments".into());
    }
    Ok(vec![Measurement::lower(
        t.as_nanos() as f64 / N as f64,
        "ns/op",
    )])
}

// ---------------------------------------------------------- value_locked_2proc

/// Increments per process.
const LOCKED_N: u64 = 2_000_000;

/// The shared state: [counter, id of the last incrementer, hand-overs,
/// acquisitions that found the lock held].
type Counter = Value<[u64; 4]>;

/// One process's share of the contended run: `n` increments, each under the
/// lock, counting how often the lock came from the other process and how
/// often it was busy when asked for.
fn locked_increments(v: &Counter, me: u64, n: u64) {
    let mut busy = 0;
    for _ in 0..n {
        let mut g = match v.try_lock() {
            Ok(g) => g,
            Err(mproc_shm::TryLockError::WouldBlock) => {
                busy += 1;
                v.lock().unwrap_or_else(mproc_shm::LockError::into_inner)
            }
            Err(mproc_shm::TryLockError::OwnerDied(g)) => g,
        };
        g[0] += 1;
        if g[1] != me {
            g[1] = me;
            g[2] += 1;
        }
    }
    v.with_lock(|g| g[3] += busy);
}

fn role_locked_incr(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let (v, sync): (Counter, SharedAtomicU64) = unpack(arg, fds)?;
    // Release: tells the parent we are ready; Acquire below waits for "go".
    sync.fetch_add(1, Ordering::Release);
    await_at_least(&sync, 2, Duration::from_secs(30))?;
    locked_increments(&v, 2, LOCKED_N);
    // Release: publishes "done"; pairs with the parent's Acquire.
    sync.fetch_add(1, Ordering::Release);
    Ok(())
}

fn value_locked_2proc(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let v: Counter = Value::new([0; 4])?;
    let sync = SharedAtomicU64::new(0)?;
    let child = ctx.spawn_with("shm_locked_incr", &(&v, &sync))?;
    await_at_least(&sync, 1, Duration::from_secs(30))?;
    let t0 = Instant::now();
    // Release: "go"; the child waits for it with Acquire.
    sync.fetch_add(1, Ordering::Release);
    locked_increments(&v, 1, LOCKED_N);
    await_at_least(&sync, 3, Duration::from_secs(120))?;
    let t = t0.elapsed();
    child.wait()?;
    let [count, _, handovers, busy] = v.get();
    if count != 2 * LOCKED_N {
        return Err(format!("counter is {count}, expected {}", 2 * LOCKED_N).into());
    }
    let rate = count as f64 / t.as_secs_f64() / 1e6;
    let note = format!(
        "lock changed hands {handovers} times; {busy} acquisitions ({:.1}%) found it held",
        100.0 * busy as f64 / count as f64
    );
    Ok(vec![Measurement::higher(rate, "M/s").note(note)])
}

// ------------------------------------------------------------ array_copy_64mib

/// The bytes copied by the 64 MiB copy scenarios.
const COPY_BYTES: usize = 64 << 20;
/// Warm rounds each way; the best one is reported.
const COPY_ROUNDS: usize = 5;

fn array_copy_64mib(_: &Ctx) -> BenchResult<Vec<Measurement>> {
    let a = Array::<u8>::new(COPY_BYTES)?;
    copy_bandwidth(
        COPY_BYTES,
        COPY_ROUNDS,
        |src| Ok(a.copy_from(0, src)?),
        |dst| Ok(a.copy_to(0, dst)?),
    )
}

// -------------------------------------------------------- raw_array_copy_64mib

fn raw_array_copy_64mib(_: &Ctx) -> BenchResult<Vec<Measurement>> {
    let a = RawArray::<u8>::new(COPY_BYTES)?;
    copy_bandwidth(
        COPY_BYTES,
        COPY_ROUNDS,
        |src| Ok(a.copy_from(0, src)?),
        |dst| Ok(a.copy_to(0, dst)?),
    )
}

// --------------------------------------------------------------- array_sum_10m

const SUM_N: usize = 10_000_000;

/// A sum the compiler can vectorise: eight independent accumulators.
fn fast_sum(s: &[f64]) -> f64 {
    let mut acc = [0.0f64; 8];
    let chunks = s.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f64>() + tail
}

fn role_array_sum(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    // result = [sum as f64 bits, first pass ns, second pass ns, done flag]
    let (a, result): (Array<f64>, Array<u64>) = unpack(arg, fds)?;
    // First pass: a fresh mapping in a fresh process, so the time includes
    // the kernel filling in the page table (20k pages) as the sum reads.
    let (sum, t1) = timed(|| a.with_lock(|s| fast_sum(s)));
    // Second pass: the mapping is warm.
    let (sum2, t2) = timed(|| a.with_lock(|s| fast_sum(black_box(s))));
    if sum.to_bits() != sum2.to_bits() {
        return Err("sums differ".into());
    }
    result.copy_from(
        0,
        &[sum.to_bits(), t1.as_nanos() as u64, t2.as_nanos() as u64, 1],
    )?;
    Ok(())
}

fn array_sum_10m(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let a = Array::<f64>::new(SUM_N)?;
    a.with_lock(|s| {
        for (i, x) in s.iter_mut().enumerate() {
            *x = (i % 1000) as f64;
        }
    });
    let result = Array::<u64>::new(4)?;
    ctx.spawn_with("shm_array_sum", &(&a, &result))?.wait()?;
    let r = result.to_vec();
    if r[3] != 1 {
        return Err("child reported nothing".into());
    }
    let expect = (SUM_N / 1000) as f64 * (999.0 * 1000.0 / 2.0);
    if f64::from_bits(r[0]) != expect {
        return Err(format!("child summed {}, expected {expect}", f64::from_bits(r[0])).into());
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    Ok(vec![
        Measurement::lower(ms(r[1]), "ms")
            .note("first pass in a fresh child, page faults included"),
        Measurement::lower(ms(r[2]), "ms")
            .metric("warm")
            .note("second pass, mapping already faulted in"),
    ])
}
