//! Seed `multi_process.py`: a list of processes over a split range.
//!
//! ```sh
//! cargo run --release --example multi_process [-- PROCESSES [OP_COUNT]]
//! ```
//! The seed asked for the number of processes on standard input; here it is
//! the first argument (default: `cpu_count()`). It first runs the whole
//! range in this process (the very function the children run,
//! `one_process`'s), then split
//! over the processes, and prints the speed-up. Which count is quickest?

use std::time::Instant;

use mproc::{Process, cpu_count};

#[path = "one_process.rs"]
#[allow(dead_code, unreachable_pub)]
mod one_process;

use one_process::{lots_of_math, serial_baseline};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let cpus = cpu_count() as u64;
    let proc_count: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cpus)
        .max(1);
    let op_count: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_500_000_000);
    let serial = serial_baseline(op_count);

    let tt = Instant::now();
    let op_proc = op_count / proc_count;
    let mut procs = Vec::new();
    for i in 0..proc_count {
        // The last process also takes the remainder of the division.
        let end = if i + 1 == proc_count {
            op_count
        } else {
            (i + 1) * op_proc
        };
        procs.push(Process::new(lots_of_math, (i * op_proc, end)).start()?);
    }
    for p in &mut procs {
        p.join()?;
    }
    let parallel = tt.elapsed();
    println!(
        "{proc_count} processes : {:.3} s, {:.2}x faster (at most {}x: {proc_count} processes, {cpus} CPUs)",
        parallel.as_secs_f64(),
        serial.as_secs_f64() / parallel.as_secs_f64(),
        proc_count.min(cpus)
    );
    Ok(())
}
