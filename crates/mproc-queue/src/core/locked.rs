//! Gets under the consumer lock with a hook before each claim: the building
//! block of leases (see `crate::lease`), which must record an item in
//! shared memory before the queue lets go of it.
//!
//! A queue read this way has no lock-free consumers (its kind is its own,
//! so no plain `Queue` handle can open it), so records are consumed only
//! under the consumer lock, and whoever holds it can tell from
//! [`Consumer::consumed`] whether a claim happened.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Core, GetFail};
use crate::ring::{Peek, REC_INLINE};
use crate::wait::{Deadline, Prepare, block_on};

/// What [`Consumer::take`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Took {
    /// A record was claimed; its bytes are in `out`.
    Taken,
    /// No record is published.
    Empty,
    /// No record is published and the queue is closed.
    Closed,
}

/// The consumer lock, held: takes records with a hook before each claim.
pub(crate) struct Consumer<'a> {
    core: &'a Core,
    took: Cell<bool>,
}

impl Consumer<'_> {
    /// Records consumed from the ring and the overflow log (wrapping): it
    /// moves by one with each claim, and only under the consumer lock.
    pub(crate) fn consumed(&self) -> u32 {
        self.core.records().consumed()
    }

    /// Takes the next record into `out`, calling `keep` on its bytes after
    /// they are copied out and before the record is claimed: a process
    /// killed before the claim leaves the record in the queue, one killed
    /// after it has run `keep` to the end. `keep` also gets
    /// [`Consumer::consumed`] as it is before the claim (read after the
    /// peek, whose loads it reuses).
    #[inline]
    pub(crate) fn take(
        &self,
        out: &mut Vec<u8>,
        keep: &mut dyn FnMut(&[u8], u32),
    ) -> Result<Took, GetFail> {
        if self.take_inline(out, |b, consumed| keep(b, consumed)) {
            return Ok(Took::Taken);
        }
        self.take_any(out, keep)
    }

    /// [`Consumer::take`]'s common case: an inline record at the ring's
    /// `head` while the overflow log is empty is the next in put order (as
    /// for `Records::take`), and a look that finds it needs neither `tail`
    /// nor the log's front. True once it is taken; false when the next
    /// record is not such a one (or none is there): then `keep` may have
    /// run, nothing was claimed, and [`Consumer::take_any`] takes it.
    #[inline]
    fn take_inline(&self, out: &mut Vec<u8>, keep: impl FnOnce(&[u8], u32)) -> bool {
        let recs = self.core.records();
        let Ok(Peek::Record(p)) = recs.ring.peek_at(recs.ring.head_word(), out, false) else {
            return false;
        };
        if p.kind != REC_INLINE || recs.ovf.has_record() {
            return false;
        }
        // Only consumer-lock holders claim records: this holds until the
        // claim below.
        keep(out, self.consumed());
        // SAFETY: a `Consumer` exists only while the consumer lock is held
        // (see `Core::get_locked`), since the peek. (Only a scribbled
        // `head` moves under the lock and fails the claim.)
        let taken = unsafe { recs.ring.commit(p) };
        if taken {
            self.took.set(true);
        }
        taken
    }

    /// [`Consumer::take`] without its common case first: whatever record
    /// is next, from a strict look.
    fn take_any(
        &self,
        out: &mut Vec<u8>,
        keep: &mut dyn FnMut(&[u8], u32),
    ) -> Result<Took, GetFail> {
        let core = self.core;
        let recs = core.records();
        loop {
            // SAFETY: a `Consumer` exists only while the consumer lock is
            // held (see `Core::get_locked`).
            let p = match unsafe { recs.peek(out, true) } {
                Ok(Some(p)) => p,
                Ok(None) if core.is_closed() => {
                    // As in `get_bytes`: re-check after seeing the flag.
                    // SAFETY: as above.
                    return match unsafe { recs.peek(out, true) } {
                        Ok(None) => Ok(Took::Closed),
                        Ok(Some(_)) => continue,
                        Err(c) => Err(GetFail::Broken(c.into())),
                    };
                }
                Ok(None) => return Ok(Took::Empty),
                Err(c) => return Err(GetFail::Broken(c.into())),
            };
            // Only consumer-lock holders claim records: this holds until
            // the claim below.
            let consumed = self.consumed();
            if p.kind() == REC_INLINE {
                keep(out, consumed);
                // SAFETY: consumer lock held since the peek.
                if unsafe { recs.commit(p) } {
                    self.took.set(true);
                    return Ok(Took::Taken);
                }
                // Only a scribbled `head` moves under the lock: look again.
                continue;
            }
            // SAFETY: consumer lock held since the peek.
            unsafe { core.take_large(&recs, p, out, &mut |b| keep(b, consumed)) }
                .map_err(GetFail::Broken)?;
            self.took.set(true);
            return Ok(Took::Taken);
        }
    }
}

