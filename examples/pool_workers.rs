//! Seed "Pool of workers": blocking `apply`, `apply_async` with
//! `get(timeout)`, `map`, and `map_async` polled with `ready()`.
//!
//! ```sh
//! cargo run --example pool_workers
//! ```

use std::time::Duration;

use mproc_pool::Pool;

fn f(x: i64) -> i64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(8)?;
    // Blocking execution.
    println!("{}", pool.apply(f, 4)?);
    // Non-blocking execution "in the background".
    let result = pool.apply_async(f, 12)?;
    println!("{}", result.get_timeout(Duration::from_secs(1))?);
    // x**2 in parallel for x in 0..9.
    println!("{:?}", pool.map(f, 0..10)?);
    // Non-blocking alternative.
    let result = pool.map_async(f, 0..10)?;
    while !result.ready() {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("{:?}", result.get()?);
    Ok(())
}
