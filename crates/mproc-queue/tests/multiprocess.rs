//! Queues across processes: property test (MPMC, per-producer FIFO, nothing
//! lost or duplicated), SIGKILL crash rounds, join-before-get with 100 MiB,
//! JoinableQueue across processes.
//!
//! Children are this test binary re-executed (`--exact child_entry
//! --ignored`) with a role in the environment; the queue travels as a handle
//! (its descriptors are placed at fixed numbers in the child).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::watchdog;
use mproc_queue::{
    Bytes, GetError, GetTimeoutError, JoinableQueue, LeaseQueue, LeaseQueueBuilder, Queue,
    QueueBuilder,
};
use mproc_testkit::{TempDir, TestChild};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

const ROLE: &str = "MPQ_TEST_ROLE";

/// An item: producer id, its sequence number, and filler whose bytes are
/// derived from both (checked by consumers).
#[derive(Serialize, Deserialize)]
struct Item {
    p: u32,
    i: u32,
    data: Vec<u8>,
}

fn fill(p: u32, i: u32) -> u8 {
    (p.wrapping_mul(31).wrapping_add(i)) as u8
}

/// Panics if `it` is torn: its filler is not the one its producer wrote.
fn check_item(it: &Item) {
    assert!(
        it.data.iter().all(|&b| b == fill(it.p, it.i)),
        "torn item {}/{}",
        it.p,
        it.i
    );
}

/// A small deterministic generator (xorshift) for children's sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Starts this test binary as a child with `role`, giving it `handle`.
fn spawn<H: Serialize>(role: &str, handle: &H, env: &[(&str, String)]) -> TestChild {
    spawn_with(role, handle, env, Stdio::null())
}

fn spawn_with<H: Serialize>(
    role: &str,
    handle: &H,
    env: &[(&str, String)],
    stdout: Stdio,
) -> TestChild {
    let mut cmd = mproc_testkit::test_command("child_entry");
    cmd.env(ROLE, role).stdout(stdout);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let payload = mproc_shm::handle::to_bytes_with_fds(handle).unwrap();
    mproc_testkit::spawn_with_payload(&mut cmd, payload, role)
}

/// As [`spawn`], with the child's stdout piped to the parent.
fn spawn_piped<H: Serialize>(role: &str, handle: &H, env: &[(&str, String)]) -> TestChild {
    spawn_with(role, handle, env, Stdio::piped())
}

/// In a child: the handle the parent gave.
fn take_handle<H: serde::de::DeserializeOwned>() -> H {
    // SAFETY: called once per child (its role takes its handle once), and
    // nothing else in this process owns the descriptors placed for it.
    let (bytes, fds) = unsafe { mproc_testkit::take_payload() }.expect("a payload");
    mproc_shm::handle::from_bytes_with_fds(&bytes, fds).unwrap()
}

fn env_u64(k: &str) -> u64 {
    std::env::var(k).unwrap().parse().unwrap()
}

/// A test's round or kill count: `var` from the environment if set, else
/// `default`.
fn env_count(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Waits for each of `kids` until `deadline` and checks that it succeeded.
fn wait_all<'k>(kids: impl IntoIterator<Item = &'k mut TestChild>, deadline: Instant, what: &str) {
    for kid in kids {
        let st = kid.wait_until(deadline);
        assert!(st.success(), "{what} failed: {st:?}");
    }
}

/// Runs a child of `role` on `handle` to its end (within `limit`) and checks
/// that it succeeded.
fn run_child<H: Serialize>(role: &str, handle: &H, limit: Duration) {
    let mut child = spawn(role, handle, &[]);
    wait_all([&mut child], Instant::now() + limit, "child");
}

/// Consumer processes of one role, each logging to a file of its own in a
/// scratch directory (`c0`, `c1`, … in the order they started); killed ones
/// are replaced by new ones.
struct Consumers<'a, H> {
    role: &'static str,
    q: &'a H,
    dir: &'a TempDir,
    /// The running consumers, each with the index of its log.
    kids: Vec<(TestChild, usize)>,
    /// Every consumer's log, and whether that consumer was killed.
    logs: Vec<(PathBuf, bool)>,
}

impl<'a, H: Serialize> Consumers<'a, H> {
    /// Starts `n` consumers of `role` on `q`.
    fn start(role: &'static str, q: &'a H, dir: &'a TempDir, n: usize) -> Self {
        let mut c = Self {
            role,
            q,
            dir,
            kids: Vec::new(),
            logs: Vec::new(),
        };
        for _ in 0..n {
            let kid = c.start_one();
            c.kids.push(kid);
        }
        c
    }

    fn start_one(&mut self) -> (TestChild, usize) {
        let log = self.dir.path().join(format!("c{}", self.logs.len()));
        let kid = spawn(self.role, self.q, &[("C_LOG", log.display().to_string())]);
        self.logs.push((log, false));
        (kid, self.logs.len() - 1)
    }

