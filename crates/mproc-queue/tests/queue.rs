//! CPython `multiprocessing.Queue` behaviours (§1.4), in one process.

mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::watchdog;
use mproc_queue::{
    GetTimeoutError, JoinTimeoutError, JoinableQueue, Pod, PutError, PutTimeoutError, Queue,
    QueueBuilder, SimpleQueue, TaskDoneError, TryGetError, TryPutError,
};

const LIMIT: Duration = Duration::from_secs(20);
const MS: Duration = Duration::from_millis(1);

#[test]
fn fifo_and_counts() {
    watchdog(LIMIT, || {
        let q: Queue<u32> = Queue::new(0).unwrap();
        assert!(q.is_empty());
        assert!(!q.is_full());
        for i in 0..100 {
            q.put(i).unwrap();
        }
        assert_eq!(q.qsize(), 100);
        assert!(!q.is_empty());
        for i in 0..100 {
            assert_eq!(q.get().unwrap(), i);
        }
        assert_eq!(q.qsize(), 0);
        assert!(q.is_empty());
    });
}

#[test]
fn full_and_empty_without_waiting() {
    watchdog(LIMIT, || {
        let q: Queue<String> = Queue::new(2).unwrap();
        assert_eq!(q.maxsize(), 2);
        q.try_put("a".into()).unwrap();
        q.put("b".into()).unwrap();
        assert!(q.is_full());
        match q.try_put("c".into()) {
            Err(TryPutError::Full(s)) => assert_eq!(s, "c"),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(q.try_get().unwrap(), "a");
        assert!(!q.is_full());
        assert_eq!(q.try_get().unwrap(), "b");
        assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
    });
}

#[test]
fn timeouts_wait_at_least_their_duration() {
    watchdog(LIMIT, || {
        let q: Queue<u8> = Queue::new(1).unwrap();
        let t0 = Instant::now();
        assert!(matches!(
            q.get_timeout(50 * MS),
            Err(GetTimeoutError::Timeout)
        ));
        assert!(t0.elapsed() >= 50 * MS);
        q.put(1).unwrap();
        let t0 = Instant::now();
        match q.put_timeout(2, 50 * MS) {
            Err(PutTimeoutError::Timeout(v)) => assert_eq!(v, 2),
            other => panic!("expected Timeout, got {other:?}"),
        }
        assert!(t0.elapsed() >= 50 * MS);
        // Deadline forms; a deadline in the past does not wait but still works.
        assert!(matches!(
            q.put_deadline(3, Instant::now()),
            Err(PutTimeoutError::Timeout(3))
        ));
        assert_eq!(q.get_deadline(Instant::now()).unwrap(), 1);
        // Zero timeout on a non-empty queue succeeds.
        q.put(4).unwrap();
        assert_eq!(q.get_timeout(Duration::ZERO).unwrap(), 4);
    });
}

#[test]
fn blocked_get_wakes_on_put_and_blocked_put_on_get() {
    watchdog(LIMIT, || {
        let q: Queue<u64> = Queue::new(1).unwrap();
        let q2 = q.clone();
        let h = thread::spawn(move || q2.get().unwrap());
        thread::sleep(30 * MS);
        q.put(42).unwrap();
        assert_eq!(h.join().unwrap(), 42);

        q.put(1).unwrap();
        let q2 = q.clone();
        let h = thread::spawn(move || q2.put(2));
        thread::sleep(30 * MS);
        assert_eq!(q.get().unwrap(), 1);
        h.join().unwrap().unwrap();
        assert_eq!(q.get().unwrap(), 2);
    });
}

#[test]
fn close_fails_puts_and_drains_then_closed() {
    watchdog(LIMIT, || {
        let q: Queue<u32> = Queue::new(0).unwrap();
        q.put(1).unwrap();
        q.put(2).unwrap();
        q.close();
        q.close(); // idempotent
        assert!(q.is_closed());
        match q.put(3) {
            Err(PutError::Closed(v)) => assert_eq!(v, 3),
            other => panic!("expected Closed, got {other:?}"),
        }
        assert!(matches!(q.try_put(3), Err(TryPutError::Closed(3))));
        assert_eq!(q.get().unwrap(), 1);
        assert_eq!(q.try_get().unwrap(), 2);
        assert!(q.get().unwrap_err().is_closed());
        assert!(matches!(q.try_get(), Err(TryGetError::Closed)));
        assert!(matches!(q.get_timeout(MS), Err(GetTimeoutError::Closed)));
    });
}

#[test]
fn close_wakes_blocked_getters_and_putters() {
    watchdog(LIMIT, || {
        let q: Queue<u32> = Queue::new(1).unwrap();
        let g = {
            let q = q.clone();
            thread::spawn(move || q.get().map_err(|e| e.is_closed()))
        };
        thread::sleep(30 * MS);
        q.close();
        assert_eq!(g.join().unwrap(), Err(true));

        let q: Queue<u32> = Queue::new(1).unwrap();
        q.put(0).unwrap();
        let p = {
            let q = q.clone();
            thread::spawn(move || q.put(9).map_err(|e| (e.is_closed(), e.into_inner())))
        };
        thread::sleep(30 * MS);
        q.close();
        assert_eq!(p.join().unwrap(), Err((true, 9)));
    });
}

#[test]
fn joinable_task_done_and_join() {
    watchdog(LIMIT, || {
        let q: JoinableQueue<u32> = JoinableQueue::new(0).unwrap();
        // join on a fresh queue returns at once
        q.join();
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
        for i in 0..5 {
            q.put(i).unwrap();
        }
        assert_eq!(q.unfinished_tasks(), 5);
        let t0 = Instant::now();
        assert_eq!(q.join_timeout(30 * MS), Err(JoinTimeoutError::Timeout));
        assert!(t0.elapsed() >= 30 * MS);
        let w = {
            let q = q.clone();
            thread::spawn(move || {
                for _ in 0..5 {
                    q.get().unwrap();
                    thread::sleep(2 * MS);
                    q.task_done().unwrap();
                }
            })
        };
        q.join();
        assert_eq!(q.unfinished_tasks(), 0);
        w.join().unwrap();
        assert_eq!(q.task_done(), Err(TaskDoneError::TooManyCalls));
        q.join_deadline(Instant::now()).unwrap();
    });
}

#[test]
fn simple_queue() {
    watchdog(LIMIT, || {
        let q: SimpleQueue<Vec<u8>> = SimpleQueue::new().unwrap();
        assert!(q.is_empty());
        q.put(vec![1, 2]).unwrap();
        assert!(!q.is_empty());
        assert_eq!(q.get().unwrap(), vec![1, 2]);
        assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
        q.close();
        q.close();
        assert!(q.put(vec![]).unwrap_err().is_closed());
    });
}

#[test]
fn pod_codec_and_zero_sized_items() {
    watchdog(LIMIT, || {
        let q: Queue<[u32; 3], Pod> = Queue::new(4).unwrap();
        q.put([1, 2, 3]).unwrap();
        assert_eq!(q.get().unwrap(), [1, 2, 3]);
        let u: Queue<()> = Queue::new(0).unwrap();
        for _ in 0..1000 {
            u.put(()).unwrap();
        }
        assert_eq!(u.qsize(), 1000);
        for _ in 0..1000 {
            u.get().unwrap();
        }
        assert!(u.is_empty());
    });
}

#[test]
fn large_messages_use_a_dedicated_segment() {
    watchdog(LIMIT, || {
        let q: Queue<Vec<u8>> = QueueBuilder::new().capacity(1024).build().unwrap();
        let sizes = [0usize, 100, 255, 256, 257, 1000, 5000, 300_000];
        for (i, &n) in sizes.iter().enumerate() {
            q.put(vec![i as u8; n]).unwrap();
        }
        assert_eq!(q.qsize(), sizes.len());
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(q.get().unwrap(), vec![i as u8; n]);
        }
        assert!(q.is_empty());
    });
}

