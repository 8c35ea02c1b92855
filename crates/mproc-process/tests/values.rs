//! Arguments and return values of several types, large payloads, and shared
//! memory handles passed to children, under every start method.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::sync::atomic::Ordering;

use common::{method, start};
use mproc_process::Process;
use mproc_shm::{SharedAtomicU64, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: f64,
    label: String,
    tags: Vec<u8>,
}

fn square(x: u64) -> u64 {
    x * x
}

fn shout(s: String) -> String {
    s.to_uppercase()
}

fn describe(p: Point) -> (String, Option<i8>, Result<u32, String>) {
    (
        format!("{}@{}", p.label, p.x),
        p.tags.first().map(|&t| t as i8),
        Err(format!("{} tags", p.tags.len())),
    )
}

fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn add_to(v: (Value<u64>, SharedAtomicU64, u64)) -> u64 {
    let (value, atomic, n) = v;
    for _ in 0..n {
        *value.lock().expect("lock") += 1;
        atomic.fetch_add(1, Ordering::Relaxed);
    }
    value.get()
}

fn values(m: String) -> Result<(), String> {
    let m = method(&m);
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut a = start(Process::new(square, 12), m)?;
    let mut b = start(Process::new(shout, "hé there".to_owned()), m)?;
    let p = Point {
        x: 1.5,
        label: "p".into(),
        tags: vec![200, 2],
    };
    let mut c = start(Process::new(describe, p), m)?;
    let reverse = |v: Vec<i32>| v.into_iter().rev().collect::<Vec<_>>();
    let mut d = start(Process::new(reverse, vec![1, 2, 3]), m)?;
    ensure!(a.join().map_err(|x| e(&x))? == 144, "square");
    ensure!(b.join().map_err(|x| e(&x))? == "HÉ THERE", "shout");
    let got = c.join().map_err(|x| e(&x))?;
    ensure!(
        got == ("p@1.5".to_owned(), Some(-56), Err("2 tags".to_owned())),
        "describe gave {got:?}"
    );
    ensure!(d.join().map_err(|x| e(&x))? == vec![3, 2, 1], "closure");
    // 4 MiB: far more than a socket buffer; join must read while it waits.
    let mut h = start(Process::new(big, 4 << 20), m)?;
    let v = h.join().map_err(|x| e(&x))?;
    ensure!(v == big(4 << 20), "big result differs (len {})", v.len());
    Ok(())
}

fn shared(m: String) -> Result<(), String> {
    let m = method(&m);
    let value = Value::new(0u64).map_err(|x| x.to_string())?;
    let atomic = SharedAtomicU64::new(0).map_err(|x| x.to_string())?;
    let mut kids = Vec::new();
    for _ in 0..4 {
        let args = (
            value.try_clone().map_err(|x| x.to_string())?,
            atomic.try_clone().map_err(|x| x.to_string())?,
            500,
        );
        kids.push(start(Process::new(add_to, args), m)?);
    }
    for k in &mut kids {
        let seen = k.join().map_err(|x| x.to_string())?;
        ensure!((500..=2000).contains(&seen), "a child saw {seen}");
    }
    ensure!(value.get() == 2000, "value is {}", value.get());
    ensure!(
        atomic.load(Ordering::Relaxed) == 2000,
        "atomic is {}",
        atomic.load(Ordering::Relaxed)
    );
    Ok(())
}

// Each test runs its scenario under every start method.
each_method_tests! {
    return_values_of_several_types_come_back => values,
    a_shared_value_is_updated_by_children => shared,
}
