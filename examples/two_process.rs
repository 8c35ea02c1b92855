//! Seed `two_process.py`: the same math split over two processes.
//!
//! ```sh
//! cargo run --release --example two_process [-- OP_COUNT]
//! ```
//! Is it twice as fast? It first runs the whole range in this process (the
//! very function the children run, `one_process`'s), then half in each of two processes,
//! and prints the speed-up. On a quiet machine with two free CPUs: nearly 2.

use std::time::Instant;

use mproc::{Process, cpu_count};

#[path = "one_process.rs"]
#[allow(dead_code, unreachable_pub)]
mod one_process;

use one_process::{lots_of_math, serial_baseline};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let op_count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_500_000_000);
    let serial = serial_baseline(op_count);

    let tt = Instant::now();
    // CHANGE 2 - assign processes; CHANGE 3 - start them.
    let half = op_count / 2;
    let mut t1 = Process::new(lots_of_math, (0, half)).start()?;
    let mut t2 = Process::new(lots_of_math, (half, op_count)).start()?;
    // CHANGE 4 - wait until both finish.
    t1.join()?;
    t2.join()?;
    let parallel = tt.elapsed();
    println!(
        "2 processes : {:.3} s, {:.2}x faster (at most 2x; this machine has {} CPUs)",
        parallel.as_secs_f64(),
        serial.as_secs_f64() / parallel.as_secs_f64(),
        cpu_count()
    );
    Ok(())
}
