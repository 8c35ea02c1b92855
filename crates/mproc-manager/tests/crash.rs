//! Crashes: a server killed under its clients, a client killed mid-call.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{wait_gone, watchdog, with_manager};
use mproc_manager::{
    Acquired, Dict, Error, Event, GetTimeoutError, Lock, LockTimeoutError, Manager, Queue,
};
use mproc_process::Process;

/// A manager whose calls give up after `timeout`, its server's pid, and a
/// dict and an unbounded queue on it.
fn server_with_call_timeout(timeout: Duration) -> (Manager, i32, Dict<u32, u32>, Queue<u32>) {
    let m = Manager::builder().call_timeout(timeout).start().unwrap();
    let pid = m.pid().unwrap().as_raw();
    let d = m.dict().unwrap();
    let q = m.queue(0).unwrap();
    (m, pid, d, q)
}

#[test]
fn sigkill_the_server_every_call_returns_disconnected_within_its_timeout() {
    watchdog(60, || {
        let timeout = Duration::from_millis(500);
        let (m, pid, d, q) = server_with_call_timeout(timeout);
        let lock = m.lock().unwrap();
        let ev = m.event().unwrap();
        let held = lock.lock().unwrap();
        // Callers blocked in the server, without timeouts of their own.
        let blocked: Vec<std::thread::JoinHandle<Result<(), Error>>> = vec![
            {
                let q = q.clone();
                std::thread::spawn(move || q.get().map(|_| ()))
            },
            {
                let l = lock.clone();
                std::thread::spawn(move || l.acquire().map(|_| ()))
            },
            {
                let e = ev.clone();
                std::thread::spawn(move || e.wait())
            },
            {
                let q = q.clone();
                std::thread::spawn(move || match q.get_timeout(Duration::from_secs(3600)) {
                    Ok(_) => Ok(()),
                    Err(GetTimeoutError::Call(e)) => Err(e),
                    Err(GetTimeoutError::Timeout) => panic!("an hour passed"),
                })
            },
        ];
        std::thread::sleep(Duration::from_millis(100));
        // SAFETY: plain kill(2) of the server process we started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        let t0 = Instant::now();
        for t in blocked {
            let r = t.join().unwrap();
            assert!(matches!(r, Err(Error::Disconnected(_))), "{r:?}");
        }
        // Every later call, on any proxy, too, each within the call timeout.
        for r in [
            d.len().map(|_| ()),
            q.put(1).map_err(|e| e.error),
            ev.set(),
            d.insert(&1, &1).map(|_| ()),
        ] {
            let t = Instant::now();
            assert!(matches!(r, Err(Error::Disconnected(_))), "{r:?}");
            assert!(t.elapsed() < timeout * 4);
        }
        assert!(t0.elapsed() < Duration::from_secs(20));
        drop(held);
        assert!(wait_gone(pid, 10));
        let addr = m.address().clone();
        drop(m);
        if let mproc_manager::Address::Unix(p) = addr {
            assert!(
                !p.exists(),
                "the dead server's socket is cleaned up by its owner"
            );
        }
    });
}

/// The victim: takes the lock, says so, then blocks in a queue get for ever.
fn victim((lock, ready, q): (Lock, Event, Queue<u32>)) -> u32 {
    let g = lock.lock().unwrap();
    ready.set().unwrap();
    let x = q.get().unwrap();
    drop(g);
    x
}

/// Takes the lock without a guard and exits holding it.
fn acquire_and_exit(lock: Lock) -> bool {
    lock.acquire().unwrap() == Acquired::Clean
}

/// The guard-less forms report a dead holder as mproc_sync::Lock's do: the
/// next acquisition returns `Acquired::OwnerDied`, once.
#[test]
fn a_client_exiting_with_a_guardless_lock_is_reported_to_the_next_acquire() {
    with_manager(60, |m| {
        let lock = m.lock().unwrap();
        let mut p = Process::new(acquire_and_exit, lock.clone())
            .start()
            .unwrap();
        assert!(p.join_timeout(Duration::from_secs(20)).unwrap());
        let limit = Some(Duration::from_secs(10));
        assert_eq!(
            lock.acquire_timeout(limit).unwrap(),
            Some(Acquired::OwnerDied)
        );
        lock.release().unwrap();
        assert_eq!(lock.acquire_timeout(limit).unwrap(), Some(Acquired::Clean));
        lock.release().unwrap();
    });
}

fn bystander((d, stop): (Dict<String, u64>, Event)) -> u64 {
    let mut n = 0;
    while !stop.is_set().unwrap() {
        d.update_or_insert_with(&"count".to_string(), &0, |v: &mut u64, k: u64| *v += k, 1)
            .unwrap();
        n += 1;
    }
    n
}

