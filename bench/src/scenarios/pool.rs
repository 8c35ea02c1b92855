//! Benchmark scenarios of mproc-pool: a map of a tiny function, the seed
//! program (map over a range, pool start-up included), Monte-Carlo pi, a
//! burst of apply_async calls, and the executor's submit.
//!
//! Speed-ups compare like with like: the serial baseline calls the very
//! function the workers run (`#[inline(never)]`, so there is one compiled
//! copy of it, called through a pointer the optimiser cannot see through),
//! each repetition reports its own ratio and the report takes the median
//! of those. A speed-up above the number of workers that can run at once
//! (workers, or CPUs if fewer) is marked as a broken measurement.
//!
//! Only placement `default` is meaningful here: `same` and `split` pin the
//! measuring process, and the pool's workers inherit its single CPU, so
//! two workers share one CPU. The figures say so when run that way.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mproc_pool::{Pool, ProcessPoolExecutor};

/// The `pi` example itself: `pool_pi` times its task (`hits`, never
/// inlined), so the figure is the example's.
#[path = "../../../examples/pi.rs"]
#[allow(dead_code, unreachable_pub)]
mod pi;

use crate::harness::{
    BenchResult, Ctx, Measurement, Placement, Role, Scenario, allowed_cpus, timed,
};

/// Workers of the pools whose speed-up is measured.
const WORKERS: usize = 2;

/// The speed-up of `parallel` over `serial`, with its ceiling: the workers
/// that can run at once.
fn speedup(serial: Duration, parallel: Duration) -> Measurement {
    let ceiling = WORKERS.min(allowed_cpus()) as f64;
    Measurement::higher(serial.as_secs_f64() / parallel.as_secs_f64(), "x vs serial")
        .ceiling(ceiling)
}

/// The scenarios of this crate.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "pool_map_tiny",
            about: "Pool(2).map squaring 1M u64 from a Vec (pool running, function measured once), M items/s (placement default only)",
            run: pool_map_tiny,
        },
        Scenario {
            name: "pool_map_seed",
            about: "seed map_pool: Pool(2) + map(lots_of_math, 0..40M) + close/join vs the same function in a serial loop, speed-up (placement default only)",
            run: pool_map_seed,
        },
        Scenario {
            name: "pool_pi",
            about: "Monte-Carlo pi, 40M samples: Pool(2).map over 16 seeds vs the same function called once, speed-up (placement default only)",
            run: pool_pi,
        },
        Scenario {
            name: "pool_apply_async",
            about: "10,000 trivial apply_async calls on Pool(2), then get all, k calls/s (placement default only)",
            run: pool_apply_async,
        },
        Scenario {
            name: "executor_submit",
            about: "ProcessPoolExecutor(2): 10,000 trivial tasks, submit + result one at a time (serial) and all submitted then collected (pipelined), k tasks/s (placement default only)",
            run: executor_submit,
        },
    ]
}

/// A warning for placements that put every worker on the parent's CPU.
fn placement_warning(ctx: &Ctx) -> &'static str {
    match ctx.placement {
        Placement::Default => "",
        Placement::Same | Placement::Split => {
            "; NOT MEANINGFUL: this placement pins the parent and the workers inherit its one CPU"
        }
    }
}

