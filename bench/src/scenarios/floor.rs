//! Floors: what the hardware and the kernel allow for the work an mproc
//! scenario does, measured in the same run with libc alone (no mproc code),
//! so every report carries its lower bound beside it.
//!
//! Each floor is the least that can do the job: two processes spinning on
//! shared cache lines, a futex ping-pong, a pipe ping-pong, `memcpy` into a
//! warm shared mapping, a plain single-producer single-consumer ring of
//! `u64` in a shared mapping, raw `fork` + `_exit` + `waitpid`, and
//! crossbeam-channel's bounded(1024) between two threads of one process.
//! [`PAIRS`] says which mproc figure each floor bounds; `main` prints the
//! floor under that figure.
//!
//! The partner process is started like every other role child (re-executed
//! with [`Ctx::spawn`], pinned by the placement); the shared mapping is a
//! `memfd` handed to it as a descriptor.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{
    BenchResult, Ctx, Measurement, Placement, Role, RoleChild, Scenario, copy_bandwidth, pin_to_cpu,
};

/// The scenarios of the floors.
pub(crate) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "floor_spin_rtt",
            about: "floor: round trip between two processes spinning on shared cache lines (yielding after 1k spins), N=200k, us",
            run: floor_spin_rtt,
        },
        Scenario {
            name: "floor_futex_rtt",
            about: "floor: round trip between two processes by FUTEX_WAIT/FUTEX_WAKE on a shared mapping, N=20k, us",
            run: floor_futex_rtt,
        },
        Scenario {
            name: "floor_pipe_rtt",
            about: "floor: 8-byte round trip over two pipe(2)s, and over a socketpair, with a child echoing, N=20k, us",
            run: floor_pipe_rtt,
        },
        Scenario {
            name: "floor_memcpy_64mib",
            about: "floor: memcpy of 64 MiB into / out of a warm shared (memfd) mapping, GB/s, best of 5",
            run: floor_memcpy_64mib,
        },
        Scenario {
            name: "floor_spsc_ring",
            about: "floor: a raw SPSC ring of 1024 u64 in a shared mapping, child producer -> parent consumer, N=10M, M msgs/s",
            run: floor_spsc_ring,
        },
        Scenario {
            name: "floor_fork",
            about: "floor: raw fork + _exit + waitpid from a single-threaded process, N=1000, us per child",
            run: floor_fork,
        },
        Scenario {
            name: "crossbeam_bounded_u64",
            about: "floor (in-process): crossbeam-channel bounded(1024), producer thread -> consumer thread, N=10M, M msgs/s",
            run: crossbeam_bounded_u64,
        },
    ]
}

/// The child roles these scenarios start.
pub(crate) fn roles() -> Vec<Role> {
    vec![
        Role {
            name: "floor_spin_echo",
            run: role_spin_echo,
        },
        Role {
            name: "floor_futex_echo",
            run: role_futex_echo,
        },
        Role {
            name: "floor_fd_echo",
            run: role_fd_echo,
        },
        Role {
            name: "floor_ring_produce",
            run: role_ring_produce,
        },
        Role {
            name: "floor_forker",
            run: role_forker,
        },
    ]
}

/// An mproc figure and the floor that bounds it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair {
    pub(crate) scenario: &'static str,
    /// The figure's metric ("" for a scenario's only figure).
    pub(crate) metric: &'static str,
    pub(crate) floor: &'static str,
    pub(crate) floor_metric: &'static str,
    /// The floor needs both processes running at once: it bounds nothing
    /// under placement `same`.
    pub(crate) two_cpus: bool,
}

const fn pair(
    scenario: &'static str,
    metric: &'static str,
    floor: &'static str,
    floor_metric: &'static str,
) -> Pair {
    Pair {
        scenario,
        metric,
        floor,
        floor_metric,
        two_cpus: false,
    }
}

/// A pairing with the spin floor, which needs two CPUs.
const fn spin_pair(scenario: &'static str) -> Pair {
    Pair {
        two_cpus: true,
        ..pair(scenario, "", "floor_spin_rtt", "")
    }
}