/// Blocks of the queue's memory file in use (its pages that exist).
fn blocks_in_use<T, C: mproc_queue::Codec<T>>(q: &Queue<T, C>) -> u64 {
    use std::os::fd::{AsFd, AsRawFd};
    let raw = common::raw_parts(q);
    let f = std::fs::File::open(format!("/proc/self/fd/{}", raw.0.as_fd().as_raw_fd())).unwrap();
    std::os::unix::fs::MetadataExt::blocks(&f.metadata().unwrap())
}

#[test]
fn a_scribbled_record_header_is_an_error_for_every_get() {
    watchdog(LIMIT, || {
        let q: Queue<u64, Pod> = QueueBuilder::new().capacity(1024).build().unwrap();
        q.put(7).unwrap();
        // White-box: the ring starts at byte 1152; its first header is the
        // item's. Another process scribbles over it after the put.
        let raw = common::raw_parts(&q);
        raw.0.write(1152, &[0x5a; 8]).unwrap();
        let corrupted = |e: &dyn std::fmt::Display| e.to_string().contains("corrupted");
        match q.try_get() {
            Err(e @ TryGetError::Broken(_)) => assert!(corrupted(&e), "{e}"),
            other => panic!("try_get: {other:?}"),
        }
        match q.get_timeout(Duration::from_secs(5)) {
            Err(e @ GetTimeoutError::Broken(_)) => assert!(corrupted(&e), "{e}"),
            other => panic!("get_timeout: {other:?}"),
        }
        match q.get() {
            Err(e @ mproc_queue::GetError::Broken(_)) => assert!(corrupted(&e), "{e}"),
            other => panic!("get: {other:?}"),
        }
    });
}

