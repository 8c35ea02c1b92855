//! A tokio program that drives a pipeline of processes through async queues:
//!
//! ```text
//! parent --q_in--> square (1 process) --q_mid--> add_one (2 processes) --q_out--> parent
//! ```
//!
//! The parent feeds `q_in` (bounded, so `put_async` waits for room) in one
//! task while another task collects from `q_out` with `get_async`; the
//! `add_one` stage runs its own current-thread runtime. No thread waits on a
//! queue: tokio's reactor watches the queues' doorbells. The stages are
//! joined with `join_async`, and the result is checked.
//!
//! ```sh
//! cargo run -p mproc-examples --features tokio --example async_pipeline
//! ```

use mproc::{Process, Queue};

/// Items per run.
const N: u64 = 10_000;
/// Workers in the second stage.
const ADDERS: usize = 2;

/// Stage 1 (blocking): squares every item; `None` ends the stream, and is
/// passed on once per worker of the next stage.
fn square((inq, outq): (Queue<Option<u64>>, Queue<Option<u64>>)) -> u64 {
    let mut n = 0;
    while let Some(x) = inq.get().expect("get") {
        outq.put(Some(x * x)).expect("put");
        n += 1;
    }
    for _ in 0..ADDERS {
        outq.put(None).expect("put");
    }
    n
}

/// Stage 2 (async, in a runtime of its own): adds one.
fn add_one((inq, outq): (Queue<Option<u64>>, Queue<Option<u64>>)) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut n = 0;
        while let Some(x) = inq.get_async().await.expect("get") {
            outq.put_async(Some(x + 1)).await.expect("put");
            n += 1;
        }
        outq.put_async(None).await.expect("put");
        n
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q_in: Queue<Option<u64>> = Queue::new(64)?;
    let q_mid: Queue<Option<u64>> = Queue::new(0)?;
    let q_out: Queue<Option<u64>> = Queue::new(0)?;

    let mut squarer = Process::new(square, (q_in.clone(), q_mid.clone())).start()?;
    let mut adders = (0..ADDERS)
        .map(|_| Process::new(add_one, (q_mid.clone(), q_out.clone())).start())
        .collect::<Result<Vec<_>, _>>()?;

    let feeder = tokio::spawn({
        let q_in = q_in.clone();
        async move {
            for i in 0..N {
                q_in.put_async(Some(i)).await.map_err(|e| e.to_string())?;
            }
            q_in.put_async(None).await.map_err(|e| e.to_string())
        }
    });
    let collector = tokio::spawn({
        let q_out = q_out.clone();
        async move {
            let (mut sum, mut count, mut ended) = (0u64, 0u64, 0);
            while ended < ADDERS {
                match q_out.get_async().await.map_err(|e| e.to_string())? {
                    Some(v) => {
                        sum += v;
                        count += 1;
                    }
                    None => ended += 1,
                }
            }
            Ok::<_, String>((sum, count))
        }
    });

    feeder.await??;
    let (sum, count) = collector.await??;
    let squared = squarer.join_async().await?;
    let mut added = Vec::new();
    for a in &mut adders {
        added.push(a.join_async().await?);
    }

    let expected: u64 = (0..N).map(|i| i * i + 1).sum();
    println!(
        "pipeline: {N} items through {} processes (square: {squared}, add_one: {added:?})",
        1 + ADDERS
    );
    println!("received {count} results, sum = {sum} (expected {expected})");
    if count != N || sum != expected || added.iter().sum::<u64>() != N {
        return Err("the pipeline lost or altered items".into());
    }
    println!("ok");
    Ok(())
}
