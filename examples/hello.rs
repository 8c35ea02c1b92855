//! Seed "Spawn a process": a child greets and reports its pids.
//!
//! ```sh
//! cargo run --example hello
//! ```

use mproc::{Process, current_process, parent_process};

fn hello(name: String) {
    println!("Hello {name}");
    println!("My PID is {}", current_process().pid());
    if let Some(p) = parent_process() {
        println!("My parent's PID is {}", p.pid());
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut p = Process::new(hello, "Alice".to_string()).start()?;
    p.join()?;
    println!("Spawned a new process from PID {}", std::process::id());
    Ok(())
}