/// Which floor bounds which mproc figure.
pub(crate) const PAIRS: &[Pair] = &[
    spin_pair("pipe_rtt"),
    pair("pipe_rtt", "", "floor_futex_rtt", ""),
    pair("pipe_rtt", "", "floor_pipe_rtt", ""),
    pair("pipe_rtt", "", "floor_pipe_rtt", "socketpair"),
    spin_pair("queue_rtt"),
    pair("queue_rtt", "", "floor_futex_rtt", ""),
    pair("array_copy_64mib", "in", "floor_memcpy_64mib", "in"),
    pair("array_copy_64mib", "out", "floor_memcpy_64mib", "out"),
    pair("queue_1p1c_u64", "", "crossbeam_bounded_u64", ""),
    pair("queue_1p1c_u64", "", "floor_spsc_ring", ""),
    pair("queue_2p2c_u64", "", "floor_spsc_ring", ""),
    pair("queue_batch_1p1c_u64", "", "floor_spsc_ring", ""),
    pair("proc_start_fork", "", "floor_fork", ""),
    pair("proc_start_forkserver", "", "floor_fork", ""),
];

/// The floors scenario `name` is paired with, in [`PAIRS`] order, each once.
pub(crate) fn floors_of(name: &str) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for p in PAIRS.iter().filter(|p| p.scenario == name) {
        if !v.contains(&p.floor) {
            v.push(p.floor);
        }
    }
    v
}

/// Whether scenario `name` is a floor rather than an mproc figure.
pub(crate) fn is_floor(name: &str) -> bool {
    scenarios().iter().any(|s| s.name == name)
}

fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
}

// ------------------------------------------------------------- shared mapping

/// A `memfd` mapped shared and read-write: the floors' shared memory.
struct SharedMap {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

/// Bytes between two fields the two processes write (two cache lines, so
/// the adjacent-line prefetcher does not couple them).
const LINE: usize = 128;
/// Offsets of the fields in a floor's mapping.
const CTRL: usize = 0;
const PING: usize = LINE;
const PONG: usize = 2 * LINE;
const SLOTS: usize = 3 * LINE;
/// Ring capacity of `floor_spsc_ring`, as crossbeam's bounded(1024).
const RING: usize = 1024;
/// The size of the small mappings (control lines plus the ring).
const SMALL: usize = SLOTS + RING * 8;

/// A new, empty, close-on-exec memory file.
#[cfg(target_os = "linux")]
fn memfd() -> io::Result<OwnedFd> {
    // SAFETY: the name is a NUL-terminated C string; memfd_create returns
    // a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(c"mproc-bench-floor".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by memfd_create and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Memory files are Linux's: the floors that need one do not run elsewhere.
#[cfg(not(target_os = "linux"))]
fn memfd() -> io::Result<OwnedFd> {
    Err(io::ErrorKind::Unsupported.into())
}

impl SharedMap {
    /// A new zero-filled mapping of `len` bytes.
    fn create(len: usize) -> io::Result<Self> {
        let fd = memfd()?;
        let size = libc::off_t::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Self::map(fd, len)
    }

    /// Maps a descriptor received from the parent, at its full size.
    fn open(fd: OwnedFd) -> io::Result<Self> {
        let len = mproc_shm::sys::file_size(fd.as_fd())?;
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidData)?;
        if len < SMALL {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "mapping too small",
            ));
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> io::Result<Self> {
        let p = mproc_shm::sys::mmap_shared(fd.as_fd(), len)?;
        let ptr = NonNull::new(p).ok_or(io::ErrorKind::Other)?;
        Ok(Self { ptr, len, fd })
    }

    /// The 8-byte atomic at byte offset `off`.
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(
            off % 8 == 0 && off + 8 <= self.len,
            "offset {off} out of the mapping"
        );
        // SAFETY: in bounds and 8-aligned (the mapping is page-aligned), and
        // the other process touches this memory only through atomics too.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<AtomicU64>() }
    }

