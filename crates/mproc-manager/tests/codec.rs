//! Managers whose proxies encode their values with another codec than
//! postcard: `Pod` (plain data copied as it is) and `Bytes` (byte vectors
//! as they are), in the client, in server-side updates and sorts, and in
//! proxies passed to child processes.

mod common;

use bytemuck::{Pod as PlainData, Zeroable};
use common::watchdog;
use mproc_manager::{Dict, Error, List, Manager, Namespace, Value};
use mproc_process::{Process, StartMethod};
use mproc_shm::codec::{Bytes, Pod};

/// A plain-data struct (no padding), shared as its bytes.
#[derive(Clone, Copy, Debug, PartialEq, PlainData, Zeroable)]
#[repr(C)]
struct Sample {
    x: f64,
    y: f64,
    id: u32,
    flags: u32,
}

fn sample(id: u32) -> Sample {
    Sample {
        x: id as f64 * 0.5,
        y: -(id as f64),
        id,
        flags: id ^ 0xa5,
    }
}

fn pod_manager() -> Manager<Pod> {
    Manager::builder().codec::<Pod>().start().unwrap()
}

fn bytes_manager() -> Manager<Bytes> {
    Manager::builder().codec::<Bytes>().start().unwrap()
}

#[test]
fn pod_structs_and_arrays_round_trip_in_a_dict_a_list_and_a_value() {
    watchdog(60, || {
        let m = pod_manager();
        let d: Dict<u32, Sample, Pod> = m.dict().unwrap();
        for id in [3, 1, 2] {
            assert_eq!(d.insert(&id, &sample(id)).unwrap(), None);
        }
        assert_eq!(d.insert(&1, &sample(10)).unwrap(), Some(sample(1)));
        assert_eq!(d.get(&1).unwrap(), Some(sample(10)));
        assert_eq!(d.get(&9).unwrap(), None);
        assert!(d.contains_key(&2).unwrap());
        assert_eq!(d.keys().unwrap(), [3, 1, 2]);
        assert_eq!(
            d.iter().collect::<Result<Vec<_>, _>>().unwrap(),
            [(3, sample(3)), (1, sample(10)), (2, sample(2))]
        );
        assert_eq!(d.remove(&3).unwrap(), Some(sample(3)));
        assert_eq!(d.items().unwrap(), [(1, sample(10)), (2, sample(2))]);

        let quads = [[1.0, 2.0, 3.0, 4.0], [-0.5, 0.0, f64::MAX, 1e-300]];
        let l: List<[f64; 4], Pod> = m.list_from(quads).unwrap();
        l.push(&[9.0; 4]).unwrap();
        assert_eq!(l.get(1).unwrap(), quads[1]);
        assert_eq!(l.get(-1).unwrap(), [9.0; 4]);
        // Items compare by their bytes, which Pod makes deterministic.
        assert_eq!(l.index(&quads[1]).unwrap(), 1);
        assert_eq!(l.snapshot().unwrap(), [quads[0], quads[1], [9.0; 4]]);

        let v: Value<[f64; 4], Pod> = m.value(quads[0]).unwrap();
        assert_eq!(v.swap(&quads[1]).unwrap(), quads[0]);
        assert_eq!(v.get().unwrap(), quads[1]);

        // The server holds the value's own bytes: seen through a `Bytes`
        // proxy of the same object, they are the struct's memory.
        let s: Value<Sample, Pod> = m.value(sample(7)).unwrap();
        m.register("s", &s).unwrap();
        let raw: Value<Vec<u8>, Bytes> = m.lookup("s").unwrap();
        assert_eq!(raw.get().unwrap(), bytemuck::bytes_of(&sample(7)));
        m.shutdown().unwrap();
    });
}

