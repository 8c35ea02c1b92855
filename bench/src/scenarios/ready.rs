//! Scenarios of waiting through readiness descriptors: `wait` over 16
//! queues, and the async queue round trip, each beside the plain blocking
//! queue measured in the same run.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use mproc_pipe::{Connection, Waitable, pipe, wait_deadline};
use mproc_queue::{Pod, Queue};

use super::queue::spawn_with;
use crate::harness::unpack;
use crate::harness::{BenchResult, Ctx, Measurement, Role, median};

type U64Queue = Queue<u64, Pod>;

const QUEUES: usize = 16;
const N_WAKE: u64 = 4_000;
const N_RTT: u64 = 50_000;
/// How long the child lets the parent fall asleep before each put.
const NAP: Duration = Duration::from_micros(200);
/// Generous: a lost wake-up fails the run instead of hanging it.
const LIMIT: Duration = Duration::from_secs(10);

/// The scenarios of this module.
pub(crate) fn scenarios() -> Vec<crate::harness::Scenario> {
    vec![
        crate::harness::Scenario {
            name: "wait_many",
            about: "put on one of 16 Queue<u64, Pod> (round robin) -> wait() over all 16 returns, N=4000, median us; beside it a blocking get on one queue (same protocol) and the plain queue round trip",
            run: wait_many,
        },
        crate::harness::Scenario {
            name: "async_queue_rtt",
            about: "round trip parent -> child -> parent through two Queue<u64, Pod> with get_async/put_async on both sides (tokio current-thread), N=50k, us per round trip; beside it the blocking round trip",
            run: async_queue_rtt,
        },
    ]
}

/// The child roles these scenarios start.
pub(crate) fn roles() -> Vec<Role> {
    vec![
        Role {
            name: "ready_put_stamped",
            run: role_put_stamped,
        },
        Role {
            name: "ready_async_echo",
            run: role_async_echo,
        },
    ]
}

/// Nanoseconds on CLOCK_MONOTONIC, which every process on the machine shares.
fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Child: receives the queues and a `go` queue over the connection; for
/// each `go` item `k`, naps, then puts its clock into queue `k`.
fn role_put_stamped(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let (_, conn): (u64, Connection) = unpack(arg, fds)?;
    let (qs, go): (Vec<U64Queue>, U64Queue) = conn.recv()?;
    loop {
        let k = go.get()?;
        if k == u64::MAX {
            return Ok(());
        }
        std::thread::sleep(NAP);
        let q = qs.get(k as usize).ok_or("queue index out of range")?;
        q.put(now_ns()).map_err(|e| e.to_string())?;
    }
}

/// Latencies (us) from the child's put to the parent's return, `n` times,
/// through `take(k)` (which waits for and takes the item of queue `k`).
fn stamped_latencies(
    go: &U64Queue,
    n: u64,
    mut take: impl FnMut(usize) -> BenchResult<u64>,
) -> BenchResult<Vec<f64>> {
    let mut lat = Vec::with_capacity(n as usize);
    for i in 0..n {
        let k = (i % QUEUES as u64) as usize;
        go.put(k as u64).map_err(|e| e.to_string())?;
        let stamp = take(k)?;
        lat.push(now_ns().saturating_sub(stamp) as f64 / 1e3);
    }
    Ok(lat)
}

fn wait_many(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let qs: Vec<U64Queue> = (0..QUEUES)
        .map(|_| Queue::new(0))
        .collect::<Result<_, _>>()?;
    let go: U64Queue = Queue::new(0)?;
    let (mine, theirs) = pipe(true)?;
    let child = spawn_with(ctx, "ready_put_stamped", 0, &theirs)?;
    mine.send(&(&qs, &go)).map_err(|e| e.to_string())?;
    drop(theirs);
    let objs: Vec<&dyn Waitable> = qs.iter().map(|q| q as &dyn Waitable).collect();
    // Warm up (and wait for the child to start).
    stamped_latencies(&go, 64, |k| Ok(qs[k].get()?))?;
    let waited = stamped_latencies(&go, N_WAKE, |k| {
        let ready = wait_deadline(&objs, Instant::now() + LIMIT)?;
        if ready != [k] {
            return Err(format!("wait returned {ready:?}, expected [{k}]").into());
        }
        Ok(qs[k].try_get().map_err(|e| e.to_string())?)
    })?;
    let got = stamped_latencies(&go, N_WAKE, |k| Ok(qs[k].get()?))?;
    go.put(u64::MAX).map_err(|e| e.to_string())?;
    child.wait()?;
    let rtt = super::queue::blocking_rtt(ctx, 20_000)?;
    Ok(vec![
        Measurement::lower(median(waited), "us").metric("wait16"),
        Measurement::lower(median(got), "us").metric("get1"),
        Measurement::lower(rtt, "us").metric("plain_queue_rtt"),
    ])
}

/// Child: echoes `n` items with `get_async`/`put_async`.
fn role_async_echo(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let (n, (ping, pong)): (u64, (U64Queue, U64Queue)) = unpack(arg, fds)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        for _ in 0..n {
            let v = ping.get_async().await?;
            pong.put_async(v + 1).await.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

fn async_queue_rtt(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let ping: U64Queue = Queue::new(0)?;
    let pong: U64Queue = Queue::new(0)?;
    let child = spawn_with(ctx, "ready_async_echo", N_RTT + 1000, &(&ping, &pong))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let dt = rt.block_on(async {
        for i in 0..1000 {
            ping.put_async(i).await.map_err(|e| e.to_string())?;
            pong.get_async().await?;
        }
        let t0 = Instant::now();
        for i in 0..N_RTT {
            ping.put_async(i).await.map_err(|e| e.to_string())?;
            let v = pong.get_async().await?;
            if v != i + 1 {
                return Err(format!("echo returned {v} for {i}").into());
            }
        }
        BenchResult::Ok(t0.elapsed())
    })?;
    child.wait()?;
    let rtt = super::queue::blocking_rtt(ctx, N_RTT)?;
    Ok(vec![
        Measurement::lower(dt.as_secs_f64() * 1e6 / N_RTT as f64, "us").metric("async"),
        Measurement::lower(rtt, "us").metric("plain_queue_rtt"),
    ])
}