    /// `kills` times: picks a consumer at random, waits until it is getting
    /// items (its log is not empty), SIGKILLs it at a random moment after
    /// that, and starts another in its place.
    fn kill_and_replace(&mut self, kills: u32, rng: &mut Rng, deadline: Instant) {
        for _ in 0..kills {
            let k = (rng.next() % self.kids.len() as u64) as usize;
            let log = self.kids[k].1;
            while std::fs::metadata(&self.logs[log].0).map_or(0, |m| m.len()) == 0 {
                assert!(Instant::now() < deadline, "consumer never got an item");
                thread::sleep(Duration::from_micros(200));
            }
            thread::sleep(Duration::from_micros(rng.next() % 3000));
            let st = self.kids[k].0.kill();
            assert_eq!(
                st.signal(),
                Some(libc::SIGKILL),
                "consumer failed on its own: {st:?}"
            );
            self.logs[log].1 = true;
            self.kids[k] = self.start_one();
        }
    }

    /// Waits for the running consumers to finish, successfully, by `deadline`.
    fn wait(&mut self, deadline: Instant) {
        wait_all(
            self.kids.iter_mut().map(|(kid, _)| kid),
            deadline,
            "consumer",
        );
    }
}

/// A thread of the parent that runs until told to stop.
struct Background<T> {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<T>,
}

impl<T: Send + 'static> Background<T> {
    /// Runs `f` on a new thread with the flag it must stop at.
    fn start(f: impl FnOnce(&AtomicBool) -> T + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        Self {
            stop,
            thread: thread::spawn(move || f(&flag)),
        }
    }

    /// Raises the flag and returns what the thread returned.
    fn stop(self) -> T {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

impl Background<u32> {
    /// Calls `step(0)`, `step(1)`, … until stopped; [`stop`](Self::stop)
    /// returns how many steps ran.
    fn count(mut step: impl FnMut(u32) + Send + 'static) -> Self {
        Self::start(move |stop| {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                step(n);
                n += 1;
            }
            n
        })
    }
}

/// The fixed-size records of a child's log (none if it never wrote one).
fn read_log<const N: usize>(path: &Path) -> Vec<[u8; N]> {
    let b = std::fs::read(path).unwrap_or_default();
    b.chunks_exact(N).map(|c| c.try_into().unwrap()).collect()
}

/// The little-endian `u32` at the start of `b`.
fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

/// The entry point of every child; does nothing in a normal test run.
#[test]
#[ignore = "child process entry point, run by the other tests"]
fn child_entry() {
    mproc_testkit::play_role(ROLE, |role| match role {
        "producer" => producer(),
        "consumer" => consumer(),
        "bigput" => {
            let q: Queue<Vec<u8>> = take_handle();
            let mut v = vec![0u8; 100 << 20];
            for (k, b) in v.iter_mut().enumerate() {
                *b = (k % 251) as u8;
            }
            q.put(v).unwrap();
        }
        "manyput" => {
            // 100 MiB in many items: small ones (far more than the ring
            // holds) and large ones (far more than the side channel holds).
            let q: Queue<Vec<u8>> = take_handle();
            for i in 0..400_000u32 {
                q.put(i.to_le_bytes().repeat(4)).unwrap();
            }
            // Over a quarter of the 1 MiB ring: each takes a segment.
            for i in 0..330u32 {
                q.put(vec![i as u8; 300_000]).unwrap();
            }
        }
        "lockholder" => lock_holder(),
        "copier" => copier(),
        "leaser" => leaser(),
        "batcher" => batcher(),
        "poisoned" => {
            // Takes a lease, logs its delivery count, and dies holding it.
            let q: LeaseQueue<Vec<u8>, Bytes> = take_handle();
            let l = q.get_lease_timeout(Duration::from_secs(30)).unwrap();
            println!("COUNT {} {}", l[0], l.delivery_count());
            std::io::stdout().flush().unwrap();
            // SAFETY: kill with our own pid only sends us a signal.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        "cannothold" => {
            let q: Queue<Vec<u8>, Bytes> = take_handle();
            // Too little address space left for the item's segment or copy.
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let vm_kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap();
            let limit = (vm_kib << 10) + (16 << 20);
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: `lim` is a valid rlimit for the duration of the call.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
            match q.get_timeout(Duration::from_secs(10)) {
                Err(mproc_queue::GetTimeoutError::Broken(e)) => println!("FAILED {e}"),
                other => panic!("expected a failed get, got {:?}", other.map(|v| v.len())),
            }
        }
        "worker" => {
            let q: JoinableQueue<u64> = take_handle();
            while let Ok(v) = q.get() {
                assert!(v < 1000);
                q.task_done().unwrap();
            }
        }
        other => panic!("unknown role {other}"),
    });
}

/// White-box: takes one of the queue's locks (its layout is pinned: the
/// producer lock at byte 128, the consumer lock at 384, the ring at 1152,
/// then the overflow log), scribbles over the free ring and the start of
/// the log like a producer killed mid-write, reports, and waits to be
/// killed.
fn lock_holder() {
    let (seg, _tx, _rx): (
        mproc_shm::Segment,
        mproc_shm::handle::HandleFd,
        mproc_shm::handle::HandleFd,
    ) = take_handle();
    let which = std::env::var("WHICH").unwrap();
    let off = if which == "producer" { 128 } else { 384 };
    let lock = seg.get::<mproc_shm::RawMutex>(off).unwrap();
    let _ = lock.lock();
    if which == "producer" {
        // The ring is empty: every byte is free, as after a reservation; so
        // is the overflow log.
        let junk = vec![0xabu8; 1024 + 8192];
        seg.write(1152, &junk).unwrap();
    }
    println!("LOCKED");
    std::io::stdout().flush().unwrap();
    thread::sleep(Duration::from_secs(60));
}

