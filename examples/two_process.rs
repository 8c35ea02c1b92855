//! Seed `two_process.py`: the same math split over two processes.
//!
//! ```sh
//! cargo run --release --example two_process [-- OP_COUNT]
//! ```
//! Is it twice as fast? (On a quiet machine with two free CPUs: nearly.)

use std::hint::black_box;
use std::time::Instant;

use mproc::Process;

fn lots_of_math((n1, n2): (u64, u64)) {
    for n in n1..n2 {
        black_box(n * n);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let op_count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(40_000_000);
    let tt = Instant::now();
    // CHANGE 2 - assign processes; CHANGE 3 - start them.
    let half = op_count / 2;
    let mut t1 = Process::new(lots_of_math, (0, half)).start()?;
    let mut t2 = Process::new(lots_of_math, (half, op_count)).start()?;
    // CHANGE 4 - wait until both finish.
    t1.join()?;
    t2.join()?;
    println!(
        "done in : {:.3} s ({op_count} operations, 2 processes)",
        tt.elapsed().as_secs_f64()
    );
    Ok(())
}
