//! Dict and list operations, on an object already checked and locked.

use super::connection::Peer;
use super::objects::{MAX_REPEAT_BYTES, OrderedMap, Slice, page_size, resolve_index};
use super::refs::Store;
use super::{RemoteResult, Server};
use crate::proto::{Op, RemoteError, Reply, Val};

impl Server {
    pub(super) fn dict_op(
        peer: &Peer<'_>,
        st: &Store<'_>,
        m: &mut OrderedMap,
        op: Op,
    ) -> RemoteResult<Reply> {
        let lend = |v: Option<&Val>| v.map(|v| st.lend(v.clone()));
        Ok(match op {
            Op::DictGet(k) => Reply::MaybeBytes(lend(m.get(&k))),
            Op::DictInsert(k, v) => {
                st.keep([&v])?;
                Reply::MaybeBytes(m.insert(k, v).map(|old| st.hand_over(old)))
            }
            Op::DictRemove(k) => Reply::MaybeBytes(m.remove(&k).map(|old| st.hand_over(old))),
            Op::DictContains(k) => Reply::Bool(m.get(&k).is_some()),
            Op::DictPop(k) => {
                Reply::Bytes(st.hand_over(m.remove(&k).ok_or(RemoteError::KeyMissing)?))
            }
            Op::DictSetDefault(k, v) => match m.get(&k) {
                Some(old) => Reply::Bytes(st.lend(old.clone())),
                None => {
                    st.keep([&v])?;
                    m.insert(k, v.clone());
                    Reply::Bytes(st.lend(v))
                }
            },
            Op::DictKeys => Reply::List(
                m.entries
                    .values()
                    .map(|(k, _)| Val::plain(k.clone()))
                    .collect(),
            ),
            Op::DictValues => Reply::List(
                m.entries
                    .values()
                    .map(|(_, v)| st.lend(v.clone()))
                    .collect(),
            ),
            Op::DictItems => Reply::Pairs(
                m.entries
                    .values()
                    .map(|(k, v)| (k.clone(), st.lend(v.clone())))
                    .collect(),
            ),
            Op::DictUpdate(pairs) => {
                st.keep(pairs.iter().map(|(_, v)| v))?;
                for (k, v) in pairs {
                    if let Some(old) = m.insert(k, v) {
                        st.discard(old);
                    }
                }
                Reply::Unit
            }
            Op::DictGetMany(keys) => {
                Reply::MaybeList(keys.iter().map(|k| lend(m.get(k))).collect())
            }
            Op::DictPopItem => Reply::MaybePair(m.pop_last().map(|(k, v)| (k, st.hand_over(v)))),
            Op::DictPage {
                from,
                max,
                len,
                values,
            } => {
                // CPython checks the size at every step of an iterator.
                if len.is_some_and(|l| l != m.len() as u64) {
                    return Err(RemoteError::ChangedSize);
                }
                let mut next = from;
                let items = m
                    .entries
                    .range(from..)
                    .take(page_size(max))
                    .map(|(&slot, (k, v))| {
                        next = slot + 1;
                        let v = if values {
                            st.lend(v.clone())
                        } else {
                            Val::default()
                        };
                        (k.clone(), v)
                    })
                    .collect();
                Reply::Page {
                    items,
                    next,
                    len: m.len() as u64,
                }
            }
            Op::DictApply {
                key,
                default,
                func,
                arg,
            } => {
                if m.get(&key).is_none() {
                    match default {
                        Some(d) => {
                            // Check before inserting, so a refused update leaves no default behind.
                            if !peer.same_exe {
                                return Err(RemoteError::ForeignExecutable);
                            }
                            st.keep([&d])?;
                            m.insert(key.clone(), d);
                        }
                        None => return Err(RemoteError::KeyMissing),
                    }
                }
                let v = m.get_mut(&key).ok_or(RemoteError::KeyMissing)?;
                return Self::apply(peer, func, v, &arg);
            }
            _ => return Err(RemoteError::Malformed("not a dict operation".into())),
        })
    }

