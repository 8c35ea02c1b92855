//! Benchmark scenarios of mproc-queue: throughput with one and two
//! producers/consumers (u64 and 4 KiB items) and the round-trip latency
//! through two queues.

use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::harness::unpack;
use mproc_queue::{Bytes, LeaseQueue, Pod, Queue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::harness::{BenchResult, Ctx, Measurement, Role, RoleChild, Scenario};

const N_U64: u64 = 10_000_000;
const N_4K: u64 = 500_000;
const N_RTT: u64 = 200_000;
/// Marks the end of a producer's items.
const END: u64 = u64::MAX;

type U64Queue = Queue<u64, Pod>;
type BytesQueue = Queue<Vec<u8>, Bytes>;
type U64LeaseQueue = LeaseQueue<u64, Pod>;

/// The scenarios of this crate.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "queue_1p1c_u64",
            about: "1 producer process -> 1 consumer process, Queue<u64, Pod>, N=10M, M msgs/s",
            run: queue_1p1c_u64,
        },
        Scenario {
            name: "lease_queue_1p1c",
            about: "1 producer process -> 1 consumer process, LeaseQueue<u64, Pod>, get_lease + ack each, N=10M, M msgs/s",
            run: lease_queue_1p1c,
        },
        Scenario {
            name: "queue_batch_1p1c_u64",
            about: "1 producer process -> 1 consumer process, Queue<u64, Pod>, put_many/get_many of up to 4096, N=10M, M msgs/s",
            run: queue_batch_1p1c_u64,
        },
        Scenario {
            name: "queue_2p2c_u64",
            about: "2 producer -> 2 consumer processes, Queue<u64, Pod>, N=10M in all, M msgs/s",
            run: queue_2p2c_u64,
        },
        Scenario {
            name: "queue_1p1c_4kib",
            about: "1 producer -> 1 consumer process, Queue<Vec<u8>, Bytes> of 4 KiB items, N=500k, M msgs/s",
            run: queue_1p1c_4kib,
        },
        Scenario {
            name: "queue_rtt",
            about: "round trip parent -> child -> parent through two Queue<u64, Pod>, N=200k, us per round trip",
            run: queue_rtt,
        },
    ]
}

/// The child roles these scenarios start.
pub(crate) fn roles() -> Vec<Role> {
    vec![
        Role {
            name: "queue_produce_u64",
            run: role_produce_u64,
        },
        Role {
            name: "lease_produce_u64",
            run: role_lease_produce_u64,
        },
        Role {
            name: "queue_batch_produce_u64",
            run: role_batch_produce_u64,
        },
        Role {
            name: "queue_consume_u64",
            run: role_consume_u64,
        },
        Role {
            name: "queue_produce_4k",
            run: role_produce_4k,
        },
        Role {
            name: "queue_echo",
            run: role_echo,
        },
    ]
}

/// Starts `role` with a count `n` and the handles `v`; the child gets them
/// back with `unpack::<(u64, T)>`.
pub(crate) fn spawn_with<T: Serialize>(
    ctx: &Ctx,
    role: &str,
    n: u64,
    v: &T,
) -> BenchResult<RoleChild> {
    ctx.spawn_with(role, &(n, v))
}

/// A producer's items: 0..n, then END.
type Items = std::iter::Chain<std::ops::Range<u64>, std::array::IntoIter<u64, 1>>;

/// Producer child body: waits for a start token on the second queue, then
/// puts items 0..n and one END with `put_all`.
fn produce<Q: DeserializeOwned>(
    arg: &str,
    fds: Vec<OwnedFd>,
    put_all: impl FnOnce(&Q, Items) -> Result<(), String>,
) -> BenchResult<()> {
    let (n, (q, start)): (u64, (Q, U64Queue)) = unpack(arg, fds)?;
    start.get()?;
    put_all(&q, (0..n).chain([END]))?;
    Ok(())
}

/// Producer child: `put` one item at a time.
fn role_produce_u64(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    produce(arg, fds, |q: &U64Queue, mut items| {
        items.try_for_each(|i| q.put(i).map_err(|e| e.to_string()))
    })
}

/// Producer child of `lease_queue_1p1c`: `put` into a lease queue.
fn role_lease_produce_u64(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    produce(arg, fds, |q: &U64LeaseQueue, mut items| {
        items.try_for_each(|i| q.put(i).map_err(|e| e.to_string()))
    })
}

/// Items per `get_many` in `queue_batch_1p1c_u64`.
const BATCH: usize = 4096;

/// Producer child of `queue_batch_1p1c_u64`: one `put_many` of them all
/// (which publishes them in groups).
fn role_batch_produce_u64(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    produce(arg, fds, |q: &U64Queue, items| {
        q.put_many(items).map(drop).map_err(|e| e.to_string())
    })
}

/// Consumer child: takes items until it sees END; checks nothing is out of range.
fn role_consume_u64(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let (n, q): (u64, U64Queue) = unpack(arg, fds)?;
    loop {
        let v = q.get()?;
        if v == END {
            return Ok(());
        }
        if v >= n {
            return Err(format!("unexpected item {v}").into());
        }
    }
}

