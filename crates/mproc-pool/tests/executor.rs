//! ProcessPoolExecutor: Python's concurrent.futures on the pool's engine.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{only_failure_at, watchdog, with_executor};
use mproc_pool::{
    AsFuture, FutureError, ProcessPoolExecutor, ReturnWhen, TaskError, as_completed,
    as_completed_timeout, wait, wait_timeout,
};

fn square(x: u64) -> u64 {
    x * x
}

/// Sleeps `ms` milliseconds, then returns them.
fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

/// Submits one `sleep_ms` task for each of `ms`, in their order.
fn sleeps(
    ex: &ProcessPoolExecutor,
    ms: impl IntoIterator<Item = u64>,
) -> Vec<mproc_pool::Future<u64>> {
    ms.into_iter()
        .map(|ms| ex.submit(sleep_ms, ms).unwrap())
        .collect()
}

/// Panics for 3, else `x + 1`.
fn panics_on_3(x: u32) -> u32 {
    assert!(x != 3, "three is not allowed");
    x + 1
}

/// Kills its own worker with SIGKILL for 3, else `x + 1`.
fn killed_on_3(x: u32) -> u32 {
    if x == 3 {
        // SAFETY: kill(2) of this very process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    x + 1
}

/// Aborts its worker for 3 after a pause, else sleeps a little.
fn aborts_on_3(x: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(20));
    if x == 3 {
        std::process::abort();
    }
    x + 1
}

/// What the tasks above return for `x` (when they return).
fn plus_one(x: usize) -> u32 {
    x as u32 + 1
}

/// Waits until `f` was dispatched to a worker.
fn wait_running<R>(f: &mproc_pool::Future<R>) {
    let t0 = Instant::now();
    while !f.running() {
        assert!(t0.elapsed() < Duration::from_secs(20), "never dispatched");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// On an executor of one worker: a task sleeping `long_ms`, running when
/// this returns, and six short ones submitted after it.
fn one_running_six_queued(
    ex: &ProcessPoolExecutor,
    long_ms: u64,
) -> (mproc_pool::Future<u64>, Vec<mproc_pool::Future<u64>>) {
    let long = ex.submit(sleep_ms, long_ms).unwrap();
    let rest = sleeps(ex, 0..6);
    wait_running(&long);
    (long, rest)
}

#[test]
fn results_equal_serial() {
    with_executor(60, 2, |ex| {
        let futs: Vec<_> = (0..200u64).map(|x| ex.submit(square, x).unwrap()).collect();
        let got: Vec<u64> = futs.iter().map(|f| f.result().unwrap()).collect();
        let want: Vec<u64> = (0..200u64).map(square).collect();
        assert_eq!(got, want);
        assert!(
            futs.iter()
                .all(|f| f.done() && !f.running() && !f.cancelled())
        );
        assert_eq!(futs[7].exception(), None);
        // Serial round trips, and into_result.
        for x in 0..50u64 {
            assert_eq!(ex.submit(square, x).unwrap().into_result().unwrap(), x * x);
        }
        let mapped: Vec<u64> = ex
            .map(square, 0..1000u64)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(mapped, (0..1000u64).map(square).collect::<Vec<_>>());
    });
}

#[test]
fn result_timeout_then_value() {
    with_executor(60, 1, |ex| {
        let f = ex.submit(sleep_ms, 800).unwrap();
        let t0 = Instant::now();
        assert_eq!(
            f.result_timeout(Duration::from_millis(100)),
            Err(FutureError::Timeout)
        );
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert_eq!(
            f.exception_timeout(Duration::from_millis(10)),
            Err(FutureError::Timeout)
        );
        let f = f
            .into_result_timeout(Duration::from_millis(10))
            .unwrap_err();
        let f = f.unwrap_err();
        assert_eq!(f.result().unwrap(), 800);
    });
}

#[test]
fn map_timeout_raises_after_the_deadline() {
    with_executor(60, 2, |ex| {
        let t0 = Instant::now();
        let mut it = ex
            .map_timeout(sleep_ms, vec![0, 10, 1500, 0], Duration::from_millis(300))
            .unwrap();
        assert_eq!(it.next(), Some(Ok(0)));
        assert_eq!(it.next(), Some(Ok(10)));
        assert_eq!(it.next(), Some(Err(FutureError::Timeout)));
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(it.next(), None);
    });
}

#[test]
fn as_completed_yields_all_in_completion_order() {
    with_executor(60, 2, |ex| {
        let futs = sleeps(&ex, [2000, 0]);
        let order: Vec<u64> = as_completed(&futs).map(|f| f.result().unwrap()).collect();
        // A 2 s gap: the fast one comes first.
        assert_eq!(order, [0, 2000]);
        // Many of different lengths: every one, once.
        let futs = sleeps(&ex, (0..12u64).map(|i| (i * 7) % 40));
        let got: Vec<u64> = as_completed(futs)
            .map(|f| f.into_result().unwrap())
            .collect();
        let want: Vec<u64> = (0..12u64).map(|i| (i * 7) % 40).collect();
        assert_eq!(got.len(), want.len());
        assert_eq!(
            got.iter().collect::<BTreeSet<_>>(),
            want.iter().collect::<BTreeSet<_>>()
        );
        // A deadline, as Python's as_completed(timeout).
        let futs = sleeps(&ex, [1000]);
        let mut it = as_completed(&futs);
        let t0 = Instant::now();
        assert!(it.next_timeout(Duration::from_millis(100)).is_err());
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert_eq!(it.next().map(|f| f.result().unwrap()), Some(1000));
        assert!(it.next().is_none());
        // Python's as_completed(fs, timeout).
        let futs = sleeps(&ex, [0, 1000]);
        let t0 = Instant::now();
        let got: Vec<_> = as_completed_timeout(&futs, Duration::from_millis(300)).collect();
        assert!(t0.elapsed() >= Duration::from_millis(300));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap().result().unwrap(), 0);
        assert!(got[1].is_err());
    });
}

#[test]
fn wait_first_completed() {
    with_executor(60, 2, |ex| {
        let futs = sleeps(&ex, [2000, 0]);
        let (done, not_done) = wait(&futs, ReturnWhen::FirstCompleted);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].result().unwrap(), 0);
        assert_eq!(not_done.len(), 1);
        assert!(!not_done[0].done());
        let (done, not_done) = wait(futs, ReturnWhen::AllCompleted);
        assert_eq!((done.len(), not_done.len()), (2, 0));
    });
}