    /// The 4-byte atomic (a futex word) at byte offset `off`.
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(
            off % 4 == 0 && off + 4 <= self.len,
            "offset {off} out of the mapping"
        );
        // SAFETY: as in `u64_at`, for 4 bytes.
        unsafe { &*self.ptr.as_ptr().add(off).cast::<AtomicU32>() }
    }

    /// The ring slot for item number `i`.
    fn slot(&self, i: u64) -> &AtomicU64 {
        self.u64_at(SLOTS + (i as usize % RING) * 8)
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made; no reference into it
        // outlives `self` (they all borrow it).
        unsafe { mproc_shm::sys::munmap(self.ptr.as_ptr(), self.len) };
    }
}

/// Spins on a condition, then yields the CPU between checks (so two
/// processes pinned to one CPU still make progress), and gives up after a
/// minute (a dead partner must not hang the bench).
struct Waiter {
    spins: u32,
    since: Option<Instant>,
}

impl Waiter {
    const SPINS: u32 = 1024;
    const LIMIT: Duration = Duration::from_secs(60);

    fn new() -> Self {
        Self {
            spins: 0,
            since: None,
        }
    }

    /// Waits until `done` is true.
    fn until(&mut self, mut done: impl FnMut() -> bool) -> BenchResult<()> {
        self.spins = 0;
        self.since = None;
        while !done() {
            self.snooze()?;
        }
        Ok(())
    }