impl Core {
    /// Runs `f` under the consumer lock (for changes a [`Consumer`] must
    /// make outside a get).
    pub(crate) fn with_consumer<R>(&self, f: impl FnOnce(&Consumer<'_>) -> R) -> R {
        let c = Consumer {
            core: self,
            took: Cell::new(false),
        };
        let _g = self.lock_cons();
        f(&c)
    }

    /// Wakes consumers sleeping in [`Core::get_locked`] after a change that
    /// makes their `ready` true (a cheap load while nobody sleeps).
    pub(crate) fn notify_consumers(&self) {
        self.ctl().wait.not_empty.notify();
    }

    /// One attempt of [`Core::get_locked`]: calls `attempt` with the
    /// consumer lock held, then wakes producers if it took a record. (A
    /// caller may make one before `get_locked`, without its waiting.)
    #[inline]
    pub(crate) fn attempt_locked<R>(
        &self,
        attempt: impl FnOnce(&Consumer<'_>) -> Option<Result<R, GetFail>>,
    ) -> Option<Result<R, GetFail>> {
        self.close_spent();
        let c = Consumer {
            core: self,
            took: Cell::new(false),
        };
        let r = {
            let _g = self.lock_cons();
            attempt(&c)
        };
        if c.took.get() {
            let ctl = self.ctl();
            // After the SeqCst swap that freed the room: see `wait`.
            ctl.wait
                .not_full
                .notify_if(ctl.wait.not_full.waiters_seqcst());
            self.trim_overflow();
        }
        r
    }

    /// Gets under the consumer lock: calls `attempt` with the lock held
    /// until it returns `Some`, waiting in between until `deadline` (then
    /// `None`).
    ///
    /// `ready(has_record, closed)` says whether an attempt may succeed now
    /// (a waiter sleeps while it is false), and `max_sleep` how long a
    /// sleep may last before the next attempt. Anything that makes `ready`
    /// true must be followed by `self.ctl().wait.not_empty.notify()` (the
    /// registration here is SeqCst, as [`crate::wait`] requires for that).
    pub(crate) fn get_locked<R>(
        &self,
        deadline: Deadline,
        ready: impl Fn(bool, bool) -> bool,
        max_sleep: impl Fn() -> Duration,
        mut attempt: impl FnMut(&Consumer<'_>) -> Option<Result<R, GetFail>>,
    ) -> Option<Result<R, GetFail>> {
        let ctl = self.ctl();
        block_on(
            &ctl.wait.not_empty,
            deadline,
            true,
            || {
                // Relaxed: only a hint; the attempt re-reads under the lock.
                ready(
                    self.ring().probe() || self.overflow().has_record(),
                    ctl.wait.closed.load(Ordering::Relaxed) != 0,
                )
            },
            || self.attempt_locked(&mut attempt),
            || {
                let _g = self.lock_prod();
                let seq = ctl.wait.not_empty.register_seqcst();
                if ready(self.records().has_record(), self.is_closed()) {
                    ctl.wait.not_empty.unregister();
                    return Prepare::Ready;
                }
                Prepare::Sleep {
                    seq,
                    max: max_sleep(),
                }
            },
        )
    }
}
