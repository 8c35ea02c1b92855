//! The state of each kind of shared object, and the pure rules on it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex};

use super::RemoteResult;
use crate::proto::{Acquired, Bytes, Id, Kind, Owner, RemoteError, Reply, SliceWire, Val};

/// A dict that keeps insertion order, keyed by encoded bytes.
#[derive(Default)]
pub(super) struct OrderedMap {
    pub(super) index: HashMap<Bytes, u64>,
    pub(super) entries: BTreeMap<u64, (Bytes, Val)>,
    pub(super) next: u64,
}

impl OrderedMap {
    pub(super) fn get(&self, k: &[u8]) -> Option<&Val> {
        self.index
            .get(k)
            .and_then(|s| self.entries.get(s))
            .map(|(_, v)| v)
    }

    pub(super) fn get_mut(&mut self, k: &[u8]) -> Option<&mut Val> {
        let s = self.index.get(k)?;
        self.entries.get_mut(s).map(|(_, v)| v)
    }

    pub(super) fn insert(&mut self, k: Bytes, v: Val) -> Option<Val> {
        if let Some(s) = self.index.get(&k) {
            let slot = self.entries.get_mut(s).expect("index and entries agree");
            return Some(std::mem::replace(&mut slot.1, v));
        }
        let s = self.next;
        self.next += 1;
        self.index.insert(k.clone(), s);
        self.entries.insert(s, (k, v));
        None
    }

    pub(super) fn remove(&mut self, k: &[u8]) -> Option<Val> {
        let s = self.index.remove(k)?;
        self.entries.remove(&s).map(|(_, v)| v)
    }

    pub(super) fn pop_last(&mut self) -> Option<(Bytes, Val)> {
        let (_, (k, v)) = self.entries.pop_last()?;
        self.index.remove(&k);
        Some((k, v))
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Empties the map, returning its values.
    pub(super) fn drain(&mut self) -> Vec<Val> {
        self.index.clear();
        std::mem::take(&mut self.entries)
            .into_values()
            .map(|(_, v)| v)
            .collect()
    }
}

#[derive(Default)]
pub(super) struct LockState {
    pub(super) owner: Option<Owner>,
    pub(super) count: u64,
    /// The last holder disconnected while holding it.
    pub(super) died: bool,
}

impl LockState {
    /// Takes the lock if free (or, when `reentrant`, already ours).
    pub(super) fn try_take(&mut self, me: Owner, reentrant: bool) -> Option<Acquired> {
        match self.owner {
            None => {
                self.owner = Some(me);
                self.count = 1;
                Some(if std::mem::take(&mut self.died) {
                    Acquired::OwnerDied
                } else {
                    Acquired::Yes
                })
            }
            Some(o) if reentrant && o == me => {
                self.count += 1;
                Some(Acquired::Yes)
            }
            Some(_) => None,
        }
    }
}

#[derive(Default)]
pub(super) struct CondState {
    pub(super) lock: LockState,
    pub(super) next_ticket: u64,
    pub(super) waiting: VecDeque<u64>,
    pub(super) woken: HashSet<u64>,
}

pub(super) struct BarrierState {
    pub(super) parties: u64,
    pub(super) waiting: u64,
    pub(super) generation: u64,
    pub(super) broken: bool,
    pub(super) broken_generations: HashSet<u64>,
}

pub(super) struct QueueState {
    pub(super) items: VecDeque<Val>,
    /// 0: unbounded.
    pub(super) maxsize: u64,
    pub(super) unfinished: u64,
}

pub(super) enum ObjectState {
    Dict(OrderedMap),
    List(Vec<Val>),
    /// Each field's value and repr (see `repr`).
    Namespace(BTreeMap<String, (Val, String)>),
    Value(Val),
    Lock(LockState),
    Semaphore {
        value: u64,
        bound: Option<u64>,
    },
    Event(bool),
    Condition(CondState),
    Barrier(BarrierState),
    Queue(QueueState),
}

impl ObjectState {
    /// Takes out every stored value (the object is being freed).
    pub(super) fn drain(&mut self) -> Vec<Val> {
        match self {
            Self::Dict(m) => m.drain(),
            Self::List(l) => std::mem::take(l),
            Self::Namespace(n) => std::mem::take(n).into_values().map(|(v, _)| v).collect(),
            Self::Value(v) => vec![std::mem::take(v)],
            Self::Queue(q) => std::mem::take(&mut q.items).into(),
            _ => Vec::new(),
        }
    }
}

pub(super) struct Entry {
    pub(super) id: Id,
    pub(super) kind: Kind,
    pub(super) state: Mutex<ObjectState>,
    pub(super) cv: Condvar,
}

impl Entry {
    /// Runs `f` on the state under its lock, then wakes every waiter on
    /// the object (they check their own condition again), whatever `f`
    /// returned.
    pub(super) fn change<T>(
        &self,
        f: impl FnOnce(&mut ObjectState) -> RemoteResult<T>,
    ) -> RemoteResult<T> {
        let r = f(&mut crate::client::lock(&self.state));
        self.cv.notify_all();
        r
    }
}

pub(super) fn wrong_kind(expected: Kind, found: Kind) -> RemoteError {
    RemoteError::WrongKind { expected, found }
}

/// Python's index normalisation: negative counts from the end.
pub(super) fn resolve_index(index: i64, len: usize) -> RemoteResult<usize> {
    let l = len as i64;
    let i = if index < 0 { index + l } else { index };
    if i < 0 || i >= l {
        Err(RemoteError::IndexOutOfRange {
            index,
            len: len as u64,
        })
    } else {
        Ok(i as usize)
    }
}

/// The most bytes a list may reach by repetition (`l *= n`).
pub(super) const MAX_REPEAT_BYTES: usize = 256 << 20;

/// The most entries an iterator's page holds.
pub(super) const MAX_PAGE: usize = 4096;

pub(super) fn page_size(max: u32) -> usize {
    (max as usize).clamp(1, MAX_PAGE)
}

/// A Python slice resolved against a length (`slice.indices`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Slice {
    pub(super) start: i64,
    pub(super) step: i64,
    pub(super) count: usize,
}