#[test]
fn wait_first_exception() {
    with_executor(60, 2, |ex| {
        let slow = ex.submit(sleep_ms, 2000).unwrap();
        let bad = ex.submit(panics_on_3, 3).unwrap();
        let fine = ex.submit(panics_on_3, 4).unwrap();
        let (done, not_done) = wait([&bad as &dyn AsFuture, &slow], ReturnWhen::FirstException);
        assert_eq!((done.len(), not_done.len()), (1, 1));
        assert!(done[0].as_future_ref().failed());
        assert!(!not_done[0].as_future_ref().done());
        assert!(bad.exception().is_some_and(|e| e.is_panicked()));
        // Without a failure it waits for all.
        let (done, not_done) = wait([&fine as &dyn AsFuture, &slow], ReturnWhen::FirstException);
        assert_eq!((done.len(), not_done.len()), (2, 0));
        assert_eq!(fine.result().unwrap(), 5);
    });
}

#[test]
fn wait_all_completed_and_timeout() {
    with_executor(60, 2, |ex| {
        let futs = sleeps(&ex, [0, 30, 60, 90]);
        let (done, not_done) = wait(&futs, ReturnWhen::AllCompleted);
        assert_eq!((done.len(), not_done.len()), (4, 0));
        assert_eq!(
            done.iter().map(|f| f.result().unwrap()).collect::<Vec<_>>(),
            [0, 30, 60, 90]
        );
        let slow = ex.submit(sleep_ms, 1500).unwrap();
        let t0 = Instant::now();
        let (done, not_done) = wait_timeout(
            [&slow],
            Duration::from_millis(100),
            ReturnWhen::AllCompleted,
        );
        assert!(t0.elapsed() >= Duration::from_millis(100));
        assert_eq!((done.len(), not_done.len()), (0, 1));
        // Nothing to wait for: at once.
        let none: Vec<mproc_pool::Future<u64>> = Vec::new();
        let (d, n) = wait(&none, ReturnWhen::FirstCompleted);
        assert!(d.is_empty() && n.is_empty());
    });
}

