//! Ctrl-C: workers ignore SIGINT; with `cancel_on_ctrl_c` a SIGINT to the
//! parent resolves all outstanding work to Cancelled. (Its own test binary:
//! the handler is process-wide.)

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use mproc_pool::{Pool, TaskError};

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn workers_ignore_sigint_and_ctrl_c_cancels() {
    watchdog(60, || {
        let pool = Pool::builder()
            .processes(2)
            .cancel_on_ctrl_c(true)
            .build()
            .unwrap();
        // A SIGINT sent to a worker (as a terminal sends it to the whole
        // process group) does not stop it.
        let r = pool.apply_async(nap, 300).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        for pid in pool.pids() {
            // SAFETY: kill(2) on our own worker.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        }
        assert_eq!(r.get().unwrap(), 300);

        // Ctrl-C in the parent cancels what is outstanding.
        let pending: Vec<_> = (0..6)
            .map(|_| pool.apply_async(nap, 20_000).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let t0 = Instant::now();
        // SAFETY: raise(3) delivers SIGINT to this process, whose handler
        // (installed by the pool) only writes to an eventfd.
        assert_eq!(unsafe { libc::raise(libc::SIGINT) }, 0);
        for r in pending {
            assert_eq!(
                r.get().unwrap_err().task_error(),
                Some(&TaskError::Cancelled)
            );
        }
        eprintln!("cancelled {:?} after SIGINT", t0.elapsed());
        // The pool is still usable.
        assert_eq!(pool.map(nap, vec![1, 2]).unwrap(), [1, 2]);
        // The handler went back to the default after one Ctrl-C; put SIG_IGN
        // in place so nothing in this test binary can be killed by a stray one.
        // SAFETY: setting a disposition has no preconditions.
        unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    });
}
