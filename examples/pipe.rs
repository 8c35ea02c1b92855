//! Seed "Pipes": a child sends a dictionary through one end of a `Pipe`.
//!
//! ```sh
//! cargo run --example pipe
//! ```

use std::collections::BTreeMap;

use mproc::{Connection, Process, pipe};

fn f(conn: Connection) {
    let prices = BTreeMap::from([("Apple".to_string(), 0.70), ("Orange".to_string(), 1.20)]);
    conn.send(prices).expect("send");
    // Dropping the connection closes it (the seed's `pipe.close()`).
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (left, right) = pipe(true)?;
    let mut p = Process::new(f, right).start()?;
    let fruits: BTreeMap<String, f64> = left.recv()?;
    println!("{fruits:?}");
    p.join()?;
    Ok(())
}
