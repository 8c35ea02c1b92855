//! Dead workers: the task they held fails with WorkerLost, nothing hangs,
//! the pool is replaced and stays usable.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{alive, watchdog, with_pool};
use mproc_pool::{ExitStatus, Pool, TaskError};

fn marker(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mproc-pool-crash-{tag}-{}", std::process::id()))
}

/// Item `victim` announces its pid in a file and sleeps; the others are fast.
fn maybe_long((x, victim, path): (u32, u32, String)) -> u32 {
    if x == victim {
        std::fs::write(&path, std::process::id().to_string()).unwrap();
        std::thread::sleep(Duration::from_secs(30));
    }
    x + 1
}

fn wait_for_pid(path: &PathBuf) -> i32 {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(path) {
            if let Ok(p) = s.trim().parse() {
                return p;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the victim never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn sigkill_mid_task_fails_only_that_task() {
    with_pool(90, 2, |pool| {
        let before = pool.pids();
        let path = marker("one");
        let _ = std::fs::remove_file(&path);
        let p = path.to_string_lossy().into_owned();
        let items: Vec<_> = (0..200u32).map(|x| (x, 57u32, p.clone())).collect();
        let mut it = pool.imap(maybe_long, items).unwrap();
        let killer = std::thread::spawn(move || {
            let pid = wait_for_pid(&path);
            let _ = std::fs::remove_file(&path);
            // SAFETY: kill(2) on a pid our pool started and has not reaped.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            (pid, Instant::now())
        });
        let mut results = Vec::new();
        let mut lost_at = None;
        for r in it.by_ref() {
            if r.is_err() && lost_at.is_none() {
                lost_at = Some(Instant::now());
            }
            results.push(r);
        }
        drop(it);
        let (victim_pid, killed_at) = killer.join().unwrap();
        assert_eq!(results.len(), 200);
        for (i, r) in results.iter().enumerate() {
            if i == 57 {
                match r {
                    Err(TaskError::WorkerLost { pid, status }) => {
                        assert_eq!(*pid, victim_pid);
                        assert_eq!(*status, ExitStatus::Signaled(libc::SIGKILL));
                    }
                    other => panic!("item 57: {other:?}"),
                }
            } else {
                assert_eq!(r.as_ref().unwrap(), &(i as u32 + 1), "item {i}");
            }
        }
        if let Some(t) = lost_at {
            eprintln!(
                "worker death reported {:?} after SIGKILL",
                t.saturating_duration_since(killed_at)
            );
        }
        // Replaced, and usable.
        let after = pool.pids();
        assert_eq!(after.len(), 2);
        assert!(!after.contains(&victim_pid));
        assert!(before.contains(&victim_pid));
        assert_eq!(pool.map(|x: u64| x * 2, 0..1000u64).unwrap()[999], 1998);
        assert!(!alive(victim_pid));
    });
}

#[test]
fn apply_async_on_a_killed_worker_resolves() {
    with_pool(60, 1, |pool| {
        let path = marker("apply");
        let _ = std::fs::remove_file(&path);
        let r = pool
            .apply_async(maybe_long, (1, 1, path.to_string_lossy().into_owned()))
            .unwrap();
        let pid = wait_for_pid(&path);
        let _ = std::fs::remove_file(&path);
        let t0 = Instant::now();
        // SAFETY: kill(2) on our own worker.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let e = r.get().unwrap_err();
        eprintln!("apply_async WorkerLost after {:?}", t0.elapsed());
        assert!(e.is_worker_lost(), "{e:?}");
        assert_eq!(pool.apply(|x: u32| x + 1, 1).unwrap(), 2);
    });
}

fn tick(x: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(500));
    x
}

#[test]
fn repeated_kills_during_a_long_imap_never_hang() {
    with_pool(120, 2, |pool| {
        let n = 3000u64;
        let pids_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut ok = 0u64;
        let mut lost = 0u64;
        std::thread::scope(|s| {
            let pool_ref = &pool;
            let seen = pids_seen.clone();
            let stop2 = stop.clone();
            s.spawn(move || {
                for _ in 0..8 {
                    std::thread::sleep(Duration::from_millis(60));
                    if stop2.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    if let Some(&pid) = pool_ref.pids().first() {
                        seen.lock().unwrap().push(pid);
                        // SAFETY: kill(2) on a worker of our pool.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            });
            for (i, r) in pool.imap(tick, 0..n).unwrap().enumerate() {
                match r {
                    Ok(v) => {
                        assert_eq!(v, i as u64);
                        ok += 1;
                    }
                    Err(TaskError::WorkerLost { .. }) => lost += 1,
                    Err(e) => panic!("item {i}: {e}"),
                }
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(ok + lost, n);
        let killed = pids_seen.lock().unwrap().len() as u64;
        assert!(lost <= killed, "lost {lost} items for {killed} kills");
        eprintln!("{killed} kills: {ok} ok, {lost} lost");
        assert_eq!(
            pool.map(|x: u64| x + 1, 0..10u64).unwrap(),
            (1..11).collect::<Vec<_>>()
        );
        for pid in pids_seen.lock().unwrap().iter() {
            assert!(!alive(*pid));
        }
    });
}

#[test]
fn abort_in_a_task_is_worker_lost_with_sigabrt() {
    with_pool(60, 2, |pool| {
        let r: Vec<_> = pool
            .imap(
                |x: u32| if x == 2 { std::process::abort() } else { x },
                0..5u32,
            )
            .unwrap()
            .collect();
        match &r[2] {
            Err(TaskError::WorkerLost { status, .. }) => {
                assert_eq!(*status, ExitStatus::Signaled(libc::SIGABRT))
            }
            other => panic!("{other:?}"),
        }
        for i in [0usize, 1, 3, 4] {
            assert_eq!(r[i].as_ref().unwrap(), &(i as u32));
        }
    });
}

/// A worker killed before anything was asked of the pool (its threads
/// start with the first operation) is noticed and replaced, and the work
/// sent to it runs elsewhere.
#[test]
fn a_worker_killed_before_any_work_is_replaced() {
    with_pool(60, 2, |pool| {
        let before = pool.pids();
        assert_eq!(before.len(), 2);
        // SAFETY: kill(2) on a pid our pool started and has not reaped.
        assert_eq!(unsafe { libc::kill(before[0], libc::SIGKILL) }, 0);
        while alive(before[0]) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let v = pool.map(|x: u64| x * 2, 0..10_000u64).unwrap();
        assert_eq!(v.iter().sum::<u64>(), 9_999 * 10_000);
        let t0 = Instant::now();
        let after = loop {
            let p = pool.pids();
            if p.len() == 2 && !p.contains(&before[0]) {
                break p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "not replaced: {p:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        assert!(after.contains(&before[1]));
        pool.close();
        pool.join().unwrap();
    });
}

#[test]
fn dropping_a_pool_leaves_no_workers() {
    with_pool(60, 2, |pool| {
        let pids = pool.pids();
        assert_eq!(pool.map(|x: u8| x, 0..10u8).unwrap().len(), 10);
        drop(pool);
        for p in pids {
            assert!(!alive(p));
        }
    });
}

fn init_unless_marker(path: String) {
    if std::path::Path::new(&path).exists() {
        panic!("marker present: refusing to start");
    }
}

/// Builds a one-worker pool with `init`, which starts refusing once a
/// marker file exists, then kills the worker: the replacements fail their
/// initializer, and after a bounded number of attempts the pool gives up
/// and queued work fails with [`TaskError::InitializerFailed`] saying
/// `why` (no endless loop), new work too.
fn check_failing_replacements_stop_the_pool<F>(init: F, tag: &str, why: &str)
where
    F: Fn(String) + Copy + Send + 'static,
{
    let path = marker(tag);
    let _ = std::fs::remove_file(&path);
    let p = path.to_string_lossy().into_owned();
    let pool = Pool::builder()
        .processes(1)
        .initializer(init, p)
        .build()
        .unwrap();
    assert_eq!(pool.apply(|x: u32| x + 1, 1).unwrap(), 2);
    std::fs::write(&path, b"x").unwrap();
    let victim = pool.pids()[0];
    // SAFETY: kill(2) on our own worker.
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let r = pool.apply_async(|x: u32| x + 1, 2).unwrap();
    let e = r.get().unwrap_err();
    let _ = std::fs::remove_file(&path);
    match e.task_error() {
        Some(TaskError::InitializerFailed(m)) => assert!(m.contains(why), "{m}"),
        other => panic!("{other:?}"),
    }
    // New work fails at once too.
    assert!(matches!(
        pool.apply(|x: u32| x, 3).unwrap_err().task_error(),
        Some(TaskError::InitializerFailed(_))
    ));
}

#[test]
fn replacements_failing_their_initializer_stop_the_pool() {
    watchdog(60, || {
        check_failing_replacements_stop_the_pool(init_unless_marker, "init", "marker present")
    });
}

fn exit_if_marker(path: String) {
    if std::path::Path::new(&path).exists() {
        std::process::exit(9);
    }
}

/// Replacements whose initializer ends the process (no panic to report)
/// count as failing it: the pool gives up instead of respawning for ever.
#[test]
fn replacements_ending_in_their_initializer_stop_the_pool() {
    watchdog(60, || {
        check_failing_replacements_stop_the_pool(exit_if_marker, "init-exit", "code 9")
    });
}

const VICTIM: u64 = 654_321;

fn tiny_or_abort(x: u64) -> u64 {
    if x == VICTIM {
        std::process::abort()
    }
    x.wrapping_mul(3)
}

/// Among a million items too short to time one by one, the item that kills
/// its worker must still be the only one to fail.
fn check_only_victim_lost(r: &[Result<u64, TaskError>]) {
    assert_eq!(r.len(), 1_000_000);
    for (i, v) in r.iter().enumerate() {
        if i as u64 == VICTIM {
            match v {
                Err(TaskError::WorkerLost { status, .. }) => {
                    assert_eq!(*status, ExitStatus::Signaled(libc::SIGABRT))
                }
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(v.as_ref().unwrap(), &(i as u64 * 3), "item {i}");
        }
    }
}

#[test]
fn a_tiny_item_that_kills_its_worker_is_the_only_one_lost() {
    with_pool(120, 2, |pool| {
        // Teach the pool that the function is tiny (large chunks).
        assert_eq!(pool.map(tiny_or_abort, 0..200_000u64).unwrap()[7], 21);
        let r: Vec<_> = pool.imap(tiny_or_abort, 0..1_000_000u64).unwrap().collect();
        check_only_victim_lost(&r);
        // Plain numbers from a Vec take the other tight loop.
        let input: Vec<u64> = (0..1_000_000).collect();
        let r: Vec<_> = pool.imap(tiny_or_abort, input).unwrap().collect();
        check_only_victim_lost(&r);
        assert_eq!(pool.map(tiny_or_abort, 0..10u64).unwrap()[9], 27);
    });
}
