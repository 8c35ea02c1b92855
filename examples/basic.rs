//! Seed `basic.py` (Artemis course): `addit` serially, then over a Pool(2).
//!
//! ```sh
//! cargo run --example basic
//! ```
//! Prints `5` and `[2, 3, 4]`.

use mproc_pool::Pool;

fn addit(x: i64) -> i64 {
    x + 1
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{}", addit(4));
    let p = Pool::new(2)?;
    println!("{:?}", p.map(addit, vec![1, 2, 3])?);
    Ok(())
}
