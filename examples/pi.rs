//! Seed `computepi_multiprocs.py` (Artemis course): a Monte-Carlo estimate
//! of pi, serially and with a Pool, timed. Which was faster, and by how much?
//!
//! ```sh
//! cargo run --release --example pi [-- SAMPLES]
//! ```

use std::time::Instant;

use mproc_pool::{Pool, cpu_count};

/// Points of `n` random samples (seeded) falling inside the quarter circle.
/// Never inlined: the serial run and the workers run this one compiled
/// copy, so the speed-up measures the pool and nothing else.
#[inline(never)]
pub fn hits((seed, n): (u64, u64)) -> u64 {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .filter(|_| {
            let (x, y) = (next(), next());
            x * x + y * y <= 1.0
        })
        .count() as u64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let samples: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000_000);
    // Called through a pointer the optimiser cannot see through, as the
    // workers call it.
    let task: fn((u64, u64)) -> u64 = std::hint::black_box(hits);
    let t0 = Instant::now();
    let pi = 4.0 * task((1, samples)) as f64 / samples as f64;
    let serial = t0.elapsed();
    println!("serial : pi ~ {pi:.6} in {:.3} s", serial.as_secs_f64());

    let procs = cpu_count();
    let pool = Pool::new(procs)?;
    let tasks = 8 * procs as u64;
    let t0 = Instant::now();
    let total: u64 = pool
        .map(
            hits,
            (0..tasks)
                .map(|i| (i + 2, samples / tasks))
                .collect::<Vec<_>>(),
        )?
        .iter()
        .sum();
    let pi = 4.0 * total as f64 / (samples / tasks * tasks) as f64;
    let pooled = t0.elapsed();
    println!(
        "Pool({procs}): pi ~ {pi:.6} in {:.3} s",
        pooled.as_secs_f64()
    );
    println!(
        "speed-up: {:.2}x with {procs} processes (this machine has {} CPUs)",
        serial.as_secs_f64() / pooled.as_secs_f64(),
        cpu_count()
    );
    Ok(())
}