    /// A list operation; `fixed`: the list is an array, whose length never
    /// changes.
    pub(super) fn list_op(
        peer: &Peer<'_>,
        st: &Store<'_>,
        l: &mut Vec<Val>,
        op: Op,
        fixed: bool,
    ) -> RemoteResult<Reply> {
        Ok(match op {
            Op::ListPush(v) => {
                st.keep([&v])?;
                l.push(v);
                Reply::Unit
            }
            Op::ListExtend(vs) => {
                st.keep(&vs)?;
                l.extend(vs);
                Reply::Unit
            }
            Op::ListGet(i) => Reply::Bytes(st.lend(l[resolve_index(i, l.len())?].clone())),
            Op::ListSet(i, v) => {
                let i = resolve_index(i, l.len())?;
                st.keep([&v])?;
                st.discard(std::mem::replace(&mut l[i], v));
                Reply::Unit
            }
            Op::ListInsert(i, v) => {
                st.keep([&v])?;
                // Python clamps insert positions.
                let n = l.len() as i64;
                let i = if i < 0 { (i + n).max(0) } else { i.min(n) };
                l.insert(i as usize, v);
                Reply::Unit
            }
            Op::ListPop(i) => {
                let i = resolve_index(i.unwrap_or(-1), l.len())?;
                Reply::Bytes(st.hand_over(l.remove(i)))
            }
            Op::ListRemove(v) => {
                let i = l
                    .iter()
                    .position(|x| x.bytes == v)
                    .ok_or(RemoteError::ValueMissing)?;
                st.discard(l.remove(i));
                Reply::Unit
            }
            Op::ListIndex(v) => Reply::Count(
                l.iter()
                    .position(|x| x.bytes == v)
                    .ok_or(RemoteError::ValueMissing)? as u64,
            ),
            Op::ListCount(v) => Reply::Count(l.iter().filter(|x| x.bytes == v).count() as u64),
            Op::ListSnapshot => Reply::List(l.iter().map(|v| st.lend(v.clone())).collect()),
            Op::ListPage { from, max } => Reply::List(
                l.iter()
                    .skip(usize::try_from(from).unwrap_or(usize::MAX))
                    .take(page_size(max))
                    .map(|v| st.lend(v.clone()))
                    .collect(),
            ),
            Op::ListSlice(s) => Reply::List(
                Slice::of(s, l.len())?
                    .indices()
                    .map(|i| st.lend(l[i].clone()))
                    .collect(),
            ),
            Op::ListSetSlice(s, items) => {
                let sl = Slice::of(s, l.len())?;
                if (fixed || sl.step != 1) && items.len() != sl.count {
                    return Err(RemoteError::SizeMismatch {
                        expected: sl.count as u64,
                        found: items.len() as u64,
                    });
                }
                st.keep(&items)?;
                if sl.step == 1 {
                    // Python: an empty or backwards range inserts at `start`.
                    let start = sl.start as usize;
                    let end = start + sl.count;
                    for old in l.splice(start..end, items) {
                        st.discard(old);
                    }
                } else {
                    for (i, v) in sl.indices().zip(items) {
                        st.discard(std::mem::replace(&mut l[i], v));
                    }
                }
                Reply::Unit
            }
            Op::ListDelSlice(s) => {
                let sl = Slice::of(s, l.len())?;
                let mut gone = vec![false; l.len()];
                for i in sl.indices() {
                    gone[i] = true;
                }
                for (v, gone) in std::mem::take(l).into_iter().zip(gone) {
                    if gone {
                        st.discard(v);
                    } else {
                        l.push(v);
                    }
                }
                Reply::Unit
            }
            Op::ListSort { func, reverse } => return Self::sort(peer, l, func, reverse),
            Op::ListReverse => {
                l.reverse();
                Reply::Unit
            }
            Op::ListRepeat(n) => {
                if n <= 0 {
                    std::mem::take(l).into_iter().for_each(|v| st.discard(v));
                    return Ok(Reply::Unit);
                }
                // Items are copied (not shared as in CPython): bound the bytes.
                let size: usize = l
                    .iter()
                    .map(|v| v.bytes.len() + std::mem::size_of::<Val>())
                    .sum();
                let total = usize::try_from(n)
                    .ok()
                    .filter(|&n| size.checked_mul(n).is_some_and(|b| b <= MAX_REPEAT_BYTES))
                    .map(|n| l.len() * n)
                    .ok_or_else(|| {
                        RemoteError::NotAllowed(format!(
                            "a repeated list of more than {MAX_REPEAT_BYTES} bytes (CPython's MemoryError)"
                        ))
                    })?;
                let one = l.len();
                while l.len() < total {
                    st.keep(&l[..one])?;
                    l.extend_from_within(..one);
                }
                Reply::Unit
            }
            Op::ListApply { index, func, arg } => {
                let i = resolve_index(index, l.len())?;
                return Self::apply(peer, func, &mut l[i], &arg);
            }
            _ => return Err(RemoteError::Malformed("not a list operation".into())),
        })
    }
}
