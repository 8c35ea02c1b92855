//! Benchmark scenarios of mproc-pipe: round-trip latency of small messages
//! and bandwidth of 1 MiB messages, over the socket and through shared memory.

use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::harness::unpack;
use mproc_pipe::{Connection, RecvError, Wire, pipe};

use crate::harness::{BenchResult, Ctx, Measurement, Role, RoleChild, Scenario};

/// The scenarios of this crate.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "pipe_rtt",
            about: "8-byte send_bytes/recv_bytes round trip to a child over Pipe(duplex), N=20000, us",
            run: pipe_rtt,
        },
        Scenario {
            name: "pipe_bandwidth_1mib",
            about: "1 MiB send_bytes to a child that recv_bytes, N=2000 (2 GiB), GB/s; socket and shared-memory paths",
            run: pipe_bandwidth,
        },
    ]
}

/// The child roles these scenarios start.
pub(crate) fn roles() -> Vec<Role> {
    vec![
        Role {
            name: "pipe_echo",
            run: role_echo,
        },
        Role {
            name: "pipe_sink",
            run: role_sink,
        },
    ]
}

fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
}

/// Starts `role` with `conn` handed over as an mproc handle.
fn spawn_with(ctx: &Ctx, role: &str, conn: &Connection) -> BenchResult<RoleChild> {
    ctx.spawn_with(role, conn)
}

fn adopt(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<Connection> {
    unpack(arg, fds)
}

fn role_echo(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let c = adopt(arg, fds)?;
    loop {
        match c.recv_bytes() {
            Ok(m) => c.send_bytes(&m)?,
            Err(RecvError::Eof) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn role_sink(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let c = adopt(arg, fds)?;
    let mut total = 0u64;
    loop {
        match c.recv_bytes() {
            Ok(m) if m.is_empty() => c.send(total)?,
            Ok(m) => total += m.len() as u64,
            Err(RecvError::Eof) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn pipe_rtt(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let n = if quick() { 2_000 } else { 20_000 };
    let (a, b) = pipe(true)?;
    let child = spawn_with(ctx, "pipe_echo", &b)?;
    drop(b);
    let msg = [7u8; 8];
    for _ in 0..1_000 {
        a.send_bytes(&msg)?;
        a.recv_bytes()?;
    }
    let t0 = Instant::now();
    for _ in 0..n {
        a.send_bytes(&msg)?;
        let r = a.recv_bytes()?;
        if r.len() != 8 {
            return Err("bad echo".into());
        }
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    drop(a);
    child.wait()?;
    Ok(vec![Measurement::lower(us, "us")])
}

fn bandwidth_one(ctx: &Ctx, wire: Wire) -> BenchResult<f64> {
    let n: u64 = if quick() { 200 } else { 2_000 };
    const SIZE: usize = 1 << 20;
    let (mut a, b) = pipe(true)?;
    a.set_wire(wire);
    let child = spawn_with(ctx, "pipe_sink", &b)?;
    drop(b);
    let msg = vec![0x5au8; SIZE];
    for _ in 0..50 {
        a.send_bytes(&msg)?;
    }
    a.send_bytes(b"")?;
    a.recv::<u64>()?;
    let t0 = Instant::now();
    for _ in 0..n {
        a.send_bytes(&msg)?;
    }
    a.send_bytes(b"")?;
    let total: u64 = a.recv()?;
    let secs = t0.elapsed().as_secs_f64();
    if total != (n + 50) * SIZE as u64 {
        return Err(format!("child received {total} bytes").into());
    }
    drop(a);
    child.wait()?;
    Ok((n * SIZE as u64) as f64 / secs / 1e9)
}

fn pipe_bandwidth(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let socket = bandwidth_one(ctx, Wire::Cpython)?;
    let shm = bandwidth_one(ctx, Wire::Mproc)?;
    Ok(vec![
        Measurement::higher(socket, "GB/s").metric("socket"),
        Measurement::higher(shm, "GB/s").metric("shm"),
    ])
}
