//! Seed `shared-mem.py`: a child squares a shared `Array` in place.
//!
//! ```sh
//! cargo run --example shared_array
//! ```
//! Prints `[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]`.

use mproc::{Array, Process};

fn squared(a: Array<i32>) {
    // The closure runs with the array's lock held: no other process sees a
    // half-squared array.
    a.with_lock(|xs| {
        for x in xs.iter_mut() {
            *x *= *x;
        }
    });
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let numbers = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
    let mut p = Process::new(squared, numbers.try_clone()?).start()?;
    p.join()?;
    println!("{:?}", numbers.to_vec());
    Ok(())
}
