//! MpiPools whose items and results travel in another codec than postcard:
//! `Pod` (a `#[repr(C)]` struct, `[f64; 4]`), `Bytes` (none, one byte and
//! 1 MiB) and a codec of the test's own (serde values with a length before
//! each), through map, imap, apply, starmap and the async forms, `()`
//! results, and a panicking item reported alone; in static jobs, in a
//! hybrid job (the worker rank's local pool in the same codec) and with
//! spawned workers. Run by `cargo test -p mproc-mpi --features mpi`.
//!
//! Without arguments this binary is the driver (see `common`); with a
//! scenario name it is that job.

mod common;

use bytemuck::{Pod as PodType, Zeroable};
use common::Case;
use mproc_mpi::{Bytes, Codec, CodecError, Encode, MpiPool, Pod, PoolError, Postcard, TaskError};
use mproc_testkit::{only_failure_at, tag, tagged};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A plain-data struct: travels as its 48 bytes with [`Pod`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, PodType, Zeroable)]
struct Particle {
    pos: [f64; 3],
    mass: f64,
    id: u32,
    flags: u32,
}

fn particle(i: u64) -> Particle {
    let x = i as f64;
    Particle {
        pos: [x, 2.0 * x, -x],
        mass: 1.0 + x,
        id: i as u32,
        flags: 0,
    }
}

fn step(p: Particle) -> Particle {
    Particle {
        pos: p.pos.map(|x| x + p.mass),
        flags: p.flags | 1,
        ..p
    }
}

/// Panics for particle 7.
fn step_picky(p: Particle) -> Particle {
    assert!(p.id != 7, "particle seven");
    step(p)
}

fn forget(_: Particle) {}

fn norm(v: [f64; 4]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn scale(v: [f64; 4]) -> [f64; 4] {
    v.map(|x| x * 0.5)
}

fn particles(n: u64) -> Vec<Particle> {
    (0..n).map(particle).collect()
}

/// Pod through every form, `()` results, plain numbers beside it, and a
/// panicking item reported alone.
fn pod(pool: &MpiPool<Pod>) {
    let items = particles(3000);
    let want: Vec<Particle> = items.iter().copied().map(step).collect();
    assert_eq!(pool.map(step, items.clone()).unwrap(), want);
    assert_eq!(pool.map_chunked(step, items.clone(), 7).unwrap(), want);
    let got: Vec<Particle> = pool
        .imap(step, items.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, want);
    let mut ids: Vec<u32> = pool
        .imap_unordered(step, items.clone())
        .unwrap()
        .map(|r| r.unwrap().id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..3000).collect::<Vec<u32>>());
    assert_eq!(
        pool.map_async(step, items.clone()).unwrap().get().unwrap(),
        want
    );
    assert_eq!(pool.apply(step, particle(5)).unwrap(), step(particle(5)));
    let r = pool.apply_async(step, particle(6)).unwrap();
    r.wait();
    assert_eq!(format!("{r:?}"), "AsyncResult { ready: true, .. }");
    assert_eq!(r.get().unwrap(), step(particle(6)));
    // An integer range in, structs out (the range travels as a range).
    assert_eq!(pool.map(particle, 0..3000u64).unwrap(), items);
    // Arrays of floats, to floats (plain) and to arrays.
    let arrays: Vec<[f64; 4]> = (0..500).map(|i| [f64::from(i), 1.0, 2.0, 3.0]).collect();
    assert_eq!(
        pool.map(norm, arrays.clone()).unwrap(),
        arrays.iter().copied().map(norm).collect::<Vec<f64>>()
    );
    assert_eq!(
        pool.map(scale, arrays.clone()).unwrap(),
        arrays.iter().copied().map(scale).collect::<Vec<_>>()
    );
    assert_eq!(pool.apply(scale, [2.0; 4]).unwrap(), [1.0; 4]);
    // `()` results.
    assert_eq!(pool.map(forget, items.clone()).unwrap(), vec![(); 3000]);
    assert_eq!(pool.imap(forget, particles(50)).unwrap().count(), 50);
    pool.apply(forget, particle(1)).unwrap();
    // Plain numbers take their fast path whatever the codec.
    assert_eq!(
        pool.map(|x: u64| x * 3, 0..1000u64).unwrap(),
        (0..1000u64).map(|x| x * 3).collect::<Vec<_>>()
    );
    // A panicking item fails alone; the others come back.
    let out: Vec<_> = pool.imap(step_picky, particles(20)).unwrap().collect();
    match only_failure_at(out, 7, |i| step(particle(i as u64))) {
        TaskError::Panicked { message, .. } => assert!(message.contains("particle seven")),
        other => panic!("item 7: {other:?}"),
    }
    match pool.map(step_picky, particles(20)) {
        Err(PoolError::Task {
            index: 7,
            error: TaskError::Panicked { .. },
        }) => {}
        other => panic!("map with a panic: {other:?}"),
    }
    match pool.apply(step_picky, particle(7)) {
        Err(PoolError::Task {
            index: 0,
            error: TaskError::Panicked { message, .. },
        }) => assert!(message.contains("particle seven"), "{message}"),
        other => panic!("apply with a panic: {other:?}"),
    }
    assert_eq!(
        pool.apply(step_picky, particle(8)).unwrap(),
        step(particle(8))
    );
}

