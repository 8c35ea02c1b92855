//! Seed `multi_process.py`: a list of processes over a split range.
//!
//! ```sh
//! cargo run --release --example multi_process [-- PROCESSES [OP_COUNT]]
//! ```
//! The seed asked for the number of processes on standard input; here it is
//! the first argument (default: `cpu_count()`). Which count is quickest?

use std::hint::black_box;
use std::time::Instant;

use mproc::{Process, cpu_count};

fn lots_of_math((n1, n2): (u64, u64)) {
    for n in n1..n2 {
        black_box(n * n);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let proc_count: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cpu_count() as u64)
        .max(1);
    let op_count: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40_000_000);
    let tt = Instant::now();
    let op_proc = op_count / proc_count;
    let mut procs = Vec::new();
    for i in 0..proc_count {
        procs.push(Process::new(lots_of_math, (i * op_proc, (i + 1) * op_proc)).start()?);
    }
    for p in &mut procs {
        p.join()?;
    }
    println!(
        "done in : {:.3} s ({op_count} operations, {proc_count} processes)",
        tt.elapsed().as_secs_f64()
    );
    Ok(())
}
