//! A scheduler of your own, built from mproc's pieces: worker processes
//! started with the Process API, jobs handed out through a `LeaseQueue`,
//! results coming back through a `Queue`, and a parent whose whole loop is
//! one `wait` over the result queue and every worker's process handle.
//!
//! * A worker leases a job, reports that it started it, computes `k²`,
//!   reports the result and only then acks the lease.
//! * The first delivery of job [`STUCK`] hangs. The parent, seeing its
//!   worker start it, kills that worker (SIGKILL) while it holds the lease.
//! * The killed worker's handle becomes ready in the same `wait`: the
//!   parent restarts it, and the lease makes its job go to another worker
//!   (delivery 2). Delivery is at least once, so results are counted once
//!   per job.
//! * The total, the sum of `k²` for `k < JOBS`, is checked against the
//!   closed form.
//!
//! With the `tracing` feature, a `tracing-subscriber` in every process
//! prints (on stderr) what mproc did on its own: the lease taken back from
//! the dead worker, and the job redelivered.
//!
//! ```sh
//! cargo run -p mproc-examples --features tracing --example scheduler
//! cargo run -p mproc-examples --example scheduler   # the same, without mproc's events
//! ```

use std::time::Duration;

use mproc::{LeaseQueue, Process, ProcessHandle, Queue, Waitable};
use serde::{Deserialize, Serialize};

/// Worker processes.
const WORKERS: usize = 3;
/// Jobs: job `k` computes `k²`.
const JOBS: u64 = 40;
/// The job whose first delivery hangs (its worker gets killed).
const STUCK: u64 = 7;

/// What workers tell the parent.
#[derive(Debug, Serialize, Deserialize)]
enum Report {
    /// Worker `worker` leased job `job`, delivered for the `delivery`th time.
    Started {
        worker: usize,
        job: u64,
        delivery: u32,
    },
    /// Job `job` gave `value`.
    Done { job: u64, value: u64 },
}

/// A job, or `None`: stop.
type Job = Option<u64>;

type WorkerArgs = (usize, LeaseQueue<Job>, Queue<Report>);

/// A worker: leases jobs until told to stop.
fn worker((id, jobs, results): WorkerArgs) {
    init_tracing();
    loop {
        let lease = jobs.get_lease().expect("lease a job");
        let Some(k) = *lease else {
            lease.ack().expect("ack");
            return;
        };
        let delivery = lease.delivery_count();
        results
            .put(Report::Started {
                worker: id,
                job: k,
                delivery,
            })
            .expect("report");
        if k == STUCK && delivery == 1 {
            // A job that hangs: only a kill ends it.
            std::thread::sleep(Duration::from_secs(600));
        }
        std::thread::sleep(Duration::from_millis(2));
        results
            .put(Report::Done {
                job: k,
                value: k * k,
            })
            .expect("report");
        lease.ack().expect("ack");
    }
}

/// A running worker: its number (`worker-N`) and handle.
struct Worker {
    id: usize,
    handle: ProcessHandle<()>,
}

fn start(id: usize, jobs: &LeaseQueue<Job>, results: &Queue<Report>) -> Result<Worker, String> {
    let handle = Process::new(worker, (id, jobs.clone(), results.clone()))
        .name(format!("worker-{id}"))
        .start()
        .map_err(|e| format!("start worker-{id}: {e}"))?;
    Ok(Worker { id, handle })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing();
    let jobs: LeaseQueue<Job> = LeaseQueue::new()?;
    let results: Queue<Report> = Queue::new(0)?;
    for k in 0..JOBS {
        jobs.put(Some(k)).map_err(|_| "put failed")?;
    }
    let mut workers: Vec<Worker> = (1..=WORKERS)
        .map(|id| start(id, &jobs, &results))
        .collect::<Result<_, _>>()?;
    let mut next_id = WORKERS + 1;
    println!("scheduler: {WORKERS} workers, {JOBS} jobs (job k computes k²)");

    let mut value: Vec<Option<u64>> = vec![None; JOBS as usize];
    let mut done = 0;
    let mut restarts = 0;
    while done < JOBS {
        // One wait: a report arrived, or a worker ended.
        let ready = {
            let mut objs: Vec<&dyn Waitable> = vec![&results];
            objs.extend(workers.iter().map(|w| &w.handle as &dyn Waitable));
            mproc::wait(&objs)?
        };
        // Workers that ended (in decreasing order: `swap_remove`).
        for &i in ready.iter().rev().filter(|&&i| i > 0) {
            let mut w = workers.swap_remove(i - 1);
            let pid = w.handle.pid();
            let how = match w.handle.join() {
                Ok(()) => "exited".to_string(),
                Err(e) => e.to_string(),
            };
            let new = start(next_id, &jobs, &results)?;
            println!(
                "worker-{} (pid {pid}) ended ({how}): restarted as worker-{} (pid {})",
                w.id,
                new.id,
                new.handle.pid()
            );
            next_id += 1;
            restarts += 1;
            workers.push(new);
        }
        if ready.first() == Some(&0) {
            while let Ok(r) = results.try_get() {
                match r {
                    Report::Started {
                        worker,
                        job,
                        delivery,
                    } if job == STUCK => {
                        println!("worker-{worker} started job {job} (delivery {delivery})");
                        if delivery == 1 {
                            if let Some(w) = workers.iter().find(|w| w.id == worker) {
                                println!(
                                    "killing worker-{worker} (pid {}) while it holds job {job}'s lease",
                                    w.handle.pid()
                                );
                                w.handle.kill()?;
                            }
                        }
                    }
                    Report::Started { .. } => {}
                    Report::Done { job, value: v } => {
                        let slot = &mut value[job as usize];
                        if slot.is_none() {
                            done += 1;
                        }
                        *slot = Some(v);
                    }
                }
            }
        }
    }

    // Every job is done: stop the workers.
    for _ in &workers {
        jobs.put(None).map_err(|_| "put failed")?;
    }
    for w in &mut workers {
        w.handle.join()?;
    }
    let total: u64 = value.iter().map(|v| v.expect("every job is done")).sum();
    let expected = (JOBS - 1) * JOBS * (2 * JOBS - 1) / 6;
    println!("restarts: {restarts}");
    println!("total = {total} (sum of k² for k < {JOBS}; closed form {expected})");
    if total != expected || restarts != 1 || jobs.leased() != 0 {
        return Err("wrong total, restarts or leases left".into());
    }
    println!("ok");
    Ok(())
}

/// Prints `tracing` events on stderr (mproc's among them: the `tracing`
/// feature turns them on).
#[cfg(feature = "tracing")]
fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(not(feature = "tracing"))]
fn init_tracing() {}
