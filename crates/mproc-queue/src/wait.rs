//! Blocking: spin, then yield, then sleep on a futex word, never losing a
//! wake-up.
//!
//! A sleeper *prepares* (see [`Prepare`]): it registers in `waiters`, reads
//! `seq` and re-checks its condition, and sleeps only while `seq` is
//! unchanged. A waker changes the condition, then reads `waiters`; only when
//! it is non-zero does it bump `seq` and call `futex_wake`. Registration and
//! the waker's read must be ordered, either
//!
//! * by a lock: a consumer that wants to sleep registers while holding the
//!   producer lock, under which producers publish and read `waiters`, so
//!   publishing costs no extra fence;
//! * by a fence on the sleeper's side: consumers free room with a SeqCst
//!   swap of `head` (they take most records without a lock) and then read
//!   `waiters` with SeqCst; a producer that wants to sleep registers, issues
//!   a SeqCst fence, then looks at `head` ([`WaitWord::register_fenced`]),
//!   so the frequent side pays nothing beyond its swap; or
//! * by SeqCst on both words (task counts, which change without a lock).
//!
//! Sleeps are cut into slices of at most [`SLICE`] so that a waker killed
//! between changing the condition and waking (SIGKILL) delays a sleeper by at
//! most a slice instead of for ever.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use mproc_shm::futex;

use crate::layout::WaitWord;

/// The longest busy-wait before yielding, when another CPU can run the
/// process we wait for.
const SPIN_MAX_NS: u32 = 50_000;
/// The shortest.
const SPIN_MIN_NS: u32 = 2_000;

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
/// A pinned process with a zero budget spins (for [`SPIN_MIN_NS`]) on one
/// wait in this many, to notice that spinning became useful.
const PINNED_RETRY: u32 = 1024;
/// Whether more than one CPU is online: 0 unknown, 1 no, 2 yes.
static SEVERAL_ONLINE: AtomicU32 = AtomicU32::new(0);

/// The spin budget (and the word it adapts) of a wait starting now, or
/// `None` when this wait should not spin.
fn spin_budget() -> Option<(&'static AtomicU32, u32)> {
    if mproc_shm::mutex::spin_useful() {
        // Relaxed: a heuristic shared by the threads of this process.
        return Some((&SPIN_NS, SPIN_NS.load(Ordering::Relaxed)));
    }
    // Relaxed: a cached, idempotent fact about the system (CPUs rarely go
    // offline; a stale answer only costs a short spin).
    let several = match SEVERAL_ONLINE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let s = crate::sys::online_cpus().is_none_or(|n| n > 1);
            SEVERAL_ONLINE.store(if s { 2 } else { 1 }, Ordering::Relaxed);
            s
        }
    };
    if !several {
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

/// Rounds of `sched_yield` before sleeping.
const YIELDS: u32 = 16;
/// The longest single sleep.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// When a blocking operation gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// Never waits.
    Now,
    /// Waits until this instant.
    At(Instant),
    /// Waits for ever.
    Never,
}

impl Deadline {
    /// The deadline `timeout` from now (or never, if that overflows).
    pub(crate) fn after(timeout: Duration) -> Self {
        Instant::now()
            .checked_add(timeout)
            .map_or(Self::Never, Self::At)
    }
}

impl WaitWord {
    /// Wakes every sleeper if the registration count read (under the lock
    /// that orders registrations) was non-zero.
    pub(crate) fn notify_if(&self, waiters: u32) {
        if waiters != 0 {
            self.notify_always();
        }
    }

    /// Wakes every sleeper, if there is one, for conditions changed with a
    /// SeqCst store or RMW (no lock).
    pub(crate) fn notify(&self) {
        // SeqCst: pairs with the SeqCst increment in `register_seqcst`.
        if self.waiters.load(Ordering::SeqCst) != 0 {
            self.notify_always();
        }
    }

    /// Wakes every sleeper unconditionally.
    pub(crate) fn notify_always(&self) {
        // SeqCst: a sleeper that reads the new value does not sleep.
        self.seq.fetch_add(1, Ordering::SeqCst);
        futex::wake(&self.seq, u32::MAX);
    }

    /// Registers a sleeper; returns the `seq` to sleep on. Call while holding
    /// the lock under which wakers read `waiters`, then re-check.
    pub(crate) fn register(&self) -> u32 {
        // Relaxed: ordered by the lock the caller holds.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        // Acquire: pairs with `notify_always`, so a sleeper that reads a
        // bumped `seq` also sees what was stored before the bump (`closed`).
        self.seq.load(Ordering::Acquire)
    }

    /// Registers a sleeper without a lock; the condition must be re-checked
    /// after this, and changed by wakers with SeqCst before [`WaitWord::notify`].
    pub(crate) fn register_seqcst(&self) -> u32 {
        // SeqCst: registration precedes the re-check in the single total order.
        self.waiters.fetch_add(1, Ordering::SeqCst);
        self.seq.load(Ordering::SeqCst)
    }

