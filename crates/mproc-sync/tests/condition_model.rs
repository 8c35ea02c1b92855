//! proptest: random sequences of waits and notifies on one Condition by
//! waiters that are threads of this process and threads of a child process,
//! checked against a model: `notify(n)` wakes exactly the `n` longest
//! waiting (all of them for `notify_all`), and never a waiter that started
//! waiting after it, such as the notifier itself waiting right after its
//! notify (the ping-pong shape that lost wake-ups).

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{payload, spawn_child, watchdog};
use mproc_shm::Segment;
use mproc_sync::Condition;
use proptest::prelude::*;

/// Waiters per process.
const PER_PROCESS: usize = 2;
const AGENTS: usize = 2 * PER_PROCESS;
const LONG: Duration = Duration::from_secs(30);

/// Commands and states of an agent, in the board segment as their `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum State {
    Idle,
    GoWait,
    Waiting,
    Notified,
    TimedOut,
    Exit,
    GoWaitBriefly,
}

impl State {
    /// Where a wait that returned `notified` leaves its agent.
    fn after_wait(notified: bool) -> Self {
        if notified {
            Self::Notified
        } else {
            Self::TimedOut
        }
    }
}

/// Every [`State`], in the order of their `u32`.
const STATES: [State; 7] = [
    State::Idle,
    State::GoWait,
    State::Waiting,
    State::Notified,
    State::TimedOut,
    State::Exit,
    State::GoWaitBriefly,
];
/// How long a brief wait lasts (nobody notifies during it).
const BRIEF: Duration = Duration::from_millis(2);

/// One word per agent: the driver writes GoWait/Exit, the agent the rest.
struct Board(Segment);

impl Board {
    fn new() -> Self {
        Self(Segment::anonymous(64 * AGENTS).unwrap())
    }
    fn word(&self, i: usize) -> &AtomicU32 {
        self.0.get(64 * i).unwrap()
    }
    fn get(&self, i: usize) -> State {
        STATES[self.word(i).load(Ordering::SeqCst) as usize]
    }
    fn set(&self, i: usize, v: State) {
        self.word(i).store(v as u32, Ordering::SeqCst)
    }
    fn await_state(&self, i: usize, want: State) {
        let t0 = Instant::now();
        while self.get(i) != want {
            assert!(
                t0.elapsed() < LONG,
                "agent {i} is {:?} not {want:?}",
                self.get(i)
            );
            thread::sleep(Duration::from_micros(200));
        }
    }
}

/// An agent: waits on the condition when told to, and reports the outcome.
fn agent(cond: &Condition, board: &Board, i: usize) {
    loop {
        match board.get(i) {
            State::GoWait => {
                let _g = cond.lock().unwrap();
                // Under the lock: the driver, once it holds the lock after
                // seeing this, knows the agent is inside `wait`.
                board.set(i, State::Waiting);
                let notified = cond.wait_timeout(LONG).unwrap();
                board.set(i, State::after_wait(notified));
            }
            State::GoWaitBriefly => {
                let _g = cond.lock().unwrap();
                let notified = cond.wait_timeout(BRIEF).unwrap();
                board.set(i, State::after_wait(notified));
            }
            State::Exit => return,
            _ => thread::sleep(Duration::from_micros(100)),
        }
    }
}

fn run_agents(cond: &Condition, board: &Board, first: usize) {
    thread::scope(|s| {
        for i in first..first + PER_PROCESS {
            s.spawn(move || agent(cond, board, i));
        }
    });
}

#[derive(Debug, Clone, Copy)]
enum Op {
    /// Agent `i` starts waiting (if it is not waiting already).
    Wait(usize),
    /// Agent `i` (if not waiting) waits briefly and times out: it must not
    /// take, nor spend, a later notify.
    WaitBriefly(usize),
    /// notify(n); then the notifier waits briefly itself, if `then_wait`.
    Notify {
        n: u32,
        then_wait: bool,
    },
    NotifyAll,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..AGENTS).prop_map(Op::Wait),
        1 => (0..AGENTS).prop_map(Op::WaitBriefly),
        2 => (0..4u32, any::<bool>()).prop_map(|(n, then_wait)| Op::Notify { n, then_wait }),
        1 => Just(Op::NotifyAll),
    ]
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let cond = Condition::new().unwrap();
    let board = Board::new();
    let child = spawn_child("child_agents", &(&cond, &board.0));
    let result = thread::scope(|s| {
        s.spawn(|| run_agents(&cond, &board, 0));
        let r = drive(&cond, &board, ops);
        // Wake whoever still waits, then stop every agent.
        {
            let _g = cond.lock().unwrap();
            cond.notify_all().unwrap();
        }
        for i in 0..AGENTS {
            while board.get(i) == State::Waiting || board.get(i) == State::GoWait {
                thread::sleep(Duration::from_micros(200));
            }
            board.set(i, State::Exit);
        }
        r
    });
    let st = child.wait(LONG);
    prop_assert!(st.success(), "child failed: {st:?}");
    result
}

fn drive(cond: &Condition, board: &Board, ops: &[Op]) -> Result<(), TestCaseError> {
    // The model: agents waiting, longest waiting first.
    let mut line: Vec<usize> = Vec::new();
    for &op in ops {
        match op {
            Op::Wait(i) => {
                if line.contains(&i) {
                    continue;
                }
                board.set(i, State::GoWait);
                board.await_state(i, State::Waiting);
                // The agent released the lock inside `wait` once we get it.
                drop(cond.lock().unwrap());
                line.push(i);
            }
            Op::WaitBriefly(i) => {
                if line.contains(&i) {
                    continue;
                }
                board.set(i, State::GoWaitBriefly);
                board.await_state(i, State::TimedOut);
                board.set(i, State::Idle);
            }
            Op::Notify { .. } | Op::NotifyAll => {
                let n = match op {
                    Op::Notify { n, .. } => n as usize,
                    _ => usize::MAX,
                };
                let then_wait = matches!(
                    op,
                    Op::Notify {
                        then_wait: true,
                        ..
                    }
                );
                let expect: Vec<usize> = line.drain(..n.min(line.len())).collect();
                {
                    let _g = cond.lock().unwrap();
                    let woken = cond.notify(n).unwrap();
                    prop_assert_eq!(woken, expect.len());
                    if then_wait {
                        // Nobody else notifies: this must time out.
                        let got = cond.wait_timeout(Duration::from_millis(5)).unwrap();
                        prop_assert!(!got, "the notifier took its own notify");
                    }
                }
                for &i in &expect {
                    board.await_state(i, State::Notified);
                    board.set(i, State::Idle);
                }
                for &i in &line {
                    prop_assert_eq!(board.get(i), State::Waiting, "agent {} woke", i);
                }
                prop_assert_eq!(cond.waiting(), line.len());
            }
        }
    }
    Ok(())
}

#[test]
#[ignore = "child role of condition_model_with_processes_and_threads"]
fn child_agents() {
    let Some((cond, board)) = payload::<(Condition, Segment)>() else {
        return;
    };
    run_agents(&cond, &Board(board), PER_PROCESS);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn condition_model_with_processes_and_threads(ops in prop::collection::vec(op(), 1..24)) {
        let ops2 = ops.clone();
        watchdog(Duration::from_secs(120), move || run_case(&ops2))?;
    }
}
