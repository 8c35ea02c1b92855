//! Waiting, in one place: the busy-wait policy, deadlines and the sleep
//! slices that every blocking mproc primitive (queue, pipe connection, and
//! through [`crate::mutex`] the locks) uses, with the reasons for each
//! constant next to it.
//!
//! A blocking hand-off between processes on different CPUs costs a futex or
//! socket wake-up of a sleeping CPU, which on virtual machines is tens of
//! microseconds (the hypervisor must deliver an interrupt to a halted
//! virtual CPU). A waiter that instead spins briefly sees the hand-off
//! within a fraction of a microsecond. Spinning only helps while the other
//! process can run, so the budget adapts: it shrinks when spins fail (the
//! other side shares our CPU) and never starts with a single CPU online.

use std::sync::Once;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The longest busy-wait before yielding, when another CPU can run the
/// process we wait for. Long enough to cover a request/answer round trip
/// through a peer that does a little work (a few tens of µs), short enough
/// that a wait for a peer that is not coming wastes little CPU.
pub const SPIN_MAX_NS: u32 = 50_000;
/// The shortest spin that is still tried: a hand-off by a running peer
/// takes well under a microsecond, so 2 µs notices it without costing much.
pub const SPIN_MIN_NS: u32 = 2_000;
/// The longest single sleep of a queue or connection waiter: a waker killed
/// between changing the condition and waking (SIGKILL) delays a sleeper by
/// at most this much instead of for ever.
pub const SLICE: Duration = Duration::from_millis(100);
/// The longest single sleep of a waiter that must notice on its own that
/// the process it waits for died (a lock owner, a pipe receiver that frees
/// arena space): a dead process wakes nobody, so the waiter looks after
/// each slice. Short, because those checks are cheap (`kill(pid, 0)`, a
/// `poll` of a socket) and a dead peer should be noticed within a blink.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(20);
/// Rounds of `sched_yield` before sleeping: a peer that was just preempted
/// on our CPU gets it back without a full sleep/wake cycle.
pub const YIELDS: u32 = 16;
/// A pinned process with a zero budget spins (for [`SPIN_MIN_NS`]) on one
/// wait in this many, to notice that spinning became useful.
const PINNED_RETRY: u32 = 1024;

/// An adaptive busy-wait budget, adapted like glibc's adaptive mutexes:
/// halved whenever spinning gave up (the other side was not running, for
/// example it shares our CPU), doubled whenever it succeeded.
///
/// One budget serves the whole process ([`PROCESS`]): every primitive
/// (queue, lock, connection) waits for the same other processes on the same
/// CPUs, so what one learns holds for all.
struct Budget {
    /// The budget in nanoseconds while the process may run on several CPUs.
    free_ns: AtomicU32,
    /// The budget while the process is pinned to one CPU of several:
    /// adapted like `free_ns`, except that it drops to zero (no spinning)
    /// when spinning keeps failing, as it does when the process we wait for
    /// is pinned to the same CPU. A pinned process may well wait for one on
    /// another CPU, where spinning is what makes a hand-off fast.
    pinned_ns: AtomicU32,
    /// Waits of a pinned process with a zero budget since it last tried one.
    pinned_skipped: AtomicU32,
}

/// The budget of this process.
static PROCESS: Budget = Budget::new();

/// 0: unknown, 1: spinning cannot help (one CPU), 2: spinning may help.
static SPIN: AtomicU8 = AtomicU8::new(0);
/// 0: unknown, 1: one CPU online, 2: several.
static ONLINE: AtomicU8 = AtomicU8::new(0);
static AT_FORK: Once = Once::new();

extern "C" fn forget_facts_after_fork() {
    // Relaxed: the child is single-threaded right after fork.
    SPIN.store(0, Ordering::Relaxed);
    ONLINE.store(0, Ordering::Relaxed);
}

/// Whether this process may run on more than one CPU, per its affinity
/// mask (read once, and again after a `fork`).
///
/// A simple rule for whether spinning can help. It is wrong for processes
/// pinned to *different* single CPUs (spinning helps there);
/// [`crate::mutex::adaptive_spin`] learns that case instead, and is what mproc's locks use.
pub fn spin_useful() -> bool {
    cached_fact(&SPIN, || crate::sys::allowed_cpus().is_none_or(|n| n > 1))
}

/// Forgets the cached CPU affinity, for a process that changed its own
/// affinity mask after using a lock.
pub fn refresh_affinity() {
    // Relaxed: see `spin_useful`.
    SPIN.store(0, Ordering::Relaxed);
    ONLINE.store(0, Ordering::Relaxed);
}

