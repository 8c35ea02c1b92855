//! Seed `two_process.py`: the same math split over two processes.
//!
//! ```sh
//! cargo run --release --example two_process [-- OP_COUNT]
//! ```
//! Is it twice as fast? It first runs the whole range in this process (the
//! very function the children run), then half in each of two processes,
//! and prints the speed-up. On a quiet machine with two free CPUs: nearly 2.

use std::hint::black_box;
use std::time::Instant;

use mproc::{Process, cpu_count};

/// The seed's work. Never inlined, so the serial run and the children run
/// one and the same compiled loop: the speed-up then measures the
/// processes, not two copies of the loop the compiler placed differently.
#[inline(never)]
fn lots_of_math((n1, n2): (u64, u64)) {
    for n in n1..n2 {
        black_box(n * n);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let op_count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_500_000_000);
    let tt = Instant::now();
    lots_of_math((0, op_count));
    let serial = tt.elapsed();
    println!(
        "1 process   : {:.3} s ({op_count} operations)",
        serial.as_secs_f64()
    );

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
