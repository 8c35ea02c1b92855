//! The operations that wait: for a lock, a condition, a barrier, and the
//! common wait on an object's condition variable.

use std::time::{Duration, Instant};

use super::connection::Peer;
use super::objects::{Entry, ObjectState, wrong_kind};
use super::{RemoteResult, Server};
use crate::client::lock;
use crate::proto::{Acquired, Kind, Owner, RemoteError, Reply, WaitMs};
use crate::sys;

/// How often a waiting server thread checks that its client is still there.
const WAIT_STEP: Duration = Duration::from_millis(50);

impl Server {
    pub(super) fn deadline(peer: &Peer<'_>, wait: WaitMs) -> Option<Instant> {
        if peer.no_wait {
            return Some(Instant::now());
        }
        match wait {
            // An unrepresentable deadline is as good as none.
            Some(ms) => Instant::now().checked_add(Duration::from_millis(ms)),
            None => None,
        }
    }

    /// Waits on `e`'s condition variable until `f` yields a value (`Ok(Some)`),
    /// the deadline passes (`Ok(None)`), or the client goes away.
    pub(super) fn wait_for<T>(
        peer: &Peer<'_>,
        e: &Entry,
        wait: WaitMs,
        mut f: impl FnMut(&mut ObjectState) -> RemoteResult<Option<T>>,
    ) -> RemoteResult<Option<T>> {
        let deadline = Self::deadline(peer, wait);
        let mut g = lock(&e.state);
        loop {
            if let Some(t) = f(&mut g)? {
                return Ok(Some(t));
            }
            let now = Instant::now();
            let step = match deadline {
                Some(d) if d <= now => return Ok(None),
                Some(d) => (d - now).min(WAIT_STEP),
                None => WAIT_STEP,
            };
            g = mproc_shm::local::wait_for(&e.cv, g, step);
            if peer.fd.is_some_and(sys::peer_gone) {
                return Err(RemoteError::NotAllowed("the client went away".into()));
            }
        }
    }

    pub(super) fn acquire(
        &self,
        peer: &Peer<'_>,
        e: &Entry,
        owner: Owner,
        wait: WaitMs,
    ) -> RemoteResult<Reply> {
        let kind = e.kind;
        let r = Self::wait_for(peer, e, wait, |o| match o {
            ObjectState::Lock(l) => Ok(l.try_take(owner, kind == Kind::RLock)),
            ObjectState::Condition(c) => Ok(c.lock.try_take(owner, true)),
            ObjectState::Semaphore { value, .. } => Ok((*value > 0).then(|| {
                *value -= 1;
                Acquired::Yes
            })),
            _ => Err(wrong_kind(Kind::Lock, kind)),
        })?;
        Ok(Reply::Acquired(r.unwrap_or(Acquired::No)))
    }

    pub(super) fn cond_wait(
        &self,
        peer: &Peer<'_>,
        e: &Entry,
        owner: Owner,
        wait: WaitMs,
    ) -> RemoteResult<Reply> {
        let kind = e.kind;
        let (ticket, saved) = {
            let mut g = lock(&e.state);
            let ObjectState::Condition(c) = &mut *g else {
                return Err(wrong_kind(Kind::Condition, kind));
            };
            if c.lock.owner != Some(owner) {
                return Err(RemoteError::NotOwner);
            }
            let saved = c.lock.count;
            c.lock.owner = None;
            c.lock.count = 0;
            let t = c.next_ticket;
            c.next_ticket += 1;
            c.waiting.push_back(t);
            (t, saved)
        };
        e.cv.notify_all();
        let notified = Self::wait_for(peer, e, wait, |o| match o {
            ObjectState::Condition(c) => Ok(c.woken.remove(&ticket).then_some(())),
            _ => Err(wrong_kind(Kind::Condition, kind)),
        });
        // A notify that came between the timeout and this cleanup chose this
        // waiter (it counted it as woken): take it, or it is lost.
        let late = {
            let mut g = lock(&e.state);
            if let ObjectState::Condition(c) = &mut *g {
                c.waiting.retain(|t| *t != ticket);
                c.woken.remove(&ticket)
            } else {
                false
            }
        };
        let notified = notified?.is_some() || late;
        // Take the lock back, without limit (as CPython does).
        let _ = Self::wait_for(peer, e, None, |o| match o {
            ObjectState::Condition(c) if c.lock.owner.is_none() => {
                c.lock.owner = Some(owner);
                c.lock.count = saved;
                Ok(Some(()))
            }
            _ => Ok(None),
        })?;
        Ok(Reply::Bool(notified))
    }

    pub(super) fn barrier_wait(
        &self,
        peer: &Peer<'_>,
        e: &Entry,
        wait: WaitMs,
    ) -> RemoteResult<Reply> {
        let kind = e.kind;
        let (generation, index) = {
            let mut g = lock(&e.state);
            let ObjectState::Barrier(b) = &mut *g else {
                return Err(wrong_kind(Kind::Barrier, kind));
            };
            if b.broken {
                return Err(RemoteError::BrokenBarrier);
            }
            let index = b.waiting;
            b.waiting += 1;
            if b.waiting >= b.parties {
                b.generation += 1;
                b.waiting = 0;
                drop(g);
                e.cv.notify_all();
                return Ok(Reply::Count(index));
            }
            (b.generation, index)
        };
        let r = Self::wait_for(peer, e, wait, |o| match o {
            ObjectState::Barrier(b) => {
                if b.broken_generations.contains(&generation)
                    || (b.broken && b.generation == generation)
                {
                    Err(RemoteError::BrokenBarrier)
                } else if b.generation != generation {
                    Ok(Some(()))
                } else {
                    Ok(None)
                }
            }
            _ => Err(wrong_kind(Kind::Barrier, kind)),
        });
        match r {
            Ok(Some(())) => Ok(Reply::Count(index)),
            Ok(None) | Err(_) => {
                // A timeout (or a waiter that went away) breaks the barrier, as in CPython.
                let mut g = lock(&e.state);
                if let ObjectState::Barrier(b) = &mut *g {
                    if b.generation == generation {
                        b.broken = true;
                    }
                }
                drop(g);
                e.cv.notify_all();
                Err(RemoteError::BrokenBarrier)
            }
        }
    }
}