/// Whether the system has more than one CPU online (cached like
/// [`spin_useful`]).
pub(crate) fn several_cpus_online() -> bool {
    cached_fact(&ONLINE, || crate::sys::online_cpus().is_none_or(|n| n > 1))
}

/// The fact `cell` caches (0: not known yet, forgotten after a `fork`;
/// 1: false; 2: true), found out with `find` the first time.
#[inline]
fn cached_fact(cell: &AtomicU8, find: impl FnOnce() -> bool) -> bool {
    // Relaxed: a cached, idempotent fact about this process or the system.
    match cell.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            AT_FORK.call_once(|| crate::sys::at_fork_child(forget_facts_after_fork));
            let fact = find();
            cell.store(if fact { 2 } else { 1 }, Ordering::Relaxed);
            fact
        }
    }
}

/// When a blocking operation gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Never waits.
    Now,
    /// Waits until this instant.
    At(Instant),
    /// Waits for ever.
    Never,
}

impl Deadline {
    /// The deadline `timeout` from now (or never, if that overflows).
    pub fn after(timeout: Duration) -> Self {
        Instant::now()
            .checked_add(timeout)
            .map_or(Self::Never, Self::At)
    }

    /// Whether the deadline has passed (`Now` always has).
    pub fn passed(self) -> bool {
        match self {
            Self::Now => true,
            Self::At(t) => Instant::now() >= t,
            Self::Never => false,
        }
    }

    /// How long a sleep starting now may last: the time left, capped at
    /// `max`; `None` once the deadline has passed.
    pub fn sleep_for(self, max: Duration) -> Option<Duration> {
        match self {
            Self::Never => Some(max),
            Self::At(d) => d
                .checked_duration_since(Instant::now())
                .filter(|t| !t.is_zero())
                .map(|t| t.min(max)),
            Self::Now => None,
        }
    }
}

impl Budget {
    const fn new() -> Self {
        Self {
            free_ns: AtomicU32::new(SPIN_MAX_NS),
            pinned_ns: AtomicU32::new(SPIN_MAX_NS),
            pinned_skipped: AtomicU32::new(0),
        }
    }

    /// The budget (and the word it adapts) of a wait starting now, or
    /// `None` when this wait should not spin.
    fn start(&'static self) -> Option<(&'static AtomicU32, u32)> {
        if spin_useful() {
            // Relaxed: a heuristic shared by the threads of this process.
            return Some((&self.free_ns, self.free_ns.load(Ordering::Relaxed)));
        }
        if !several_cpus_online() {
            return None;
        }
        // Relaxed: heuristics shared by the threads of this process.
        let budget = self.pinned_ns.load(Ordering::Relaxed);
        if budget != 0 {
            return Some((&self.pinned_ns, budget));
        }
        // A plain load and store (not an RMW): threads racing here only
        // make the retry a little early or late.
        let skipped = self.pinned_skipped.load(Ordering::Relaxed).wrapping_add(1);
        self.pinned_skipped.store(skipped, Ordering::Relaxed);
        (skipped % PINNED_RETRY == 0).then_some((&self.pinned_ns, SPIN_MIN_NS))
    }

    /// The budget after a spin of `budget` on `word` gave up.
    fn shrunk(&self, word: &AtomicU32, budget: u32) -> u32 {
        if std::ptr::eq(word, &self.pinned_ns) && budget <= SPIN_MIN_NS {
            0
        } else {
            (budget / 2).max(SPIN_MIN_NS)
        }
    }

    fn spin(&'static self, deadline: Deadline, mut poll: impl FnMut() -> Option<bool>) -> bool {
        if let Some(r) = poll() {
            return r;
        }
        self.start()
            .is_some_and(|(word, budget)| self.run(word, budget, deadline, poll))
    }

    fn run(
        &self,
        word: &AtomicU32,
        budget: u32,
        deadline: Deadline,
        mut poll: impl FnMut() -> Option<bool>,
    ) -> bool {
        let limit = Duration::from_nanos(u64::from(budget));
        // Read the clock only once the first polls failed: a quick answer
        // is then noticed without waiting for the clock (the budget runs a
        // few polls longer).
        let mut start = None;
        let mut i = 0u32;
        loop {
            // Poll often at first (an answer to a request usually comes
            // within a microsecond), then back off: each poll reads the
            // other side's cache line (or makes a system call), and doing
            // it less often lets the other side get on with its work.
            // (`spin_loop` can cost ~30 ns on virtual machines.)
            let pauses = if i < 32 {
                1
            } else {
                1u32 << ((i - 32) / 8).min(4)
            };
            for _ in 0..pauses {
                std::hint::spin_loop();
            }
            match poll() {
                Some(true) => {
                    // Relaxed: a heuristic shared by the threads of this process.
                    word.store(
                        budget.saturating_mul(2).clamp(SPIN_MIN_NS, SPIN_MAX_NS),
                        Ordering::Relaxed,
                    );
                    return true;
                }
                Some(false) => return false,
                None => {}
            }
            i += 1;
            // Reading the clock costs about as much as a poll: seldom.
            if i % 16 == 0
                && (start.get_or_insert_with(Instant::now).elapsed() > limit || deadline.passed())
            {
                word.store(self.shrunk(word, budget), Ordering::Relaxed);
                return false;
            }
        }
    }
}

