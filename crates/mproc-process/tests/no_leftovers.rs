//! Nothing is left behind: dropped handles are reaped, no zombies, no
//! stray children. (One test in its own binary, so no other test's children
//! are running while it looks.)

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::time::{Duration, Instant};

use common::watchdog;
use mproc_process::{Process, StartMethod, active_children};

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fork_some(n: u32) -> usize {
    for _ in 0..n {
        let h = Process::new(nap, 20)
            .start_method(StartMethod::Fork)
            .start()
            .expect("fork");
        drop(h);
    }
    std::thread::sleep(Duration::from_millis(200));
    active_children().len()
}

/// `(pid, state)` of every process whose parent is `ppid`.
fn children_of(ppid: i32) -> Vec<(i32, char)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name (which may hold spaces) close with ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let parent: i32 = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if parent == ppid {
            out.push((pid, state));
        }
    }
    out
}

#[test]
fn dropped_and_joined_children_leave_nothing_behind() {
    watchdog(120, || {
        for m in [StartMethod::ForkServer, StartMethod::Spawn] {
            let mut joined = Process::new(nap, 1).start_method(m).start().expect("start");
            assert_eq!(joined.join().expect("join"), 1);
            for _ in 0..5 {
                drop(
                    Process::new(nap, 20)
                        .start_method(m)
                        .start()
                        .expect("start"),
                );
            }
        }
        let mut forker = Process::new(fork_some, 5)
            .start_method(StartMethod::Spawn)
            .start()
            .expect("start");
        assert_eq!(
            forker.join().expect("forker"),
            0,
            "the forking child reaped its dropped children"
        );

        let me = std::process::id() as i32;
        let server = mproc_process::__private::fork_server_pid().expect("a fork server runs");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let live = active_children();
            let mine: Vec<_> = children_of(me)
                .into_iter()
                .filter(|&(p, _)| p != server)
                .collect();
            let servers = children_of(server);
            if live.is_empty() && mine.is_empty() && servers.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: active {live:?}, our children {mine:?}, fork-server children {servers:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
}