impl Slice {
    pub(super) fn of(s: SliceWire, len: usize) -> RemoteResult<Self> {
        if s.step == 0 {
            return Err(RemoteError::NotAllowed("slice step cannot be zero".into()));
        }
        let (len, step) = (len as i128, i128::from(s.step));
        let (lower, upper) = if step < 0 { (-1, len - 1) } else { (0, len) };
        let bound = |v: Option<i64>, default: i128| match v.map(i128::from) {
            None => default,
            Some(v) if v < 0 => (v + len).max(lower),
            Some(v) => v.min(upper),
        };
        let start = bound(s.start, if step < 0 { upper } else { lower });
        let stop = bound(s.stop, if step < 0 { lower } else { upper });
        let count = if step > 0 && stop > start {
            (stop - start - 1) / step + 1
        } else if step < 0 && start > stop {
            (start - stop - 1) / -step + 1
        } else {
            0
        };
        // In range: `start` lies within [-1, len] and `count` within [0, len].
        Ok(Self {
            start: start as i64,
            step: s.step,
            count: count as usize,
        })
    }

    /// The indices the slice selects, in order.
    pub(super) fn indices(&self) -> impl Iterator<Item = usize> + use<> {
        let (start, step) = (i128::from(self.start), i128::from(self.step));
        (0..self.count as i128).map(move |k| (start + k * step) as usize)
    }
}

pub(super) fn release_owned(l: &mut LockState, owner: Owner) -> RemoteResult<Reply> {
    if l.owner != Some(owner) {
        return Err(RemoteError::NotOwner);
    }
    l.count -= 1;
    if l.count == 0 {
        l.owner = None;
    }
    Ok(Reply::Unit)
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn indices_count_from_the_end_when_negative() {
        assert_eq!(resolve_index(0, 3), Ok(0));
        assert_eq!(resolve_index(2, 3), Ok(2));
        assert_eq!(resolve_index(-1, 3), Ok(2));
        assert_eq!(resolve_index(-3, 3), Ok(0));
        assert_eq!(
            resolve_index(3, 3),
            Err(RemoteError::IndexOutOfRange { index: 3, len: 3 })
        );
        assert_eq!(
            resolve_index(-4, 3),
            Err(RemoteError::IndexOutOfRange { index: -4, len: 3 })
        );
        assert_eq!(
            resolve_index(i64::MIN, 0),
            Err(RemoteError::IndexOutOfRange {
                index: i64::MIN,
                len: 0
            })
        );
    }

    #[test]
    fn a_page_holds_at_least_one_entry_and_at_most_max_page() {
        assert_eq!(page_size(0), 1);
        assert_eq!(page_size(10), 10);
        assert_eq!(page_size(u32::MAX), MAX_PAGE);
    }

    #[test]
    fn an_ordered_map_keeps_insertion_order_across_replacements() {
        let mut m = OrderedMap::default();
        assert!(m.insert(vec![1], Val::plain(vec![10])).is_none());
        assert!(m.insert(vec![2], Val::plain(vec![20])).is_none());
        let old = m.insert(vec![1], Val::plain(vec![11])).expect("replaced");
        assert_eq!(old.bytes, vec![10]);
        assert_eq!(m.len(), 2);
        let (k, v) = m.pop_last().expect("two entries");
        assert_eq!((k, v.bytes), (vec![2], vec![20]));
        assert_eq!(m.get(&[1]).map(|v| v.bytes.clone()), Some(vec![11]));
        assert_eq!(m.remove(&[1]).map(|v| v.bytes), Some(vec![11]));
        assert_eq!(m.len(), 0);
        assert!(m.get(&[1]).is_none());
    }

    #[test]
    fn a_lock_is_taken_once_unless_reentrant_and_reports_a_dead_owner_once() {
        let (a, b) = (
            Owner {
                client: 1,
                thread: 1,
            },
            Owner {
                client: 2,
                thread: 1,
            },
        );
        let mut l = LockState {
            died: true,
            ..LockState::default()
        };
        assert_eq!(l.try_take(a, false), Some(Acquired::OwnerDied));
        assert_eq!(l.try_take(a, false), None, "not re-entrant");
        assert_eq!(l.try_take(b, true), None, "another owner");
        assert_eq!(l.try_take(a, true), Some(Acquired::Yes));
        assert_eq!(l.count, 2);
        assert!(matches!(
            release_owned(&mut l, b),
            Err(RemoteError::NotOwner)
        ));
        assert!(matches!(release_owned(&mut l, a), Ok(Reply::Unit)));
        assert!(matches!(release_owned(&mut l, a), Ok(Reply::Unit)));
        assert!(l.owner.is_none());
        assert_eq!(l.try_take(b, false), Some(Acquired::Yes), "the mark went");
    }
}
