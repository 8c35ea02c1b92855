//! Mutual exclusion across processes, handles travelling to children, and
//! recovery from a holder killed with SIGKILL.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use common::{Counter, TestChild, payload, spawn_child, watchdog};
use mproc_sync::{
    Acquired, Barrier, BoundedSemaphore, Condition, Event, Lock, LockTimeoutError, RLock,
    Semaphore, WaitError,
};

const PROCS: usize = 4;
const UPDATES: u64 = 50_000;
const CHILD_LIMIT: Duration = Duration::from_secs(120);

/// Runs the test `child` in PROCS children, each handed `lock`, a shared
/// counter and a barrier to start together (see [`started_updater`]);
/// returns the counter once all of them succeeded.
fn count_by_children<L: Serialize>(child: &str, lock: &L) -> u64 {
    let counter = Counter::new();
    let start = Barrier::new(PROCS).unwrap();
    let children: Vec<_> = (0..PROCS)
        .map(|_| spawn_child(child, &(lock, &counter, &start)))
        .collect();
    for c in children {
        c.wait_success(CHILD_LIMIT);
    }
    counter.get()
}

/// In a child of [`count_by_children`]: its lock and counter, once all
/// PROCS children have started (so that they really contend).
fn started_updater<L: DeserializeOwned>() -> Option<(L, Counter)> {
    let (lock, counter, start) = payload::<(L, Counter, Barrier)>()?;
    start.wait_timeout(Duration::from_secs(60)).unwrap();
    Some((lock, counter))
}

/// PROCS children of the test `child` each make UPDATES updates under
/// `lock` (see [`count_by_children`]): none is lost, and the lock ends free.
fn excludes_children<L: Serialize + Send + 'static>(
    child: &'static str,
    lock: L,
    is_locked: fn(&L) -> bool,
) {
    watchdog(Duration::from_secs(180), move || {
        let count = count_by_children(child, &lock);
        assert_eq!(count, PROCS as u64 * UPDATES);
        assert!(!is_locked(&lock));
    });
}

#[test]
fn lock_excludes_four_processes() {
    excludes_children("child_lock_updates", Lock::new().unwrap(), Lock::is_locked);
}

#[test]
#[ignore = "child role of lock_excludes_four_processes"]
fn child_lock_updates() {
    let Some((lock, counter)) = started_updater::<Lock>() else {
        return;
    };
    let mut contended = 0u64;
    for _ in 0..UPDATES {
        let _g = match lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                contended += 1;
                lock.lock().expect("no holder dies in this test")
            }
        };
        counter.bump_slowly();
    }
    // Witness that the processes really overlapped (shown with --nocapture).
    eprintln!("{contended} of {UPDATES} acquisitions found the lock held");
}

/// CPython: `<RLock(SomeOtherProcess, nonzero)>`: another process sees who
/// owns an RLock and how deep.
#[test]
fn rlock_owner_and_count_are_visible_from_another_process() {
    watchdog(Duration::from_secs(60), || {
        let rlock = RLock::new().unwrap();
        let a = rlock.lock().unwrap();
        let b = rlock.lock().unwrap();
        let me = std::process::id();
        let owner = rlock.owner().unwrap();
        assert_eq!(owner.pid, me);
        assert_eq!(
            format!("{rlock:?}"),
            format!("RLock {{ owner: Some({owner:?}), count: 2 }}")
        );
        let child = spawn_child("child_rlock_observer", &(&rlock, me, owner.tid, 2usize));
        child.wait_success(CHILD_LIMIT);
        drop(b);
        drop(a);
        assert_eq!(format!("{rlock:?}"), "RLock { owner: None, count: 0 }");
        let child = spawn_child("child_rlock_observer", &(&rlock, 0u32, 0u32, 0usize));
        child.wait_success(CHILD_LIMIT);
    });
}

