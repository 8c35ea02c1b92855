//! Who keeps each object alive, and the reference bookkeeping of one
//! operation on one object.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

use super::RemoteResult;
use crate::client::lock;
use crate::proto::{Id, RemoteError, Val};

/// Who keeps each object alive (CPython's `id_to_refcount`).
///
/// An object's count is the sum of its references: one per reference a
/// client's proxies hold (granted by a create, a lookup, an adoption, an
/// incref or a reply carrying a stored proxy), one per registry name, one
/// per stored value that contains a proxy of it, and one per proxy in
/// flight (serialized for another process, not yet adopted). The object is
/// freed when its count reaches zero, and the references its own stored
/// values held go with it. Objects that refer to each other in a cycle keep
/// each other alive (as in CPython's manager, which has no cycle collector).
#[derive(Default)]
pub(super) struct Refs {
    /// Every live object's count. An object missing here is freed (or being
    /// freed): nothing may take a reference to it any more.
    pub(super) counts: HashMap<Id, u64>,
    /// Per client: how many references its proxies hold, by object. Given
    /// back when the client's last connection closes, so a killed process
    /// leaks nothing.
    pub(super) clients: HashMap<u64, HashMap<Id, u64>>,
    /// Proxies in flight: token → object.
    pub(super) transfers: HashMap<u64, Id>,
    pub(super) next_token: u64,
}

impl Refs {
    /// One more reference to `id`, if it lives.
    pub(super) fn incref(&mut self, id: Id) -> bool {
        match self.counts.get_mut(&id) {
            Some(n) => {
                *n += 1;
                true
            }
            None => false,
        }
    }

    /// One reference fewer to `id`; when it was the last, `id` goes to
    /// `freed` (to be reaped once no object lock is held).
    pub(super) fn decref(&mut self, id: Id, freed: &mut Vec<Id>) {
        if let Some(n) = self.counts.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&id);
                freed.push(id);
            }
        }
    }

    /// Records one of `id`'s references (already counted) as `client`'s.
    pub(super) fn credit(&mut self, client: u64, id: Id) {
        *self
            .clients
            .entry(client)
            .or_default()
            .entry(id)
            .or_insert(0) += 1;
    }

    /// A new reference to `id` for `client`, if `id` lives.
    pub(super) fn grant(&mut self, client: u64, id: Id) -> bool {
        let ok = self.incref(id);
        if ok {
            self.credit(client, id);
        }
        ok
    }

    /// `client` gives back one of its references to `id`; false if it held none.
    pub(super) fn give_back(&mut self, client: u64, id: Id, freed: &mut Vec<Id>) -> bool {
        let Some(held) = self.clients.get_mut(&client) else {
            return false;
        };
        let Some(n) = held.get_mut(&id) else {
            return false;
        };
        *n -= 1;
        if *n == 0 {
            held.remove(&id);
            if held.is_empty() {
                self.clients.remove(&client);
            }
        }
        self.decref(id, freed);
        true
    }
}

/// The reference bookkeeping of one operation on one object (the
/// container): values stored into it, copied out of it, moved out of it.
/// Used while the container's lock is held; what the operation freed is
/// reaped after it (see [`Server::reap`]).
pub(super) struct Store<'a> {
    pub(super) refs: &'a Mutex<Refs>,
    pub(super) client: u64,
    pub(super) container: Id,
    pub(super) freed: RefCell<Vec<Id>>,
}

impl Store<'_> {
    /// Takes the references `vals` hold once stored in the container: all
    /// or none. Fails if the container was freed meanwhile (its values would
    /// never be given back) or a referred object does not exist.
    pub(super) fn keep<'v>(
        &self,
        vals: impl IntoIterator<Item = &'v Val> + Clone,
    ) -> RemoteResult<()> {
        let mut refs = lock(self.refs);
        if !refs.counts.contains_key(&self.container) {
            return Err(RemoteError::NoSuchObject(self.container));
        }
        for v in vals.clone() {
            if let Some(&id) = v.refs.iter().find(|id| !refs.counts.contains_key(id)) {
                return Err(RemoteError::NoSuchObject(id));
            }
        }
        for v in vals {
            for &id in &v.refs {
                refs.incref(id);
            }
        }
        Ok(())
    }

    /// A copy of a stored value for the client: grants it a reference to
    /// each object the value refers to (leaving out any freed by force).
    pub(super) fn lend(&self, mut v: Val) -> Val {
        if !v.refs.is_empty() {
            let mut refs = lock(self.refs);
            v.refs.retain(|&id| refs.grant(self.client, id));
        }
        v
    }

    /// A value moved out of the container to the client: its references
    /// become the client's.
    pub(super) fn hand_over(&self, mut v: Val) -> Val {
        if !v.refs.is_empty() {
            let mut refs = lock(self.refs);
            v.refs.retain(|&id| {
                let live = refs.counts.contains_key(&id);
                if live {
                    refs.credit(self.client, id);
                }
                live
            });
        }
        v
    }

    /// A value removed from the container and thrown away.
    pub(super) fn discard(&self, v: Val) {
        if !v.refs.is_empty() {
            let mut refs = lock(self.refs);
            let mut freed = self.freed.borrow_mut();
            for id in v.refs {
                refs.decref(id, &mut freed);
            }
        }
    }
}
