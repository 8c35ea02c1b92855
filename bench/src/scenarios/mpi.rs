//! Benchmark scenarios of mproc-mpi (feature `mpi`). Each runs an MPI job of
//! this very binary (`mpirun -n N mproc-bench --mpi-job NAME`, with the Open
//! MPI settings of `scripts/mpi-env.sh`); rank 0 of the job prints its
//! figures as one `MPIJOB {json}` line.

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use mproc_mpi::MpiPool;
use mproc_pool::Pool;

use crate::harness::{BenchResult, Ctx, Measurement, Scenario, median, timed};

/// The scenarios of this crate.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "mpi_apply_rtt",
            about: "MpiPool apply round trip (1 worker rank) beside the raw rsmpi 8-byte round trip of the same job, µs",
            run: mpi_apply_rtt,
        },
        Scenario {
            name: "mpi_map_tiny",
            about: "MpiPool.map squaring 1M u64 from a Vec over 2 worker ranks, no chunk size, M items/s, median of 5 maps after a first (local Pool(2) beside it, measured alike)",
            run: mpi_map_tiny,
        },
        Scenario {
            name: "mpi_map_seed",
            about: "seed map_pool on 2 worker ranks: lots_of_math over 0..40M vs the same compiled loop serially, speed-up (start-up included)",
            run: mpi_map_seed,
        },
        Scenario {
            name: "mpi_hybrid",
            about: "the same map on 1 worker rank x 2 local processes vs 2 worker ranks x 1, M items/s each",
            run: mpi_hybrid,
        },
    ]
}

