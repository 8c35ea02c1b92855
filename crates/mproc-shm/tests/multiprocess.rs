//! Several processes sharing one Value, SharedAtomic or Array. Children are
//! this test binary run again; every shared object reaches them as a
//! descriptor (the handle mechanism), and every wait has a deadline.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{child_payload, spawn_child, watchdog};
use mproc_shm::{Array, LockError, RawArray, SharedAtomicU64, Value};

const INCREMENTS: u64 = 100_000;
const CHILDREN: u64 = 3;
const LIMIT: Duration = Duration::from_secs(60);

#[test]
#[ignore = "child process of locked_value_total_is_exact"]
fn child_increment_value() {
    let Some((_, v)) = child_payload::<Value<u64>>(LIMIT) else {
        return;
    };
    for _ in 0..INCREMENTS {
        *v.lock().unwrap() += 1;
    }
}

#[test]
fn locked_value_total_is_exact() {
    watchdog(LIMIT, || {
        let v = Value::new(0u64).unwrap();
        let kids: Vec<_> = (0..CHILDREN)
            .map(|i| spawn_child("child_increment_value", &i.to_string(), &v))
            .collect();
        // The parent is one more incrementing process.
        for _ in 0..INCREMENTS {
            *v.lock().unwrap() += 1;
        }
        for k in kids {
            k.wait_success(LIMIT);
        }
        assert_eq!(v.get(), (CHILDREN + 1) * INCREMENTS);
        assert!(!v.is_locked());
    });
}

#[test]
#[ignore = "child process of atomic_fetch_add_total_is_exact"]
fn child_fetch_add() {
    let Some((_, a)) = child_payload::<SharedAtomicU64>(LIMIT) else {
        return;
    };
    for _ in 0..INCREMENTS {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn atomic_fetch_add_total_is_exact() {
    watchdog(LIMIT, || {
        let a = SharedAtomicU64::new(0).unwrap();
        let kids: Vec<_> = (0..CHILDREN)
            .map(|i| spawn_child("child_fetch_add", &i.to_string(), &a))
            .collect();
        for _ in 0..INCREMENTS {
            a.fetch_add(1, Ordering::Relaxed);
        }
        for k in kids {
            k.wait_success(LIMIT);
        }
        assert_eq!(a.load(Ordering::Acquire), (CHILDREN + 1) * INCREMENTS);
    });
}

const PART: usize = 10_000;

fn pattern(child: usize, j: usize) -> f64 {
    (child * 1_000_000 + j) as f64 * 0.5
}

#[test]
#[ignore = "child process of children_write_disjoint_parts_of_an_array"]
fn child_write_part() {
    let Some((role, (a, raw))) = child_payload::<(Array<f64>, RawArray<u32>)>(LIMIT) else {
        return;
    };
    let i: usize = role.parse().unwrap();
    let mine: Vec<f64> = (0..PART).map(|j| pattern(i, j)).collect();
    // Half through a copy, half in place under the guard.
    a.copy_from(i * PART, &mine[..PART / 2]).unwrap();
    {
        let mut g = a.lock().unwrap();
        g[i * PART + PART / 2..(i + 1) * PART].copy_from_slice(&mine[PART / 2..]);
    }
    let ids: Vec<u32> = vec![i as u32 + 1; PART];
    raw.copy_from(i * PART, &ids).unwrap();
}

#[test]
fn children_write_disjoint_parts_of_an_array() {
    watchdog(LIMIT, || {
        let n = 4;
        let a = Array::<f64>::new(n * PART).unwrap();
        let raw = RawArray::<u32>::new(n * PART).unwrap();
        let kids: Vec<_> = (0..n)
            .map(|i| spawn_child("child_write_part", &i.to_string(), &(&a, &raw)))
            .collect();
        for k in kids {
            k.wait_success(LIMIT);
        }
        let all = a.to_vec();
        let ids = raw.to_vec();
        for i in 0..n {
            for j in 0..PART {
                assert_eq!(all[i * PART + j], pattern(i, j), "child {i} element {j}");
                assert_eq!(ids[i * PART + j], i as u32 + 1);
            }
        }
    });
}

#[test]
#[ignore = "child process of a_holder_that_dies_is_reported_with_the_guard"]
fn child_dies_holding_lock() {
    let Some((_, v)) = child_payload::<Value<u64>>(LIMIT) else {
        return;
    };
    let mut g = v.lock().unwrap();
    *g = 42;
    std::mem::forget(g);
    std::process::exit(7);
}

#[test]
fn a_holder_that_dies_is_reported_with_the_guard() {
    watchdog(LIMIT, || {
        let v = Value::new(0u64).unwrap();
        let st = spawn_child("child_dies_holding_lock", "die", &v).wait(LIMIT);
        assert_eq!(st.code(), Some(7));
        assert!(v.is_locked());
        match v.lock() {
            Err(LockError::OwnerDied(mut g)) => {
                assert_eq!(*g, 42);
                *g = 43;
            }
            Ok(_) => panic!("a dead holder was not reported"),
        }
        assert_eq!(v.get(), 43);
        assert!(v.lock().is_ok());
    });
}

#[test]
#[ignore = "child process of named_objects_are_opened_by_name"]
fn child_open_by_name() {
    let Some((_, (value_name, atomic_name))) = child_payload::<(String, String)>(LIMIT) else {
        return;
    };
    let v = Value::<u64>::open_named(&value_name).unwrap();
    let a = SharedAtomicU64::open_named(&atomic_name).unwrap();
    // The wrong type is refused, by name as by handle.
    assert!(Value::<f64>::open_named(&value_name).is_err());
    for _ in 0..1000 {
        *v.lock().unwrap() += 1;
        a.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn named_objects_are_opened_by_name() {
    watchdog(LIMIT, || {
        let id = std::process::id();
        let (vn, an) = (
            format!("mproc_t_mp_value_{id}"),
            format!("mproc_t_mp_atomic_{id}"),
        );
        let v = Value::create_named(&vn, 5u64).unwrap();
        let a = SharedAtomicU64::create_named(&an, 5).unwrap();
        let kids: Vec<_> = (0..2)
            .map(|i| spawn_child("child_open_by_name", &i.to_string(), &(&vn, &an)))
            .collect();
        for k in kids {
            k.wait_success(LIMIT);
        }
        assert_eq!(v.get(), 2005);
        assert_eq!(a.load(Ordering::Acquire), 2005);
        drop((v, a));
        assert!(common::shm_entries(&vn).is_empty() && common::shm_entries(&an).is_empty());
    });
}