fn producer() {
    let q: Queue<Item> = take_handle();
    let p = env_u64("P_ID") as u32;
    let count = env_u64("P_COUNT") as u32;
    let maxlen = env_u64("P_MAXLEN");
    let mut rng = Rng(env_u64("P_SEED") | 1);
    let mut log = std::env::var("P_LOG")
        .ok()
        .map(|l| std::fs::File::create(l).unwrap());
    for i in 0..count {
        let len = if maxlen == 0 {
            0
        } else {
            (rng.next() % (maxlen + 1)) as usize
        };
        q.put(Item {
            p,
            i,
            data: vec![fill(p, i); len],
        })
        .unwrap_or_else(|e| panic!("put failed: {e}"));
        if let Some(f) = &mut log {
            f.write_all(&i.to_le_bytes()).unwrap();
        }
    }
}

fn consumer() {
    let q: Queue<Item> = take_handle();
    let mut log = std::fs::File::create(std::env::var("C_LOG").unwrap()).unwrap();
    loop {
        match q.get() {
            Ok(it) => {
                check_item(&it);
                let mut rec = [0u8; 8];
                rec[..4].copy_from_slice(&it.p.to_le_bytes());
                rec[4..].copy_from_slice(&it.i.to_le_bytes());
                log.write_all(&rec).unwrap();
            }
            Err(GetError::Closed) => return,
            Err(e) => panic!("get failed: {e}"),
        }
    }
}

/// Reads a consumer log: the (producer, index) pairs in the order received.
fn read_pairs(path: &Path) -> Vec<(u32, u32)> {
    read_log::<8>(path)
        .iter()
        .map(|r| (le_u32(r), le_u32(&r[4..])))
        .collect()
}

fn read_acks(path: &Path) -> Vec<u32> {
    read_log::<4>(path).iter().map(|r| le_u32(r)).collect()
}

/// Every (producer, index) received at most once, and each consumer saw
/// each producer's items in increasing order.
fn check_fifo_no_dup(logs: &[Vec<(u32, u32)>]) -> BTreeSet<(u32, u32)> {
    let mut all = BTreeSet::new();
    for log in logs {
        let mut last: BTreeMap<u32, u32> = BTreeMap::new();
        for &(p, i) in log {
            assert!(all.insert((p, i)), "item {p}/{i} received twice");
            if let Some(&prev) = last.get(&p) {
                assert!(
                    i > prev,
                    "producer {p}: {i} after {prev} (per-producer FIFO)"
                );
            }
            last.insert(p, i);
        }
    }
    all
}

