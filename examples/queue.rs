//! Seed "Queues": ten numbers on a `Queue`, ten processes each take one and
//! print its square.
//!
//! ```sh
//! cargo run --example queue
//! ```

use mproc::{Process, Queue};

fn f(q: Queue<u64>) {
    let x = q.get().expect("get");
    println!("{}", x * x);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q: Queue<u64> = Queue::new(0)?;
    for i in 0..10 {
        q.put(i).map_err(|_| "put failed")?;
    }
    let mut procs = Vec::new();
    for _ in 0..10 {
        procs.push(Process::new(f, q.clone()).start()?);
    }
    for p in &mut procs {
        p.join()?;
    }
    Ok(())
}