#[test]
#[ignore = "child role of rlock_owner_and_count_are_visible_from_another_process"]
fn child_rlock_observer() {
    let Some((rlock, pid, tid, count)) = payload::<(RLock, u32, u32, usize)>() else {
        return;
    };
    assert_eq!(rlock.count(), count);
    if pid == 0 {
        assert_eq!(rlock.owner(), None);
        assert!(!rlock.is_locked());
    } else {
        let owner = rlock.owner().expect("owned by the parent");
        assert_eq!((owner.pid, owner.tid), (pid, tid));
        assert!(!rlock.is_owned_by_current_thread());
        assert!(rlock.try_lock().unwrap_err().is_would_block());
        assert_eq!(
            format!("{rlock:?}"),
            format!("RLock {{ owner: Some(pid {pid}, thread {tid}), count: {count} }}")
        );
    }
}

/// A holder that exits after a guard-less `acquire` is reported to the next
/// guard-less acquirer as `Acquired::OwnerDied`, for Lock and RLock alike.
#[test]
fn guardless_acquire_reports_a_dead_holder() {
    watchdog(Duration::from_secs(60), || {
        let lock = Lock::new().unwrap();
        let rlock = RLock::new().unwrap();
        let child = spawn_child("child_acquire_and_exit", &(&lock, &rlock));
        child.wait_success(CHILD_LIMIT);
        assert!(lock.is_locked());
        assert_eq!(rlock.count(), 2);
        let limit = Some(Duration::from_secs(30));
        assert_eq!(lock.acquire_timeout(limit), Some(Acquired::OwnerDied));
        assert_eq!(rlock.acquire_timeout(limit), Some(Acquired::OwnerDied));
        assert_eq!(rlock.count(), 1);
        assert_eq!(rlock.owner().map(|o| o.pid), Some(std::process::id()));
        lock.release().unwrap();
        rlock.release().unwrap();
        assert_eq!(lock.acquire(), Acquired::Clean);
        assert_eq!(rlock.acquire(), Acquired::Clean);
    });
}

#[test]
#[ignore = "child role of guardless_acquire_reports_a_dead_holder"]
fn child_acquire_and_exit() {
    let Some((lock, rlock)) = payload::<(Lock, RLock)>() else {
        return;
    };
    assert_eq!(lock.acquire(), Acquired::Clean);
    assert_eq!(rlock.acquire(), Acquired::Clean);
    assert_eq!(rlock.acquire(), Acquired::Clean);
}

#[test]
fn rlock_three_deep_excludes_four_processes() {
    excludes_children(
        "child_rlock_updates",
        RLock::new().unwrap(),
        RLock::is_locked,
    );
}

#[test]
#[ignore = "child role of rlock_three_deep_excludes_four_processes"]
fn child_rlock_updates() {
    let Some((rlock, counter)) = started_updater::<RLock>() else {
        return;
    };
    for _ in 0..UPDATES {
        let _a = rlock.lock().expect("no holder dies");
        let _b = rlock.lock().expect("re-entry");
        let _c = rlock.lock().expect("re-entry");
        assert_eq!(rlock.count(), 3);
        counter.bump_slowly();
    }
}

#[test]
fn lock_released_by_another_process() {
    watchdog(Duration::from_secs(60), || {
        let lock = Lock::new().unwrap();
        std::mem::forget(lock.lock().unwrap());
        spawn_child("child_release_lock", &lock).wait_success(CHILD_LIMIT);
        assert!(!lock.is_locked());
        // Releasing an unlocked Lock is an error, as in CPython.
        assert!(lock.release().is_err());
    });
}

#[test]
#[ignore = "child role of lock_released_by_another_process"]
fn child_release_lock() {
    let Some(lock) = payload::<Lock>() else {
        return;
    };
    assert!(lock.is_locked());
    lock.release().expect("any process may release a Lock");
}

