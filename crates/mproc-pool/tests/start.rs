//! Starting and stopping: every worker comes up and takes work, and
//! shutting a pool down right after building it, in every way, leaves no
//! process behind. (One test only: it counts this binary's processes,
//! which tests running alongside would change.)

mod common;

use common::{alive, watchdog};
use mproc_pool::Pool;

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

/// Live processes (not zombies) running this test binary, other than us.
fn copies_of_me() -> Vec<i32> {
    let me = std::fs::read_link("/proc/self/exe").unwrap();
    let mine = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| p != mine && alive(p))
        .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == me))
        .collect()
}

#[test]
fn every_worker_starts_and_none_is_left_behind() {
    watchdog(120, || {
        // Every worker comes up and takes work.
        let pool = Pool::new(3).unwrap();
        let r = pool.apply_async(pid_of, 0).unwrap();
        let pids = pool.pids();
        assert_eq!(pids.len(), 3);
        assert!(pids.iter().all(|&p| alive(p)));
        assert!(pids.contains(&(r.get().unwrap() as i32)));
        pool.close();
        pool.join().unwrap();
        assert!(pids.iter().all(|&p| !alive(p)));

        // Shut down right after building, in every way; checked while the
        // pool still exists (its connections open).
        for round in 0..12u64 {
            let pool = Pool::new(3).unwrap();
            std::thread::sleep(std::time::Duration::from_micros(100 * (round / 3)));
            match round % 3 {
                0 => pool.terminate(),
                1 => {
                    pool.close();
                    pool.join().unwrap();
                }
                _ => {
                    drop(pool);
                    continue;
                }
            }
            // Only the fork server may remain (it serves the whole process).
            let left = copies_of_me();
            assert!(left.len() <= 1, "round {round}: left behind: {left:?}");
        }
        let left = copies_of_me();
        assert!(left.len() <= 1, "left behind: {left:?}");
    });
}
