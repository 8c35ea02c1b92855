//! Seed "Synchronisation": ten processes print one line each, one at a
//! time, under a shared `Lock`.
//!
//! ```sh
//! cargo run --example lock
//! ```

use std::io::Write;

use mproc::{Lock, Process};

fn hello((lock, id): (Lock, u32)) {
    let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Hello world! My ID is {id}");
    let _ = out.flush();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lock = Lock::new()?;
    let mut procs = Vec::new();
    for i in 0..10 {
        procs.push(Process::new(hello, (lock.clone(), i)).start()?);
    }
    for p in &mut procs {
        p.join()?;
    }
    Ok(())
}
