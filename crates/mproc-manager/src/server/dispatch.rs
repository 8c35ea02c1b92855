//! One operation on one object: checks that the object is of a kind the
//! operation applies to, then runs it (dict and list operations in
//! [`super::collections`], waits in [`super::waits`]).

use std::cell::RefCell;

use super::connection::Peer;
use super::objects::{Entry, ObjectState, release_owned, wrong_kind};
use super::refs::Store;
use super::waits::Wait;
use super::{RemoteResult, Server};
use crate::client::lock;
use crate::proto::{Id, Kind, Op, RemoteError, Reply};

impl Server {
    /// Runs `op` on `e`; adds the objects it freed to `freed`.
    pub(super) fn op(
        &self,
        peer: &Peer<'_>,
        e: &Entry,
        op: Op,
        freed: &mut Vec<Id>,
    ) -> RemoteResult<Reply> {
        let st = Store {
            refs: &self.refs,
            client: peer.client,
            container: e.id,
            freed: RefCell::new(Vec::new()),
        };
        let r = self.op_in(peer, &st, e, op);
        freed.append(&mut st.freed.borrow_mut());
        r
    }

    pub(super) fn op_in(
        &self,
        peer: &Peer<'_>,
        st: &Store<'_>,
        e: &Entry,
        op: Op,
    ) -> RemoteResult<Reply> {
        let kind = e.kind;
        match op {
            Op::Len => match &*lock(&e.state) {
                ObjectState::Dict(m) => Ok(Reply::Count(m.len() as u64)),
                ObjectState::List(l) => Ok(Reply::Count(l.len() as u64)),
                ObjectState::Namespace(n) => Ok(Reply::Count(n.len() as u64)),
                ObjectState::Queue(q) => Ok(Reply::Count(q.items.len() as u64)),
                _ => Err(wrong_kind(Kind::Dict, kind)),
            },
            Op::Clear if kind == Kind::Array => Err(wrong_kind(Kind::List, kind)),
            Op::Clear => match &mut *lock(&e.state) {
                o @ (ObjectState::Dict(_) | ObjectState::List(_) | ObjectState::Namespace(_)) => {
                    o.drain().into_iter().for_each(|v| st.discard(v));
                    Ok(Reply::Unit)
                }
                _ => Err(wrong_kind(Kind::Dict, kind)),
            },
            Op::DictGet(_)
            | Op::DictInsert(..)
            | Op::DictRemove(_)
            | Op::DictContains(_)
            | Op::DictPop(_)
            | Op::DictSetDefault(..)
            | Op::DictKeys
            | Op::DictValues
            | Op::DictItems
            | Op::DictUpdate(_)
            | Op::DictGetMany(_)
            | Op::DictPopItem
            | Op::DictPage { .. }
            | Op::DictApply { .. } => {
                let mut g = lock(&e.state);
                let ObjectState::Dict(m) = &mut *g else {
                    return Err(wrong_kind(Kind::Dict, kind));
                };
                Self::dict_op(peer, st, m, op)
            }
            Op::ListPush(_)
            | Op::ListExtend(_)
            | Op::ListGet(_)
            | Op::ListSet(..)
            | Op::ListInsert(..)
            | Op::ListPop(_)
            | Op::ListRemove(_)
            | Op::ListIndex(_)
            | Op::ListCount(_)
            | Op::ListSnapshot
            | Op::ListPage { .. }
            | Op::ListSlice(_)
            | Op::ListSetSlice(..)
            | Op::ListDelSlice(_)
            | Op::ListSort { .. }
            | Op::ListReverse
            | Op::ListRepeat(_)
            | Op::ListApply { .. } => {
                let mut g = lock(&e.state);
                let ObjectState::List(l) = &mut *g else {
                    return Err(wrong_kind(Kind::List, kind));
                };
                if kind == Kind::Array && !op.keeps_length() {
                    return Err(wrong_kind(Kind::List, kind));
                }
                Self::list_op(peer, st, l, op, kind == Kind::Array)
            }
            Op::NsGet(_)
            | Op::NsSet(..)
            | Op::NsDel(_)
            | Op::NsNames
            | Op::NsRepr
            | Op::NsApply { .. } => {
                let mut g = lock(&e.state);
                let ObjectState::Namespace(n) = &mut *g else {
                    return Err(wrong_kind(Kind::Namespace, kind));
                };
                match op {
                    Op::NsGet(k) => n
                        .get(&k)
                        .map(|(v, _)| Reply::Bytes(st.lend(v.clone())))
                        .ok_or(RemoteError::KeyMissing),
                    Op::NsSet(k, v, r) => {
                        st.keep([&v])?;
                        if let Some((old, _)) = n.insert(k, (v, r)) {
                            st.discard(old);
                        }
                        Ok(Reply::Unit)
                    }
                    Op::NsDel(k) => n
                        .remove(&k)
                        .map(|(old, _)| {
                            st.discard(old);
                            Reply::Unit
                        })
                        .ok_or(RemoteError::KeyMissing),
                    Op::NsNames => Ok(Reply::Names(n.keys().cloned().collect())),
                    Op::NsRepr => Ok(Reply::Names(
                        n.iter().map(|(k, (_, r))| format!("{k}={r}")).collect(),
                    )),
                    Op::NsApply { name, func, arg } => {
                        let (v, r) = n.get_mut(&name).ok_or(RemoteError::KeyMissing)?;
                        Self::apply_repr(peer, func, v, r, &arg)
                    }
                    _ => unreachable!("matched above"),
                }
            }
            Op::ValueGet | Op::ValueSet(_) | Op::ValueSwap(_) | Op::ValueApply { .. } => {
                let mut g = lock(&e.state);
                let ObjectState::Value(v) = &mut *g else {
                    return Err(wrong_kind(Kind::Value, kind));
                };
                match op {
                    Op::ValueGet => Ok(Reply::Bytes(st.lend(v.clone()))),
                    Op::ValueSet(n) => {
                        st.keep([&n])?;
                        st.discard(std::mem::replace(v, n));
                        Ok(Reply::Unit)
                    }
                    Op::ValueSwap(n) => {
                        st.keep([&n])?;
                        Ok(Reply::Bytes(st.hand_over(std::mem::replace(v, n))))
                    }
                    Op::ValueApply { func, arg } => Self::apply(peer, func, v, &arg),
                    _ => unreachable!("matched above"),
                }
            }
            Op::Acquire { owner, wait } => Wait::new(peer, e, wait).acquire(owner),
            Op::Release { owner } => e.change(|o| match o {
                ObjectState::Lock(l) if kind == Kind::Lock => match l.owner {
                    // threading.Lock: anyone may release it.
                    Some(_) => {
                        l.owner = None;
                        l.count = 0;
                        Ok(Reply::Unit)
                    }
                    None => Err(RemoteError::Unlocked),
                },
                ObjectState::Lock(l) => release_owned(l, owner),
                ObjectState::Condition(c) => release_owned(&mut c.lock, owner),
                ObjectState::Semaphore { value, bound } => {
                    if bound.is_some_and(|b| *value >= b) || *value == u64::MAX {
                        Err(RemoteError::OverRelease)
                    } else {
                        *value += 1;
                        Ok(Reply::Unit)
                    }
                }
                _ => Err(wrong_kind(Kind::Lock, kind)),
            }),
            Op::LockState => match &*lock(&e.state) {
                ObjectState::Lock(l) => Ok(Reply::Held(l.owner.is_some(), l.count)),
                ObjectState::Condition(c) => Ok(Reply::Held(c.lock.owner.is_some(), c.lock.count)),
                ObjectState::Semaphore { value, .. } => Ok(Reply::Held(*value == 0, *value)),
                _ => Err(wrong_kind(Kind::Lock, kind)),
            },
            Op::CondWait { owner, wait } => Wait::new(peer, e, wait).cond_wait(owner),
            Op::CondNotify { owner, n } => e.change(|o| {
                let ObjectState::Condition(c) = o else {
                    return Err(wrong_kind(Kind::Condition, kind));
                };
                if c.lock.owner != Some(owner) {
                    return Err(RemoteError::NotOwner);
                }
                let mut woken = 0;
                while woken < n {
                    let Some(t) = c.waiting.pop_front() else {
                        break;
                    };
                    c.woken.insert(t);
                    woken += 1;
                }
                Ok(Reply::Count(woken))
            }),
            Op::EventSet | Op::EventClear | Op::EventIsSet => e.change(|o| {
                let ObjectState::Event(flag) = o else {
                    return Err(wrong_kind(Kind::Event, kind));
                };
                Ok(match op {
                    Op::EventSet => {
                        *flag = true;
                        Reply::Unit
                    }
                    Op::EventClear => {
                        *flag = false;
                        Reply::Unit
                    }
                    _ => Reply::Bool(*flag),
                })
            }),
            Op::EventWait(wait) => {
                let r = Wait::new(peer, e, wait).until(|o| match o {
                    ObjectState::Event(true) => Ok(Some(())),
                    ObjectState::Event(false) => Ok(None),
                    _ => Err(wrong_kind(Kind::Event, kind)),
                })?;
                Ok(Reply::Bool(r.is_some()))
            }
            Op::BarrierWait(wait) => Wait::new(peer, e, wait).barrier_wait(),
            Op::BarrierReset | Op::BarrierAbort | Op::BarrierInfo => e.change(|o| {
                let ObjectState::Barrier(b) = o else {
                    return Err(wrong_kind(Kind::Barrier, kind));
                };
                Ok(match op {
                    Op::BarrierReset => {
                        if b.waiting > 0 {
                            b.broken_generations.insert(b.generation);
                            b.generation += 1;
                            b.waiting = 0;
                        }
                        b.broken = false;
                        Reply::Unit
                    }
                    Op::BarrierAbort => {
                        b.broken = true;
                        Reply::Unit
                    }
                    _ => Reply::Barrier(b.parties, b.waiting, b.broken),
                })
            }),
            Op::Put(item, wait) => {
                let mut item = Some(item);
                let r = Wait::new(peer, e, wait).until(|o| match o {
                    ObjectState::Queue(q)
                        if q.maxsize == 0 || (q.items.len() as u64) < q.maxsize =>
                    {
                        st.keep(item.as_ref())?;
                        q.items.extend(item.take());
                        q.unfinished += 1;
                        Ok(Some(()))
                    }
                    ObjectState::Queue(_) => Ok(None),
                    _ => Err(wrong_kind(Kind::Queue, kind)),
                })?;
                e.cv.notify_all();
                r.map(|()| Reply::Unit).ok_or(RemoteError::Full)
            }
            Op::Get(wait) => {
                let r = Wait::new(peer, e, wait).until(|o| match o {
                    ObjectState::Queue(q) => Ok(q.items.pop_front().map(|v| st.hand_over(v))),
                    _ => Err(wrong_kind(Kind::Queue, kind)),
                })?;
                e.cv.notify_all();
                r.map(Reply::Bytes).ok_or(RemoteError::Empty)
            }
            Op::QSize => match &*lock(&e.state) {
                ObjectState::Queue(q) => Ok(Reply::Count(q.items.len() as u64)),
                _ => Err(wrong_kind(Kind::Queue, kind)),
            },
            Op::QFull => match &*lock(&e.state) {
                ObjectState::Queue(q) => Ok(Reply::Bool(
                    q.maxsize != 0 && q.items.len() as u64 >= q.maxsize,
                )),
                _ => Err(wrong_kind(Kind::Queue, kind)),
            },
            Op::TaskDone => e.change(|o| {
                let ObjectState::Queue(q) = o else {
                    return Err(wrong_kind(Kind::JoinableQueue, kind));
                };
                if kind != Kind::JoinableQueue {
                    return Err(wrong_kind(Kind::JoinableQueue, kind));
                }
                if q.unfinished == 0 {
                    return Err(RemoteError::TooManyTaskDone);
                }
                q.unfinished -= 1;
                Ok(Reply::Unit)
            }),
            Op::Join(wait) => {
                if kind != Kind::JoinableQueue {
                    return Err(wrong_kind(Kind::JoinableQueue, kind));
                }
                let r = Wait::new(peer, e, wait).until(|o| match o {
                    ObjectState::Queue(q) => Ok((q.unfinished == 0).then_some(())),
                    _ => Err(wrong_kind(Kind::JoinableQueue, kind)),
                })?;
                r.map(|()| Reply::Unit).ok_or(RemoteError::Timeout)
            }
        }
    }
}