#[test]
fn cancel_pending_but_not_running() {
    with_executor(60, 1, |ex| {
        let (long, rest) = one_running_six_queued(&ex, 700);
        // Running: cannot be cancelled.
        assert!(!long.cancel());
        assert!(!long.cancelled());
        let cancelled: Vec<bool> = rest.iter().map(|f| f.cancel()).collect();
        // One worker holds at most two batches: most of them were queued.
        assert!(
            cancelled.iter().filter(|c| **c).count() >= 4,
            "{cancelled:?}"
        );
        for (f, c) in rest.iter().zip(&cancelled) {
            if *c {
                assert!(f.cancelled() && f.done());
                assert!(f.result().unwrap_err().is_cancelled());
                assert_eq!(f.exception(), Some(TaskError::Cancelled));
                // Cancelling again says so.
                assert!(f.cancel());
            } else {
                assert!(f.result().is_ok());
            }
        }
        assert_eq!(long.result().unwrap(), 700);
        assert!(!long.cancel());
    });
}

#[test]
fn done_callbacks_run_once_with_the_outcome() {
    with_executor(60, 1, |ex| {
        let hits = Arc::new(AtomicUsize::new(0));
        let f = ex.submit(sleep_ms, 200).unwrap();
        let h = hits.clone();
        f.add_done_callback(move |r| {
            assert_eq!(r, Ok(&200));
            h.fetch_add(1, Ordering::SeqCst);
        });
        f.wait();
        // After it is done: runs at once, here.
        let h = hits.clone();
        f.add_done_callback(move |r| {
            assert!(r.is_ok());
            h.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 11);
        let bad = ex.submit(panics_on_3, 3).unwrap();
        let h = hits.clone();
        bad.add_done_callback(move |r| {
            assert!(r.is_err_and(|e| e.is_panicked()));
            h.fetch_add(100, Ordering::SeqCst);
        });
        bad.wait();
        assert_eq!(hits.load(Ordering::SeqCst), 111);
    });
}

#[test]
fn shutdown_without_waiting_cancels_pending() {
    with_executor(60, 1, |ex| {
        let (long, rest) = one_running_six_queued(&ex, 500);
        ex.shutdown(false, true);
        assert!(!long.done());
        assert_eq!(
            ex.submit(square, 2).unwrap_err(),
            mproc_pool::PoolError::NotRunning
        );
        assert!(ex.map(square, 0..2u64).is_err());
        assert_eq!(long.result().unwrap(), 500);
        let cancelled = rest.iter().filter(|f| f.cancelled()).count();
        assert!(cancelled >= 4, "{rest:?}");
        for f in &rest {
            f.wait();
            assert!(f.cancelled() || f.result().is_ok());
        }
        // Waiting after the fact is fine.
        ex.shutdown(true, false);
    });
}

#[test]
fn shutdown_waits_for_running_and_queued() {
    with_executor(60, 2, |ex| {
        let futs = sleeps(&ex, 20..28);
        ex.shutdown(true, false);
        assert!(futs.iter().all(|f| f.done()));
        assert_eq!(
            futs.iter().map(|f| f.result().unwrap()).collect::<Vec<_>>(),
            (0..8).map(|i| 20 + i).collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_panic_fails_only_its_future_with_the_message() {
    with_executor(60, 2, |ex| {
        let futs: Vec<_> = (0..8u32)
            .map(|x| ex.submit(panics_on_3, x).unwrap())
            .collect();
        match only_failure_at(futs.iter().map(|f| f.result()), 3, plus_one) {
            FutureError::Task(TaskError::Panicked { message, .. }) => {
                assert_eq!(message, "three is not allowed");
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(futs[3].exception().is_some());
    });
}

#[test]
fn a_killed_worker_fails_only_its_future() {
    with_executor(90, 2, |ex| {
        let before = ex.pids();
        let futs: Vec<_> = (0..40u32)
            .map(|x| ex.submit(killed_on_3, x).unwrap())
            .collect();
        match only_failure_at(futs.iter().map(|f| f.result()), 3, plus_one) {
            FutureError::Task(TaskError::WorkerLost { status, .. }) => {
                assert_eq!(status, mproc_pool::ExitStatus::Signaled(libc::SIGKILL));
            }
            e => panic!("unexpected {e:?}"),
        }
        assert!(futs[3].exception().is_some_and(|e| e.is_worker_lost()));
        // Replaced: still two workers, and it keeps working.
        assert_eq!(ex.submit(square, 9).unwrap().result().unwrap(), 81);
        let after = ex.pids();
        assert_eq!(after.len(), 2);
        assert_ne!(before, after);
        // An abort, with tasks spread over both workers.
        let futs: Vec<_> = (0..8u32)
            .map(|x| ex.submit(aborts_on_3, x).unwrap())
            .collect();
        let e = only_failure_at(futs.iter().map(|f| f.result()), 3, plus_one);
        assert!(e.task_error().is_some_and(|e| e.is_worker_lost()), "{e:?}");
    });
}

/// Marks item `x` as run in `dir` (`u32::MAX` if it ran before), and
/// kills its own worker for 3.
fn once_or_killed((x, dir): (u32, String)) -> u32 {
    let first = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(format!("{dir}/{x}"))
        .is_ok();
    if x == 3 {
        // SAFETY: kill(2) of this very process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    if first { x + 1 } else { u32::MAX }
}

/// Submits 0..8 of `once_or_killed` to one worker that batches them (the
/// function is measured first); returns the outcomes.
fn run_batch_with_a_killer(rerun: bool) -> Vec<Result<u32, FutureError>> {
    let dir = std::env::temp_dir().join(format!("exec-once-{rerun}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_string_lossy().into_owned();
    let ex = ProcessPoolExecutor::builder()
        .max_workers(1)
        .rerun_lost(rerun)
        .build()
        .unwrap();
    // Teach the engine the function is fast, so tasks travel in batches.
    for x in 100..400u32 {
        ex.submit(once_or_killed, (x, d.clone()))
            .unwrap()
            .result()
            .unwrap();
    }
    let futs: Vec<_> = (0..8u32)
        .map(|x| ex.submit(once_or_killed, (x, d.clone())).unwrap())
        .collect();
    let out: Vec<_> = futs.iter().map(|f| f.result()).collect();
    assert_eq!(ex.submit(square, 3).unwrap().result().unwrap(), 9);
    drop(ex);
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

#[test]
fn at_most_once_fails_lost_tasks_instead_of_rerunning() {
    watchdog(90, || {
        let out = run_batch_with_a_killer(false);
        for (x, r) in out.iter().enumerate() {
            match r {
                Ok(v) => assert_eq!(*v, x as u32 + 1, "task {x} ran twice"),
                // The killer, or one whose result died with the worker.
                Err(e) if e.task_error().is_some_and(TaskError::is_worker_lost) => {
                    assert!(x <= 3, "task {x} never ran in the dead worker");
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert!(
            out[3]
                .as_ref()
                .unwrap_err()
                .task_error()
                .is_some_and(TaskError::is_worker_lost)
        );
        // By default, only the killer fails (the others may run twice).
        let out = run_batch_with_a_killer(true);
        for (x, r) in out.iter().enumerate() {
            match r {
                Ok(_) => assert_ne!(x, 3),
                Err(e) => assert!(x == 3 && e.task_error().is_some_and(TaskError::is_worker_lost)),
            }
        }
    });
}

#[test]
fn futures_outlive_a_dropped_executor() {
    watchdog(60, || {
        let ex = ProcessPoolExecutor::builder()
            .max_workers(1)
            .drop_timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let quick = ex.submit(square, 4).unwrap();
        let slow = ex.submit(sleep_ms, 5000).unwrap();
        let queued = ex.submit(square, 5).unwrap();
        assert_eq!(quick.result().unwrap(), 16);
        drop(ex);
        // Past the drop timeout the workers were terminated.
        assert!(slow.result().unwrap_err().is_cancelled());
        assert!(queued.done());
        assert!(format!("{slow:?}").contains("cancelled"));
    });
}
