//! Starts asked for without waiting (`Process::start_pending`): several
//! requests in flight at once, answered in any order of waiting, from
//! several threads, some given up; and a child that finds data written to
//! it before it existed.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::time::Duration;

use common::{each_method, method, watchdog};
use mproc_process::{Process, StartMethod};
use mproc_testkit::pid_alive;

fn square(x: u64) -> u64 {
    x * x
}

fn my_pid(_: ()) -> i32 {
    std::process::id() as i32
}

/// Writes its pid to `w` (then closes it) and sleeps for a minute.
fn tell_pid_then_sleep(w: mproc_shm::handle::HandleFd) {
    use std::io::Write;
    let mut f = std::fs::File::from(w.into_inner());
    write!(f, "{}", std::process::id()).expect("write");
    drop(f);
    std::thread::sleep(Duration::from_secs(60));
}

/// Reads what the parent wrote into a pipe before the child was created.
fn read_pipe(fd: mproc_shm::handle::HandleFd) -> Vec<u8> {
    use std::io::Read;
    let mut f = std::fs::File::from(fd.into_inner());
    let mut v = Vec::new();
    f.read_to_end(&mut v).expect("read");
    v
}

fn pipelined(m: String) -> Result<(), String> {
    let method = method(&m);
    // Eight requests leave before any answer is read; waited for in
    // reverse order, each handle is its own child's.
    let pending: Vec<_> = (0..8u64)
        .map(|i| {
            Process::new(square, i)
                .start_method(method)
                .start_pending()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let mut handles = Vec::new();
    for p in pending.into_iter().rev() {
        handles.push(p.wait().map_err(|e| e.to_string())?);
    }
    let mut pids = Vec::new();
    for (k, mut h) in handles.into_iter().enumerate() {
        let i = 7 - k as u64;
        pids.push(h.pid().as_raw());
        let v = h.join().map_err(|e| e.to_string())?;
        ensure!(v == i * i, "child {i} returned {v}");
    }
    pids.sort_unstable();
    pids.dedup();
    ensure!(pids.len() == 8, "pids not distinct: {pids:?}");

    // The pid in a handle is the child's own.
    let mut h = Process::new(my_pid, ())
        .start_method(method)
        .start_pending()
        .map_err(|e| e.to_string())?
        .wait()
        .map_err(|e| e.to_string())?;
    let pid = h.pid().as_raw();
    let v = h.join().map_err(|e| e.to_string())?;
    ensure!(v == pid, "child says pid {v}, handle says {pid}");
    Ok(())
}

#[test]
fn pipelined_starts_each_get_their_own_child() {
    each_method(pipelined);
}

#[test]
fn starts_waited_for_from_several_threads() {
    watchdog(120, || {
        let pending: Vec<_> = (0..6u64)
            .map(|i| Process::new(square, i).start_pending().expect("send"))
            .collect();
        let threads: Vec<_> = pending
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                std::thread::spawn(move || {
                    let mut h = p.wait().expect("wait");
                    (i as u64, h.join().expect("join"))
                })
            })
            .collect();
        for t in threads {
            let (i, v) = t.join().expect("thread");
            assert_eq!(v, i * i);
        }
    });
}

#[test]
fn given_up_starts_do_not_disturb_the_others() {
    watchdog(120, || {
        // Dropped without waiting: one answered before the others were
        // waited for, one after; then kill_on_drop, which must kill.
        let a = Process::new(square, 1).start_pending().expect("send");
        let b = Process::new(square, 2).start_pending().expect("send");
        let c = Process::new(square, 3).start_pending().expect("send");
        drop(a);
        let mut hc = c.wait().expect("wait c");
        drop(b);
        assert_eq!(hc.join().expect("join c"), 9);
        let (r, w) = std::io::pipe().expect("pipe");
        let k = Process::new(
            tell_pid_then_sleep,
            mproc_shm::handle::HandleFd::new(w.into()),
        )
        .kill_on_drop(true)
        .start_pending()
        .expect("send");
        let pid: i32 = String::from_utf8(read_pipe(mproc_shm::handle::HandleFd::new(r.into())))
            .expect("utf-8")
            .parse()
            .expect("a pid");
        drop(k);
        // Killed: it is gone within a moment (it would sleep for a minute).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            !pid_alive(pid),
            "the child outlived its dropped pending start"
        );
        // Starts go on normally.
        for i in 0..4u64 {
            let mut h = Process::new(square, i).start().expect("start");
            assert_eq!(h.join().expect("join"), i * i);
        }
    });
}

#[test]
fn a_child_finds_data_written_before_it_existed() {
    watchdog(120, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let (r, w) = std::io::pipe().expect("pipe");
            let fd = mproc_shm::handle::HandleFd::new(r.into());
            let p = Process::new(read_pipe, fd)
                .start_method(method)
                .start_pending()
                .expect("send");
            {
                use std::io::Write;
                let mut w = w;
                w.write_all(b"written first").expect("write");
            }
            let mut h = p.wait().expect("wait");
            assert_eq!(h.join().expect("join"), b"written first");
        }
    });
}