#[test]
fn sigkill_a_client_mid_call_the_server_and_the_others_carry_on() {
    with_manager(90, |m| {
        let lock = m.lock().unwrap();
        let ready = m.event().unwrap();
        let stop = m.event().unwrap();
        let q = m.queue::<u32>(0).unwrap();
        let d = m.dict::<String, u64>().unwrap();
        let mut other = Process::new(bystander, (d.clone(), stop.clone()))
            .start()
            .unwrap();
        let local_running = Arc::new(AtomicBool::new(true));
        let local = {
            let (d, running) = (d.clone(), local_running.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while running.load(Ordering::Relaxed) {
                    d.update_or_insert_with(
                        &"count".to_string(),
                        &0,
                        |v: &mut u64, k: u64| *v += k,
                        1,
                    )
                    .unwrap();
                    n += 1;
                }
                n
            })
        };
        let mut v = Process::new(victim, (lock.clone(), ready.clone(), q.clone()))
            .start()
            .unwrap();
        assert!(ready.wait_timeout(Duration::from_secs(20)).unwrap());
        assert!(lock.is_locked().unwrap());
        std::thread::sleep(Duration::from_millis(50));
        v.kill().unwrap();
        let st = v.join_timeout(Duration::from_secs(10)).unwrap_err();
        assert!(
            format!("{st:?}").contains('9') || format!("{st}").contains("signal"),
            "{st}"
        );
        // Its lock comes back, marked.
        let g = match lock.lock_timeout(Duration::from_secs(10)) {
            Err(LockTimeoutError::OwnerDied(g)) => g,
            r => panic!("the dead holder's lock is released, marked: {r:?}"),
        };
        drop(g);
        let g = lock.lock().expect("the mark is reported once");
        drop(g);
        // An item put now is not swallowed by the dead client's get.
        std::thread::sleep(Duration::from_millis(100));
        q.put(7).unwrap();
        assert_eq!(q.get_timeout(Duration::from_secs(5)).unwrap(), 7);
        // The others carried on and not one update was lost.
        std::thread::sleep(Duration::from_millis(100));
        stop.set().unwrap();
        local_running.store(false, Ordering::Relaxed);
        let n_other = other.join().unwrap();
        let n_local = local.join().unwrap();
        assert!(n_other > 0 && n_local > 0);
        assert_eq!(d.get("count").unwrap(), Some(n_other + n_local));
        m.shutdown().unwrap();
    });
}

#[test]
fn hostile_bytes_on_an_authenticated_connection_never_kill_the_server() {
    watchdog(60, || {
        let key = b"fuzzy";
        let m = Manager::builder().authkey(key).start().unwrap();
        let d = m.dict::<u32, u32>().unwrap();
        d.insert(&1, &2).unwrap();
        let c = mproc_pipe::Client::new(m.address().clone())
            .authkey(key)
            .connect()
            .unwrap();
        // Garbage instead of a hello: error reply, connection closed.
        c.send_bytes(&[0xff, 0xff, 0xff]).unwrap();
        let r = c.recv_bytes_timeout(Duration::from_secs(5)).unwrap();
        assert!(!r.is_empty());
        assert!(c.recv_bytes_timeout(Duration::from_secs(5)).is_err());
        // A proper hello, then garbage requests: error replies, still served.
        let c = mproc_pipe::Client::new(m.address().clone())
            .authkey(key)
            .connect()
            .unwrap();
        let hello = mproc_manager::__private::sample_requests().remove(0);
        c.send_bytes(&hello).unwrap();
        c.recv_bytes_timeout(Duration::from_secs(5)).unwrap();
        for junk in [
            &[][..],
            &[9, 9, 9, 9][..],
            &[
                7, 1, 27, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
        ] {
            c.send_bytes(junk).unwrap();
            let r = c.recv_bytes_timeout(Duration::from_secs(5)).unwrap();
            assert!(!r.is_empty());
        }
        // Every sample request (update functions at made-up offsets
        // included) gets a reply; the last sample is a shutdown: skipped.
        let samples = mproc_manager::__private::sample_requests();
        for sample in &samples[1..samples.len() - 1] {
            c.send_bytes(sample).unwrap();
            let r = c.recv_bytes_timeout(Duration::from_secs(5)).unwrap();
            assert!(!r.is_empty());
        }
        drop(c);
        // An oversized frame closes that connection only.
        let c = mproc_pipe::Client::new(m.address().clone())
            .authkey(key)
            .connect()
            .unwrap();
        let mut raw = c;
        raw.set_max_message(usize::MAX);
        let _ = raw.send_bytes(&vec![0u8; 65 << 20]);
        let _ = raw.recv_bytes_timeout(Duration::from_secs(5));
        assert_eq!(d.get(&1).unwrap(), Some(2));
        assert!(m.is_alive());
    });
}

#[test]
fn a_hung_server_gives_disconnected_within_the_call_timeout() {
    watchdog(60, || {
        let timeout = Duration::from_millis(300);
        let (m, pid, d, q) = server_with_call_timeout(timeout);
        d.insert(&1, &1).unwrap();
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.get())
        };
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: plain kill(2) of the server process we started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        let t0 = Instant::now();
        let r = d.len();
        let took = t0.elapsed();
        assert!(matches!(r, Err(Error::Disconnected(_))), "{r:?}");
        assert!(took >= timeout, "gave up before the timeout: {took:?}");
        // The waiter without a timeout notices too (it pings on another connection).
        let r = waiter.join().unwrap();
        assert!(matches!(r, Err(Error::Disconnected(_))), "{r:?}");
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
        // Once it runs again, new calls work (on fresh connections).
        assert_eq!(d.get(&1).unwrap(), Some(1));
        m.shutdown().unwrap();
        assert!(wait_gone(pid, 10));
    });
}
