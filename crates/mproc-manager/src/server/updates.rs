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
        let r = run_client_fn(peer, func, code_ref::resolve, |f| f(&mut value.bytes, arg))?;
        Ok(Reply::Bytes(Val::plain(r)))
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
        let (r, new_repr) = run_client_fn(peer, func, code_ref::resolve_repr, |f| {
            f(&mut value.bytes, arg)
        })?;
        *repr = new_repr;
        Ok(Reply::Bytes(Val::plain(r)))
    }

    /// Sorts a list with the sort function at `func`: the items move, with
    /// their references, in the order it returns.
    pub(super) fn sort(
        peer: &Peer<'_>,
        l: &mut Vec<Val>,
        func: i64,
        reverse: bool,
    ) -> RemoteResult<Reply> {
        let order = run_client_fn(peer, func, code_ref::resolve_sort, |f| {
            let items: Vec<&[u8]> = l.iter().map(|v| &v.bytes[..]).collect();
            f(&items, reverse)
        })?;
        if !is_permutation(&order, l.len()) {
            return Err(RemoteError::Malformed(
                "the sort function returned no permutation".into(),
            ));
        }
        let mut taken: Vec<Option<Val>> = std::mem::take(l).into_iter().map(Some).collect();
        *l = order.iter().filter_map(|&i| taken[i].take()).collect();
        Ok(Reply::Unit)
    }
}

/// Runs a client's function, sent by reference: only for a client that runs
/// this executable (`func` is an offset in it), found by `resolve`, and
/// called through `call`. A failure to decode its input and a panic become
/// error replies.
fn run_client_fn<F, T>(
    peer: &Peer<'_>,
    func: i64,
    resolve: fn(i64) -> Option<F>,
    call: impl FnOnce(F) -> Result<T, String>,
) -> RemoteResult<T> {
    if !peer.same_exe {
        return Err(RemoteError::ForeignExecutable);
    }
    let f = resolve(func).ok_or(RemoteError::BadFunction)?;
    match panic::catch_unwind(AssertUnwindSafe(|| call(f))) {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(m)) => Err(RemoteError::Decode(m)),
        Err(p) => Err(RemoteError::Panicked(panic_message(&*p))),
    }
}

/// Whether `order` names each of `0..n` exactly once.
fn is_permutation(order: &[usize], n: usize) -> bool {
    let mut seen = vec![false; n];
    order.len() == n
        && order
            .iter()
            .all(|&i| i < n && !std::mem::replace(&mut seen[i], true))
}

/// The text of a panic in a server-side update.
pub(super) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    mproc_process::panic_text(p).unwrap_or("a panic").to_owned()
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn a_sort_order_must_name_every_index_once() {
        assert!(is_permutation(&[], 0));
        assert!(is_permutation(&[2, 0, 1], 3));
        assert!(!is_permutation(&[0, 1], 3), "too short");
        assert!(!is_permutation(&[0, 1, 2, 0], 3), "too long");
        assert!(!is_permutation(&[0, 0, 1], 3), "a repeat");
        assert!(!is_permutation(&[0, 1, 3], 3), "out of range");
    }

    #[test]
    fn a_client_fn_runs_only_for_the_same_executable_and_its_panics_are_replies() {
        let foreign = Peer {
            client: 1,
            same_exe: false,
            fd: None,
            no_wait: true,
        };
        let ours = Peer {
            same_exe: true,
            ..foreign
        };
        let found = |_: i64| Some(());
        assert_eq!(
            run_client_fn(&foreign, 0, found, |()| Ok(1)),
            Err(RemoteError::ForeignExecutable)
        );
        assert_eq!(
            run_client_fn(&ours, 0, |_| None::<()>, |()| Ok(1)),
            Err(RemoteError::BadFunction)
        );
        assert_eq!(run_client_fn(&ours, 0, found, |()| Ok(1)), Ok(1));
        assert_eq!(
            run_client_fn(&ours, 0, found, |()| Err::<u8, _>("bad input".into())),
            Err(RemoteError::Decode("bad input".into()))
        );
        assert_eq!(
            run_client_fn(&ours, 0, found, |()| -> Result<u8, String> {
                panic!("boom")
            }),
            Err(RemoteError::Panicked("boom".into()))
        );
    }
}
