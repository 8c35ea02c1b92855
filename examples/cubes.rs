//! Seed `cubes_parallel*.py`: cubes with `apply_async` and with `map`, the
//! number of processes taken from the scheduler's allocation.
//!
//! ```sh
//! SLURM_CPUS_PER_TASK=2 cargo run --example cubes
//! ```
//! `cpu_count()` already honours `SLURM_CPUS_PER_TASK` (and PBS `NCPUS`,
//! cgroup quotas, the affinity mask), so no environment parsing is needed.

use mproc::process::cpu_count_source;
use mproc_pool::{Pool, cpu_count};

fn cube(x: i64) -> i64 {
    x.pow(3)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ncpus = cpu_count();
    println!("processes: {ncpus} ({:?})", cpu_count_source());
    let pool = Pool::new(ncpus)?;
    let data = [1, 2, 3, 4, 5, 6];

    // "Using a loop": one apply_async per item, then get each.
    let results = data
        .iter()
        .map(|&x| pool.apply_async(cube, x))
        .collect::<Result<Vec<_>, _>>()?;
    let cubes = results
        .into_iter()
        .map(|r| r.get())
        .collect::<Result<Vec<_>, _>>()?;
    println!("{cubes:?}");

    // "Using a map".
    println!("{:?}", pool.map(cube, data)?);
    Ok(())
}