#[test]
fn unbounded_queue_takes_far_more_than_its_ring_in_order() {
    watchdog(LIMIT, || {
        // 15 records fit the ring; the rest go to the overflow log.
        let q: Queue<u64, Pod> = QueueBuilder::new().capacity(256).build().unwrap();
        let before = blocks_in_use(&q);
        const N: u64 = 200_000;
        for i in 0..N {
            q.try_put(i).unwrap();
        }
        assert_eq!(q.qsize(), N as usize);
        assert!(!q.is_full());
        // 200,000 records of 24 bytes: about 4.6 MiB in use now.
        let full = blocks_in_use(&q);
        assert!(full >= before + 8000, "{before} -> {full} blocks");
        // Gets and puts interleaved keep put order across ring and log.
        let mut next_put = N;
        for i in 0..N + 1000 {
            assert_eq!(q.try_get().unwrap(), i);
            if i % 200 == 0 {
                q.try_put(next_put).unwrap();
                next_put += 1;
            }
        }
        for i in N + 1000..next_put {
            assert_eq!(q.try_get().unwrap(), i);
        }
        assert!(q.is_empty());
        // Drained: the log's pages went back to the system (bar 256 KiB).
        let after = blocks_in_use(&q);
        assert!(
            after <= before + 600,
            "{before} -> {full} -> {after} blocks"
        );
        // And it is used again.
        for i in 0..1000 {
            q.try_put(i).unwrap();
        }
        for i in 0..1000 {
            assert_eq!(q.try_get().unwrap(), i);
        }
    });
}

#[test]
fn puts_on_a_full_ring_with_no_consumer_never_time_out() {
    watchdog(LIMIT, || {
        let q: Queue<u64, Pod> = QueueBuilder::new().capacity(256).build().unwrap();
        for i in 0..15 {
            q.put(i).unwrap();
        }
        // The ring is full (15 records) and nobody gets: a blocking put
        // waits a moment for room, then uses the log; a put with a shorter
        // timeout uses it at once; and so does every put while the log
        // holds items.
        q.put(15).unwrap();
        q.put_timeout(16, Duration::from_micros(1)).unwrap();
        for i in 17..1000 {
            q.put(i).unwrap();
        }
        assert_eq!(q.qsize(), 1000);
        for i in 0..1000 {
            assert_eq!(q.get().unwrap(), i);
        }
        // Again with an empty log and a zero timeout.
        for i in 0..15 {
            q.put(i).unwrap();
        }
        q.put_timeout(15, Duration::ZERO).unwrap();
        for i in 0..16 {
            assert_eq!(q.get().unwrap(), i);
        }
    });
}