/// The child roles these scenarios start (none: the pool starts its own).
pub(crate) fn roles() -> Vec<Role> {
    Vec::new()
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

fn pool_map_tiny(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    const N: u64 = 1_000_000;
    let pool = Pool::new(2)?;
    // One small map teaches the pool how long `square` takes.
    let _ = pool.map(square, (0..10_000u64).collect::<Vec<_>>())?;
    let input: Vec<u64> = (0..N).collect();
    let (out, t) = timed(|| pool.map(square, input));
    let out = out?;
    if out.len() != N as usize || out[12345] != 12345 * 12345 {
        return Err("wrong map result".into());
    }
    let first = {
        let fresh = Pool::new(2)?;
        let input: Vec<u64> = (0..N).collect();
        let (_, t1) = timed(|| fresh.map(square, input));
        t1
    };
    Ok(vec![
        Measurement::higher(N as f64 / t.as_secs_f64() / 1e6, "M items/s").note(format!(
            "{:.1} ms; first map on a fresh pool (learning the chunk size): {:.1} ms{}",
            t.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            placement_warning(ctx)
        )),
    ])
}

/// The seed's task. Never inlined: the serial loop and the workers call
/// this one compiled copy, so their ratio measures the pool, not where the
/// compiler happened to place two copies of the loop.
#[inline(never)]
fn lots_of_math(n: u64) {
    black_box(n * n);
}

fn pool_map_seed(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    const N: u64 = 40_000_000;
    let task: fn(u64) = black_box(lots_of_math);
    let (_, serial) = timed(|| {
        for n in 0..N {
            task(n);
        }
    });
    let t0 = Instant::now();
    let pool = Pool::new(WORKERS)?;
    let started = t0.elapsed();
    let out = pool.map(lots_of_math, 0..N)?;
    let mapped = t0.elapsed();
    pool.close();
    pool.join()?;
    let t = t0.elapsed();
    if out.len() != N as usize {
        return Err("wrong map length".into());
    }
    Ok(vec![speedup(serial, t).note(format!(
        "serial {:.1} ms, pool {:.1} ms (start-up {:.2} ms, map {:.2} ms, close+join {:.2} ms){}",
        serial.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        started.as_secs_f64() * 1e3,
        (mapped - started).as_secs_f64() * 1e3,
        (t - mapped).as_secs_f64() * 1e3,
        placement_warning(ctx)
    ))])
}

fn pool_pi(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    const N: u64 = 40_000_000;
    const TASKS: u64 = 16;
    let task: fn((u64, u64)) -> u64 = black_box(pi::hits);
    let (hits, serial) = timed(|| task((1, N)));
    let pi_serial = 4.0 * hits as f64 / N as f64;
    let pool = Pool::new(WORKERS)?;
    let _ = pool.map(pi::hits, vec![(0u64, 1000u64)])?;
    let (hits, t) = timed(|| {
        pool.map(
            pi::hits,
            (0..TASKS).map(|i| (i + 1, N / TASKS)).collect::<Vec<_>>(),
        )
    });
    let pi = 4.0 * hits?.iter().sum::<u64>() as f64 / N as f64;
    if (pi - std::f64::consts::PI).abs() > 0.01 || (pi_serial - std::f64::consts::PI).abs() > 0.01 {
        return Err(format!("bad estimates {pi} {pi_serial}").into());
    }
    Ok(vec![speedup(serial, t).note(format!(
        "serial {:.1} ms, Pool(2) {:.1} ms, pi ~ {pi:.5}{}",
        serial.as_secs_f64() * 1e3,
        t.as_secs_f64() * 1e3,
        placement_warning(ctx)
    ))])
}

fn trivial(x: u32) -> u32 {
    x + 1
}

/// The trivial tasks of a burst.
const BURST: u32 = 10_000;

/// What a burst of `trivial` over `0..BURST` sums to.
const BURST_SUM: u64 = (BURST as u64) * (BURST as u64 + 1) / 2;

/// A burst: `trivial` over `0..BURST` submitted with `submit`, then every
/// result taken with `get`; returns their sum.
fn burst<H, E, F>(
    submit: impl Fn(u32) -> Result<H, E>,
    get: impl Fn(H) -> Result<u32, F>,
) -> BenchResult<u64>
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
    F: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let handles = (0..BURST)
        .map(submit)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Into::into)?;
    let mut sum = 0u64;
    for h in handles {
        sum += u64::from(get(h).map_err(Into::into)?);
    }
    Ok(sum)
}

/// Thousands of `unit` per second, `BURST` of them in `t`.
fn per_burst(t: Duration, unit: &'static str, ctx: &Ctx) -> Measurement {
    Measurement::higher(f64::from(BURST) / t.as_secs_f64() / 1e3, unit).note(format!(
        "{:.1} ms for {BURST}{}",
        t.as_secs_f64() * 1e3,
        placement_warning(ctx)
    ))
}

fn pool_apply_async(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let pool = Pool::new(2)?;
    for r in (0..100)
        .map(|i| pool.apply_async(trivial, i))
        .collect::<Result<Vec<_>, _>>()?
    {
        r.get()?;
    }
    let (sum, t) = timed(|| burst(|i| pool.apply_async(trivial, i), |r| r.get()));
    if sum? != BURST_SUM {
        return Err("wrong apply_async results".into());
    }
    Ok(vec![per_burst(t, "k calls/s", ctx)])
}

fn executor_submit(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let ex = ProcessPoolExecutor::new(2)?;
    for i in 0..100 {
        ex.submit(trivial, i)?.into_result()?;
    }
    let (sum, serial) = timed(|| -> BenchResult<u64> {
        let mut sum = 0u64;
        for i in 0..BURST {
            sum += u64::from(ex.submit(trivial, i)?.into_result()?);
        }
        Ok(sum)
    });
    if sum? != BURST_SUM {
        return Err("wrong executor results (serial)".into());
    }
    let (sum, piped) = timed(|| burst(|i| ex.submit(trivial, i), |f| f.into_result()));
    if sum? != BURST_SUM {
        return Err("wrong executor results (pipelined)".into());
    }
    Ok(vec![
        per_burst(serial, "k tasks/s", ctx).metric("serial"),
        per_burst(piped, "k tasks/s", ctx).metric("pipelined"),
    ])
}