fn run_mpmc(np: usize, nc: usize, count: u32, maxlen: u64, maxsize: usize, cap: usize, seed: u64) {
    let q: Queue<Item> = QueueBuilder::new()
        .maxsize(maxsize)
        .capacity(cap)
        .build()
        .unwrap();
    let dir = TempDir::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut consumers = Consumers::start("consumer", &q, &dir, nc);
    let mut producers: Vec<TestChild> = (0..np)
        .map(|p| {
            let env = [
                ("P_ID", p.to_string()),
                ("P_COUNT", count.to_string()),
                ("P_MAXLEN", maxlen.to_string()),
                ("P_SEED", (seed ^ (p as u64 * 0x9e37_79b9)).to_string()),
            ];
            spawn("producer", &q, &env)
        })
        .collect();
    wait_all(&mut producers, deadline, "producer");
    q.close();
    consumers.wait(deadline);
    let logs: Vec<_> = consumers.logs.iter().map(|(l, _)| read_pairs(l)).collect();
    let got = check_fifo_no_dup(&logs);
    let want: BTreeSet<(u32, u32)> = (0..np as u32)
        .flat_map(|p| (0..count).map(move |i| (p, i)))
        .collect();
    assert_eq!(
        got.len(),
        want.len(),
        "received {} of {} items",
        got.len(),
        want.len()
    );
    assert_eq!(got, want);
    assert!(q.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mpmc_across_processes(
        np in 1usize..=4,
        nc in 1usize..=4,
        count in 1u32..150,
        maxlen in prop_oneof![Just(0u64), 0u64..64, 0u64..3000],
        maxsize in prop_oneof![Just(0usize), 1usize..8],
        seed in any::<u64>(),
    ) {
        // A 1 KiB ring: items above 256 bytes take the large-message path.
        watchdog(Duration::from_secs(90), move || run_mpmc(np, nc, count, maxlen, maxsize, 1024, seed));
    }
}

#[test]
fn crash_rounds_keep_the_queue_usable_and_lose_nothing_acknowledged() {
    let rounds: u32 = env_count("MPQ_CRASH_ROUNDS", 250);
    watchdog(Duration::from_secs(240), move || crash_rounds(rounds));
}

fn drain_into(q: &Queue<Item>, mine: &mut Vec<(u32, u32)>) {
    loop {
        match q.try_get() {
            Ok(it) => {
                check_item(&it);
                mine.push((it.p, it.i));
            }
            Err(mproc_queue::TryGetError::Empty) => return,
            Err(e) => panic!("drain failed: {e}"),
        }
    }
}

fn crash_rounds(rounds: u32) {
    let q: Queue<Item> = QueueBuilder::new()
        .maxsize(32)
        .capacity(2048)
        .build()
        .unwrap();
    let dir = TempDir::new();
    let mut rng = Rng(0x5eed_1234_abcd);
    let mut killed_consumers = 0u32;
    let mut mine = Vec::new();
    let mut consumer_logs = Vec::new();
    let mut producer_ids = Vec::new();
    for r in 0..rounds {
        // 1 or 2 producers and 1 or 2 consumers per round.
        let (np, nc) = (1 + (r % 2), 1 + (r / 2 % 2));
        let maxlen = if r % 3 == 0 { 2000 } else { 100 };
        let mut children = Vec::new();
        for k in 0..np {
            let id = r * 2 + k;
            producer_ids.push(id);
            children.push(spawn(
                "producer",
                &q,
                &[
                    ("P_ID", id.to_string()),
                    ("P_COUNT", "1000000".into()),
                    ("P_MAXLEN", maxlen.to_string()),
                    ("P_SEED", rng.next().to_string()),
                    (
                        "P_LOG",
                        dir.path().join(format!("p{id}")).display().to_string(),
                    ),
                ],
            ));
        }
        for k in 0..nc {
            let log = dir.path().join(format!("c{r}_{k}"));
            children.push(spawn(
                "consumer",
                &q,
                &[("C_LOG", log.display().to_string())],
            ));
            consumer_logs.push(log);
        }
        // Kill them all at random moments, in random order, after they had
        // time to start.
        thread::sleep(Duration::from_micros(3000 + rng.next() % 12_000));
        while !children.is_empty() {
            let i = (rng.next() % children.len() as u64) as usize;
            let mut c = children.swap_remove(i);
            let st = c.kill();
            assert!(
                st.signal() == Some(libc::SIGKILL) || st.success(),
                "child failed on its own: {st:?}"
            );
            thread::sleep(Duration::from_micros(rng.next() % 2000));
        }
        killed_consumers += nc;
        // Between rounds the queue stays usable: drain it here, then a put
        // and a get must go through (no lock left held, no torn record).
        if r % 10 == 9 || r + 1 == rounds {
            drain_into(&q, &mut mine);
            let check = Item {
                p: u32::MAX,
                i: r,
                data: vec![fill(u32::MAX, r); 600],
            };
            q.put_timeout(check, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("put failed after round {r}: {e}"));
            let back = q
                .get_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("get failed after round {r}: {e}"));
            assert_eq!((back.p, back.i, back.data.len()), (u32::MAX, r, 600));
        }
    }
    let mut logs: Vec<_> = consumer_logs.iter().map(|l| read_pairs(l)).collect();
    logs.push(mine);
    let got = check_fifo_no_dup(&logs);
    let mut missing = 0u32;
    for &r in &producer_ids {
        let acked = read_acks(&dir.path().join(format!("p{r}")));
        assert!(acked.iter().enumerate().all(|(k, &i)| k as u32 == i));
        for &i in &acked {
            if !got.contains(&(r, i)) {
                missing += 1;
            }
        }
        // Nothing received that was never put.
        let n_acked = acked.len() as u32;
        for &(p, i) in got.iter().filter(|(p, _)| *p == r) {
            assert!(
                i <= n_acked,
                "item {p}/{i} received but producer only reached {n_acked}"
            );
        }
    }
    // Acknowledged items may only be missing because a killed consumer was taking them.
    assert!(
        missing <= killed_consumers,
        "{missing} acknowledged items lost, {killed_consumers} consumers killed"
    );
    eprintln!(
        "crash rounds: {rounds}, received {}, acknowledged but lost with a killed consumer {missing}",
        got.len()
    );
    // Fully usable afterwards.
    q.put(Item {
        p: 7,
        i: 7,
        data: vec![1; 5000],
    })
    .unwrap();
    assert_eq!(q.get().unwrap().data.len(), 5000);
    assert!(q.is_empty());
}

/// The ring of the kill-mid-get test: items above 64 KiB take the
/// large-message path (a segment each, its descriptor on the side channel).
const COPY_RING: usize = 256 << 10;

/// The length and filler byte of item `i` of the kill-mid-get test: every
/// other item is large (64 KiB to 1 MiB), the others small.
fn copy_item_shape(i: u64) -> (usize, u8) {
    let h = Rng(i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1).next();
    let len = if i % 2 == 1 {
        (COPY_RING / 4) as u64 + 1 + h % (1 << 20)
    } else {
        8 + h % 4096
    };
    (len as usize, i as u8 ^ 0x5a)
}