    fn snooze(&mut self) -> BenchResult<()> {
        if self.spins < Self::SPINS {
            self.spins += 1;
            std::hint::spin_loop();
            return Ok(());
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > Self::LIMIT {
            return Err("floor partner did not answer within a minute".into());
        }
        std::thread::yield_now();
        Ok(())
    }
}

/// Child side of the start handshake: says "ready", waits for "go".
fn child_ready(m: &SharedMap) -> BenchResult<()> {
    let ctrl = m.u64_at(CTRL);
    // Release/Acquire: the handshake orders nothing else; any ordering works.
    ctrl.store(1, Ordering::Release);
    Waiter::new().until(|| ctrl.load(Ordering::Acquire) == 2)
}

/// Parent side: waits for "ready", then says "go".
fn parent_go(m: &SharedMap) -> BenchResult<()> {
    let ctrl = m.u64_at(CTRL);
    Waiter::new().until(|| ctrl.load(Ordering::Acquire) == 1)?;
    ctrl.store(2, Ordering::Release);
    Ok(())
}

/// Starts child role `role` (with `arg`) on a new small shared mapping and
/// completes the start handshake: the mapping and the child.
fn start_on_map(ctx: &Ctx, role: &str, arg: &str) -> BenchResult<(SharedMap, RoleChild)> {
    let m = SharedMap::create(SMALL)?;
    let child = ctx.spawn(role, arg, &[m.fd.as_fd()])?;
    parent_go(&m)?;
    Ok((m, child))
}

fn first_fd(fds: Vec<OwnedFd>) -> BenchResult<OwnedFd> {
    fds.into_iter()
        .next()
        .ok_or_else(|| "no descriptor handed over".into())
}

/// Round trips made before the timed ones.
const WARM_TRIPS: u32 = 1_000;

/// Microseconds per round trip: runs `round_trip(i)` for `i` from 1 on,
/// [`WARM_TRIPS`] times untimed, then `n` times timed.
fn us_per_round_trip(
    n: u32,
    mut round_trip: impl FnMut(u32) -> BenchResult<()>,
) -> BenchResult<f64> {
    for i in 1..=WARM_TRIPS {
        round_trip(i)?;
    }
    let t0 = Instant::now();
    for i in WARM_TRIPS + 1..=WARM_TRIPS + n {
        round_trip(i)?;
    }
    Ok(t0.elapsed().as_secs_f64() * 1e6 / f64::from(n))
}

// ---------------------------------------------------------------- spin_rtt

/// Ends an echo loop.
const STOP: u64 = u64::MAX;

fn role_spin_echo(_: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let m = SharedMap::open(first_fd(fds)?)?;
    let (ping, pong) = (m.u64_at(PING), m.u64_at(PONG));
    child_ready(&m)?;
    let mut w = Waiter::new();
    let mut last = 0;
    loop {
        // Acquire/Release: nothing but the counter itself is passed, but
        // this is the ordering a real hand-over needs, so the floor pays it.
        w.until(|| ping.load(Ordering::Acquire) != last)?;
        last = ping.load(Ordering::Acquire);
        if last == STOP {
            return Ok(());
        }
        pong.store(last, Ordering::Release);
    }
}

fn floor_spin_rtt(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let n: u32 = if quick() { 20_000 } else { 200_000 };
    let (m, child) = start_on_map(ctx, "floor_spin_echo", "")?;
    let (ping, pong) = (m.u64_at(PING), m.u64_at(PONG));
    let mut w = Waiter::new();
    let us = us_per_round_trip(n, |i| {
        let i = u64::from(i);
        ping.store(i, Ordering::Release);
        w.until(|| pong.load(Ordering::Acquire) == i)
    })?;
    ping.store(STOP, Ordering::Release);
    child.wait()?;
    let m = Measurement::lower(us, "us");
    Ok(vec![if ctx.placement == Placement::Same {
        m.note("one CPU: this is sched_yield hand-overs, not a floor")
    } else {
        m
    }])
}

// ---------------------------------------------------------------- futex_rtt

/// FUTEX_WAIT on a word shared between processes (not FUTEX_PRIVATE): sleeps
/// while `*word == expected`. Spurious returns are fine, callers re-check.
/// (mproc-shm's futex is the bare system call, no policy around it.)
fn futex_wait(word: &AtomicU32, expected: u32) {
    mproc_shm::futex::wait(word, expected, None);
}

/// Wakes one waiter on `word`.
fn futex_wake(word: &AtomicU32) {
    mproc_shm::futex::wake(word, 1);
}

/// Sets `word` to `v` and wakes its waiter.
fn futex_post(word: &AtomicU32, v: u32) {
    word.store(v, Ordering::Release);
    futex_wake(word);
}

/// Sleeps until `word` differs from `old`; returns its new value.
fn futex_await_change(word: &AtomicU32, old: u32) -> u32 {
    loop {
        let v = word.load(Ordering::Acquire);
        if v != old {
            return v;
        }
        futex_wait(word, old);
    }
}

fn role_futex_echo(_: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let m = SharedMap::open(first_fd(fds)?)?;
    let (ping, pong) = (m.u32_at(PING), m.u32_at(PONG));
    child_ready(&m)?;
    let mut last = 0;
    loop {
        last = futex_await_change(ping, last);
        if last == u32::MAX {
            return Ok(());
        }
        futex_post(pong, last);
    }
}

fn floor_futex_rtt(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let n: u32 = if quick() { 2_000 } else { 20_000 };
    let (m, child) = start_on_map(ctx, "floor_futex_echo", "")?;
    let (ping, pong) = (m.u32_at(PING), m.u32_at(PONG));
    let us = us_per_round_trip(n, |i| {
        futex_post(ping, i);
        // The echo is the only writer of `pong`, and it writes `i` next.
        let got = futex_await_change(pong, i - 1);
        if got != i {
            return Err(format!("futex echo returned {got} for {i}").into());
        }
        Ok(())
    })?;
    futex_post(ping, u32::MAX);
    child.wait()?;
    Ok(vec![Measurement::lower(us, "us")])
}

// ---------------------------------------------------------------- pipe_rtt

/// Echoes 8-byte messages from the first descriptor to the last (the same
/// one for a socket) until end of file.
fn role_fd_echo(_: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let mut fds = fds.into_iter();
    let mut rd = File::from(fds.next().ok_or("no descriptor handed over")?);
    let mut wr = match fds.next() {
        Some(fd) => File::from(fd),
        None => rd.try_clone()?,
    };
    let mut buf = [0u8; 8];
    loop {
        match rd.read_exact(&mut buf) {
            Ok(()) => wr.write_all(&buf)?,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn pipe_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut p = [0i32; 2];
    // SAFETY: pipe fills the two-element array on success.
    if unsafe { libc::pipe(p.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nothing else.
    let pair = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    mproc_shm::sys::set_cloexec(pair.0.as_fd())?;
    mproc_shm::sys::set_cloexec(pair.1.as_fd())?;
    Ok(pair)
}

fn socket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    mproc_shm::sys::socketpair()
}

/// Round trips of 8 bytes: write to `wr`, read the echo from `rd`.
fn fd_rtt(mut wr: File, mut rd: File, n: u32) -> BenchResult<f64> {
    let mut buf = [0u8; 8];
    us_per_round_trip(n, |i| {
        wr.write_all(&u64::from(i).to_le_bytes())?;
        rd.read_exact(&mut buf)?;
        if u64::from_le_bytes(buf) != u64::from(i) {
            return Err("bad echo".into());
        }
        Ok(())
    })
}

fn floor_pipe_rtt(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let n: u32 = if quick() { 2_000 } else { 20_000 };
    let pipe_us = {
        let (to_child_rd, to_child_wr) = pipe_pair()?;
        let (from_child_rd, from_child_wr) = pipe_pair()?;
        let child = ctx.spawn(
            "floor_fd_echo",
            "",
            &[to_child_rd.as_fd(), from_child_wr.as_fd()],
        )?;
        drop((to_child_rd, from_child_wr));
        let us = fd_rtt(File::from(to_child_wr), File::from(from_child_rd), n)?;
        child.wait()?;
        us
    };
    let socket_us = {
        let (mine, theirs) = socket_pair()?;
        let child = ctx.spawn("floor_fd_echo", "", &[theirs.as_fd()])?;
        drop(theirs);
        let mine = File::from(mine);
        let us = fd_rtt(mine.try_clone()?, mine, n)?;
        child.wait()?;
        us
    };
    Ok(vec![
        Measurement::lower(pipe_us, "us"),
        Measurement::lower(socket_us, "us").metric("socketpair"),
    ])
}

// ------------------------------------------------------------- memcpy_64mib

fn floor_memcpy_64mib(_: &Ctx) -> BenchResult<Vec<Measurement>> {
    const BYTES: usize = 64 << 20;
    const ROUNDS: usize = 5;
    let m = SharedMap::create(BYTES)?;
    let shared = m.ptr.as_ptr();
    copy_bandwidth(
        BYTES,
        ROUNDS,
        |src| {
            assert_eq!(src.len(), BYTES);
            // SAFETY: `shared` is a live mapping of BYTES bytes that no other
            // process maps; `src` holds BYTES bytes of a separate allocation.
            unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), shared, BYTES) };
            Ok(())
        },
        |dst| {
            assert_eq!(dst.len(), BYTES);
            // SAFETY: as above, in the other direction.
            unsafe { std::ptr::copy_nonoverlapping(shared, dst.as_mut_ptr(), BYTES) };
            Ok(())
        },
    )
}

// --------------------------------------------------------------- spsc_ring

/// Items of `floor_spsc_ring`, as in `queue_1p1c_u64`.
const RING_N: u64 = 10_000_000;

/// The producer: puts 0..n into the ring, publishing the head after each
/// item (no batching), reading the consumer's tail only when the ring looks full.
fn role_ring_produce(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let n: u64 = arg.parse()?;
    let m = SharedMap::open(first_fd(fds)?)?;
    let (head, tail) = (m.u64_at(PING), m.u64_at(PONG));
    child_ready(&m)?;
    let mut w = Waiter::new();
    let mut seen_tail = 0;
    for i in 0..n {
        if i - seen_tail == RING as u64 {
            // Acquire: the consumer has read the slot it freed.
            w.until(|| {
                seen_tail = tail.load(Ordering::Acquire);
                i - seen_tail < RING as u64
            })?;
        }
        m.slot(i).store(i, Ordering::Relaxed);
        // Release: publishes the slot written above.
        head.store(i + 1, Ordering::Release);
    }
    Ok(())
}

fn floor_spsc_ring(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let n = if quick() { RING_N / 10 } else { RING_N };
    let (m, child) = start_on_map(ctx, "floor_ring_produce", &n.to_string())?;
    let (head, tail) = (m.u64_at(PING), m.u64_at(PONG));
    let t0 = Instant::now();
    let mut w = Waiter::new();
    let mut seen_head = 0;
    for i in 0..n {
        if i == seen_head {
            // Acquire: pairs with the producer's Release of the head.
            w.until(|| {
                seen_head = head.load(Ordering::Acquire);
                seen_head > i
            })?;
        }
        let v = m.slot(i).load(Ordering::Relaxed);
        if v != i {
            return Err(format!("ring gave {v}, expected {i}").into());
        }
        // Release: the slot may be overwritten now.
        tail.store(i + 1, Ordering::Release);
    }
    let dt = t0.elapsed();
    child.wait()?;
    Ok(vec![Measurement::higher(
        n as f64 / dt.as_secs_f64() / 1e6,
        "M msgs/s",
    )])
}

// -------------------------------------------------------------------- fork

/// The forker: a freshly executed, single-threaded copy of this binary, so
/// raw `fork` is sound here (the bench parent may have threads). Argument:
/// `N:PARENT_CPU:CHILD_CPU` (`-` for none); pins itself as the bench parent
/// is pinned, and each forked child moves itself as `proc_start_*`'s
/// children do. Writes the mean microseconds per child to its descriptor.
fn role_forker(arg: &str, fds: Vec<OwnedFd>) -> BenchResult<()> {
    let mut parts = arg.split(':');
    let n: u32 = parts.next().ok_or("no count")?.parse()?;
    let cpu = |s: Option<&str>| s.and_then(|s| s.parse::<usize>().ok());
    let parent_cpu = cpu(parts.next());
    let child_cpu = cpu(parts.next());
    if let Some(c) = parent_cpu {
        pin_to_cpu(c)?;
    }
    let move_to = child_cpu.filter(|&c| Some(c) != parent_cpu);
    let fork_wait = || -> io::Result<()> {
        // SAFETY: this process has one thread (see above), so the child may
        // run anything; it only calls sched_setaffinity (via pin_to_cpu,
        // which does not allocate) and _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            if let Some(c) = move_to {
                let _ = pin_to_cpu(c);
            }
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(0) };
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked; `status` is a valid out-parameter.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            return Err(io::Error::last_os_error());
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            return Err(io::Error::other(format!(
                "forked child ended with {status:#x}"
            )));
        }
        Ok(())
    };
    for _ in 0..5 {
        fork_wait()?;
    }
    let t0 = Instant::now();
    for _ in 0..n {
        fork_wait()?;
    }
    let us = t0.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    File::from(first_fd(fds)?).write_all(format!("{us}").as_bytes())?;
    Ok(())
}