fn untag(v: Vec<u8>) -> Vec<u8> {
    v[..v.len() - 1].iter().rev().copied().collect()
}

/// Panics on `[1]`.
fn bytes_failing(v: Vec<u8>) -> Vec<u8> {
    assert!(v != [1], "one byte: {}", v[0]);
    tag(v)
}

/// Bytes of no, one and 1 MiB bytes through every form, and a panicking
/// item reported alone.
fn bytes(pool: &MpiPool<Bytes>) {
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let items = vec![Vec::new(), vec![9], big.clone(), vec![3; 100], Vec::new()];
    let want: Vec<Vec<u8>> = items.iter().map(|v| tagged(v)).collect();
    assert_eq!(pool.map(tag, items.clone()).unwrap(), want);
    assert_eq!(pool.map_chunked(tag, items.clone(), 2).unwrap(), want);
    let got: Vec<Vec<u8>> = pool
        .imap(tag, items.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(got, want);
    let mut got: Vec<Vec<u8>> = pool
        .imap_unordered(tag, items.clone())
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort();
    let mut sorted = want.clone();
    sorted.sort();
    assert_eq!(got, sorted);
    assert_eq!(pool.map_async(tag, items).unwrap().get().unwrap(), want);
    assert_eq!(pool.apply(tag, big.clone()).unwrap(), tagged(&big));
    assert_eq!(pool.apply(untag, tagged(&big)).unwrap(), big);
    assert_eq!(pool.apply(tag, Vec::new()).unwrap(), [0]);
    assert_eq!(pool.apply(untag, vec![0]).unwrap(), Vec::<u8>::new());
    let r = pool.apply_async(tag, vec![1, 2]).unwrap();
    assert_eq!(r.get().unwrap(), [2, 1, 2]);
    // A panicking item fails alone.
    let items = vec![vec![5, 5], vec![6; 3000], vec![1], Vec::new(), vec![7]];
    let out: Vec<_> = pool.imap(bytes_failing, items.clone()).unwrap().collect();
    match only_failure_at(out, 2, |i| tagged(&items[i])) {
        TaskError::Panicked { message, .. } => assert!(message.contains("one byte: 1")),
        other => panic!("item 2: {other:?}"),
    }
    match pool.map(bytes_failing, items) {
        Err(PoolError::Task {
            index: 2,
            error: TaskError::Panicked { .. },
        }) => {}
        other => panic!("map with a panic: {other:?}"),
    }
    match pool.apply(bytes_failing, vec![1]) {
        Err(PoolError::Task {
            index: 0,
            error: TaskError::Panicked { message, .. },
        }) => assert!(message.contains("one byte: 1"), "{message}"),
        other => panic!("apply with a panic: {other:?}"),
    }
    assert_eq!(pool.apply(tag, vec![4]).unwrap(), [4, 1]);
}

/// A codec of this test's own: serde values in postcard, each item of a
/// stream with the default length before it (unlike [`Postcard`]).
struct Framed;

impl<T: Serialize> Encode<T> for Framed {
    const TAG: &'static str = "framed";
    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        Postcard::encode(value, out)
    }
}