#[test]
fn maxsize_counts_items_in_the_ring_and_the_log() {
    watchdog(LIMIT, || {
        let q: Queue<u64, Pod> = QueueBuilder::new()
            .capacity(256)
            .maxsize(100)
            .build()
            .unwrap();
        for i in 0..100 {
            q.try_put(i).unwrap();
        }
        assert!(q.is_full());
        assert_eq!(q.qsize(), 100);
        assert!(matches!(q.try_put(100), Err(TryPutError::Full(100))));
        let t = Instant::now();
        assert!(matches!(
            q.put_timeout(100, 30 * MS),
            Err(PutTimeoutError::Timeout(100))
        ));
        assert!(t.elapsed() >= 30 * MS);
        // One out, one in: wherever the room is.
        assert_eq!(q.get().unwrap(), 0);
        q.try_put(100).unwrap();
        for i in 1..=100 {
            assert_eq!(q.get().unwrap(), i);
        }
        // A blocked put wakes when a consumer takes an item from the log.
        for i in 0..100 {
            q.try_put(i).unwrap();
        }
        let q2 = q.clone();
        let h = thread::spawn(move || q2.put(100));
        thread::sleep(20 * MS);
        for i in 0..=100 {
            assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), i);
        }
        h.join().unwrap().unwrap();
    });
}

#[test]
fn large_messages_beyond_the_side_channel_go_to_the_log() {
    watchdog(LIMIT, || {
        // Items over 1 KiB each take a segment and a descriptor in the side
        // channel, which holds a few hundred; the rest are copied to the log.
        let q: Queue<Vec<u8>> = QueueBuilder::new().capacity(4096).build().unwrap();
        const N: usize = 1500;
        for i in 0..N {
            q.try_put(vec![i as u8; 1500 + i]).unwrap();
        }
        assert_eq!(q.qsize(), N);
        for i in 0..N {
            assert_eq!(q.try_get().unwrap(), vec![i as u8; 1500 + i]);
        }
        assert!(q.is_empty());
    });
}

#[test]
fn joinable_counts_items_in_the_log() {
    watchdog(LIMIT, || {
        let q: JoinableQueue<u64, Pod> =
            QueueBuilder::new().capacity(256).build_joinable().unwrap();
        for i in 0..1000 {
            q.put(i).unwrap();
        }
        assert_eq!(q.unfinished_tasks(), 1000);
        for i in 0..1000 {
            assert_eq!(q.get().unwrap(), i);
            q.task_done().unwrap();
        }
        assert_eq!(q.unfinished_tasks(), 0);
        assert!(matches!(q.task_done(), Err(TaskDoneError::TooManyCalls)));
        q.join_timeout(Duration::from_secs(1)).unwrap();
    });
}

#[test]
fn without_a_log_a_full_ring_blocks_until_room() {
    watchdog(LIMIT, || {
        let q: Queue<u64, Pod> = QueueBuilder::new()
            .capacity(256)
            .overflow(0)
            .build()
            .unwrap();
        let mut n = 0;
        while q.try_put(n).is_ok() {
            n += 1;
        }
        // 15 records of 16 bytes and the 8-byte terminator after them.
        assert_eq!(n, 15, "256-byte ring holds 15 records of 16 bytes");
        let q2 = q.clone();
        let h = thread::spawn(move || q2.put(99));
        thread::sleep(20 * MS);
        assert_eq!(q.get().unwrap(), 0);
        h.join().unwrap().unwrap();
        for i in 1..15 {
            assert_eq!(q.get().unwrap(), i);
        }
        assert_eq!(q.get().unwrap(), 99);
    });
}

#[test]
fn handles_inside_items_are_a_clear_error() {
    watchdog(LIMIT, || {
        let inner: Queue<u8> = Queue::new(0).unwrap();
        let q: Queue<Queue<u8>> = Queue::new(0).unwrap();
        match q.put(inner) {
            Err(PutError::Encode(back, e)) => {
                assert!(e.is_handle());
                assert!(e.to_string().contains("mproc handle"), "{e}");
                back.put(1).unwrap();
                assert_eq!(back.get().unwrap(), 1);
            }
            other => panic!("expected an encode error, got {other:?}"),
        }
        assert!(q.is_empty());
    });
}

#[test]
fn encode_errors_reach_the_caller() {
    struct Bad;
    impl serde::Serialize for Bad {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("nope"))
        }
    }
    impl<'de> serde::Deserialize<'de> for Bad {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Ok(Bad)
        }
    }
    watchdog(LIMIT, || {
        let q: Queue<Bad> = Queue::new(0).unwrap();
        assert!(matches!(q.put(Bad), Err(PutError::Encode(Bad, _))));
        assert!(q.is_empty());
    });
}

