//! Seed "python-scatter" beyond one machine: the scattered field over the
//! grid's flat indices, computed on the worker ranks of an MPI job, checked
//! against the serial list.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_scatter
//! mpirun -n 3 target/release/examples/mpi_scatter [NX]
//! ```

use std::time::Instant;

use mproc::mpi::MpiPool;

#[path = "scatter.rs"]
#[allow(dead_code, unreachable_pub)]
mod scatter;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let nx1: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let pool = MpiPool::new()?;

    let t0 = Instant::now();
    let serial: Vec<_> = scatter::nodes(nx1).map(scatter::compute_field).collect();
    let t_serial = t0.elapsed();

    let t0 = Instant::now();
    let res = pool.map(scatter::compute_field, scatter::nodes(nx1))?;
    let t_pool = t0.elapsed();
    assert_eq!(res, serial);

    println!(
        "grid {nx1}x{nx1}; max |scattered field| = {:.4}",
        scatter::peak(&res)
    );
    println!(
        "serial: {:.3} s, MpiPool ({} ranks x {} local processes): {:.3} s, speed-up {:.2}x",
        t_serial.as_secs_f64(),
        pool.workers(),
        pool.local_processes(),
        t_pool.as_secs_f64(),
        t_serial.as_secs_f64() / t_pool.as_secs_f64()
    );
    Ok(())
}
