//! Seed "python-scatter / learn the basics": five calls of an expensive `f`
//! (a sleep) on a Pool of three: about two rounds instead of five.
//!
//! ```sh
//! cargo run --example slow_tasks [-- SECONDS_PER_TASK]
//! ```
//! The seed used 10 s per task (50 s serially, 20 s on the pool); the
//! default here is 0.2 s.

use std::time::{Duration, Instant};

use mproc_pool::Pool;

fn f((x, secs): (u64, f64)) -> u64 {
    std::thread::sleep(Duration::from_secs_f64(secs));
    x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.2);
    let input_values: Vec<(u64, f64)> = (0..5).map(|x| (x, secs)).collect();

    let t0 = Instant::now();
    let res: Vec<u64> = input_values.iter().map(|&v| f(v)).collect();
    println!("serial : {res:?} in {:.2} s", t0.elapsed().as_secs_f64());

    let pool = Pool::new(3)?;
    let t0 = Instant::now();
    let res = pool.map(f, input_values)?;
    println!(
        "Pool(3): {res:?} in {:.2} s (5 tasks on 3 workers: 2 rounds)",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
