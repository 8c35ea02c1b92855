//! The operations that wait: for a lock, a condition, a barrier, and the
//! common wait on an object's condition variable.

use std::time::{Duration, Instant};

use super::RemoteResult;
use super::connection::Peer;
use super::objects::{Entry, ObjectState, wrong_kind};
use crate::client::lock;
use crate::proto::{Acquired, Kind, Owner, RemoteError, Reply, WaitMs};
use crate::sys;

/// How often a waiting server thread checks that its client is still there.
const WAIT_STEP: Duration = Duration::from_millis(50);

/// One client's blocking operation on one object: who waits (to notice
/// it go away), on what, and until when.
pub(super) struct Wait<'a> {
    peer: &'a Peer<'a>,
    e: &'a Entry,
    deadline: Option<Instant>,
}

impl<'a> Wait<'a> {
    /// A wait of `peer` on `e` for at most `wait` (none at all for a peer
    /// that never waits).
    pub(super) fn new(peer: &'a Peer<'a>, e: &'a Entry, wait: WaitMs) -> Self {
        let deadline = if peer.no_wait {
            Some(Instant::now())
        } else {
            // An unrepresentable deadline is as good as none.
            wait.and_then(|ms| Instant::now().checked_add(Duration::from_millis(ms)))
        };
        Wait { peer, e, deadline }
    }

    /// Waits on the object's condition variable until `f` yields a value
    /// (`Ok(Some)`), the deadline passes (`Ok(None)`), or the client goes
    /// away.
    pub(super) fn until<T>(
        &self,
        mut f: impl FnMut(&mut ObjectState) -> RemoteResult<Option<T>>,
    ) -> RemoteResult<Option<T>> {
        let mut g = lock(&self.e.state);
        loop {
            if let Some(t) = f(&mut g)? {
                return Ok(Some(t));
            }
            let now = Instant::now();
            let step = match self.deadline {
                Some(d) if d <= now => return Ok(None),
                Some(d) => (d - now).min(WAIT_STEP),
                None => WAIT_STEP,
            };
            g = mproc_shm::local::wait_for(&self.e.cv, g, step);
            if self.peer.fd.is_some_and(sys::peer_gone) {
                return Err(RemoteError::NotAllowed("the client went away".into()));
            }
        }
    }

    pub(super) fn acquire(&self, owner: Owner) -> RemoteResult<Reply> {
        let kind = self.e.kind;
        let r = self.until(|o| match o {
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

    pub(super) fn cond_wait(&self, owner: Owner) -> RemoteResult<Reply> {
        let (e, kind) = (self.e, self.e.kind);
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
        let notified = self.until(|o| match o {
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
        let forever = Wait::new(self.peer, e, None);
        let _ = forever.until(|o| match o {
            ObjectState::Condition(c) if c.lock.owner.is_none() => {
                c.lock.owner = Some(owner);
                c.lock.count = saved;
                Ok(Some(()))
            }
            _ => Ok(None),
        })?;
        Ok(Reply::Bool(notified))
    }

    pub(super) fn barrier_wait(&self) -> RemoteResult<Reply> {
        let (e, kind) = (self.e, self.e.kind);
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
        let r = self.until(|o| match o {
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