    /// Registers a sleeper whose waker changes the condition with a SeqCst
    /// read-modify-write and then reads `waiters` with
    /// [`WaitWord::waiters_seqcst`]; returns the `seq` to sleep on. Re-check
    /// the condition after this.
    pub(crate) fn register_fenced(&self) -> u32 {
        // Relaxed: the fence below orders it.
        self.waiters.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence: the waker's SeqCst change either precedes it, and
        // the caller's re-check (after it) sees the change; or follows it,
        // and the waker's SeqCst load of `waiters` sees this registration.
        std::sync::atomic::fence(Ordering::SeqCst);
        // Acquire: as in `register`.
        self.seq.load(Ordering::Acquire)
    }

    /// The current registration count, read after a SeqCst change of the
    /// condition (see [`WaitWord::register_fenced`]).
    pub(crate) fn waiters_seqcst(&self) -> u32 {
        // SeqCst: see `register_fenced`.
        self.waiters.load(Ordering::SeqCst)
    }

    /// Withdraws a registration.
    pub(crate) fn unregister(&self) {
        // Relaxed: a stale count costs at most one spurious wake.
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// The current registration count (read under the ordering lock).
    pub(crate) fn waiters(&self) -> u32 {
        // Relaxed: ordered by the lock the caller holds.
        self.waiters.load(Ordering::Relaxed)
    }
}

/// What a sleeper found when preparing to sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepare {
    /// The condition may hold: try again now (nothing registered).
    Ready,
    /// Registered on the word: sleep while `seq` is unchanged, at most `max`.
    Sleep {
        /// The `seq` value read after registering.
        seq: u32,
        /// The longest sleep before trying again.
        max: Duration,
    },
}

/// Calls `attempt` until it returns `Some`, waiting between calls (first
/// spinning and yielding while `probe` says nothing changed, then sleeping on
/// `word` when `prepare` registers), until `deadline`. `None` means the
/// deadline passed.
///
/// `spin: false` skips the busy-wait, for waits that are bound to be long
/// (the process waited for has plenty of work): spinning there would only
/// slow it down, by pulling the lines it writes and, on machines whose CPUs
/// share a core, by taking the core's cycles.
/// `probe` is a cheap, lock-free hint that `attempt` may now succeed.
/// `prepare` registers on `word` (see [`Prepare`]); `block_on` unregisters
/// after each sleep.
pub(crate) fn block_on<R>(
    word: &WaitWord,
    deadline: Deadline,
    spin: bool,
    probe: impl Fn() -> bool,
    mut attempt: impl FnMut() -> Option<R>,
    mut prepare: impl FnMut() -> Prepare,
) -> Option<R> {
    if let Some(r) = attempt() {
        return Some(r);
    }
    if deadline == Deadline::Now {
        return None;
    }
    let past = |d: Deadline| matches!(d, Deadline::At(t) if Instant::now() >= t);
    // Spin only when another CPU may run the process we wait for: on a
    // single CPU it would only burn the time slice the other one needs.
    if let Some((budget_word, budget)) = spin.then(spin_budget).flatten() {
        let limit = Duration::from_nanos(u64::from(budget));
        // Read the clock only once the first probes failed: a quick answer
        // is then noticed without waiting for the clock (the budget runs a
        // few probes longer).
        let mut start = None;
        let mut i = 0u32;
        loop {
            if probe() {
                if let Some(r) = attempt() {
                    budget_word.store(
                        budget.saturating_mul(2).clamp(SPIN_MIN_NS, SPIN_MAX_NS),
                        Ordering::Relaxed,
                    );
                    return Some(r);
                }
            }
            // Probe often at first (an answer to a request usually comes
            // within a microsecond), then back off: each probe reads the
            // other side's cache line, and reading it less often lets the
            // other side write several items before the line moves.
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
                && (start.get_or_insert_with(Instant::now).elapsed() > limit || past(deadline))
            {
                budget_word.store(shrink(budget_word, budget), Ordering::Relaxed);
                break;
            }
        }
    }
    for _ in 0..YIELDS {
        crate::sys::yield_now();
        if probe() {
            if let Some(r) = attempt() {
                return Some(r);
            }
        }
        if past(deadline) {
            return attempt();
        }
    }
    loop {
        if let Prepare::Sleep { seq, max } = prepare() {
            let t = match deadline {
                Deadline::Never => Some(max.min(SLICE)),
                Deadline::At(d) => d
                    .checked_duration_since(Instant::now())
                    .filter(|t| !t.is_zero())
                    .map(|t| t.min(max).min(SLICE)),
                Deadline::Now => None,
            };
            if let Some(t) = t {
                futex::wait(&word.seq, seq, Some(t));
            }
            word.unregister();
        }
        if let Some(r) = attempt() {
            return Some(r);
        }
        if past(deadline) {
            return None;
        }
    }
}