#[test]
fn bytes_values_round_trip_as_they_are_a_large_and_an_empty_one_too() {
    watchdog(60, || {
        let m = bytes_manager();
        let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 7 + i / 251) as u8).collect();
        let d: Dict<Vec<u8>, Vec<u8>, Bytes> = m.dict().unwrap();
        d.insert(&b"big".to_vec(), &big).unwrap();
        d.insert(&Vec::new(), &Vec::new()).unwrap();
        // A borrowed key (`[u8]` for `Vec<u8>`) finds the same entry.
        assert_eq!(d.get(&b"big"[..]).unwrap().as_deref(), Some(&big[..]));
        assert_eq!(d.get(&[][..]).unwrap(), Some(Vec::new()));
        assert_eq!(d.len().unwrap(), 2);
        assert_eq!(d.keys().unwrap(), [b"big".to_vec(), Vec::new()]);

        let l: List<Vec<u8>, Bytes> = m.list_from([Vec::new(), big.clone()]).unwrap();
        assert_eq!(l.get(0).unwrap(), Vec::<u8>::new());
        assert_eq!(l.get(1).unwrap(), big);
        assert_eq!(l.count(&Vec::new()).unwrap(), 1);

        let v: Value<Vec<u8>, Bytes> = m.value(Vec::new()).unwrap();
        assert_eq!(v.get().unwrap(), Vec::<u8>::new());
        v.set(&big).unwrap();
        assert_eq!(v.get().unwrap(), big);

        let q = m.queue::<Vec<u8>>(0).unwrap();
        q.put(big.clone()).unwrap();
        q.put(Vec::new()).unwrap();
        assert_eq!(q.get().unwrap(), big);
        assert_eq!(q.get().unwrap(), Vec::<u8>::new());

        // A namespace shows a field it cannot read as Python bytes.
        let ns: Namespace<Bytes> = m.namespace().unwrap();
        ns.set("blob", &b"a'\x00".to_vec()).unwrap();
        assert_eq!(ns.get::<Vec<u8>>("blob").unwrap(), b"a'\x00");
        assert_eq!(ns.repr().unwrap(), r#"Namespace(blob=b"a'\x00")"#);
        m.shutdown().unwrap();
    });
}

#[test]
fn updates_and_sorts_run_in_the_server_with_the_proxies_codec() {
    watchdog(60, || {
        let m = pod_manager();
        let v: Value<[f64; 4], Pod> = m.value([1.0, 2.0, 3.0, 4.0]).unwrap();
        let sum = v
            .update_with(
                |q: &mut [f64; 4], k: f64| {
                    q.iter_mut().for_each(|x| *x *= k);
                    q.iter().sum::<f64>()
                },
                2.0,
            )
            .unwrap();
        assert_eq!(sum, 20.0);
        assert_eq!(v.get().unwrap(), [2.0, 4.0, 6.0, 8.0]);

        let d: Dict<u32, Sample, Pod> = m.dict().unwrap();
        for _ in 0..3 {
            d.update_or_insert_with(&5, &sample(0), |s: &mut Sample, n: u32| s.id += n, 2)
                .unwrap();
        }
        assert_eq!(d.get(&5).unwrap().map(|s| s.id), Some(6));
        let counts = m.dict::<u32, u64>().unwrap();
        let r = counts
            .update_or_insert_many_with(
                &0,
                |c: &mut u64, n: u64| *c += n,
                [(&1, 1), (&2, 5), (&1, 1)],
            )
            .unwrap();
        assert_eq!(r, [(), (), ()]);
        assert_eq!(counts.items().unwrap(), [(1, 2), (2, 5)]);

        let l: List<u64, Pod> = m.list_from([5u64, 1, 4, 2]).unwrap();
        l.sort(false).unwrap();
        assert_eq!(l.snapshot().unwrap(), [1, 2, 4, 5]);
        l.sort_by_key(|x: &u64| x % 4, true).unwrap();
        assert_eq!(l.snapshot().unwrap(), [2, 1, 5, 4]);
        assert_eq!(
            l.update_with(0, |x: &mut u64, n: u64| *x * n, 10).unwrap(),
            20
        );

        let ns: Namespace<Pod> = m.namespace().unwrap();
        ns.set("n", &1u16).unwrap();
        ns.update_with("n", |n: &mut u16, k: u16| *n += k, 0x0101)
            .unwrap();
        assert_eq!(ns.get::<u16>("n").unwrap(), 0x0102);
        assert_eq!(ns.repr().unwrap(), r"Namespace(n=b'\x02\x01')");

        let b = bytes_manager();
        let bv: Value<Vec<u8>, Bytes> = b.value(b"ab".to_vec()).unwrap();
        let r = bv
            .update_with(
                |v: &mut Vec<u8>, tail: Vec<u8>| {
                    v.extend_from_slice(&tail);
                    v.iter().rev().copied().collect::<Vec<u8>>()
                },
                b"cd".to_vec(),
            )
            .unwrap();
        assert_eq!(r, b"dcba");
        assert_eq!(bv.get().unwrap(), b"abcd");
        b.shutdown().unwrap();
        m.shutdown().unwrap();
    });
}

