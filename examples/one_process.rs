//! Seed `one_process.py`: a lot of math in one process, timed.
//!
//! ```sh
//! cargo run --release --example one_process            # 2 billion operations
//! cargo run --release --example one_process -- 400000000
//! ```
//! How long did it take? Compare with `two_process` and `multi_process`,
//! which split the same work over processes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mproc::cpu_count;

/// The seed's `lots_of_math(N1, N2)`: `black_box` keeps the compiler from
/// deleting the squares nobody reads. Never inlined, so that a serial run
/// and the child processes of `two_process` and `multi_process` (which take
/// it from here) run one and the same compiled loop: their speed-up then
/// measures the processes, not two copies of the loop the compiler placed
/// differently.
#[inline(never)]
pub fn lots_of_math((n1, n2): (u64, u64)) {
    for n in n1..n2 {
        black_box(n * n);
    }
}

/// The baseline of `two_process` and `multi_process`: the whole range in
/// this process, timed and printed.
#[allow(dead_code)] // not used by this example itself
pub fn serial_baseline(op_count: u64) -> Duration {
    let tt = Instant::now();
    lots_of_math((0, op_count));
    let serial = tt.elapsed();
    println!(
        "1 process   : {:.3} s ({op_count} operations)",
        serial.as_secs_f64()
    );
    serial
}

fn main() {
    // Large enough to take about a second: a multiplication costs well
    // under a nanosecond, so the seed's 40 million finish in ~10 ms.
    let op_count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000_000);
    let tt = Instant::now();
    lots_of_math((0, op_count));
    println!(
        "done in : {:.3} s ({op_count} operations, 1 process; this machine has {} CPUs)",
        tt.elapsed().as_secs_f64(),
        cpu_count()
    );
}
