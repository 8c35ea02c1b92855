//! Benchmark scenarios of mproc-manager: dict set+get throughput from a
//! child process, and the cost of starting and shutting down a manager.

use std::os::fd::OwnedFd;
use std::time::Instant;

use crate::harness::unpack;
use mproc_manager::{Dict, Manager, Value};

use crate::harness::{BenchResult, Ctx, Measurement, Role, Scenario, median};

/// set+get pairs the child performs (2 ops each).
const N_PAIRS: u64 = 50_000;
const N_START: usize = 30;

/// The scenarios of this crate.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "manager_dict",
            about: "a child process does N=50k dict set + get pairs on a Manager dict (u64 -> u64); ops/s, each set and each get one op",
            run: manager_dict,
        },
        Scenario {
            name: "manager_start",
            about: "Manager start (server process ready, first connection up) + shutdown (server exited), median of 30; ms",
            run: manager_start,
        },
    ]
}

/// The child roles these scenarios start.
pub(crate) fn roles() -> Vec<Role> {
    vec![Role {
        name: "manager_dict_client",
        run: role_dict_client,
    }]
}

type Args = (Dict<u64, u64>, Value<f64>);

/// The client child: N set+get pairs, then stores its elapsed seconds.
fn role_dict_client(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let (d, out): Args = unpack(arg, fds)?;
    // Warm up: connect, and the first key.
    d.insert(&0, &0)?;
    let t0 = Instant::now();
    for i in 0..N_PAIRS {
        d.insert(&(i & 1023), &i)?;
        let v = d.get(&(i & 1023))?;
        if v != Some(i) {
            return Err(format!("read {v:?} after writing {i}").into());
        }
    }
    out.set(&t0.elapsed().as_secs_f64())?;
    Ok(())
}

fn manager_dict(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let m = Manager::start()?;
    let d = m.dict::<u64, u64>()?;
    let out = m.value(0f64)?;
    let child = ctx.spawn_with("manager_dict_client", &(d.clone(), out.clone()))?;
    child.wait()?;
    let secs = out.get()?;
    if secs <= 0.0 {
        return Err("the client reported no time".into());
    }
    let n = d.len()?;
    m.shutdown()?;
    let ops = 2.0 * N_PAIRS as f64 / secs;
    Ok(vec![
        Measurement::higher(ops, "ops/s").note(format!("{:.2} us/op, {n} keys", 1e6 / ops)),
    ])
}

fn manager_start(_ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    // The first start also starts mproc's fork server: not counted.
    Manager::start()?.shutdown()?;
    let mut ms = Vec::with_capacity(N_START);
    for _ in 0..N_START {
        let t0 = Instant::now();
        let m = Manager::start()?;
        m.shutdown()?;
        ms.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(vec![Measurement::lower(median(ms), "ms")])
}