#[test]
fn a_value_of_another_plain_type_is_a_decode_error_not_a_panic() {
    watchdog(60, || {
        let m = pod_manager();
        let v = m.value([1.0f64; 4]).unwrap();
        m.register("v", &v).unwrap();
        // 32 bytes are not a `u64`, in the client nor in the server.
        let wrong: Value<u64, Pod> = m.lookup("v").unwrap();
        let e = wrong.get().unwrap_err();
        assert!(matches!(e, Error::Decode(_)), "{e:?}");
        let e = wrong
            .update_with(|x: &mut u64, (): ()| *x += 1, ())
            .unwrap_err();
        assert!(matches!(e, Error::Update(_)), "{e:?}");
        assert!(e.to_string().contains("does not decode"), "{e}");
        // A `()` value is zero bytes and comes back as it went.
        let unit = m.value(()).unwrap();
        assert_eq!(unit.get().unwrap(), ());
        assert_eq!(v.get().unwrap(), [1.0; 4]);
        m.shutdown().unwrap();
    });
}

type ChildArgs = (
    Dict<u32, Sample, Pod>,
    List<[f64; 4], Pod>,
    Value<Vec<u8>, Bytes>,
);

/// In the child: reads what the parent stored, writes back, and reports
/// the sample's id and the byte value's length.
fn child((d, l, v): ChildArgs) -> (u32, usize) {
    let s = d.get(&1).unwrap().unwrap();
    d.insert(&2, &Sample { id: s.id + 1, ..s }).unwrap();
    l.update_with(0, |q: &mut [f64; 4], k: f64| q[3] += k, s.x)
        .unwrap();
    let mut bytes = v.get().unwrap();
    let n = bytes.len();
    bytes.reverse();
    v.set(&bytes).unwrap();
    (s.id, n)
}

#[test]
fn proxies_passed_to_a_child_keep_their_codec_under_every_safe_start_method() {
    watchdog(120, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let m = pod_manager();
            let d: Dict<u32, Sample, Pod> = m.dict().unwrap();
            d.insert(&1, &sample(4)).unwrap();
            let l = m.list_from([[0.0f64; 4]]).unwrap();
            // A `Bytes` handle on the same server, for the byte value.
            let b = Manager::builder()
                .address(m.address().clone())
                .authkey(m.authkey())
                .codec::<Bytes>()
                .connect()
                .unwrap();
            let v = b.value(vec![1u8, 2, 3, 0]).unwrap();
            let mut p = Process::new(child, (d.clone(), l.clone(), v.clone()))
                .start_method(method)
                .start()
                .unwrap();
            assert_eq!(p.join().unwrap(), (4, 4), "{method:?}");
            assert_eq!(d.get(&2).unwrap(), Some(Sample { id: 5, ..sample(4) }));
            assert_eq!(l.get(0).unwrap(), [0.0, 0.0, 0.0, 2.0]);
            assert_eq!(v.get().unwrap(), [0, 3, 2, 1]);
            drop(b);
            m.shutdown().unwrap();
        }
    });
}
