//! Seed `map_pool.py` beyond one machine: `map(lots_of_math, range(40M))` on
//! the worker ranks of an MPI job, with the speed-up over the serial loop.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_map_pool
//! . scripts/mpi-env.sh    # only on a root, loopback-only sandbox like CI's
//! mpirun -n 3 target/release/examples/mpi_map_pool [OP_COUNT] [LOCAL_PROCESSES]
//! ```
//!
//! The serial baseline calls the very same compiled `lots_of_math` the
//! workers call (`#[inline(never)]`, so neither side gets its own inlined
//! copy), and the pool's time includes its start-up (MPI_Init and the
//! workers' handshake).

use std::hint::black_box;
use std::time::Instant;

use mproc::mpi::MpiPool;

#[inline(never)]
fn lots_of_math(n: u64) {
    black_box(n * n);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let op_count: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40_000_000);
    let local: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);

    // Every rank runs up to here; ranks >= 1 serve inside `build` and exit.
    let t0 = Instant::now();
    let pool = MpiPool::builder().local_processes(local).build()?;
    let startup = t0.elapsed();

    let t0 = Instant::now();
    for n in 0..op_count {
        lots_of_math(n);
    }
    let serial = t0.elapsed();

    let t0 = Instant::now();
    let out = pool.map(lots_of_math, 0..op_count)?;
    let mapped = t0.elapsed();
    assert_eq!(out.len() as u64, op_count);

    let with_startup = startup + mapped;
    println!("lots_of_math over 0..{op_count}");
    println!("serial loop      : {:.3} s", serial.as_secs_f64());
    println!(
        "MpiPool.map      : {:.3} s on {} worker ranks x {} local processes (+ {:.3} s start-up)",
        mapped.as_secs_f64(),
        pool.workers(),
        pool.local_processes(),
        startup.as_secs_f64()
    );
    println!(
        "speed-up         : {:.2}x (map alone), {:.2}x (start-up included)",
        serial.as_secs_f64() / mapped.as_secs_f64(),
        serial.as_secs_f64() / with_startup.as_secs_f64()
    );
    pool.close();
    pool.join()?;
    Ok(())
}
