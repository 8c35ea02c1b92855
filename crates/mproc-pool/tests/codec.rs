//! Pools whose items and results travel in another codec than postcard:
//! `Pod` (plain-data structs), `Bytes` (byte vectors, up to 1 MiB), and a
//! codec of the test's own (length-prefixed items, values it refuses to
//! encode), through every form, with failures still reported per item.
#![cfg(target_os = "linux")]

mod common;

use bytemuck::{Pod as PodType, Zeroable};
use common::{alive, sorted_values, values, watchdog};
use mproc_pool::{
    Bytes, Codec, CodecError, Encode, Pod, Pool, PoolError, ProcessPoolExecutor, StartMethod,
    TaskError,
};
use mproc_testkit::{tag, tagged};

/// A plain-data value: travels as its 64 bytes with [`Pod`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, PodType, Zeroable)]
struct P8([f64; 8]);

fn p8(x: f64) -> P8 {
    P8(std::array::from_fn(|i| x + i as f64))
}

fn double(p: P8) -> P8 {
    P8(p.0.map(|v| v * 2.0))
}

fn sum(p: P8) -> f64 {
    p.0.iter().sum()
}

fn nothing(_: P8) {}

/// Panics for an item whose first field is 13.
fn picky(p: P8) -> P8 {
    assert!(p.0[0] != 13.0, "thirteen");
    p
}

/// Panics on `[1]`; the worker exits on `[2]`.
fn bytes_failing(v: Vec<u8>) -> Vec<u8> {
    match v.as_slice() {
        [1] => panic!("one byte: {}", v[0]),
        [2] => std::process::exit(7),
        _ => tag(v),
    }
}

/// Builds a pool of 2 workers with codec `C` and `method`, runs `body`
/// under a watchdog, then closes and joins it and checks that no worker
/// is left.
fn with_codec_pool<C: 'static>(method: StartMethod, body: impl FnOnce(&Pool<C>) + Send + 'static) {
    watchdog(120, move || {
        let pool = Pool::builder()
            .processes(2)
            .start_method(method)
            .codec::<C>()
            .build()
            .unwrap();
        body(&pool);
        let pids = pool.pids();
        pool.close();
        pool.join().unwrap();
        assert!(pids.iter().all(|&p| !alive(p)), "a worker is left");
    });
}

const METHODS: [StartMethod; 2] = [StartMethod::ForkServer, StartMethod::Spawn];

#[test]
fn pod_structs_through_every_form() {
    for method in METHODS {
        with_codec_pool::<Pod>(method, |pool| {
            let items: Vec<P8> = (0..300).map(|x| p8(f64::from(x))).collect();
            let want: Vec<P8> = items.iter().copied().map(double).collect();
            assert_eq!(pool.map(double, items.clone()).unwrap(), want);
            assert_eq!(pool.map_chunked(double, items.clone(), 7).unwrap(), want);
            assert_eq!(values(pool.imap(double, items.clone()).unwrap()), want);
            let mut got = values(pool.imap_unordered(sum, items.clone()).unwrap());
            got.sort_by(f64::total_cmp);
            let mut sums: Vec<f64> = items.iter().copied().map(sum).collect();
            sums.sort_by(f64::total_cmp);
            assert_eq!(got, sums);
            assert_eq!(
                pool.map_async(double, items.clone())
                    .unwrap()
                    .get()
                    .unwrap(),
                want
            );
            assert_eq!(pool.apply(double, p8(1.5)).unwrap(), double(p8(1.5)));
            let r = pool.apply_async(sum, p8(2.0)).unwrap();
            assert_eq!(r.get().unwrap(), sum(p8(2.0)));
        });
    }
}

#[test]
fn unit_results_with_pod() {
    with_codec_pool::<Pod>(StartMethod::ForkServer, |pool| {
        let items: Vec<P8> = (0..50).map(|x| p8(f64::from(x))).collect();
        assert_eq!(pool.map(nothing, items.clone()).unwrap(), vec![(); 50]);
        assert_eq!(values(pool.imap(nothing, items).unwrap()).len(), 50);
        pool.apply(nothing, p8(0.0)).unwrap();
        // Plain numbers take their fast path whatever the codec.
        assert_eq!(
            pool.map(|x: u64| x * 3, 0..1000u64).unwrap(),
            (0..1000u64).map(|x| x * 3).collect::<Vec<_>>()
        );
    });
}

