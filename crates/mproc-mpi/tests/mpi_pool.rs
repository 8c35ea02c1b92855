//! MpiPool tests. Run by `cargo test -p mproc-mpi --features mpi`.
//!
//! Without arguments this binary is the driver: it runs every scenario in
//! a fresh job under `timeout` and checks its output (see `common`). With
//! a scenario name it is that job (one pool per process: MPI is
//! initialised once per process).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::Case;
use mproc_mpi::{MpiPool, PoolError, TaskError};
use mproc_testkit::only_failure_at;

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn fails_on_7(x: u32) -> u32 {
    assert!(x != 7, "seven is not allowed");
    x + 1
}

fn unit_fails_on_3(x: u32) {
    assert!(x != 3, "three");
}

fn describe(v: Vec<u8>) -> (usize, u64, Vec<u8>) {
    let sum = v.iter().map(|&b| b as u64).sum();
    (v.len(), sum, vec![7u8; 3 << 20])
}

fn slow_double(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(1));
    x * 2
}

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

fn kill_self(_: u32) -> u32 {
    // SAFETY: sending SIGKILL to this very process; it does not return.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    0
}

static PULLED: AtomicUsize = AtomicUsize::new(0);

/// The checks every launch mode runs.
fn common(pool: &MpiPool) {
    // map over a range (travels as ranges) and over a Vec, against serial.
    let serial: Vec<u64> = (0..10_000u64).map(square).collect();
    assert_eq!(pool.map(square, 0..10_000u64).unwrap(), serial);
    assert_eq!(
        pool.map(square, (0..10_000u64).collect::<Vec<_>>())
            .unwrap(),
        serial
    );
    assert_eq!(pool.map(square, 5..=9u64).unwrap(), [25, 36, 49, 64, 81]);
    assert_eq!(
        pool.map_chunked(square, 0..1000u64, 7).unwrap(),
        serial[..1000]
    );
    assert_eq!(
        pool.map_chunked(square, 0..3u64, 0),
        Err(PoolError::ZeroChunksize)
    );
    // A closure (non-capturing) works like a fn item.
    assert_eq!(
        pool.map(|s: String| s.len(), vec!["a".to_string(), "abc".into()])
            .unwrap(),
        [1, 3]
    );
    // Empty input.
    assert_eq!(
        pool.map(square, Vec::<u64>::new()).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(pool.map(square, 0..0u64).unwrap(), Vec::<u64>::new());
    assert_eq!(pool.imap(square, Vec::<u64>::new()).unwrap().count(), 0);
    // imap: in order, lazily.
    let got: Vec<u64> = pool
        .imap(square, 0..2000u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, serial[..2000]);
    let mut it = pool
        .imap(
            slow_double,
            (0..1_000_000u64).inspect(|_| {
                PULLED.fetch_add(1, Ordering::Relaxed);
            }),
        )
        .unwrap();
    assert_eq!(it.next().unwrap().unwrap(), 0);
    assert_eq!(it.next().unwrap().unwrap(), 2);
    let pulled = PULLED.load(Ordering::Relaxed);
    assert!(pulled < 1000, "imap read {pulled} items ahead");
    drop(it);
    // imap_unordered: every result once.
    let mut got: Vec<u64> = pool
        .imap_unordered(square, 0..3000u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort_unstable();
    let mut want = serial[..3000].to_vec();
    want.sort_unstable();
    assert_eq!(got, want);
    // starmap, apply, apply_async, map_async.
    assert_eq!(
        pool.starmap(add, vec![(1, 2), (3, 4), (5, 6)]).unwrap(),
        [3, 7, 11]
    );
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    let rs: Vec<_> = (0..50u64)
        .map(|x| pool.apply_async(square, x).unwrap())
        .collect();
    let vals: Vec<u64> = rs.into_iter().map(|r| r.get().unwrap()).collect();
    assert_eq!(vals, serial[..50]);
    let r = pool.map_async(square, 0..500u64).unwrap();
    r.wait();
    assert!(r.ready());
    assert_eq!(r.get().unwrap(), serial[..500]);
    // Large arguments and results (MiBs).
    let big: Vec<u8> = (0..(5usize << 20)).map(|i| (i % 251) as u8).collect();
    let want_sum: u64 = big.iter().map(|&b| b as u64).sum();
    let (len, sum, back) = pool.apply(describe, big).unwrap();
    assert_eq!((len, sum, back.len()), (5 << 20, want_sum, 3 << 20));
    assert!(back.iter().all(|&b| b == 7));
    // A panicking task fails only itself; the worker carries on.
    let out: Vec<Result<u32, TaskError>> = pool.imap(fails_on_7, 0..10u32).unwrap().collect();
    match only_failure_at(out, 7, |i| i as u32 + 1) {
        TaskError::Panicked { message, .. } => {
            assert!(message.contains("seven is not allowed"), "{message}")
        }
        other => panic!("item 7: {other:?}"),
    }
    match pool.map(fails_on_7, 0..10u32) {
        Err(PoolError::Task {
            index: 7,
            error: TaskError::Panicked { .. },
        }) => {}
        other => panic!("map with a panic: {other:?}"),
    }
    match pool.apply(fails_on_7, 7) {
        Err(PoolError::Task {
            index: 0,
            error: TaskError::Panicked { .. },
        }) => {}
        other => panic!("apply with a panic: {other:?}"),
    }
    assert_eq!(pool.apply(fails_on_7, 1).unwrap(), 2);
    // An apply longer than the caller drives MPI itself: the MPI thread
    // takes over and wakes the caller.
    assert_eq!(pool.apply(slow_double, 21).unwrap(), 42);
    // apply from several threads while a map runs: the callers and the MPI
    // thread take turns driving MPI, and every result reaches its caller.
    std::thread::scope(|s| {
        let map = s.spawn(|| pool.map(slow_double, 0..300u64).unwrap());
        let callers: Vec<_> = (0..4u64)
            .map(|t| {
                s.spawn(move || {
                    (0..300u64)
                        .map(|i| pool.apply(square, t * 1000 + i).unwrap())
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        for (t, c) in callers.into_iter().enumerate() {
            let want: Vec<u64> = (0..300u64).map(|i| square(t as u64 * 1000 + i)).collect();
            assert_eq!(c.join().unwrap(), want);
        }
        assert_eq!(
            map.join().unwrap(),
            (0..300u64).map(|x| x * 2).collect::<Vec<_>>()
        );
    });
    // `()` results travel as a count, failures still by position.
    assert_eq!(pool.map(|_: u64| (), 0..100_000u64).unwrap().len(), 100_000);
    let units: Vec<Result<(), TaskError>> = pool.imap(unit_fails_on_3, 0..6u32).unwrap().collect();
    assert_eq!(
        units.iter().map(Result::is_ok).collect::<Vec<_>>(),
        [true, true, true, false, true, true]
    );
    match pool.map(unit_fails_on_3, 0..6u32) {
        Err(PoolError::Task { index: 3, .. }) => {}
        other => panic!("unit map with a panic: {other:?}"),
    }
}

fn finish(pool: MpiPool, name: &str) {
    pool.close();
    assert_eq!(pool.map(square, 0..3u64), Err(PoolError::NotRunning));
    pool.join().unwrap();
    assert!(pool.is_finished());
    println!("OK {name}");
}

fn scenario(name: &str) {
    match name {
        "static" => {
            let pool = MpiPool::builder().local_processes(1).build().unwrap();
            common(&pool);
            // Several worker ranks all took part.
            let pids: std::collections::HashSet<u32> = pool
                .map_chunked(pid_of, 0..(200 * pool.workers() as u32), 1)
                .unwrap()
                .into_iter()
                .collect();
            assert!(
                pids.len() > 1 || pool.workers() == 1,
                "one worker did everything: {pids:?}"
            );
            assert!(!pids.contains(&std::process::id()));
            println!("workers {}", pool.workers());
            finish(pool, name);
        }
        "hybrid" | "hybrid_spawn" => {
            let mut b = MpiPool::builder().local_processes(2);
            if name == "hybrid_spawn" {
                b = b.spawn_workers(1);
            }
            let pool = b.build().unwrap();
            assert_eq!(pool.local_processes(), 2);
            common(&pool);
            // The items ran in the local pool's processes, not in the rank.
            let pids: std::collections::HashSet<u32> = pool
                .map_chunked(pid_of, 0..400u32, 100)
                .unwrap()
                .into_iter()
                .collect();
            assert!(!pids.contains(&std::process::id()));
            println!("hybrid pids {}", pids.len());
            finish(pool, name);
        }
        "spawn" => {
            let pool = MpiPool::builder()
                .spawn_workers(2)
                .local_processes(1)
                .build()
                .unwrap();
            assert_eq!(pool.workers(), 2);
            common(&pool);
            finish(pool, name);
        }
        "static_kill" | "spawn_kill" => {
            let pool = if name == "spawn_kill" {
                MpiPool::builder()
                    .spawn_workers(2)
                    .local_processes(1)
                    .build()
                    .unwrap()
            } else {
                MpiPool::builder().local_processes(1).build().unwrap()
            };
            assert_eq!(pool.apply(square, 3).unwrap(), 9);
            println!("killing a worker");
            let r = pool.apply(kill_self, 0);
            // Only reached if MPI did not end the job: report and fail.
            println!("after the kill: {r:?}");
            std::process::exit(3);
        }
        "one_rank" => match MpiPool::builder().local_processes(1).build() {
            Err(mproc_mpi::MpiError::NoWorkers) => println!("OK {name}"),
            other => panic!("{other:?}"),
        },
        _ => panic!("unknown scenario {name}"),
    }
}

fn main() {
    if let Some(name) = std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        scenario(&name);
        return;
    }
    let cases = [
        Case {
            scenario: "static",
            ranks: Some(3),
            ok: true,
        },
        Case {
            scenario: "static",
            ranks: Some(2),
            ok: true,
        },
        Case {
            scenario: "static",
            ranks: Some(4),
            ok: true,
        },
        Case {
            scenario: "hybrid",
            ranks: Some(2),
            ok: true,
        },
        Case {
            scenario: "spawn",
            ranks: None,
            ok: true,
        },
        Case {
            scenario: "hybrid_spawn",
            ranks: None,
            ok: true,
        },
        Case {
            scenario: "one_rank",
            ranks: Some(1),
            ok: true,
        },
        Case {
            scenario: "static_kill",
            ranks: Some(3),
            ok: false,
        },
        Case {
            scenario: "spawn_kill",
            ranks: None,
            ok: false,
        },
    ];
    common::drive(&cases);
}
