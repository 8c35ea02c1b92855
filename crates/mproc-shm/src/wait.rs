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

use std::sync::atomic::{AtomicU32, Ordering};
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
/// Rounds of `sched_yield` before sleeping: a peer that was just preempted
/// on our CPU gets it back without a full sleep/wake cycle.
pub const YIELDS: u32 = 16;
/// A pinned process with a zero budget spins (for [`SPIN_MIN_NS`]) on one
/// wait in this many, to notice that spinning became useful.
const PINNED_RETRY: u32 = 1024;

/// The current busy-wait budget of this process, adapted like glibc's
/// adaptive mutexes: halved whenever spinning gave up (the other side was
/// not running, for example it shares our CPU), doubled whenever it
/// succeeded.
static SPIN_NS: AtomicU32 = AtomicU32::new(SPIN_MAX_NS);
/// The busy-wait budget of this process while it is pinned to one CPU of
/// several: adapted like [`SPIN_NS`], except that it drops to zero (no
/// spinning) when spinning keeps failing, as it does when the process we
/// wait for is pinned to the same CPU. A pinned process may well wait for
/// one on another CPU, where spinning is what makes a hand-off fast.
static PINNED_SPIN_NS: AtomicU32 = AtomicU32::new(SPIN_MAX_NS);
/// Waits of a pinned process with a zero budget since it last tried one.
static PINNED_SKIPPED: AtomicU32 = AtomicU32::new(0);

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

/// The spin budget (and the word it adapts) of a wait starting now, or
/// `None` when this wait should not spin.
fn spin_budget() -> Option<(&'static AtomicU32, u32)> {
    if crate::mutex::spin_useful() {
        // Relaxed: a heuristic shared by the threads of this process.
        return Some((&SPIN_NS, SPIN_NS.load(Ordering::Relaxed)));
    }
    if !crate::mutex::several_cpus_online() {
        return None;
    }
    // Relaxed: heuristics shared by the threads of this process.
    let budget = PINNED_SPIN_NS.load(Ordering::Relaxed);
    if budget != 0 {
        return Some((&PINNED_SPIN_NS, budget));
    }
    // A plain load and store (not an RMW): threads racing here only make
    // the retry a little early or late.
    let skipped = PINNED_SKIPPED.load(Ordering::Relaxed).wrapping_add(1);
    PINNED_SKIPPED.store(skipped, Ordering::Relaxed);
    (skipped % PINNED_RETRY == 0).then_some((&PINNED_SPIN_NS, SPIN_MIN_NS))
}

/// The budget after a spin of `budget` gave up.
fn shrink(word: &AtomicU32, budget: u32) -> u32 {
    if std::ptr::eq(word, &PINNED_SPIN_NS) && budget <= SPIN_MIN_NS {
        0
    } else {
        (budget / 2).max(SPIN_MIN_NS)
    }
}

/// Busy-waits until `probe` returns `true` (then returns `true`), the
/// process's adaptive spin budget runs out, or `deadline` passes (then
/// `false`). Does not spin at all when no other CPU can run the process we
/// wait for.
///
/// `probe` is called often at first (an answer to a request usually comes
/// within a microsecond), then less often: each probe reads the other
/// side's cache line (or makes a system call), and reading it less often
/// lets the other side get on with its work.
pub fn spin_until(deadline: Deadline, mut probe: impl FnMut() -> bool) -> bool {
    let Some((budget_word, budget)) = spin_budget() else {
        return false;
    };
    let limit = Duration::from_nanos(u64::from(budget));
    // Read the clock only once the first probes failed: a quick answer is
    // then noticed without waiting for the clock (the budget runs a few
    // probes longer).
    let mut start = None;
    let mut i = 0u32;
    loop {
        if probe() {
            // Relaxed: a heuristic shared by the threads of this process.
            budget_word.store(
                budget.saturating_mul(2).clamp(SPIN_MIN_NS, SPIN_MAX_NS),
                Ordering::Relaxed,
            );
            return true;
        }
        // (`spin_loop` can cost ~30 ns on virtual machines.)
        let pauses = if i < 32 {
            1
        } else {
            1u32 << ((i - 32) / 8).min(4)
        };
        for _ in 0..pauses {
            std::hint::spin_loop();
        }
        i += 1;
        // Reading the clock costs about as much as a probe: seldom.
        if i % 16 == 0
            && (start.get_or_insert_with(Instant::now).elapsed() > limit || deadline.passed())
        {
            budget_word.store(shrink(budget_word, budget), Ordering::Relaxed);
            return false;
        }
    }
}