/// Item `i` of the kill-mid-get test: its index, then filler.
fn copy_item(i: u64) -> Vec<u8> {
    let (len, b) = copy_item_shape(i);
    let mut v = vec![b; len];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// The index of a received item, after checking its length and samples of
/// its filler against [`copy_item`].
fn check_copy_item(v: &[u8]) -> u64 {
    let i = u64::from_le_bytes(v[..8].try_into().unwrap());
    let (len, b) = copy_item_shape(i);
    assert_eq!(v.len(), len, "item {i} has the wrong length");
    for k in (8..len).step_by(4096).chain([len - 1]) {
        assert_eq!(v[k], b, "item {i} torn at byte {k}");
    }
    i
}

/// A consumer of the kill-mid-get test: logs the index of every item it
/// gets (one 8-byte write each) until the queue is closed.
fn copier() {
    let q: Queue<Vec<u8>, Bytes> = take_handle();
    let mut log = std::fs::File::create(std::env::var("C_LOG").unwrap()).unwrap();
    loop {
        match q.get() {
            Ok(v) if v.is_empty() => return,
            Ok(v) => log.write_all(&check_copy_item(&v).to_le_bytes()).unwrap(),
            Err(e) => panic!("get failed: {e}"),
        }
    }
}

#[test]
fn killed_consumers_lose_at_most_the_item_being_copied() {
    let kills: u32 = env_count("MPQ_COPY_KILLS", 60);
    watchdog(Duration::from_secs(240), move || {
        kill_consumers_mid_get(kills)
    });
}

/// A producer thread puts items (half of them large) into a short queue
/// while two consumer processes get them; `kills` times, a consumer that
/// has got something is killed at a random moment and replaced. Survivors
/// and the parent drain the rest. Every item is received at most once, and
/// at most one item is lost per kill: the one a consumer had claimed and
/// not yet returned.
fn kill_consumers_mid_get(kills: u32) {
    let q: Queue<Vec<u8>, Bytes> = QueueBuilder::new()
        .maxsize(8)
        .capacity(COPY_RING)
        .build()
        .unwrap();
    let dir = TempDir::new();
    let producer = {
        let q = q.clone();
        Background::count(move |n| q.put(copy_item(n.into())).unwrap())
    };
    let mut consumers = Consumers::start("copier", &q, &dir, 2);
    let mut rng = Rng(0xc0_ffee_1234);
    let deadline = Instant::now() + Duration::from_secs(180);
    consumers.kill_and_replace(kills, &mut rng, deadline);
    let count = u64::from(producer.stop());
    // The parent helps drain. One empty item per survivor, and one for the
    // parent, says stop: it comes after every item, so whoever gets one
    // finds every item before it claimed.
    for _ in 0..=consumers.kids.len() {
        q.put(Vec::new()).unwrap();
    }
    let mut mine = Vec::new();
    loop {
        let v = q.get_timeout(Duration::from_secs(30)).unwrap();
        if v.is_empty() {
            break;
        }
        mine.push(check_copy_item(&v));
    }
    consumers.wait(deadline);
    let mut got = BTreeSet::new();
    let logged = consumers
        .logs
        .iter()
        .flat_map(|(l, _)| read_log::<8>(l))
        .map(u64::from_le_bytes);
    for i in logged.chain(mine) {
        assert!(i < count, "item {i} received but only {count} were put");
        assert!(got.insert(i), "item {i} received twice");
    }
    let lost: Vec<u64> = (0..count).filter(|i| !got.contains(i)).collect();
    eprintln!(
        "kill mid-get: {count} items, {kills} consumers killed, {} lost ({:.0}% of kills): {lost:?}",
        lost.len(),
        100.0 * lost.len() as f64 / f64::from(kills.max(1)),
    );
    assert!(
        lost.len() <= kills as usize,
        "{} items lost, {kills} consumers killed",
        lost.len()
    );
    assert!(q.is_empty());
    // A large item still goes through, and afterwards no descriptor is left
    // in the side channel (stale ones are discarded on the way).
    q.put(copy_item(1)).unwrap();
    assert_eq!(
        q.get_timeout(Duration::from_secs(10)).unwrap(),
        copy_item(1)
    );
    let (_, _, rx) = common::raw_parts(&q);
    let mut fds = Vec::new();
    let r = mproc_shm::handle::recv_with_fds(rx.as_fd(), &mut [0u8; 16], &mut fds);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "side channel not empty: {r:?}, {} descriptors",
        fds.len()
    );
}

#[test]
fn a_consumer_that_cannot_hold_a_large_item_leaves_it_queued() {
    watchdog(Duration::from_secs(60), || {
        let q: Queue<Vec<u8>, Bytes> = QueueBuilder::new().capacity(COPY_RING).build().unwrap();
        let item: Vec<u8> = (0..64u32 << 20).map(|k| (k % 251) as u8).collect();
        q.put(item.clone()).unwrap();
        let mut child = spawn_piped("cannothold", &q, &[]);
        let st = child.wait_until(Instant::now() + Duration::from_secs(30));
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.child_mut().stdout.take().unwrap(), &mut out)
            .unwrap();
        assert!(
            st.success() && out.contains("FAILED"),
            "child: {st:?}, {out}"
        );
        // The failed get left the item for the next consumer.
        assert_eq!(q.qsize(), 1);
        assert!(q.get_timeout(Duration::from_secs(10)).unwrap() == item);
        assert!(q.is_empty());
    });
}

