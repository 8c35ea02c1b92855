//! Batched puts and gets: `put_many`/`get_many` and their forms, in one
//! process (the crash test is in `multiprocess.rs`).

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::watchdog;
use mproc_queue::{
    Bytes, GetError, GetTimeoutError, Pod, PutError, PutTimeoutError, Queue, QueueBuilder,
    TryGetError, TryPutError,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Item `i`: its index, then `i % 97` filler bytes, and every 50th one too
/// large for a 4 KiB ring (it travels as a large message).
fn item(i: u32) -> Vec<u8> {
    let len = if i % 50 == 49 {
        1500
    } else {
        (i % 97) as usize
    };
    let mut v = i.to_le_bytes().to_vec();
    v.resize(4 + len, i as u8);
    v
}

fn drain(q: &Queue<Vec<u8>, Bytes>, max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match q.try_get_many(&mut out, max) {
            Ok(n) => assert!((1..=max).contains(&n), "{n} of at most {max}"),
            Err(TryGetError::Empty) => return out,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn batches_keep_put_order_across_ring_log_and_large_messages() {
    watchdog(LIMIT, || {
        // A small ring: groups split, spill into the overflow log (nobody
        // takes while they are put), and large items go by descriptor.
        let q: Queue<Vec<u8>, Bytes> = QueueBuilder::new().capacity(4096).build().unwrap();
        assert_eq!(q.put_many((0..1000).map(item)).unwrap(), 1000);
        q.put(item(1000)).unwrap();
        assert_eq!(q.put_many((1001..1100).map(item)).unwrap(), 99);
        assert_eq!(q.qsize(), 1100);
        for max in [1, 7, 300] {
            let got = drain(&q, max);
            assert_eq!(got, (0..1100).map(item).collect::<Vec<_>>());
            q.put_many((0..1100).map(item)).unwrap();
        }
        let mut out = Vec::new();
        assert_eq!(q.get_many(&mut out, 0).unwrap(), 0);
        drain(&q, 64);
        assert!(q.is_empty());
    });
}

/// While the overflow log holds records, `get_many` still takes every
/// ready item up to `max` (the ring's ahead of the log's, the log's, the
/// ring's after them), not one per call: a consumer that fell behind once
/// (so that its producer spilled into the log) must catch up in batches.
#[test]
fn get_many_takes_every_ready_item_while_the_log_holds_some() {
    watchdog(LIMIT, || {
        // A 4 KiB ring holds about 250 records of a u64: nobody takes while
        // the 2000 are put, so most spill into the log.
        let q: Queue<u64, Pod> = QueueBuilder::new().capacity(4096).build().unwrap();
        assert_eq!(q.put_many(0..2000).unwrap(), 2000);
        let mut out = Vec::new();
        assert_eq!(q.get_many(&mut out, 100).unwrap(), 100);
        assert_eq!(out, (0..100).collect::<Vec<_>>());
        // Room in the ring again: these go there, behind the log's records.
        assert_eq!(q.put_many(2000..2050).unwrap(), 50);
        assert_eq!(q.get_many(&mut out, 1000).unwrap(), 1000);
        assert_eq!(q.try_get_many(&mut out, 5000).unwrap(), 950);
        assert_eq!(out, (0..2050).collect::<Vec<_>>());
        assert!(q.is_empty());
    });
}

#[test]
fn get_many_waits_for_one_and_takes_what_is_ready() {
    watchdog(LIMIT, || {
        let q: Queue<u64, Pod> = Queue::new(0).unwrap();
        let mut out = vec![99];
        let t0 = Instant::now();
        assert!(matches!(
            q.get_many_timeout(&mut out, 10, Duration::from_millis(30)),
            Err(GetTimeoutError::Timeout)
        ));
        assert!(t0.elapsed() >= Duration::from_millis(30));
        assert!(matches!(
            q.try_get_many(&mut out, 10),
            Err(TryGetError::Empty)
        ));
        q.put_many(0..25).unwrap();
        assert_eq!(q.get_many(&mut out, 10).unwrap(), 10);
        assert_eq!(q.get_many(&mut out, 100).unwrap(), 15);
        assert_eq!(out, [99].into_iter().chain(0..25).collect::<Vec<_>>());
        // A blocked get_many wakes on a put_many.
        thread::scope(|s| {
            let h = s.spawn(|| {
                let mut v = Vec::new();
                q.get_many(&mut v, 1000).unwrap();
                v
            });
            thread::sleep(Duration::from_millis(20));
            q.put_many([7, 8, 9]).unwrap();
            let v = h.join().unwrap();
            assert!(!v.is_empty() && v == [7, 8, 9][..v.len()], "{v:?}");
        });
        let mut rest = Vec::new();
        let _ = q.try_get_many(&mut rest, 10);
        q.close();
        assert!(matches!(q.get_many(&mut rest, 10), Err(GetError::Closed)));
    });
}

#[test]
fn a_full_queue_stops_a_batch_and_hands_back_the_item() {
    watchdog(LIMIT, || {
        let q: Queue<u32> = Queue::new(5).unwrap();
        let e = q.try_put_many(0..10).unwrap_err();
        assert_eq!(e.put(), 5);
        assert!(matches!(e.into_error(), TryPutError::Full(5)));
        let t0 = Instant::now();
        let e = q
            .put_many_timeout(10..12, Duration::from_millis(30))
            .unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(30));
        assert_eq!(e.put(), 0);
        assert!(matches!(e.error(), PutTimeoutError::Timeout(10)));
        // A blocked put_many goes on as consumers make room.
        thread::scope(|s| {
            let h = s.spawn(|| q.put_many(100..120).unwrap());
            let mut got = Vec::new();
            while got.len() < 25 {
                q.get_many_timeout(&mut got, 3, Duration::from_secs(10))
                    .unwrap();
            }
            assert_eq!(h.join().unwrap(), 20);
            assert_eq!(got, (0..5).chain(100..120).collect::<Vec<_>>());
        });
        q.close();
        let e = q.put_many([1, 2]).unwrap_err();
        assert!(matches!(e.into_error(), PutError::Closed(1)));
    });
}

#[test]
fn an_item_that_does_not_encode_stops_the_batch_after_the_others() {
    watchdog(LIMIT, || {
        // A queue handle cannot travel inside an item: an encode error.
        let inner: Queue<u32> = Queue::new(0).unwrap();
        let q: Queue<Option<Queue<u32>>> = Queue::new(0).unwrap();
        let e = q
            .put_many([None, None, Some(inner.clone()), None])
            .unwrap_err();
        assert_eq!(e.put(), 2);
        match e.into_error() {
            PutError::Encode(Some(_), e) => assert!(e.is_handle()),
            other => panic!("{other:?}"),
        }
        let mut out = Vec::new();
        assert_eq!(q.try_get_many(&mut out, 10).unwrap(), 2);
        assert!(out.iter().all(Option::is_none));
        assert!(q.is_empty());
    });
}

#[test]
fn threads_put_and_get_in_batches_without_loss_or_reordering() {
    watchdog(LIMIT, || {
        let q: Queue<u64, Pod> = QueueBuilder::new()
            .maxsize(64)
            .capacity(1024)
            .build()
            .unwrap();
        const N: u64 = 20_000;
        thread::scope(|s| {
            for p in 0..2u64 {
                let q = &q;
                s.spawn(move || {
                    let mut i = 0;
                    while i < N {
                        let n = (i % 37 + 1).min(N - i);
                        q.put_many((i..i + n).map(|k| p << 32 | k)).unwrap();
                        i += n;
                    }
                });
            }
            let mut last = [None::<u64>; 2];
            let mut got = 0;
            let mut v = Vec::new();
            while got < 2 * N {
                v.clear();
                got += q
                    .get_many_timeout(&mut v, 50, Duration::from_secs(10))
                    .unwrap() as u64;
                for &x in &v {
                    let (p, k) = ((x >> 32) as usize, x & 0xffff_ffff);
                    assert_eq!(k, last[p].map_or(0, |l| l + 1), "producer {p}");
                    last[p] = Some(k);
                }
            }
        });
        assert!(q.is_empty());
    });
}

/// A consumer that pauses now and then (as one descheduled under load) while
/// one `put_many` puts everything: the producer spills into the overflow log
/// each time, and the consumer still gets every item, in order, in batches
/// (it once took one item per `get_many` while the log held any, copying a
/// whole run of ring records for each, and fell ever further behind).
#[test]
fn a_consumer_that_pauses_catches_up_with_a_put_many_through_the_log() {
    watchdog(LIMIT, || {
        let q: Queue<u64, Pod> = QueueBuilder::new().capacity(64 << 10).build().unwrap();
        const N: u64 = 300_000;
        thread::scope(|s| {
            s.spawn(|| assert_eq!(q.put_many(0..N).unwrap(), N as usize));
            let (mut next, mut calls) = (0, 0u64);
            let mut v = Vec::new();
            while next < N {
                v.clear();
                let n = q.get_many(&mut v, 4096).unwrap();
                assert_eq!(v.len(), n);
                for &x in &v {
                    assert_eq!(x, next);
                    next += 1;
                }
                calls += 1;
                if calls % 16 == 1 {
                    // Longer than a producer waits for room before it
                    // uses the log.
                    thread::sleep(Duration::from_millis(5));
                }
            }
        });
        assert!(q.is_empty());
    });
}
