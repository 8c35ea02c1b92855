//! Reference counting, request by request, against an in-memory server.

use super::*;
use crate::proto::{Op, SliceWire};
use objects::Slice;

fn call(s: &Server, client: u64, req: Request) -> Reply {
    let peer = Peer {
        client,
        same_exe: true,
        fd: None,
        no_wait: true,
    };
    s.handle(&peer, req).0
}

/// Client `client` calls operation `op` on object `id`.
fn call_op(s: &Server, client: u64, id: Id, op: Op) -> Reply {
    call(s, client, Request::Call { id, op })
}

fn create(s: &Server, client: u64, kind: Kind, init: Init) -> Id {
    match call(s, client, Request::Create { kind, init }) {
        Reply::Object(id, k) if k == kind => id,
        r => panic!("create: {r:?}"),
    }
}

fn count(s: &Server) -> usize {
    s.objects.read().unwrap().len()
}

fn holding(ids: &[Id]) -> Val {
    Val {
        bytes: vec![1],
        refs: ids.to_vec(),
    }
}

fn is_err(r: &Reply, want: &RemoteError) -> bool {
    matches!(r, Reply::Err(e) if e == want)
}

#[test]
fn an_object_lives_while_a_client_or_a_name_refers_to_it() {
    let s = Server::new();
    let d = create(&s, 1, Kind::Dict, Init::Empty);
    call(
        &s,
        1,
        Request::Register {
            name: "d".into(),
            id: d,
        },
    );
    assert!(matches!(
        call(&s, 1, Request::Decref { id: d }),
        Reply::Unit
    ));
    assert_eq!(count(&s), 1, "the name keeps it");
    assert!(matches!(
        call(&s, 2, Request::Lookup { name: "d".into() }),
        Reply::Object(id, Kind::Dict) if id == d
    ));
    call(&s, 1, Request::Unregister { name: "d".into() });
    assert_eq!(count(&s), 1, "client 2's lookup keeps it");
    call(&s, 2, Request::Decref { id: d });
    assert_eq!(count(&s), 0);
    assert!(lock(&s.refs).counts.is_empty() && lock(&s.refs).clients.is_empty());
}

#[test]
fn bad_reference_requests_are_error_replies() {
    let s = Server::new();
    let d = create(&s, 1, Kind::Dict, Init::Empty);
    let r = call(&s, 2, Request::Decref { id: d });
    assert!(matches!(r, Reply::Err(RemoteError::NotAllowed(_))), "{r:?}");
    let r = call(&s, 1, Request::Decref { id: 99 });
    assert!(matches!(r, Reply::Err(RemoteError::NotAllowed(_))), "{r:?}");
    assert!(is_err(
        &call(&s, 1, Request::Adopt { token: 5 }),
        &RemoteError::NoSuchTransfer(5)
    ));
    assert!(is_err(
        &call(&s, 1, Request::Incref { id: 99 }),
        &RemoteError::NoSuchObject(99)
    ));
    // A value naming an object that does not exist is refused, whole.
    let l = create(&s, 1, Kind::List, Init::Empty);
    let r = call_op(
        &s,
        1,
        l,
        Op::ListExtend(vec![holding(&[d]), holding(&[99])]),
    );
    assert!(is_err(&r, &RemoteError::NoSuchObject(99)), "{r:?}");
    assert_eq!(lock(&s.refs).counts[&d], 1, "nothing was kept");
    let r = call(
        &s,
        1,
        Request::Create {
            kind: Kind::Value,
            init: Init::Value(holding(&[42])),
        },
    );
    assert!(is_err(&r, &RemoteError::NoSuchObject(42)), "{r:?}");
    assert_eq!(count(&s), 2);
}

#[test]
fn stored_values_hold_what_they_refer_to_and_freeing_cascades() {
    let s = Server::new();
    let inner = create(&s, 1, Kind::Dict, Init::Empty);
    let list = create(&s, 1, Kind::List, Init::Items(vec![holding(&[inner])]));
    let outer = create(&s, 1, Kind::Value, Init::Value(holding(&[list])));
    call(&s, 1, Request::Decref { id: inner });
    call(&s, 1, Request::Decref { id: list });
    assert_eq!(count(&s), 3);
    // A reader is granted its own reference.
    let r = call_op(&s, 2, outer, Op::ValueGet);
    assert!(matches!(&r, Reply::Bytes(v) if v.refs == [list]), "{r:?}");
    call(&s, 1, Request::Decref { id: outer });
    assert_eq!(count(&s), 2, "client 2 still holds the list");
    s.client_joined(2);
    s.client_left(2);
    assert_eq!(count(&s), 0, "the list went, and the dict with it");
}