fn floor_fork(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let n = if quick() { 100 } else { 1_000 };
    let show = |c: Option<usize>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
    let arg = format!(
        "{n}:{}:{}",
        show(ctx.placement.parent_cpu()),
        show(ctx.placement.child_cpu())
    );
    let (rd, wr) = pipe_pair()?;
    let child = ctx.spawn("floor_forker", &arg, &[wr.as_fd()])?;
    drop(wr);
    let mut out = String::new();
    File::from(rd).read_to_string(&mut out)?;
    child.wait()?;
    let us: f64 = out.trim().parse()?;
    Ok(vec![Measurement::lower(us, "us/child").note(
        "forked from a fresh single-threaded process, smaller than the bench parent mproc forks",
    )])
}

// --------------------------------------------------------------- crossbeam

fn crossbeam_bounded_u64(ctx: &Ctx) -> BenchResult<Vec<Measurement>> {
    let n = if quick() { RING_N / 10 } else { RING_N };
    let (tx, rx) = crossbeam_channel::bounded::<u64>(RING);
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(0);
    let cpu = ctx.placement.child_cpu();
    let producer = std::thread::spawn(move || -> io::Result<()> {
        // Pins this thread only (threads inherit the parent's pinning).
        if let Some(c) = cpu {
            pin_to_cpu(c)?;
        }
        if go_rx.recv().is_err() {
            return Ok(());
        }
        for i in 0..n {
            if tx.send(i).is_err() {
                break;
            }
        }
        Ok(())
    });
    go_tx.send(())?;
    let t0 = Instant::now();
    for i in 0..n {
        let v = rx.recv()?;
        if v != i {
            return Err(format!("channel gave {v}, expected {i}").into());
        }
    }
    let dt = t0.elapsed();
    producer
        .join()
        .map_err(|_| "crossbeam producer panicked")??;
    Ok(vec![Measurement::higher(
        n as f64 / dt.as_secs_f64() / 1e6,
        "M msgs/s",
    )])
}