#[test]
fn bytes_of_every_size_through_every_form() {
    for method in METHODS {
        with_codec_pool::<Bytes>(method, |pool| {
            let big: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
            let items = vec![Vec::new(), vec![9], big.clone(), vec![3; 100], Vec::new()];
            let want: Vec<Vec<u8>> = items.iter().map(|v| tagged(v)).collect();
            assert_eq!(pool.map(tag, items.clone()).unwrap(), want);
            assert_eq!(pool.map_chunked(tag, items.clone(), 2).unwrap(), want);
            assert_eq!(values(pool.imap(tag, items.clone()).unwrap()), want);
            let mut sorted = want.clone();
            sorted.sort();
            assert_eq!(
                sorted_values(pool.imap_unordered(tag, items.clone()).unwrap()),
                sorted
            );
            assert_eq!(pool.map_async(tag, items).unwrap().get().unwrap(), want);
            assert_eq!(pool.apply(tag, big.clone()).unwrap(), tagged(&big));
            assert_eq!(pool.apply(tag, Vec::new()).unwrap(), [0]);
            let r = pool.apply_async(tag, vec![1, 2]).unwrap();
            assert_eq!(r.get().unwrap(), [2, 1, 2]);
        });
    }
}

#[test]
fn a_failing_item_is_reported_alone_with_bytes() {
    with_codec_pool::<Bytes>(StartMethod::ForkServer, |pool| {
        let items = vec![vec![5, 5], vec![1], vec![6; 3000], vec![2], vec![7]];
        let got: Vec<_> = pool.imap(bytes_failing, items.clone()).unwrap().collect();
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].as_ref().unwrap(), &tagged(&[5, 5]));
        match &got[1] {
            Err(TaskError::Panicked { message, .. }) => assert_eq!(message, "one byte: 1"),
            other => panic!("{other:?}"),
        }
        assert_eq!(got[2].as_ref().unwrap(), &tagged(&[6; 3000]));
        assert!(
            matches!(got[3], Err(TaskError::WorkerLost { .. })),
            "{:?}",
            got[3]
        );
        assert_eq!(got[4].as_ref().unwrap(), &tagged(&[7]));
        // `map` reports the first failure in input order.
        match pool.map(bytes_failing, items) {
            Err(PoolError::Task {
                index: 1,
                error: TaskError::Panicked { .. },
            }) => {}
            other => panic!("{other:?}"),
        }
        match pool.apply(bytes_failing, vec![1]) {
            Err(PoolError::Task {
                index: 0,
                error: TaskError::Panicked { message, .. },
            }) => assert_eq!(message, "one byte: 1"),
            other => panic!("{other:?}"),
        }
        // The pool stays usable.
        assert_eq!(pool.apply(tag, vec![4]).unwrap(), [4, 1]);
    });
}

#[test]
fn a_panicking_item_is_reported_alone_with_pod() {
    with_codec_pool::<Pod>(StartMethod::ForkServer, |pool| {
        let items: Vec<P8> = (10..16).map(|x| p8(f64::from(x))).collect();
        let got: Vec<_> = pool.imap(picky, items.clone()).unwrap().collect();
        for (i, r) in got.iter().enumerate() {
            if i == 3 {
                assert!(matches!(r, Err(TaskError::Panicked { .. })), "{r:?}");
            } else {
                assert_eq!(r.as_ref().unwrap(), &items[i]);
            }
        }
        let r = pool.apply_async(picky, p8(13.0)).unwrap();
        assert!(matches!(
            r.get(),
            Err(PoolError::Task {
                index: 0,
                error: TaskError::Panicked { .. }
            })
        ));
    });
}

