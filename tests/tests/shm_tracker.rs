//! A named segment whose creator is SIGKILLed stays while the processes
//! forked from the creator still run (they share its tracker), and is
//! removed once they are all gone.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use mproc::shared_memory::SharedMemory;
use mproc::{Event, Process, StartMethod, Value};
use mproc_tests::{pid_alive, watchdog};

const LIMIT: Duration = Duration::from_secs(60);

fn exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// A process forked from the creator: it holds the creator's tracker until
/// released.
fn forked_holder(release: Event) -> bool {
    release.wait_timeout(LIMIT)
}

type CreatorArgs = (String, Value<i32>, Event);

/// Creates the named segment, forks a holder, reports the holder's pid and
/// waits to be killed.
fn creator((name, holder_pid, release): CreatorArgs) -> bool {
    let _shm = SharedMemory::create_named(&name, 64).expect("create the named segment");
    let holder = Process::new(forked_holder, release)
        .start_method(StartMethod::Fork)
        .start()
        .expect("fork the holder");
    holder_pid.set(holder.pid().as_raw());
    thread::sleep(LIMIT);
    false
}

#[test]
fn forked_children_keep_a_killed_creators_names_until_they_end() {
    watchdog(LIMIT * 2, || {
        let name = format!("mproc_t_tracker_fork_{}", std::process::id());
        let holder_pid = Value::new(0i32).unwrap();
        let release = Event::new().unwrap();
        let args = (name.clone(), holder_pid.clone(), release.clone());
        let mut creator = Process::new(creator, args)
            .start_method(StartMethod::Spawn)
            .start()
            .unwrap();
        let deadline = Instant::now() + LIMIT;
        while holder_pid.get() == 0 {
            assert!(Instant::now() < deadline, "the creator never got ready");
            thread::sleep(Duration::from_millis(2));
        }
        let holder = holder_pid.get();
        creator.kill().unwrap();
        assert!(creator.join().is_err(), "a killed creator returns nothing");

        // The holder still runs, so the name stays (it would be gone within
        // milliseconds otherwise: compare the test below it in mproc-shm).
        thread::sleep(Duration::from_millis(300));
        let kept = exists(&name);
        release.set();
        let deadline = Instant::now() + Duration::from_secs(10);
        while (pid_alive(holder) || exists(&name)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let left = exists(&name);
        let _ = mproc::shm::unlink_named(&name);
        assert!(
            kept,
            "the name went while a process forked from its creator ran"
        );
        assert!(!pid_alive(holder), "the holder did not end");
        assert!(
            !left,
            "the name outlived every process that held its tracker"
        );
    });
}