/// A queue a child of `role` put into and exited (within `limit`): the
/// parent joins it first, so the child must be able to exit with its items
/// unread.
fn filled_by_child(role: &str, limit: Duration) -> Queue<Vec<u8>> {
    let q: Queue<Vec<u8>> = Queue::new(0).unwrap();
    run_child(role, &q, limit);
    q
}

#[test]
fn child_puts_100_mib_and_parent_joins_before_getting() {
    // Generous hang guards: a debug build on a loaded 2-CPU machine took
    // over 60 s to fill and write 100 MiB.
    watchdog(Duration::from_secs(300), || {
        let q = filled_by_child("bigput", Duration::from_secs(240));
        assert_eq!(q.qsize(), 1);
        let v = q.get().unwrap();
        assert_eq!(v.len(), 100 << 20);
        assert!(v.iter().enumerate().all(|(k, &b)| b == (k % 251) as u8));
    });
}

#[test]
fn child_puts_100_mib_in_many_items_and_parent_joins_before_getting() {
    watchdog(Duration::from_secs(120), || {
        let q = filled_by_child("manyput", Duration::from_secs(90));
        assert_eq!(q.qsize(), 400_330);
        for i in 0..400_000u32 {
            assert_eq!(q.get().unwrap(), i.to_le_bytes().repeat(4));
        }
        for i in 0..330u32 {
            assert_eq!(q.get().unwrap(), vec![i as u8; 300_000]);
        }
        assert!(q.is_empty());
    });
}

#[test]
fn joinable_queue_across_processes() {
    watchdog(Duration::from_secs(60), || {
        let q: JoinableQueue<u64> = JoinableQueue::new(16).unwrap();
        let mut workers: Vec<TestChild> = (0..2).map(|_| spawn("worker", &q, &[])).collect();
        for v in 0..500 {
            q.put(v % 1000).unwrap();
        }
        q.join_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(q.unfinished_tasks(), 0);
        q.close();
        wait_all(
            &mut workers,
            Instant::now() + Duration::from_secs(30),
            "worker",
        );
    });
}

#[test]
fn killed_lock_holders_leave_the_queue_usable() {
    watchdog(Duration::from_secs(60), || {
        use std::io::BufRead;
        for which in ["producer", "consumer"] {
            let q: Queue<String> = QueueBuilder::new().capacity(1024).build().unwrap();
            if which == "consumer" {
                q.put("before".into()).unwrap();
            }
            let raw = common::raw_parts(&q);
            let mut cmd_child = {
                let mut c = spawn_piped("lockholder", &raw, &[("WHICH", which.to_string())]);
                let out = c.child_mut().stdout.take().unwrap();
                let mut lines = std::io::BufReader::new(out).lines();
                assert!(
                    lines.any(|l| l.unwrap().contains("LOCKED")),
                    "lock holder did not report"
                );
                c
            };
            let off = if which == "producer" { 128 } else { 384 };
            assert!(
                raw.0.get::<mproc_shm::RawMutex>(off).unwrap().is_locked(),
                "child holds the {which} lock"
            );
            let st = cmd_child.kill();
            assert_eq!(st.signal(), Some(libc::SIGKILL));
            if which == "producer" {
                // Nothing half-written became visible, and the lock is recovered.
                assert!(q.is_empty());
                assert!(matches!(q.try_get(), Err(mproc_queue::TryGetError::Empty)));
                q.put_timeout("after".into(), Duration::from_secs(10))
                    .unwrap();
                assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), "after");
            } else {
                assert_eq!(q.get_timeout(Duration::from_secs(10)).unwrap(), "before");
                q.put("after".into()).unwrap();
                assert_eq!(q.get().unwrap(), "after");
            }
        }
    });
}

