//! Benchmark scenarios of mproc-process: start + join of a trivial child
//! under each start method.

use std::time::Instant;

use mproc_process::{Process, StartMethod};

use crate::harness::{BenchResult, Ctx, Measurement, Role, Scenario};

/// The scenarios of this crate.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "proc_start_fork",
            about: "start + join of a trivial child with StartMethod::Fork, N=300, us per child",
            run: proc_start_fork,
        },
        Scenario {
            name: "proc_start_forkserver",
            about: "start + join of a trivial child through the (running) fork server, N=300, us per child",
            run: proc_start_forkserver,
        },
        Scenario {
            name: "proc_start_spawn",
            about: "start + join of a trivial child with StartMethod::Spawn (re-exec), N=100, us per child",
            run: proc_start_spawn,
        },
    ]
}

/// The child roles these scenarios start (none: they use mproc's own Process).
pub(crate) fn roles() -> Vec<Role> {
    Vec::new()
}

/// The child: pins itself when the placement asks for another CPU, then
/// returns at once.
fn trivial(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let _ = crate::harness::pin_to_cpu(cpu);
    }
}

fn start_join(ctx: &Ctx, method: StartMethod, n: usize) -> BenchResult<Vec<Measurement>> {
    // The child only needs to move if it should not share the parent's CPU.
    let cpu = ctx
        .placement
        .child_cpu()
        .filter(|&c| Some(c) != ctx.placement.parent_cpu());
    // Warm up: the first forkserver start launches the server.
    for _ in 0..5 {
        Process::new(trivial, cpu)
            .start_method(method)
            .start()?
            .join()?;
    }
    let t0 = Instant::now();
    for _ in 0..n {
        Process::new(trivial, cpu)
            .start_method(method)
            .start()?
            .join()?;
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    Ok(vec![Measurement::lower(us, "us/child")])
}

fn proc_start_fork(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    start_join(ctx, StartMethod::Fork, 300)
}

fn proc_start_forkserver(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    start_join(ctx, StartMethod::ForkServer, 300)
}

fn proc_start_spawn(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    start_join(ctx, StartMethod::Spawn, 100)
}