/// Spins calling `poll` until it returns `Some(true)` (success: returns
/// `true`) or `Some(false)` (give up: returns `false`), or the process's
/// spin budget runs out or `deadline` passes (returns `false`; the caller
/// then sleeps). `poll` runs at least once.
///
/// There is no spinning when no other CPU can run the process we wait for
/// (a single CPU online), and the budget adapts (see the module docs): a
/// spin that succeeds doubles it, one that runs out halves it, and while
/// this process is pinned to one CPU it drops to nothing when spins keep
/// failing (the other side is pinned to the same CPU), with one wait in
/// 1024 trying a short spin to notice a change.
pub fn spin(deadline: Deadline, poll: impl FnMut() -> Option<bool>) -> bool {
    PROCESS.spin(deadline, poll)
}

/// A decision to spin for one wait, taken before the caller's first attempt
/// (see [`begin_socket_wait`]).
#[derive(Debug)]
pub struct Spin {
    word: &'static AtomicU32,
    budget: u32,
}

impl Spin {
    /// Busy-waits until `probe` returns `true` (then returns `true`), or as
    /// [`spin`] gives up (then `false`). Unlike [`spin_until`], the first
    /// probe comes after a pause.
    pub fn until(self, deadline: Deadline, mut probe: impl FnMut() -> bool) -> bool {
        !deadline.passed()
            && PROCESS.run(self.word, self.budget, deadline, || probe().then_some(true))
    }
}

/// Whether a wait for data that another process writes to a socket should
/// spin: `Some` only while this process is pinned to one CPU of several
/// (and the budget says spinning pays).
///
/// A write to a socket wakes its reader *synchronously*: the kernel tends to
/// move the woken process onto the writer's CPU, so two unpinned processes
/// talking over a socket soon share a CPU, where spinning only delays the
/// other side (measured: `pipe_rtt` 11 µs without spinning, 33 µs with).
/// Processes pinned to different CPUs cannot be moved, and there a reader
/// that polls saves the cross-CPU wake-up (35 µs → 6 µs on a virtual
/// machine); pinned to the same CPU, the budget drops to nothing.
pub fn begin_socket_wait() -> Option<Spin> {
    if spin_useful() {
        return None;
    }
    PROCESS.start().map(|(word, budget)| Spin { word, budget })
}

/// Busy-waits until `probe` returns `true` (then returns `true`), or as
/// [`spin`] gives up (then `false`).
pub fn spin_until(deadline: Deadline, mut probe: impl FnMut() -> bool) -> bool {
    spin(deadline, || probe().then_some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_adapts() {
        static B: Budget = Budget::new();
        let b = &B;
        let Some((word, _)) = b.start() else {
            assert!(!b.spin(Deadline::Never, || None), "no spinning on one CPU");
            return;
        };
        // Spins that never succeed shrink the budget to the minimum (or to
        // nothing when pinned).
        for _ in 0..12 {
            assert!(!b.spin(Deadline::Never, || None));
        }
        let low = word.load(Ordering::Relaxed);
        assert!(low <= SPIN_MIN_NS, "{low}");
        // Giving up early (Some(false)) leaves the budget alone.
        assert!(!b.spin(Deadline::Never, || Some(false)));
        assert_eq!(word.load(Ordering::Relaxed), low);
        // A spin that succeeds grows it (a pinned process retries one wait
        // in PINNED_RETRY).
        let mut n = 0;
        let ok = (0..PINNED_RETRY * 2).any(|_| {
            b.spin(Deadline::Never, || {
                n += 1;
                (n % 20 == 0).then_some(true)
            })
        });
        assert!(ok);
        assert!(word.load(Ordering::Relaxed) >= 2 * low.max(SPIN_MIN_NS / 2));
        // A past deadline ends a spin at once (within 16 polls).
        let mut polls = 0;
        assert!(!b.spin(Deadline::Now, || {
            polls += 1;
            None
        }));
        assert!(polls <= 17, "{polls}");
    }
}