/// Runs `mpirun -n ranks <this binary> --mpi-job job` and returns rank 0's
/// figures.
fn launch(job: &str, ranks: usize) -> BenchResult<serde_json::Value> {
    let exe = std::env::current_exe()?;
    let env = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/mpi-env.sh");
    let script = format!(
        ". {env} && exec timeout -k 5 300 mpirun -n {ranks} {} --mpi-job {job}",
        exe.display()
    );
    let out = Command::new("bash").arg("-c").arg(&script).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("MPIJOB "));
    match (out.status.success(), line) {
        (true, Some(l)) => Ok(serde_json::from_str(l)?),
        _ => Err(format!(
            "{script}: {}\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into()),
    }
}

fn num(v: &serde_json::Value, k: &str) -> BenchResult<f64> {
    v[k].as_f64()
        .ok_or_else(|| format!("the MPI job reported no {k}: {v}").into())
}

fn mpi_apply_rtt(_: &Ctx) -> BenchResult<Vec<Measurement>> {
    let v = launch("apply_rtt", 2)?;
    let (apply, raw) = (num(&v, "apply_us")?, num(&v, "raw_us")?);
    Ok(vec![Measurement::lower(apply, "µs").note(format!(
        "raw rsmpi 8-byte round trip in the same job: {raw:.2} µs ({:.1}x the raw floor)",
        apply / raw
    ))])
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// Items of a tiny map.
const TINY_N: u64 = 1_000_000;

/// Squares `0..TINY_N` (from a Vec) with `map`: once (the pool learns the
/// chunk size), then five more times, each timed. Returns the first map's
/// M items/s and the five others' (their median is the figure: mpi4py's
/// counterpart reports the best of its three chunk sizes after a warm-up
/// map). Checks every result.
fn tiny_maps(
    mut map: impl FnMut(Vec<u64>) -> BenchResult<Vec<u64>>,
) -> BenchResult<(f64, Vec<f64>)> {
    let input: Vec<u64> = (0..TINY_N).collect();
    let mut rates = Vec::new();
    for _ in 0..6 {
        let again = input.clone();
        let (out, t) = timed(|| map(again));
        let out = out?;
        if out.len() != TINY_N as usize || out[12345] != 12345 * 12345 {
            return Err("wrong map result".into());
        }
        rates.push(TINY_N as f64 / t.as_secs_f64() / 1e6);
    }
    let first = rates.remove(0);
    Ok((first, rates))
}

fn mpi_map_tiny(_: &Ctx) -> BenchResult<Vec<Measurement>> {
    // Measured as the MPI job measures its maps.
    let local = {
        let pool = Pool::new(2)?;
        let (_, rates) = tiny_maps(|input| Ok(pool.map(square, input)?))?;
        median(rates)
    };
    let v = launch("map_tiny", 3)?;
    let mips = num(&v, "mitems_s")?;
    Ok(vec![Measurement::higher(mips, "M items/s").note(format!(
        "median of 5 maps after the first; the first (learning the chunk size) {:.1} M items/s, the next {:.1}; local Pool(2) in the same run {local:.1} M items/s ({:.2}x of it)",
        num(&v, "first_mitems_s")?,
        num(&v, "second_mitems_s")?,
        mips / local
    ))])
}

#[inline(never)]
fn lots_of_math(n: u64) {
    black_box(n * n);
}

fn mpi_map_seed(_: &Ctx) -> BenchResult<Vec<Measurement>> {
    let v = launch("map_seed", 3)?;
    let (serial, startup, map, close) = (
        num(&v, "serial_s")?,
        num(&v, "startup_s")?,
        num(&v, "map_s")?,
        num(&v, "close_s")?,
    );
    Ok(vec![Measurement::higher(serial / (startup + map + close), "x").note(format!(
        "serial {:.1} ms; pool start-up (MPI_Init + handshake) {:.1} ms + map {:.1} ms + close/join (MPI_Finalize) {:.1} ms; map alone {:.2}x",
        serial * 1e3,
        startup * 1e3,
        map * 1e3,
        close * 1e3,
        serial / map
    ))])
}

fn mpi_hybrid(_: &Ctx) -> BenchResult<Vec<Measurement>> {
    let hybrid = launch("hybrid_1x2", 2)?;
    let ranks = launch("hybrid_2x1", 3)?;
    let (h, r) = (num(&hybrid, "mitems_s")?, num(&ranks, "mitems_s")?);
    Ok(vec![
        Measurement::higher(h, "M items/s")
            .metric("1 rank x 2 local")
            .note(format!(
                "{:.2}x the 2-rank figure; rank 0 used {:.0}% of a core while waiting",
                h / r,
                num(&hybrid, "rank0_cpu")? * 100.0
            )),
        Measurement::higher(r, "M items/s")
            .metric("2 ranks x 1")
            .note(format!(
                "rank 0 used {:.0}% of a core while waiting (the workers must get both cores)",
                num(&ranks, "rank0_cpu")? * 100.0
            )),
    ])
}

/// The scatter-like work of the hybrid scenario: about a microsecond.
#[inline(never)]
fn field(k: u64) -> f64 {
    let mut acc = 0.0f64;
    for s in 0..32u64 {
        let t = (k.wrapping_mul(31).wrapping_add(s)) as f64 * 1e-3;
        acc += t.sin() * t.cos();
    }
    acc
}

/// CPU time of this process (all its threads) so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// If this process was started as `--mpi-job NAME`, runs that job (every
/// rank does; ranks ≥ 1 serve inside `MpiPool` and exit there) and returns
/// its exit code.
pub(crate) fn run_job_if_asked() -> Option<u8> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("--mpi-job") {
        return None;
    }
    let job = args.next().unwrap_or_default();
    match run_job(&job) {
        Ok(json) => {
            println!("MPIJOB {json}");
            Some(0)
        }
        Err(e) => {
            eprintln!("mproc-bench --mpi-job {job}: {e}");
            Some(1)
        }
    }
}

fn run_job(job: &str) -> BenchResult<String> {
    let t_start = Instant::now();
    let local = if job == "hybrid_1x2" { 2 } else { 1 };
    let pool = MpiPool::builder().local_processes(local).build()?;
    let startup = t_start.elapsed();
    let json = match job {
        "apply_rtt" => {
            for i in 0..2000u64 {
                pool.apply(square, i)?;
            }
            let mut per = Vec::new();
            for _ in 0..5 {
                let t0 = Instant::now();
                for i in 0..2000u64 {
                    black_box(pool.apply(square, i)?);
                }
                per.push(t0.elapsed().as_secs_f64() * 1e6 / 2000.0);
            }
            let raw: Vec<f64> = (0..5)
                .map(|_| {
                    pool.raw_round_trip(20_000)
                        .unwrap_or(Duration::ZERO)
                        .as_secs_f64()
                        * 1e6
                })
                .collect();
            format!(
                r#"{{"apply_us": {}, "raw_us": {}}}"#,
                median(per),
                median(raw)
            )
        }
        "map_tiny" => {
            let (first, rates) = tiny_maps(|input| Ok(pool.map(square, input)?))?;
            format!(
                r#"{{"mitems_s": {}, "first_mitems_s": {}, "second_mitems_s": {}}}"#,
                median(rates.clone()),
                first,
                rates[0]
            )
        }
        "map_seed" => {
            const N: u64 = 40_000_000;
            let t0 = Instant::now();
            for n in 0..N {
                lots_of_math(n);
            }
            let serial = t0.elapsed();
            let t0 = Instant::now();
            let out = pool.map(lots_of_math, 0..N)?;
            let map = t0.elapsed();
            let t0 = Instant::now();
            pool.close();
            pool.join()?;
            let close = t0.elapsed();
            if out.len() != N as usize {
                return Err("wrong map result".into());
            }
            format!(
                r#"{{"serial_s": {}, "startup_s": {}, "map_s": {}, "close_s": {}}}"#,
                serial.as_secs_f64(),
                startup.as_secs_f64(),
                map.as_secs_f64(),
                close.as_secs_f64()
            )
        }
        "hybrid_1x2" | "hybrid_2x1" => {
            const N: u64 = 2_000_000;
            let _ = pool.map(field, 0..10_000u64)?;
            let cpu0 = cpu_time();
            let (out, t) = timed(|| pool.map(field, 0..N));
            let cpu = cpu_time() - cpu0;
            let out = out?;
            if (out[777] - field(777)).abs() > 1e-12 {
                return Err("wrong map result".into());
            }
            format!(
                r#"{{"mitems_s": {}, "rank0_cpu": {}}}"#,
                N as f64 / t.as_secs_f64() / 1e6,
                cpu.as_secs_f64() / t.as_secs_f64()
            )
        }
        other => return Err(format!("unknown MPI job {other:?}").into()),
    };
    Ok(json)
}