#[test]
fn rlock_release_by_another_process_is_not_owner() {
    watchdog(Duration::from_secs(60), || {
        let rlock = RLock::new().unwrap();
        let _g = rlock.lock().unwrap();
        spawn_child("child_release_rlock", &rlock).wait_success(CHILD_LIMIT);
        assert!(rlock.is_owned_by_current_thread());
    });
}

#[test]
#[ignore = "child role of rlock_release_by_another_process_is_not_owner"]
fn child_release_rlock() {
    let Some(rlock) = payload::<RLock>() else {
        return;
    };
    assert!(rlock.is_locked());
    assert_eq!(rlock.release(), Err(mproc_sync::NotOwner));
    assert!(rlock.try_lock().is_err());
}

#[test]
fn event_and_condition_across_processes() {
    watchdog(Duration::from_secs(60), || {
        let ready = Event::new().unwrap();
        let go = Event::new().unwrap();
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let counter = Counter::new();
        let child = spawn_child("child_event_condition", &(&ready, &go, &cond, &counter));
        assert!(
            ready.wait_timeout(Duration::from_secs(30)),
            "child never became ready"
        );
        go.set();
        {
            let _g = cond.lock().unwrap();
            let r = cond.wait_for_timeout(|| counter.get() == 7, Duration::from_secs(30));
            assert_eq!(r, Ok(true));
        }
        child.wait_success(CHILD_LIMIT);
    });
}

#[test]
#[ignore = "child role of event_and_condition_across_processes"]
fn child_event_condition() {
    let Some((ready, go, cond, counter)) = payload::<(Event, Event, Condition, Counter)>() else {
        return;
    };
    ready.set();
    assert!(go.wait_timeout(Duration::from_secs(30)));
    let _g = cond.lock().unwrap();
    counter.set(7);
    cond.notify_all().unwrap();
}

/// CPython's `test_waitfor`: the child notifies and then waits on the same
/// condition; its own notify must not wake itself (it was for the parent).
/// Ten rounds, each the CPython test's exchange.
#[test]
fn condition_wait_for_across_processes() {
    watchdog(Duration::from_secs(120), || {
        // Both processes on one CPU: the child runs on from its notify into
        // its wait before the parent is scheduled, which is what lost the
        // wake-up (on two CPUs the parent usually won the race).
        let cpu = mproc_testkit::pin_to_nth_cpu(0);
        let cond = Condition::new().unwrap();
        let state = Counter::new();
        state.set(u64::MAX);
        let child = spawn_child("child_wait_for", &(&cond, &state, cpu));
        for round in 0..WAIT_FOR_ROUNDS {
            {
                let _g = cond.lock().unwrap();
                // CPython's `wait_for(lambda: state == 0)`, without a
                // timeout: a lost wake-up hangs it. Here a wait that times
                // out fails.
                while state.get() != round * 5 {
                    let notified = cond.wait_timeout(Duration::from_secs(5)).unwrap();
                    assert!(notified, "round {round}: the child's notify was lost");
                }
            }
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(2));
                let _g = cond.lock().unwrap();
                state.set(state.get() + 1);
                cond.notify(1).unwrap();
            }
        }
        child.wait_success(CHILD_LIMIT);
        assert_eq!(state.get(), WAIT_FOR_ROUNDS * 5 - 1);
    });
}

const WAIT_FOR_ROUNDS: u64 = 10;

#[test]
#[ignore = "child role of condition_wait_for_across_processes"]
fn child_wait_for() {
    let Some((cond, state, cpu)) = payload::<(Condition, Counter, usize)>() else {
        return;
    };
    mproc_testkit::pin_to_cpu(cpu);
    for round in 0..WAIT_FOR_ROUNDS {
        let _g = cond.lock().unwrap();
        state.set(round * 5);
        cond.notify(1).unwrap();
        let ok = cond
            .wait_for_timeout(|| state.get() == round * 5 + 4, Duration::from_secs(20))
            .unwrap();
        assert!(ok, "round {round}: state {}", state.get());
    }
}

