//! `Pool::imap` is a plain iterator that knows its length when the input's is
//! known, so an ecosystem progress bar wraps it: indicatif's
//! `ProgressIterator`. Its results stream steadily from the first, so the bar
//! moves at the pace of the work.
//!
//! ```sh
//! cargo run --example progress
//! ```

use std::time::Duration;

use indicatif::{ProgressIterator, ProgressStyle};
use mproc_pool::Pool;

fn work(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = 500u64;
    let pool = Pool::new(2)?;
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")?;
    let mut sum = 0;
    for r in pool.imap(work, 0..n)?.progress_with_style(style) {
        sum += r?;
    }
    println!("sum of squares below {n}: {sum}");
    Ok(())
}