#[test]
fn a_cycle_stays_until_it_is_broken() {
    let s = Server::new();
    let l = create(&s, 1, Kind::List, Init::Empty);
    call_op(&s, 1, l, Op::ListPush(holding(&[l])));
    call(&s, 1, Request::Decref { id: l });
    assert_eq!(count(&s), 1, "it refers to itself");
    // Anyone may still reach it by id and break the cycle.
    call(&s, 1, Request::Incref { id: l });
    call_op(&s, 1, l, Op::Clear);
    call(&s, 1, Request::Decref { id: l });
    assert_eq!(count(&s), 0);
}

#[test]
fn a_transfer_outlives_its_sender_until_adopted() {
    let s = Server::new();
    let d = create(&s, 1, Kind::Dict, Init::Empty);
    s.client_joined(1);
    let Reply::Token(t) = call(&s, 1, Request::Transfer { id: d }) else {
        panic!("no token");
    };
    s.client_left(1);
    assert_eq!(count(&s), 1, "in flight");
    assert!(matches!(
        call(&s, 2, Request::Adopt { token: t }),
        Reply::Object(..)
    ));
    assert!(is_err(
        &call(&s, 3, Request::Adopt { token: t }),
        &RemoteError::NoSuchTransfer(t)
    ));
    call(&s, 2, Request::Decref { id: d });
    assert_eq!(count(&s), 0);
}

#[test]
fn a_forced_release_leaves_later_decrefs_harmless() {
    let s = Server::new();
    let inner = create(&s, 1, Kind::Dict, Init::Empty);
    let d = create(
        &s,
        1,
        Kind::Dict,
        Init::Pairs(vec![(vec![1], holding(&[inner]))]),
    );
    call(&s, 1, Request::Decref { id: inner });
    assert!(matches!(
        call(&s, 1, Request::Release { id: d }),
        Reply::Unit
    ));
    assert_eq!(count(&s), 0, "its values' references went with it");
    assert!(matches!(
        call(&s, 1, Request::Decref { id: d }),
        Reply::Unit
    ));
    assert!(is_err(
        &call(&s, 1, Request::Release { id: d }),
        &RemoteError::NoSuchObject(d)
    ));
    assert!(lock(&s.refs).clients.is_empty());
}

#[test]
fn an_array_refuses_every_operation_that_changes_its_length() {
    let s = Server::new();
    let a = create(
        &s,
        1,
        Kind::Array,
        Init::Items(vec![Val::plain(vec![1]), Val::plain(vec![2])]),
    );
    let all = SliceWire {
        start: None,
        stop: None,
        step: 1,
    };
    for op in [
        Op::ListPush(Val::plain(vec![3])),
        Op::ListExtend(vec![]),
        Op::ListInsert(0, Val::plain(vec![3])),
        Op::ListPop(None),
        Op::ListRemove(vec![1]),
        Op::ListDelSlice(all),
        Op::ListRepeat(2),
        Op::Clear,
    ] {
        let r = call_op(&s, 1, a, op);
        assert!(
            matches!(r, Reply::Err(RemoteError::WrongKind { .. })),
            "{r:?}"
        );
    }
    let r = call_op(&s, 1, a, Op::ListSetSlice(all, vec![Val::plain(vec![9])]));
    assert!(is_err(
        &r,
        &RemoteError::SizeMismatch {
            expected: 2,
            found: 1
        }
    ));
    let r = call_op(&s, 1, a, Op::Len);
    assert!(matches!(r, Reply::Count(2)), "{r:?}");
}

#[test]
fn slices_resolve_as_pythons_slice_indices() {
    let sl = |start, stop, step, len| {
        let s = Slice::of(SliceWire { start, stop, step }, len).unwrap();
        s.indices().collect::<Vec<_>>()
    };
    // From CPython: list(range(len))[start:stop:step].
    assert_eq!(sl(None, None, 1, 0), Vec::<usize>::new());
    assert_eq!(sl(Some(-1), None, -1, 3), [2, 1, 0]);
    assert_eq!(sl(Some(10), Some(-10), -3, 5), [4, 1]);
    assert_eq!(sl(Some(-10), Some(10), 4, 5), [0, 4]);
    assert_eq!(sl(Some(i64::MIN), Some(i64::MAX), i64::MAX, 3), [0]);
    assert_eq!(sl(Some(i64::MAX), Some(i64::MIN), i64::MIN, 3), [2]);
    assert_eq!(sl(Some(1), Some(1), 1, 3), Vec::<usize>::new());
    assert!(
        Slice::of(
            SliceWire {
                start: None,
                stop: None,
                step: 0
            },
            3
        )
        .is_err()
    );
}