fn role_produce_4k(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let (n, (q, start)): (u64, (BytesQueue, U64Queue)) = unpack(arg, fds)?;
    start.get()?;
    let item = vec![0x5au8; 4096];
    for _ in 0..n {
        q.put(item.clone()).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn role_echo(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let (n, (ping, pong)): (u64, (U64Queue, U64Queue)) = unpack(arg, fds)?;
    for _ in 0..n {
        let v = ping.get()?;
        pong.put(v + 1).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One producer child started as `role` with `q` puts 0..N_U64 and END;
/// the parent takes them with `next`, checking their order: M msgs/s.
fn one_to_one<Q: Serialize>(
    ctx: &Ctx,
    role: &str,
    q: &Q,
    mut next: impl FnMut() -> BenchResult<u64>,
) -> BenchResult<Vec<Measurement>> {
    let start: U64Queue = Queue::new(0)?;
    let child = spawn_with(ctx, role, N_U64, &(q, &start))?;
    let t0 = Instant::now();
    start.put(0).map_err(|e| e.to_string())?;
    let mut expect = 0;
    loop {
        let v = next()?;
        if v == END {
            break;
        }
        if v != expect {
            return Err(format!("got {v}, expected {expect}").into());
        }
        expect += 1;
    }
    let dt = t0.elapsed();
    child.wait()?;
    if expect != N_U64 {
        return Err(format!("received {expect} of {N_U64}").into());
    }
    Ok(vec![Measurement::higher(
        N_U64 as f64 / dt.as_secs_f64() / 1e6,
        "M msgs/s",
    )])
}

fn queue_1p1c_u64(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let q: U64Queue = Queue::new(0)?;
    one_to_one(ctx, "queue_produce_u64", &q, || Ok(q.get()?))
}

/// As `queue_1p1c_u64`, with `put_many` and `get_many`.
fn queue_batch_1p1c_u64(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let q: U64Queue = Queue::new(0)?;
    let (mut v, mut at) = (Vec::with_capacity(BATCH), 0);
    one_to_one(ctx, "queue_batch_produce_u64", &q, || {
        if at == v.len() {
            v.clear();
            at = 0;
            q.get_many(&mut v, BATCH)?;
        }
        at += 1;
        Ok(v[at - 1])
    })
}

/// As `queue_1p1c_u64`, with every item leased and acked.
fn lease_queue_1p1c(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let q: U64LeaseQueue = LeaseQueue::new()?;
    one_to_one(ctx, "lease_produce_u64", &q, || {
        let l = q.get_lease()?;
        let v = *l;
        l.ack()?;
        Ok(v)
    })
}

fn queue_2p2c_u64(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let q: U64Queue = Queue::new(0)?;
    let start: U64Queue = Queue::new(0)?;
    let per = N_U64 / 2;
    let consumers = [
        spawn_with(ctx, "queue_consume_u64", per, &q)?,
        spawn_with(ctx, "queue_consume_u64", per, &q)?,
    ];
    let producers = [
        spawn_with(ctx, "queue_produce_u64", per, &(&q, &start))?,
        spawn_with(ctx, "queue_produce_u64", per, &(&q, &start))?,
    ];
    let t0 = Instant::now();
    start.put(0).map_err(|e| e.to_string())?;
    start.put(0).map_err(|e| e.to_string())?;
    for c in consumers {
        c.wait()?;
    }
    let dt = t0.elapsed();
    for p in producers {
        p.wait()?;
    }
    if !q.is_empty() {
        return Err("items left in the queue".into());
    }
    Ok(vec![Measurement::higher(
        N_U64 as f64 / dt.as_secs_f64() / 1e6,
        "M msgs/s",
    )])
}

fn queue_1p1c_4kib(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let q: BytesQueue = Queue::new(0)?;
    let start: U64Queue = Queue::new(0)?;
    let child = spawn_with(ctx, "queue_produce_4k", N_4K, &(&q, &start))?;
    let t0 = Instant::now();
    start.put(0).map_err(|e| e.to_string())?;
    for _ in 0..N_4K {
        let v = q.get()?;
        if v.len() != 4096 {
            return Err("short item".into());
        }
    }
    let dt = t0.elapsed();
    child.wait()?;
    Ok(vec![Measurement::higher(
        N_4K as f64 / dt.as_secs_f64() / 1e6,
        "M msgs/s",
    )])
}

fn queue_rtt(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    Ok(vec![Measurement::lower(blocking_rtt(ctx, N_RTT)?, "us")])
}

/// The blocking round trip through two queues and an echo child, `n`
/// times after a warm-up: microseconds per round trip.
pub(crate) fn blocking_rtt(ctx: &Ctx, n: u64) -> BenchResult<f64> {
    let ping: U64Queue = Queue::new(0)?;
    let pong: U64Queue = Queue::new(0)?;
    let child = spawn_with(ctx, "queue_echo", n + 1000, &(&ping, &pong))?;
    // Warm up (and wait for the child to start).
    for i in 0..1000 {
        ping.put(i).map_err(|e| e.to_string())?;
        pong.get()?;
    }
    let t0 = Instant::now();
    for i in 0..n {
        ping.put(i).map_err(|e| e.to_string())?;
        let v = pong.get()?;
        if v != i + 1 {
            return Err(format!("echo returned {v} for {i}").into());
        }
    }
    let dt = t0.elapsed();
    child.wait()?;
    Ok(dt.as_secs_f64() * 1e6 / n as f64)
}