/// A codec of this test's own: a [`P8`] as its bytes unless its first
/// field is negative (then it refuses), and pairs of them as both; items
/// carry the default length before them.
struct Picky;

fn picky_encode(p: &P8, out: &mut Vec<u8>) -> Result<(), CodecError> {
    if p.0[0] < 0.0 {
        return Err(CodecError::new("a negative first field"));
    }
    out.extend_from_slice(bytemuck::bytes_of(p));
    Ok(())
}

impl Encode<P8> for Picky {
    const TAG: &'static str = "picky";
    fn encode(value: &P8, out: &mut Vec<u8>) -> Result<(), CodecError> {
        picky_encode(value, out)
    }
}

impl Codec<P8> for Picky {
    fn decode(bytes: &[u8]) -> Result<P8, CodecError> {
        <Pod as Codec<P8>>::decode(bytes)
    }
}

impl Encode<(P8, P8)> for Picky {
    const TAG: &'static str = "picky";
    fn encode(value: &(P8, P8), out: &mut Vec<u8>) -> Result<(), CodecError> {
        picky_encode(&value.0, out)?;
        picky_encode(&value.1, out)
    }
}

impl Codec<(P8, P8)> for Picky {
    fn decode(bytes: &[u8]) -> Result<(P8, P8), CodecError> {
        if bytes.len() != 2 * size_of::<P8>() {
            return Err(CodecError::new("not a pair"));
        }
        let (a, b) = bytes.split_at(size_of::<P8>());
        Ok((Picky::decode(a)?, Picky::decode(b)?))
    }
}

fn add(a: P8, b: P8) -> P8 {
    P8(std::array::from_fn(|i| a.0[i] + b.0[i]))
}

fn negate(p: P8) -> P8 {
    P8(p.0.map(|v| -v))
}

#[test]
fn a_codec_of_ones_own_serves_starmap_and_reports_encode_failures() {
    with_codec_pool::<Picky>(StartMethod::ForkServer, |pool| {
        let pairs: Vec<(P8, P8)> = (0..40).map(|x| (p8(f64::from(x)), p8(0.5))).collect();
        let want: Vec<P8> = pairs.iter().map(|&(a, b)| add(a, b)).collect();
        assert_eq!(pool.starmap(add, pairs.clone()).unwrap(), want);
        assert_eq!(pool.starmap_async(add, pairs).unwrap().get().unwrap(), want);

        // An argument that does not encode fails its item in the parent; a
        // result that does not encode fails its item in the worker.
        let items = vec![p8(1.0), p8(-1.0), p8(2.0)];
        let got: Vec<_> = pool.imap(negate, items).unwrap().collect();
        for (i, r) in got.iter().enumerate() {
            match r {
                Err(TaskError::Encode(m)) if i == 1 => {
                    assert_eq!(m, "the task's argument: a negative first field");
                }
                Err(TaskError::Encode(m)) => {
                    assert_eq!(m, "the task's result: a negative first field");
                }
                other => panic!("item {i}: {other:?}"),
            }
        }
        assert_eq!(pool.map(double, vec![p8(3.0)]).unwrap(), [double(p8(3.0))]);
        match pool.apply(negate, p8(1.0)) {
            Err(PoolError::Task {
                index: 0,
                error: TaskError::Encode(m),
            }) => assert_eq!(m, "the task's result: a negative first field"),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn an_executor_takes_a_codec() {
    watchdog(120, || {
        let ex = ProcessPoolExecutor::builder()
            .max_workers(2)
            .codec::<Bytes>()
            .build()
            .unwrap();
        let big = vec![8u8; 1 << 20];
        let f = ex.submit(tag, big.clone()).unwrap();
        assert_eq!(f.result().unwrap(), tagged(&big));
        let got: Vec<Vec<u8>> = ex
            .map(tag, vec![vec![1, 2], Vec::new()])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, [vec![2, 1, 2], vec![0]]);
        let pids = ex.pids();
        ex.shutdown(true, false);
        assert!(pids.iter().all(|&p| !alive(p)), "a worker is left");
    });
}