#[test]
fn many_threads_mpmc() {
    watchdog(LIMIT, || {
        let q: Queue<(u32, u32)> = QueueBuilder::new()
            .maxsize(64)
            .capacity(4096)
            .build()
            .unwrap();
        let per = 2000;
        let producers: Vec<_> = (0..3)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    for i in 0..per {
                        q.put((p, i)).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Ok(v) = q.get() {
                        got.push(v);
                    }
                    got
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        q.close();
        let mut all = Vec::new();
        for c in consumers {
            let got = c.join().unwrap();
            for p in 0..3 {
                let mine: Vec<u32> = got.iter().filter(|v| v.0 == p).map(|v| v.1).collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "per-producer FIFO violated"
                );
            }
            all.extend(got);
        }
        all.sort_unstable();
        let want: Vec<(u32, u32)> = (0..3).flat_map(|p| (0..per).map(move |i| (p, i))).collect();
        assert_eq!(all, want);
    });
}

#[test]
fn errors_and_debug_do_not_need_debug_payloads() {
    struct NoDebug;
    let e: PutError<NoDebug> = PutError::Closed(NoDebug);
    assert_eq!(format!("{e:?}"), "Closed(..)");
    assert_eq!(e.to_string(), "queue is closed");
    assert_eq!(
        mproc_queue::TaskDoneError::TooManyCalls.to_string(),
        "task_done() called too many times"
    );
    let q: Queue<u8> = Queue::new(3).unwrap();
    assert!(format!("{q:?}").contains("maxsize: 3"));
}

#[test]
fn handle_round_trip_in_process() {
    watchdog(LIMIT, || {
        let q: JoinableQueue<String> = JoinableQueue::new(0).unwrap();
        let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(&q).unwrap();
        // Segment, side channel (two ends), item and room doorbells.
        assert_eq!(fds.len(), 5);
        let q2: JoinableQueue<String> =
            mproc_shm::handle::from_bytes_with_fds(&bytes, fds).unwrap();
        q.put("x".into()).unwrap();
        q.put("y".repeat(500_000)).unwrap();
        assert_eq!(q2.get().unwrap(), "x");
        assert_eq!(q2.get().unwrap().len(), 500_000);
        q2.task_done().unwrap();
        q2.task_done().unwrap();
        q.join();
        // Opening as the wrong type or kind is an error, not UB.
        let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(&q).unwrap();
        assert!(mproc_shm::handle::from_bytes_with_fds::<Queue<String>>(&bytes, fds).is_err());
        let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(&q).unwrap();
        assert!(
            mproc_shm::handle::from_bytes_with_fds::<JoinableQueue<u64, Pod>>(&bytes, fds).is_err()
        );
    });
}

/// A `Serialize` impl's own message (`serde::ser::Error::custom`) reaches
/// the caller of `put`, and postcard's reason the caller of `get` (CPython
/// shows the pickling error's message).
#[test]
fn codec_errors_keep_their_reason() {
    /// Encodes as nothing, or refuses; decodes as a u64 that is not there.
    struct Odd(bool);
    impl serde::Serialize for Odd {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.0 {
                Err(serde::ser::Error::custom("Odd(true) cannot be sent"))
            } else {
                s.serialize_unit()
            }
        }
    }
    impl<'de> serde::Deserialize<'de> for Odd {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            u64::deserialize(d).map(|_| Odd(false))
        }
    }
    watchdog(LIMIT, || {
        let q: Queue<Odd> = Queue::new(0).unwrap();
        let e = match q.put(Odd(true)) {
            Err(e @ PutError::Encode(..)) => e,
            other => panic!("expected an encode error, got {other:?}"),
        };
        assert_eq!(
            e.to_string(),
            "failed to encode the item: Odd(true) cannot be sent"
        );
        q.put(Odd(false)).unwrap();
        let e = q.get().map(|_| ()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "failed to decode an item taken from the queue: {}",
                postcard::Error::DeserializeUnexpectedEnd
            )
        );
    });
}
