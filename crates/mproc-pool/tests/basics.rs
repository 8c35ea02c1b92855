//! CPython §1.9 behaviours: ordering, errors, apply, timeouts, lifecycle.

mod common;

use std::time::{Duration, Instant};

use common::{alive, only_failure_at, sorted_values, values, watchdog, with_built_pool, with_pool};
use mproc_pool::{
    AsyncResult, NextTimeoutError, PanicPayload, Pool, PoolBuilder, PoolError, TaskError,
    TryImapError,
};

fn square(x: u64) -> u64 {
    x * x
}

/// Panics with a `&str` (0), a `String` (1), or an `i32` (2).
fn panics_with(kind: u32) -> u32 {
    match kind {
        0 => panic!("a literal"),
        1 => panic!("formatted {kind}"),
        _ => std::panic::panic_any(7i32),
    }
}

fn slow_id(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(5 * (x % 4)));
    x
}

fn fail_on_3(x: u32) -> u32 {
    if x == 3 {
        panic!("three is bad");
    }
    x * 10
}

fn pid_of(_: u32) -> i32 {
    std::process::id() as i32
}

fn sleep_ms(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// `n` tasks that each sleep `ms`, submitted at once.
fn sleepers(pool: &Pool, n: usize, ms: u64) -> Vec<AsyncResult<()>> {
    (0..n)
        .map(|_| pool.apply_async(sleep_ms, ms).unwrap())
        .collect()
}

#[test]
fn map_orders_results_for_every_input_kind() {
    with_pool(60, 2, |pool| {
        let want: Vec<u64> = (0..1000u64).map(|x| x * x).collect();
        assert_eq!(pool.map(square, 0..1000u64).unwrap(), want);
        assert_eq!(
            pool.map(square, (0..1000u64).collect::<Vec<_>>()).unwrap(),
            want
        );
        assert_eq!(
            pool.map(square, (0..1000u64).filter(|_| true)).unwrap(),
            want
        );
        assert_eq!(pool.map(square, 0..=999u64).unwrap(), want);
        let strings = pool
            .map(
                |s: String| s.len(),
                vec!["a".to_string(), "bcd".into(), String::new()],
            )
            .unwrap();
        assert_eq!(strings, [1, 3, 0]);
        assert_eq!(
            pool.map(square, Vec::<u64>::new()).unwrap(),
            Vec::<u64>::new()
        );
        assert_eq!(pool.map_chunked(square, 0..10u64, 3).unwrap(), want[..10]);
        assert_eq!(
            pool.map_chunked(square, 0..10u64, 0),
            Err(PoolError::ZeroChunksize)
        );
        assert_eq!(
            pool.map(slow_id, 0..40u64).unwrap(),
            (0..40).collect::<Vec<_>>()
        );
        // Negative ranges and narrow integer types.
        assert_eq!(
            pool.map(|x: i8| i32::from(x) * 2, -3i8..3).unwrap(),
            [-6, -4, -2, 0, 2, 4]
        );
    });
}

#[test]
fn imap_is_ordered_and_lazy_and_unordered_yields_each_once() {
    with_pool(60, 2, |pool| {
        let got = values(pool.imap(slow_id, 0..50u64).unwrap());
        assert_eq!(got, (0..50).collect::<Vec<_>>());
        let un = sorted_values(pool.imap_unordered(slow_id, 0..50u64).unwrap());
        assert_eq!(un, (0..50).collect::<Vec<_>>());
        // Lazy: an endless input works as long as we stop.
        let first = values(pool.imap(square, 0u64..).unwrap().take(5));
        assert_eq!(first, [0, 1, 4, 9, 16]);
        // A counting iterator shows the input is pulled a window at a time.
        let pulled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let p2 = pulled.clone();
        let input = (0..100_000u64).inspect(move |_| {
            p2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        let mut it = pool.imap(slow_id, input).unwrap();
        assert_eq!(it.next().unwrap().unwrap(), 0);
        assert!(pulled.load(std::sync::atomic::Ordering::Relaxed) < 100_000);
    });
}

#[test]
fn errors_are_per_item_and_map_reports_the_first() {
    with_pool(60, 2, |pool| {
        let items: Vec<_> = pool.imap(fail_on_3, 0..6u32).unwrap().collect();
        assert_eq!(items.len(), 6);
        match only_failure_at(items, 3, |i| i as u32 * 10) {
            TaskError::Panicked { message, .. } => {
                assert!(message.contains("three is bad"), "{message}")
            }
            other => panic!("expected a panic, got {other:?}"),
        }
        match pool.map(fail_on_3, 0..100u32) {
            Err(PoolError::Task {
                index: 3,
                error: TaskError::Panicked { .. },
            }) => {}
            other => panic!("{other:?}"),
        }
        match pool.apply(fail_on_3, 3) {
            Err(e) => assert!(matches!(e.task_error(), Some(TaskError::Panicked { .. }))),
            Ok(v) => panic!("{v}"),
        }
        // The workers survived.
        assert_eq!(pool.apply(fail_on_3, 4).unwrap(), 40);
    });
}

#[test]
fn a_panic_carries_its_message_payload_kind_and_location() {
    with_pool(60, 2, |pool| {
        let got: Vec<_> = pool.imap(panics_with, 0..3u32).unwrap().collect();
        let expected = [
            ("a literal", PanicPayload::Str),
            ("formatted 1", PanicPayload::String),
            ("Box<dyn Any>", PanicPayload::Other),
        ];
        // Backtraces travel where they are enabled (the workers inherit
        // the environment).
        let backtraces = std::backtrace::Backtrace::capture().status()
            == std::backtrace::BacktraceStatus::Captured;
        for (r, (msg, kind)) in got.iter().zip(expected) {
            let Err(
                e @ TaskError::Panicked {
                    message,
                    payload,
                    location,
                    backtrace,
                    ..
                },
            ) = r
            else {
                panic!("expected a panic, got {r:?}");
            };
            assert_eq!(message, msg);
            assert_eq!(*payload, kind);
            let at = location.as_deref().expect("a location");
            assert!(at.contains("basics.rs:"), "{at}");
            assert_eq!(backtrace.is_some(), backtraces);
            assert!(e.is_panicked());
            assert_eq!(e.to_string(), format!("the task panicked at {at}: {msg}"));
        }
    });
}

fn add(a: u32, b: u32) -> u32 {
    a + b
}

fn pid_with(x: u32) -> (u32, u32) {
    (x, std::process::id())
}

/// Sleeps 500 ms for item 1, not at all for the others.
fn slow_at_1(x: u64) -> u64 {
    if x == 1 {
        std::thread::sleep(Duration::from_millis(500));
    }
    x
}

#[test]
fn starmap_async_and_map_async_chunked() {
    with_pool(60, 2, |pool| {
        let r = pool
            .starmap_async(add, (0..100u32).map(|i| (i, 2 * i)))
            .unwrap();
        assert_eq!(
            r.get().unwrap(),
            (0..100).map(|i| 3 * i).collect::<Vec<_>>()
        );
        // Two chunks of 50: each ran whole in one worker.
        let r = pool.map_async_chunked(pid_with, 0..100u32, 50).unwrap();
        let out = r.get().unwrap();
        assert_eq!(
            out.iter().map(|(x, _)| *x).collect::<Vec<_>>(),
            (0..100).collect::<Vec<_>>()
        );
        for chunk in out.chunks(50) {
            assert!(
                chunk.iter().all(|(_, p)| *p == chunk[0].1),
                "a chunk was cut"
            );
        }
        assert!(matches!(
            pool.map_async_chunked(pid_with, 0..3u32, 0),
            Err(PoolError::ZeroChunksize)
        ));
    });
}

#[test]
fn imap_next_timeout_times_out_per_item_and_goes_on() {
    with_pool(60, 2, |pool| {
        // Both workers exist: item 1 starts when item 0 does.
        assert_eq!(pool.map(square, 0..4u64).unwrap(), [0, 1, 4, 9]);
        for ordered in [true, false] {
            let mut it = if ordered {
                pool.imap_chunked(slow_at_1, 0..3u64, 1).unwrap()
            } else {
                pool.imap_unordered(slow_at_1, 1..2u64).unwrap()
            };
            if ordered {
                assert_eq!(it.next_timeout(Duration::from_secs(30)), Ok(Some(Ok(0))));
            }
            let t0 = Instant::now();
            let e = it.next_timeout(Duration::from_millis(20)).unwrap_err();
            assert!(t0.elapsed() >= Duration::from_millis(20));
            assert_eq!(e, NextTimeoutError::Timeout);
            assert_eq!(e.to_string(), "timed out waiting for the next result");
            let deadline = Instant::now() + Duration::from_secs(30);
            assert_eq!(it.next_deadline(deadline), Ok(Some(Ok(1))));
            if ordered {
                assert_eq!(it.next_deadline(deadline), Ok(Some(Ok(2))));
            }
            assert_eq!(it.next_deadline(deadline), Ok(None));
        }
        // try_imap: the same error type.
        let input = vec![Ok(0u64), Ok(1), Err("bad")];
        let mut it = pool.try_imap_chunked(slow_at_1, input, 1).unwrap();
        assert_eq!(it.next_timeout(Duration::from_secs(30)), Ok(Some(Ok(0))));
        assert_eq!(
            it.next_timeout(Duration::from_millis(20)),
            Err(NextTimeoutError::Timeout)
        );
        assert_eq!(it.next_timeout(Duration::from_secs(30)), Ok(Some(Ok(1))));
        assert_eq!(
            it.next_timeout(Duration::from_secs(30)),
            Ok(Some(Err(TryImapError::Input("bad"))))
        );
        assert_eq!(it.next_timeout(Duration::from_secs(30)), Ok(None));
    });
}

#[test]
fn apply_async_get_timeout_and_callbacks() {
    with_pool(60, 2, |pool| {
        assert_eq!(pool.apply(square, 7).unwrap(), 49);
        let rs: Vec<_> = (0..100u64)
            .map(|i| pool.apply_async(square, i).unwrap())
            .collect();
        let got: Vec<u64> = rs.into_iter().map(|r| r.get().unwrap()).collect();
        assert_eq!(got, (0..100u64).map(|x| x * x).collect::<Vec<_>>());

        let r = pool.apply_async(sleep_ms, 400).unwrap();
        assert!(!r.ready());
        assert_eq!(r.successful(), None);
        let t0 = Instant::now();
        let r = match r.get_timeout(Duration::from_millis(100)) {
            Err(e) if e.is_timeout() => match e {
                mproc_pool::GetTimeoutError::Timeout(r) => r,
                _ => unreachable!(),
            },
            other => panic!("{other:?}"),
        };
        assert!(t0.elapsed() >= Duration::from_millis(100));
        r.wait();
        assert_eq!(r.successful(), Some(true));
        r.get().unwrap();

        let (tx, rx) = std::sync::mpsc::channel();
        let r = pool
            .apply_async_callback(square, 9, move |v| {
                let _ = tx.send(v.copied().ok());
            })
            .unwrap();
        assert_eq!(r.get().unwrap(), 81);
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Some(81));

        let m = pool.map_async(square, 0..10u64).unwrap();
        assert_eq!(
            m.get().unwrap(),
            (0..10u64).map(|x| x * x).collect::<Vec<_>>()
        );
        assert_eq!(
            pool.starmap(|a: u32, b: u32| a * b, vec![(2, 3), (4, 5)])
                .unwrap(),
            [6, 20]
        );
    });
}

#[test]
fn close_join_and_use_after_close() {
    with_pool(60, 2, |pool| {
        let pids = pool.pids();
        assert_eq!(pids.len(), 2);
        assert_eq!(pool.join(), Err(PoolError::StillRunning));
        let pending = pool.apply_async(slow_id, 3).unwrap();
        pool.close();
        assert_eq!(pool.apply(square, 1).unwrap_err(), PoolError::NotRunning);
        assert_eq!(
            pool.map(square, 0..3u64).unwrap_err(),
            PoolError::NotRunning
        );
        pool.join().unwrap();
        // Queued work finished before the workers left.
        assert_eq!(pending.get().unwrap(), 3);
        for pid in pids {
            assert!(!alive(pid), "worker {pid} still alive after join");
        }
    });
}

#[test]
fn terminate_cancels_pending_results() {
    with_pool(60, 1, |pool| {
        let pids = pool.pids();
        let rs = sleepers(&pool, 4, 5000);
        std::thread::sleep(Duration::from_millis(100));
        pool.terminate();
        for r in rs {
            assert!(r.get().unwrap_err().is_cancelled());
        }
        pool.join().unwrap();
        assert!(pids.iter().all(|&p| !alive(p)));
    });
}

#[test]
fn maxtasksperchild_replaces_workers() {
    let two_workers_of_3_tasks = |b: PoolBuilder| b.processes(2).max_tasks_per_child(3);
    with_built_pool(60, two_workers_of_3_tasks, |pool| {
        let pids = pool.map_chunked(pid_of, 0..30u32, 1).unwrap();
        let mut distinct = pids.clone();
        distinct.sort();
        distinct.dedup();
        assert!(
            distinct.len() >= 10,
            "30 items at 3 per worker need >= 10 workers, saw {}",
            distinct.len()
        );
        for p in &distinct {
            assert!(pids.iter().filter(|x| *x == p).count() <= 3);
        }
    });
}

fn init_marker(path: String) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    // One write per line: `writeln!` may split it into several writes, and
    // the workers append concurrently.
    f.write_all(format!("{}\n", std::process::id()).as_bytes())
        .unwrap();
}

#[test]
fn initializer_runs_once_per_worker() {
    watchdog(60, || {
        let path = std::env::temp_dir().join(format!("mproc-pool-init-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let pool = Pool::builder()
            .processes(3)
            .initializer(init_marker, path.to_string_lossy().into_owned())
            .build()
            .unwrap();
        let _ = pool.map(square, 0..1000u64).unwrap();
        let mut pids = pool.pids();
        pool.close();
        pool.join().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let mut lines: Vec<i32> = text.lines().map(|l| l.parse().unwrap()).collect();
        lines.sort();
        pids.sort();
        assert_eq!(lines, pids, "one initializer run per worker");
    });
}

fn bad_init(_: u32) {
    panic!("initializer refuses");
}

#[test]
fn failing_initializer_fails_build() {
    watchdog(60, || {
        match Pool::builder()
            .processes(2)
            .initializer(bad_init, 1)
            .build()
        {
            Err(mproc_pool::BuildError::Initializer { message }) => {
                assert!(message.contains("initializer refuses"))
            }
            other => panic!("{other:?}"),
        }
    });
}

fn fail_in_first_worker(_: ()) {
    if mproc_process::current_process().name() == "PoolWorker-1" {
        panic!("the first worker refuses");
    }
}

/// An initializer that fails in one worker only: its replacement succeeds,
/// so a build that missed the failure (the death handler used to consume it
/// and respawn the worker before build looked) would return a working pool.
#[test]
fn initializer_failing_in_one_worker_fails_build() {
    watchdog(120, || {
        for round in 0..20 {
            match Pool::builder()
                .processes(2)
                .initializer(fail_in_first_worker, ())
                .build()
            {
                Err(mproc_pool::BuildError::Initializer { message }) => {
                    assert!(message.contains("the first worker refuses"), "{message}")
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
    });
}

fn exit_in_init(code: i32) {
    std::process::exit(code);
}

/// An initializer that ends its worker (no panic to report) fails build
/// too, with how the worker ended, instead of being retried for ever.
#[test]
fn initializer_ending_its_worker_fails_build() {
    watchdog(60, || {
        match Pool::builder()
            .processes(2)
            .initializer(exit_in_init, 7)
            .build()
        {
            Err(mproc_pool::BuildError::WorkerLost { status }) => {
                assert_eq!(status.code(), Some(7), "{status}")
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn build_validates_arguments() {
    assert!(matches!(
        Pool::new(0),
        Err(mproc_pool::BuildError::NoProcesses)
    ));
    assert!(matches!(
        Pool::builder().max_tasks_per_child(0).build(),
        Err(mproc_pool::BuildError::ZeroMaxTasks)
    ));
}

#[test]
fn large_arguments_and_results() {
    with_pool(60, 2, |pool| {
        let big: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 3 << 20]).collect();
        let sums = pool
            .map(
                |v: Vec<u8>| v.iter().map(|&b| u64::from(b)).sum::<u64>(),
                big,
            )
            .unwrap();
        assert_eq!(sums, [0, 3 << 20, 2 * (3 << 20), 3 * (3 << 20)]);
        let back = pool.apply(|n: usize| vec![7u8; n], 5 << 20).unwrap();
        assert_eq!(back.len(), 5 << 20);
        assert!(back.iter().all(|&b| b == 7));
    });
}

#[test]
fn cancel_resolves_everything_and_pool_stays_usable() {
    with_pool(60, 2, |pool| {
        let rs = sleepers(&pool, 6, 10_000);
        std::thread::sleep(Duration::from_millis(200));
        let t0 = Instant::now();
        pool.cancel();
        for r in rs {
            assert!(r.get().unwrap_err().is_cancelled());
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(pool.map(square, 0..100u64).unwrap().len(), 100);
    });
}

#[test]
fn pool_from_a_parent_with_busy_threads() {
    watchdog(60, || {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinners: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut v = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        v.push(vec![0u8; 1024]);
                        if v.len() > 100 {
                            v.clear();
                        }
                    }
                })
            })
            .collect();
        let pool = Pool::new(2).unwrap();
        assert_eq!(pool.map(square, 0..1000u64).unwrap()[999], 999 * 999);
        drop(pool);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in spinners {
            s.join().unwrap();
        }
    });
}

fn stubborn(ms: u64) -> u64 {
    // SAFETY: setting a signal disposition has no preconditions.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn terminate_escalates_to_sigkill() {
    with_pool(60, 1, |pool| {
        let pids = pool.pids();
        let r = pool.apply_async(stubborn, 30_000).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let t0 = Instant::now();
        pool.terminate_timeout(Duration::from_millis(300));
        // SIGTERM was ignored, so it took the grace period and then SIGKILL.
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert!(r.get().unwrap_err().is_cancelled());
        assert!(pids.iter().all(|&p| !alive(p)));
    });
}

#[test]
fn drop_joins_with_a_deadline_then_terminates() {
    let one_worker_dropped_within_300ms =
        |b: PoolBuilder| b.processes(1).drop_timeout(Duration::from_millis(300));
    with_built_pool(60, one_worker_dropped_within_300ms, |pool| {
        let pids = pool.pids();
        let quick = pool.apply_async(slow_id, 1).unwrap();
        let stuck = pool.apply_async(stubborn, 30_000).unwrap();
        let t0 = Instant::now();
        drop(pool);
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(quick.get().unwrap(), 1);
        assert!(stuck.get().unwrap_err().is_cancelled());
        assert!(pids.iter().all(|&p| !alive(p)));
    });
}

/// A value whose `Serialize` fails with its own message when it is odd.
#[derive(Debug, serde::Deserialize)]
struct Picky(u32);

impl serde::Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 2 == 1 {
            return Err(serde::ser::Error::custom(format!("{} is odd", self.0)));
        }
        s.serialize_u32(self.0)
    }
}

fn picky_result(x: u32) -> Picky {
    Picky(x)
}

fn picky_arg(p: Picky) -> u32 {
    p.0
}

#[test]
fn values_that_fail_to_serialize_are_encode_errors_with_their_reason() {
    with_pool(60, 2, |pool| {
        // A result the worker cannot serialize: an encode error of that task.
        let items: Vec<_> = pool.imap(picky_result, 0..4u32).unwrap().collect();
        assert_eq!(items[0].as_ref().unwrap().0, 0);
        assert_eq!(items[2].as_ref().unwrap().0, 2);
        for k in [1, 3] {
            match &items[k] {
                Err(TaskError::Encode(m)) => {
                    assert!(m.contains(&format!("{k} is odd")), "{m}");
                    assert!(m.contains("result"), "{m}");
                }
                other => panic!("item {k}: expected an encode error, got {other:?}"),
            }
        }
        match pool.apply(picky_result, 5) {
            Err(e) => match e.task_error() {
                Some(TaskError::Encode(m)) => assert!(m.contains("5 is odd"), "{m}"),
                other => panic!("{other:?}"),
            },
            Ok(v) => panic!("{v:?}"),
        }
        // An argument this process cannot serialize: also an encode error,
        // with its reason, and the task never ran.
        match pool.apply(picky_arg, Picky(7)) {
            Err(e) => match e.task_error() {
                Some(TaskError::Encode(m)) => {
                    assert!(m.contains("7 is odd") && m.contains("argument"), "{m}")
                }
                other => panic!("{other:?}"),
            },
            Ok(v) => panic!("{v}"),
        }
        let items: Vec<_> = pool
            .imap(picky_arg, vec![Picky(0), Picky(9)])
            .unwrap()
            .collect();
        assert_eq!(items[0].as_ref().unwrap(), &0);
        match &items[1] {
            Err(TaskError::Encode(m)) => assert!(m.contains("9 is odd"), "{m}"),
            other => panic!("{other:?}"),
        }
    });
}