/// Item `i` of the lease tests: its index, then filler (small ones in the
/// ring, every fourth one large enough to travel in a segment of its own).
fn lease_item(i: u32) -> Vec<u8> {
    let len = if i % 4 == 3 {
        5000 + (i as usize * 7) % 9000
    } else {
        4 + (i as usize * 13) % 300
    };
    let mut v = vec![i as u8 ^ 0xa5; len];
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

fn check_lease_item(v: &[u8]) -> u32 {
    let i = le_u32(v);
    assert_eq!(v, &lease_item(i)[..], "item {i} torn");
    i
}

/// A consumer of the lease crash test: logs each lease it gets (index,
/// delivery count, 0) and each ack that returned (index, count, 1), one
/// 9-byte write each, until the queue is closed, drained and acked.
fn leaser() {
    let q: LeaseQueue<Vec<u8>, Bytes> = take_handle();
    let mut log = std::fs::File::create(std::env::var("C_LOG").unwrap()).unwrap();
    let rec = |i: u32, n: u32, acked: u8| {
        let mut r = [0u8; 9];
        r[..4].copy_from_slice(&i.to_le_bytes());
        r[4..8].copy_from_slice(&n.to_le_bytes());
        r[8] = acked;
        r
    };
    loop {
        match q.get_lease_timeout(Duration::from_secs(60)) {
            Ok(l) => {
                let (i, n) = (check_lease_item(&l), l.delivery_count());
                log.write_all(&rec(i, n, 0)).unwrap();
                // A little work, so that kills land inside leases too.
                let t = Instant::now();
                while t.elapsed() < Duration::from_micros(20) {
                    std::hint::spin_loop();
                }
                l.ack().unwrap();
                log.write_all(&rec(i, n, 1)).unwrap();
            }
            Err(GetTimeoutError::Closed) => return,
            Err(e) => panic!("get_lease failed: {e}"),
        }
    }
}

#[test]
fn lease_crash_rounds_lose_nothing_and_redeliver_only_what_killed_consumers_held() {
    let kills: u32 = env_count("MPQ_LEASE_KILLS", 40);
    watchdog(Duration::from_secs(240), move || lease_crash_rounds(kills));
}

/// A producer thread puts items into a short lease queue while three
/// consumer processes lease and ack them; `kills` times, a consumer is
/// SIGKILLed at a random moment and replaced. Then the queue is closed and
/// the survivors drain it. Every item put is acked by some consumer; an
/// item is delivered more than once only when a consumer that leased it
/// (or was taking it) was killed, and its delivery counts say so.
fn lease_crash_rounds(kills: u32) {
    let q: LeaseQueue<Vec<u8>, Bytes> = LeaseQueueBuilder::new()
        .maxsize(16)
        .capacity(16 << 10)
        .max_leases(8)
        .build()
        .unwrap();
    let dir = TempDir::new();
    let producer = {
        let q = q.clone();
        // Acknowledged once `put` returns.
        Background::count(move |n| q.put(lease_item(n)).unwrap())
    };
    let mut consumers = Consumers::start("leaser", &q, &dir, 3);
    let mut rng = Rng(0x1ea5_e5ee_d000);
    let deadline = Instant::now() + Duration::from_secs(180);
    consumers.kill_and_replace(kills, &mut rng, deadline);
    let count = producer.stop();
    q.close();
    consumers.wait(deadline);
    // Per item: (delivery count, acked, by a killed consumer) of each record.
    let mut seen: BTreeMap<u32, Vec<(u32, bool, bool)>> = BTreeMap::new();
    for (log, killed) in &consumers.logs {
        for r in read_log::<9>(log) {
            let (i, n) = (le_u32(&r), le_u32(&r[4..]));
            assert!(i < count, "item {i} leased but only {count} were put");
            seen.entry(i).or_default().push((n, r[8] == 1, *killed));
        }
    }
    let mut extra = 0u32;
    for i in 0..count {
        let recs = seen
            .get(&i)
            .unwrap_or_else(|| panic!("item {i} was never delivered"));
        let acks: Vec<_> = recs.iter().filter(|r| r.1).collect();
        assert!(
            !acks.is_empty() || recs.iter().all(|r| r.2),
            "item {i} lost"
        );
        // Acked exactly once, unless a killed consumer acked it and died
        // before logging... it logs after the ack returns, so an ack it
        // logged is final: at most one ack in all.
        assert!(acks.len() <= 1, "item {i} acked {} times", acks.len());
        let got: Vec<_> = recs.iter().filter(|r| !r.1).collect();
        let mut counts: Vec<u32> = got.iter().map(|r| r.0).collect();
        counts.sort_unstable();
        counts.dedup();
        assert_eq!(
            counts.len(),
            got.len(),
            "item {i}: delivery counts repeat: {recs:?}"
        );
        // Every delivery but the one acked went to a consumer later killed.
        let unacked_by_survivors = got
            .iter()
            .filter(|g| !g.2 && !acks.iter().any(|a| a.0 == g.0))
            .count();
        assert_eq!(
            unacked_by_survivors, 0,
            "item {i} redelivered without a death: {recs:?}"
        );
        let last = *counts.last().unwrap();
        extra += last - 1;
        if acks.is_empty() {
            // Acked by a killed consumer that died before logging it.
            assert!(recs.iter().any(|r| r.0 == last && r.2));
        }
    }
    // Each killed consumer held or was taking at most one item.
    assert!(extra <= kills, "{extra} extra deliveries for {kills} kills");
    eprintln!("lease crash: {count} items, {kills} consumers killed, {extra} redeliveries");
    assert_eq!(q.leased(), 0);
    assert!(q.is_empty());
    assert_eq!(q.dropped(), 0);
}

/// A poison item kills every consumer that leases it: after
/// `max_deliveries` deliveries it is dropped, and the next item is
/// delivered to the next consumer.
#[test]
fn a_poison_item_is_dropped_after_max_deliveries_across_processes() {
    watchdog(Duration::from_secs(120), || {
        let q: LeaseQueue<Vec<u8>, Bytes> =
            LeaseQueueBuilder::new().max_deliveries(3).build().unwrap();
        q.put(vec![0xee]).unwrap();
        q.put(vec![1]).unwrap();
        for k in 1..=3 {
            let mut kid = spawn_piped("poisoned", &q, &[]);
            let out = std::io::BufReader::new(kid.child_mut().stdout.take().unwrap());
            let lines: Vec<String> = std::io::BufRead::lines(out).map(Result::unwrap).collect();
            // (libtest's "test child_entry ... " comes first on the line.)
            let count = lines
                .iter()
                .find_map(|l| l.split_once("COUNT ").map(|(_, c)| c.trim()))
                .unwrap_or_else(|| panic!("no count from the child: {lines:?}"));
            assert_eq!(count, format!("238 {k}"));
            let st = kid.wait_until(Instant::now() + Duration::from_secs(30));
            assert_eq!(st.signal(), Some(libc::SIGKILL));
        }
        // Its third holder died too: dropped, and the next item comes.
        let l = q.get_lease_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!((l[0], l.delivery_count()), (1, 1));
        l.ack().unwrap();
        assert_eq!(q.dropped(), 1);
        assert!(q.is_empty());
    });
}

/// A producer of the batch crash test: puts its items 0.. with `put_many`
/// in batches of 1 to 300, and logs the count put after each batch returns.
fn batcher() {
    let q: Queue<Item> = take_handle();
    let p = env_u64("P_ID") as u32;
    let mut rng = Rng(env_u64("P_SEED") | 1);
    let mut log = std::fs::File::create(std::env::var("P_LOG").unwrap()).unwrap();
    let mut i = 0u32;
    loop {
        let n = 1 + (rng.next() % 300) as u32;
        let sizes: Vec<usize> = (0..n)
            .map(|_| match rng.next() % 20 {
                0 => 700,
                k => (k * 3) as usize,
            })
            .collect();
        let items = (i..i + n).zip(sizes).map(|(k, len)| Item {
            p,
            i: k,
            data: vec![fill(p, k); len],
        });
        assert_eq!(q.put_many(items).unwrap(), n as usize);
        i += n;
        log.write_all(&i.to_le_bytes()).unwrap();
    }
}

#[test]
fn batch_crash_rounds_leave_whole_prefixes_and_lose_nothing_acknowledged() {
    let rounds: u32 = env_count("MPQ_BATCH_ROUNDS", 40);
    watchdog(Duration::from_secs(240), move || batch_crash_rounds(rounds));
}

/// Producer processes put batches and are SIGKILLed at random moments
/// while the parent takes items with `get_many`. From each producer the
/// parent receives exactly its items 0..m, in order, none torn, with m at
/// least the count its last returned `put_many` acknowledged: a killed
/// batch leaves a prefix of whole records, and no acknowledged batch loses
/// anything.
fn batch_crash_rounds(rounds: u32) {
    let dir = TempDir::new();
    let mut rng = Rng(0xba7c_4ed5);
    for r in 0..rounds {
        // A small ring (groups split and spill into the log, items of 700
        // bytes go by descriptor) with and without an item limit.
        let q: Queue<Item> = QueueBuilder::new()
            .maxsize(if r % 2 == 0 { 0 } else { 40 })
            .capacity(2048)
            .build()
            .unwrap();
        let consumer = {
            let q = q.clone();
            Background::start(move |stop| {
                let mut got: BTreeMap<u32, u32> = BTreeMap::new();
                let mut v = Vec::new();
                loop {
                    v.clear();
                    match q.get_many_timeout(&mut v, 64, Duration::from_millis(20)) {
                        Ok(_) => {}
                        Err(GetTimeoutError::Timeout) if stop.load(Ordering::SeqCst) => break,
                        Err(GetTimeoutError::Timeout) => continue,
                        Err(e) => panic!("get_many failed: {e}"),
                    }
                    for it in &v {
                        check_item(it);
                        let next = got.entry(it.p).or_insert(0);
                        assert_eq!(it.i, *next, "producer {}: gap or reorder", it.p);
                        *next += 1;
                    }
                }
                got
            })
        };
        let mut kids: Vec<TestChild> = (0..2u32)
            .map(|k| {
                spawn(
                    "batcher",
                    &q,
                    &[
                        ("P_ID", k.to_string()),
                        ("P_SEED", rng.next().to_string()),
                        (
                            "P_LOG",
                            dir.path().join(format!("b{r}_{k}")).display().to_string(),
                        ),
                    ],
                )
            })
            .collect();
        thread::sleep(Duration::from_micros(2000 + rng.next() % 15_000));
        for kid in &mut kids {
            let st = kid.kill();
            assert_eq!(
                st.signal(),
                Some(libc::SIGKILL),
                "producer failed on its own: {st:?}"
            );
            thread::sleep(Duration::from_micros(rng.next() % 3000));
        }
        let got = consumer.stop();
        for k in 0..2u32 {
            let acked = read_acks(&dir.path().join(format!("b{r}_{k}")))
                .last()
                .copied()
                .unwrap_or(0);
            let received = got.get(&k).copied().unwrap_or(0);
            assert!(
                received >= acked,
                "round {r}, producer {k}: {acked} acknowledged, {received} received"
            );
        }
        assert!(q.is_empty());
    }
}
