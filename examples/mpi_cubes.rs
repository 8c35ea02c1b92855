//! Seed `cubes_parallel*.py` (the SLURM lesson) beyond one node: cubes with
//! `apply_async` and with `map`, sized from the allocation. Under SLURM,
//! one rank per node and one local process per allocated CPU:
//!
//! ```sh
//! #SBATCH --nodes=4
//! #SBATCH --ntasks-per-node=1
//! #SBATCH --cpus-per-task=32
//! srun target/release/examples/mpi_cubes
//! ```
//!
//! Locally: `mpirun -n 3 target/release/examples/mpi_cubes`. Each worker
//! rank's local pool has `cpu_count()` processes, which honours
//! `SLURM_CPUS_PER_TASK` (and PBS `NCPUS`, cgroup quotas, the rank's CPU
//! binding).

use std::time::Instant;

use mproc::mpi::MpiPool;
use mproc::process::cpu_count_source;

fn cube(x: i64) -> i64 {
    x.pow(3)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let t0 = Instant::now();
    let pool = MpiPool::new()?;
    println!(
        "{} worker ranks x {} local processes (rank 0's count from {:?}), started in {:.3} s",
        pool.workers(),
        pool.local_processes(),
        cpu_count_source(),
        t0.elapsed().as_secs_f64()
    );
    let data = [1, 2, 3, 4, 5, 6];

    // "Using a loop": one apply_async per item, then get each.
    let t0 = Instant::now();
    let results = data
        .iter()
        .map(|&x| pool.apply_async(cube, x))
        .collect::<Result<Vec<_>, _>>()?;
    let cubes = results
        .into_iter()
        .map(|r| r.get())
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "{cubes:?} (apply_async, {:.1} µs)",
        t0.elapsed().as_secs_f64() * 1e6
    );

    // "Using a map".
    let t0 = Instant::now();
    let mapped = pool.map(cube, data)?;
    println!(
        "{mapped:?} (map, {:.1} µs)",
        t0.elapsed().as_secs_f64() * 1e6
    );
    assert_eq!(cubes, [1, 8, 27, 64, 125, 216]);
    assert_eq!(mapped, cubes);
    Ok(())
}