impl<T: Serialize + DeserializeOwned> Codec<T> for Framed {
    fn decode(bytes: &[u8]) -> Result<T, CodecError> {
        Postcard::decode(bytes)
    }
}

fn label(n: u64, name: String) -> String {
    format!("{name}{n}")
}

/// Panics for "seven".
fn shout(s: String) -> String {
    assert!(s != "seven", "no shouting seven");
    s.to_uppercase()
}

fn ignore(_: String) {}

/// Serde values with lengths before them: starmap, strings, `()` results
/// and a panicking item reported alone.
fn framed(pool: &MpiPool<Framed>) {
    let pairs: Vec<(u64, String)> = (0..500).map(|i| (i, format!("p{}", i % 7))).collect();
    let want: Vec<String> = pairs.iter().cloned().map(|(n, s)| label(n, s)).collect();
    assert_eq!(pool.starmap(label, pairs).unwrap(), want);
    let words: Vec<String> = ["one", "", "seven", "three"].map(String::from).to_vec();
    let out: Vec<_> = pool.imap(shout, words.clone()).unwrap().collect();
    match only_failure_at(out, 2, |i| words[i].to_uppercase()) {
        TaskError::Panicked { message, .. } => assert!(message.contains("no shouting seven")),
        other => panic!("item 2: {other:?}"),
    }
    assert_eq!(pool.apply(shout, "hi".to_string()).unwrap(), "HI");
    assert_eq!(
        pool.map_async(shout, vec!["a".to_string(); 300])
            .unwrap()
            .get()
            .unwrap(),
        vec!["A".to_string(); 300]
    );
    assert_eq!(pool.map(ignore, words).unwrap(), vec![(); 4]);
    pool.apply_async(ignore, String::new())
        .unwrap()
        .get()
        .unwrap();
}

fn finish<C>(pool: MpiPool<C>, name: &str) {
    pool.close();
    pool.join().unwrap();
    assert!(pool.is_finished());
    println!("OK {name}");
}

fn scenario(name: &str) {
    // Every job runs its worker ranks in-rank, but `hybrid_*` (a local pool
    // of 2 processes on each).
    let local = if name.starts_with("hybrid") { 2 } else { 1 };
    let builder = MpiPool::builder().local_processes(local);
    match name {
        "pod" | "hybrid_pod" => {
            let pool = builder.codec::<Pod>().build().unwrap();
            pod(&pool);
            finish(pool, name);
        }
        "bytes" | "hybrid_bytes" => {
            let pool = builder.codec::<Bytes>().build().unwrap();
            bytes(&pool);
            finish(pool, name);
        }
        "framed" => {
            let pool = builder.codec::<Framed>().build().unwrap();
            framed(&pool);
            finish(pool, name);
        }
        "spawn_pod" => {
            let pool = builder.spawn_workers(1).codec::<Pod>().build().unwrap();
            assert_eq!(pool.apply(step, particle(3)).unwrap(), step(particle(3)));
            assert_eq!(
                pool.map(step, particles(100)).unwrap(),
                particles(100).into_iter().map(step).collect::<Vec<_>>()
            );
            finish(pool, name);
        }
        _ => panic!("unknown scenario {name}"),
    }
}

fn main() {
    if let Some(name) = std::env::args().nth(1).filter(|a| !a.starts_with('-')) {
        scenario(&name);
        return;
    }
    let job = |scenario, ranks| Case {
        scenario,
        ranks,
        ok: true,
    };
    common::drive(&[
        job("pod", Some(3)),
        job("bytes", Some(3)),
        job("framed", Some(2)),
        job("hybrid_pod", Some(2)),
        job("hybrid_bytes", Some(2)),
        job("spawn_pod", None),
    ]);
}
