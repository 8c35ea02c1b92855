//! Seed `computepi_multiprocs.py` beyond one machine: a Monte-Carlo estimate
//! of pi with the samples spread over the worker ranks of an MPI job.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_pi
//! mpirun -n 3 target/release/examples/mpi_pi [SAMPLES]
//! ```

use std::time::Instant;

use mproc::mpi::MpiPool;

#[path = "pi.rs"]
#[allow(dead_code, unreachable_pub)]
mod pi;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let samples: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000_000);
    let pool = MpiPool::new()?;

    let t0 = Instant::now();
    let serial_pi = 4.0 * pi::hits((1, samples)) as f64 / samples as f64;
    let serial = t0.elapsed();

    let tasks = 8 * (pool.workers() * pool.local_processes()) as u64;
    let per = samples / tasks;
    let t0 = Instant::now();
    let total: u64 = pool
        .map(pi::hits, (0..tasks).map(|i| (i + 2, per)))?
        .iter()
        .sum();
    let mpi_pi = 4.0 * total as f64 / (per * tasks) as f64;
    let pooled = t0.elapsed();

    println!(
        "serial  : pi ~ {serial_pi:.6} in {:.3} s",
        serial.as_secs_f64()
    );
    println!(
        "MpiPool : pi ~ {mpi_pi:.6} in {:.3} s ({} worker ranks x {} local processes, {tasks} tasks)",
        pooled.as_secs_f64(),
        pool.workers(),
        pool.local_processes()
    );
    println!(
        "speed-up: {:.2}x",
        serial.as_secs_f64() / pooled.as_secs_f64()
    );
    assert!((mpi_pi - std::f64::consts::PI).abs() < 0.01);
    Ok(())
}