#[test]
fn barrier_across_processes() {
    watchdog(Duration::from_secs(60), || {
        let barrier = Barrier::new(3).unwrap();
        let counter = Counter::new();
        let children: Vec<_> = (0..2)
            .map(|_| spawn_child("child_barrier", &(&barrier, &counter)))
            .collect();
        let mut indices = vec![];
        for _ in 0..5 {
            indices.push(barrier.wait_timeout(Duration::from_secs(30)).unwrap());
        }
        for c in children {
            c.wait_success(CHILD_LIMIT);
        }
        assert!(indices.iter().all(|&i| i < 3));
        // Each of the 5 generations gives exactly one index 0 among 3 parties.
        assert_eq!(counter.get(), 0);
    });
}

#[test]
#[ignore = "child role of barrier_across_processes"]
fn child_barrier() {
    let Some((barrier, _counter)) = payload::<(Barrier, Counter)>() else {
        return;
    };
    for _ in 0..5 {
        let i = barrier.wait_timeout(Duration::from_secs(30)).unwrap();
        assert!(i < 3);
    }
}

// ----- crash tests: SIGKILL a child while it holds each primitive -----

/// What a crash child holds before it is killed.
#[derive(serde::Serialize, serde::Deserialize)]
enum Held {
    Lock(Lock),
    RLock(RLock),
    Semaphore(Semaphore),
    Bounded(BoundedSemaphore),
    Condition(Condition),
    Barrier(Barrier),
}

