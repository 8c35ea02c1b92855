//! The user functions that run inside the server, sent by reference:
//! updates of a stored value, and list sorts.

use std::panic::{self, AssertUnwindSafe};

use super::connection::Peer;
use super::{RemoteResult, Server};
use crate::code_ref;
use crate::proto::{RemoteError, Reply, Val};

impl Server {
    /// Runs an update function on a stored value. Its references stay as
    /// they were: a proxy cannot be decoded inside the server, so the
    /// function cannot have added or removed one.
    pub(super) fn apply(
        peer: &Peer<'_>,
        func: i64,
        value: &mut Val,
        arg: &[u8],
    ) -> RemoteResult<Reply> {
        if !peer.same_exe {
            return Err(RemoteError::ForeignExecutable);
        }
        let f = code_ref::resolve(func).ok_or(RemoteError::BadFunction)?;
        match panic::catch_unwind(AssertUnwindSafe(|| f(&mut value.bytes, arg))) {
            Ok(Ok(r)) => Ok(Reply::Bytes(Val::plain(r))),
            Ok(Err(m)) => Err(RemoteError::Decode(m)),
            Err(p) => Err(RemoteError::Panicked(panic_message(&*p))),
        }
    }

    /// Runs a namespace field's update function, which also remakes the
    /// field's repr.
    pub(super) fn apply_repr(
        peer: &Peer<'_>,
        func: i64,
        value: &mut Val,
        repr: &mut String,
        arg: &[u8],
    ) -> RemoteResult<Reply> {
        if !peer.same_exe {
            return Err(RemoteError::ForeignExecutable);
        }
        let f = code_ref::resolve_repr(func).ok_or(RemoteError::BadFunction)?;
        match panic::catch_unwind(AssertUnwindSafe(|| f(&mut value.bytes, arg))) {
            Ok(Ok((r, new_repr))) => {
                *repr = new_repr;
                Ok(Reply::Bytes(Val::plain(r)))
            }
            Ok(Err(m)) => Err(RemoteError::Decode(m)),
            Err(p) => Err(RemoteError::Panicked(panic_message(&*p))),
        }
    }

    /// Sorts a list with the sort function at `func`: the items move, with
    /// their references, in the order it returns.
    pub(super) fn sort(
        peer: &Peer<'_>,
        l: &mut Vec<Val>,
        func: i64,
        reverse: bool,
    ) -> RemoteResult<Reply> {
        if !peer.same_exe {
            return Err(RemoteError::ForeignExecutable);
        }
        let f = code_ref::resolve_sort(func).ok_or(RemoteError::BadFunction)?;
        let order = {
            let items: Vec<&[u8]> = l.iter().map(|v| &v.bytes[..]).collect();
            match panic::catch_unwind(AssertUnwindSafe(|| f(&items, reverse))) {
                Ok(Ok(order)) => order,
                Ok(Err(m)) => return Err(RemoteError::Decode(m)),
                Err(p) => return Err(RemoteError::Panicked(panic_message(&*p))),
            }
        };
        let n = l.len();
        let mut seen = vec![false; n];
        let permutation = order.len() == n
            && order
                .iter()
                .all(|&i| i < n && !std::mem::replace(&mut seen[i], true));
        if !permutation {
            return Err(RemoteError::Malformed(
                "the sort function returned no permutation".into(),
            ));
        }
        let mut taken: Vec<Option<Val>> = std::mem::take(l).into_iter().map(Some).collect();
        *l = order.iter().filter_map(|&i| taken[i].take()).collect();
        Ok(Reply::Unit)
    }
}

pub(super) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_owned()
    }
}
