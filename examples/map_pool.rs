//! Seed `map_pool.py`: `Pool.map(lots_of_math, range(op_count))`, and the
//! seed's question: "Why was it slower?"
//!
//! ```sh
//! cargo run --release --example map_pool [-- PROCESSES [OP_COUNT]]
//! ```

use std::hint::black_box;
use std::time::Instant;

use mproc_pool::{Pool, cpu_count};

/// The seed's work. Never inlined, so the serial loop and the workers call
/// one and the same compiled function: the comparison then measures the
/// pool, not two copies of the code the compiler placed differently.
#[inline(never)]
fn lots_of_math(n: u64) {
    black_box(n * n);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let proc_count: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(2).max(1);
    let op_count: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400_000_000);

    // Called through a pointer the optimiser cannot see through, as the
    // workers call it: no inlined copy of its body in this loop.
    let task: fn(u64) = black_box(lots_of_math);
    let tt = Instant::now();
    for n in 0..op_count {
        task(n);
    }
    let serial = tt.elapsed();
    println!("serial loop     : {:.3} s", serial.as_secs_f64());

    let tt = Instant::now();
    let p = Pool::new(proc_count)?;
    p.map(lots_of_math, 0..op_count)?;
    p.close();
    p.join()?;
    let pooled = tt.elapsed();
    println!(
        "Pool({proc_count}).map     : {:.3} s (pool start-up included)",
        pooled.as_secs_f64()
    );
    println!();
    println!("Why was it slower? In CPython, Pool.map turns range(40M) into a list, cuts it into");
    println!(
        "chunks of len/(4*processes), pickles every number to the workers and every None back,"
    );
    println!(
        "so shipping dwarfs the one multiplication per item: 2 to 2.5 times slower than the loop."
    );
    if pooled < serial {
        println!(
            "With mproc it is {:.2}x faster (at most {}x: {proc_count} workers, {} CPUs): the range",
            serial.as_secs_f64() / pooled.as_secs_f64(),
            proc_count.min(cpu_count()),
            cpu_count()
        );
        println!("travels as (start, count) pairs, each worker");
        println!(
            "takes half and an idle one takes over part of a busy one's rest, and `()` results cost"
        );
        println!("nothing to return.");
    } else {
        println!(
            "Here mproc was not faster: the run is so short that starting processes dominates, or"
        );
        println!("other programs are using the CPUs. Try a larger OP_COUNT.");
    }
    Ok(())
}