/// Starts a child that takes `held`, writes 42 into the counter, sets
/// `ready`, and sleeps until it is killed; kills it (leaving a zombie) and
/// returns the child and the instant of the kill.
fn kill_holder(held: &Held, counter: &Counter) -> (TestChild, Instant) {
    let ready = Event::new().unwrap();
    let child = spawn_child("child_hold_and_hang", &(held, counter, &ready));
    assert!(
        ready.wait_timeout(Duration::from_secs(30)),
        "child never took the primitive"
    );
    if let Held::Barrier(b) = held {
        // The child sets `ready` just before it waits: kill it once it waits.
        let t0 = Instant::now();
        while b.n_waiting() == 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "child never waited on the barrier"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    child.signal_kill();
    (child, Instant::now())
}

#[test]
#[ignore = "child role of the crash tests"]
fn child_hold_and_hang() {
    let Some((held, counter, ready)) = payload::<(Held, Counter, Event)>() else {
        return;
    };
    // Whatever the child takes stays held until it is killed (its guards
    // are never dropped).
    match &held {
        Held::Lock(l) => std::mem::forget(l.lock().unwrap()),
        Held::RLock(l) => std::mem::forget((l.lock().unwrap(), l.lock().unwrap())),
        Held::Semaphore(s) => std::mem::forget(s.acquire().unwrap()),
        Held::Bounded(s) => std::mem::forget(s.acquire().unwrap()),
        Held::Condition(c) => std::mem::forget(c.lock().unwrap()),
        Held::Barrier(_) => {}
    }
    counter.set(42);
    ready.set();
    if let Held::Barrier(b) = &held {
        // Waits for a third party that never comes, until killed.
        let _ = b.wait();
    }
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn report(what: &str, killed: Instant) {
    eprintln!("{what}: recovered {:?} after SIGKILL", killed.elapsed());
}

/// Kills a child holding `held` (see [`kill_holder`]), then takes the
/// primitive with `take` (given 20 s), which must report the dead holder.
/// Returns that error (it holds the guard), the child (a zombie) and the
/// counter the child wrote under the primitive.
fn take_from_killed<G: std::fmt::Debug>(
    held: Held,
    what: &str,
    take: impl FnOnce(Duration) -> Result<G, LockTimeoutError<G>>,
) -> (LockTimeoutError<G>, TestChild, Counter) {
    let counter = Counter::new();
    let (child, killed) = kill_holder(&held, &counter);
    let e = take(Duration::from_secs(20)).expect_err("no owner-died indication");
    assert!(e.is_owner_died(), "dead holder not recovered");
    report(what, killed);
    (e, child, counter)
}

#[test]
fn crash_lock_holder() {
    watchdog(Duration::from_secs(60), || {
        let lock = Lock::new().unwrap();
        let (e, child, counter) =
            take_from_killed(Held::Lock(lock.clone()), "Lock", |t| lock.lock_timeout(t));
        assert_eq!(counter.get(), 42, "protected data reachable");
        drop(e);
        child.expect_killed();
        // Afterwards the lock is an ordinary lock again.
        assert!(lock.try_lock().is_ok());
    });
}

#[test]
fn crash_lock_holder_seen_by_try_lock() {
    watchdog(Duration::from_secs(60), || {
        let lock = Lock::new().unwrap();
        let counter = Counter::new();
        let (child, killed) = kill_holder(&Held::Lock(lock.clone()), &counter);
        let g = loop {
            match lock.try_lock() {
                Ok(_) => panic!("no owner-died indication"),
                Err(e) if e.is_owner_died() => break e.into_inner().unwrap(),
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        report("Lock (try_lock)", killed);
        drop(g);
        child.expect_killed();
    });
}

#[test]
fn crash_rlock_holder() {
    watchdog(Duration::from_secs(60), || {
        let rlock = RLock::new().unwrap();
        let (e, child, counter) = take_from_killed(Held::RLock(rlock.clone()), "RLock", |t| {
            rlock.lock_timeout(t)
        });
        assert_eq!(counter.get(), 42);
        let g = e.into_inner().unwrap();
        // The dead owner's recursion is forgotten: one release frees it.
        assert_eq!(rlock.count(), 1);
        drop(g);
        assert!(!rlock.is_locked());
        child.expect_killed();
    });
}

#[test]
fn crash_semaphore_holder() {
    watchdog(Duration::from_secs(60), || {
        let sem = Semaphore::new(1).unwrap();
        let (e, child, counter) =
            take_from_killed(Held::Semaphore(sem.clone()), "Semaphore", |t| {
                sem.acquire_timeout(t)
            });
        assert_eq!(counter.get(), 42);
        drop(e);
        assert_eq!(sem.value(), 1);
        child.expect_killed();
    });
}

#[test]
fn crash_bounded_semaphore_holder() {
    watchdog(Duration::from_secs(60), || {
        let sem = BoundedSemaphore::new(1).unwrap();
        let (e, child, _) = take_from_killed(Held::Bounded(sem.clone()), "BoundedSemaphore", |t| {
            sem.acquire_timeout(t)
        });
        drop(e);
        // The recovered unit went back exactly once: still bounded.
        assert_eq!(sem.value(), 1);
        assert!(sem.release().is_err());
        child.expect_killed();
    });
}

#[test]
fn crash_condition_lock_holder() {
    watchdog(Duration::from_secs(60), || {
        let cond = Condition::new().unwrap();
        let (e, child, _) = take_from_killed(Held::Condition(cond.clone()), "Condition", |t| {
            cond.lock_timeout(t)
        });
        let _g = e.into_inner().unwrap();
        // The condition is usable: waiting times out normally.
        assert_eq!(cond.wait_timeout(Duration::from_millis(10)), Ok(false));
        child.expect_killed();
    });
}

#[test]
fn crash_condition_waiter_sees_owner_died_on_reacquire() {
    watchdog(Duration::from_secs(60), || {
        let cond = Condition::with_lock(Lock::new().unwrap()).unwrap();
        let _g = cond.lock().unwrap();
        let counter = Counter::new();
        // The child blocks on the lock we hold. We wait (releasing it), the
        // child takes it and is killed holding it (by a helper thread), and
        // our re-acquire inside `wait_timeout` recovers the lock.
        let ready = Event::new().unwrap();
        let child = spawn_child(
            "child_hold_and_hang",
            &(&Held::Condition(cond.clone()), &counter, &ready),
        );
        let pid = child.id() as libc::pid_t;
        let ready2 = ready.clone();
        let killer = std::thread::spawn(move || {
            assert!(
                ready2.wait_timeout(Duration::from_secs(30)),
                "child never took the lock"
            );
            // SAFETY: our own child's pid, a valid signal.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            Instant::now()
        });
        let r = cond.wait_timeout(Duration::from_millis(100));
        let _killed: Instant = killer.join().unwrap();
        assert_eq!(r, Err(WaitError::OwnerDied { notified: false }));
        assert_eq!(counter.get(), 42);
        assert_eq!(cond.notify(1), Ok(0), "the lock is held again");
        child.expect_killed();
    });
}

/// A waiter whose process was killed while waiting does not take a notify:
/// the oldest waiter is skipped when its process is dead, and the live one
/// behind it is woken.
#[test]
fn crash_condition_waiter_does_not_take_a_notify() {
    watchdog(Duration::from_secs(60), || {
        let cond = Condition::new().unwrap();
        let child = spawn_child("child_condition_waiter", &cond);
        let t0 = Instant::now();
        while cond.waiting() < 1 {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "the child never waited"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        child.signal_kill();
        child.expect_killed();
        let c2 = cond.clone();
        let live = std::thread::spawn(move || {
            let _g = c2.lock().unwrap();
            c2.wait_timeout(Duration::from_secs(20)).unwrap()
        });
        while cond.waiting() < 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let g = cond.lock().unwrap();
        assert_eq!(cond.notify(1), Ok(1));
        drop(g);
        assert!(live.join().unwrap(), "the notify went to the dead waiter");
        assert_eq!(cond.waiting(), 0, "the dead waiter's place was freed");
    });
}

#[test]
#[ignore = "child role of crash_condition_waiter_does_not_take_a_notify"]
fn child_condition_waiter() {
    let Some(cond) = payload::<Condition>() else {
        return;
    };
    let _g = cond.lock().unwrap();
    let _ = cond.wait_timeout(Duration::from_secs(60));
    // Killed before this: the parent never notifies before the kill.
    std::process::exit(3);
}

#[test]
fn crash_barrier_party() {
    watchdog(Duration::from_secs(60), || {
        let barrier = Barrier::new(3).unwrap();
        let counter = Counter::new();
        let (child, killed) = kill_holder(&Held::Barrier(barrier.clone()), &counter);
        // Two of three parties are here (the dead child counted): a live
        // third would complete it. Without a timeout, only the dead party's
        // detection can end this wait (the watchdog catches a hang).
        let r = barrier.wait();
        assert_eq!(r, Err(mproc_sync::BrokenBarrier));
        report("Barrier", killed);
        assert!(barrier.broken());
        child.expect_killed();
    });
}

/// A test that fails while its child runs leaves no child behind: the child
/// is killed and reaped as the test unwinds.
#[test]
fn a_failing_test_leaves_no_child_behind() {
    watchdog(Duration::from_secs(60), || {
        let started = Event::new().unwrap();
        let mut pid = 0;
        let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let child = spawn_child("child_sleep", &started);
            pid = child.id() as i32;
            assert!(started.wait_timeout(Duration::from_secs(30)));
            panic!("the test fails while its child {pid} runs");
        }));
        assert!(failed.is_err());
        assert!(
            !mproc_testkit::pid_alive(pid),
            "child {pid} outlived its test"
        );
    });
}

#[test]
#[ignore = "child role of a_failing_test_leaves_no_child_behind"]
fn child_sleep() {
    let Some(started) = payload::<Event>() else {
        return;
    };
    started.set();
    std::thread::sleep(Duration::from_secs(60));
}
