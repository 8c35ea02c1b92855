//! Property tests: random operation sequences on a shared Dict and List
//! behave like a std model (insertion-ordered pairs, a Vec).

mod common;

use common::with_manager;
use mproc_manager::Error;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum DictOp {
    Insert(u8, u16),
    Remove(u8),
    Pop(u8),
    SetDefault(u8, u16),
    Get(u8),
    Contains(u8),
    PopItem,
    Add(u8, u16),
}

fn dict_op() -> impl Strategy<Value = DictOp> {
    prop_oneof![
        (0u8..8, any::<u16>()).prop_map(|(k, v)| DictOp::Insert(k, v)),
        (0u8..8).prop_map(DictOp::Remove),
        (0u8..8).prop_map(DictOp::Pop),
        (0u8..8, any::<u16>()).prop_map(|(k, v)| DictOp::SetDefault(k, v)),
        (0u8..8).prop_map(DictOp::Get),
        (0u8..8).prop_map(DictOp::Contains),
        Just(DictOp::PopItem),
        (0u8..8, any::<u16>()).prop_map(|(k, v)| DictOp::Add(k, v)),
    ]
}

#[derive(Debug, Clone)]
enum ListOp {
    Push(u16),
    Insert(i64, u16),
    Pop,
    PopAt(i64),
    Set(i64, u16),
    Get(i64),
    Remove(u16),
}

fn list_op() -> impl Strategy<Value = ListOp> {
    prop_oneof![
        any::<u16>().prop_map(ListOp::Push),
        (-10i64..10, any::<u16>()).prop_map(|(i, v)| ListOp::Insert(i, v)),
        Just(ListOp::Pop),
        (-10i64..10).prop_map(ListOp::PopAt),
        (-10i64..10, any::<u16>()).prop_map(|(i, v)| ListOp::Set(i, v)),
        (-10i64..10).prop_map(ListOp::Get),
        (0u16..4).prop_map(ListOp::Remove),
    ]
}

/// Python's index normalisation, for the model.
fn norm(i: i64, len: usize) -> Option<usize> {
    let j = if i < 0 { i + len as i64 } else { i };
    (0..len as i64).contains(&j).then_some(j as usize)
}

#[test]
fn dict_and_list_follow_their_models() {
    with_manager(300, |m| {
        let d = m.dict::<u8, u16>().unwrap();
        let l = m.list::<u16>().unwrap();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
        runner
            .run(&proptest::collection::vec(dict_op(), 0..40), |ops| {
                d.clear().unwrap();
                let mut model: Vec<(u8, u16)> = Vec::new();
                let pos = |m: &Vec<(u8, u16)>, k: u8| m.iter().position(|(x, _)| *x == k);
                for op in ops {
                    match op {
                        DictOp::Insert(k, v) => {
                            let old = match pos(&model, k) {
                                Some(i) => Some(std::mem::replace(&mut model[i].1, v)),
                                None => {
                                    model.push((k, v));
                                    None
                                }
                            };
                            prop_assert_eq!(d.insert(&k, &v).unwrap(), old);
                        }
                        DictOp::Remove(k) => {
                            let old = pos(&model, k).map(|i| model.remove(i).1);
                            prop_assert_eq!(d.remove(&k).unwrap(), old);
                        }
                        DictOp::Pop(k) => match pos(&model, k) {
                            Some(i) => prop_assert_eq!(d.pop(&k).unwrap(), model.remove(i).1),
                            None => prop_assert!(
                                matches!(d.pop(&k), Err(Error::KeyMissing)),
                                "expected KeyMissing"
                            ),
                        },
                        DictOp::SetDefault(k, v) => {
                            let want = match pos(&model, k) {
                                Some(i) => model[i].1,
                                None => {
                                    model.push((k, v));
                                    v
                                }
                            };
                            prop_assert_eq!(d.setdefault(&k, &v).unwrap(), want);
                        }
                        DictOp::Get(k) => {
                            prop_assert_eq!(d.get(&k).unwrap(), pos(&model, k).map(|i| model[i].1))
                        }
                        DictOp::Contains(k) => {
                            prop_assert_eq!(d.contains_key(&k).unwrap(), pos(&model, k).is_some())
                        }
                        DictOp::PopItem => prop_assert_eq!(d.pop_item().unwrap(), model.pop()),
                        DictOp::Add(k, v) => {
                            let want = match pos(&model, k) {
                                Some(i) => {
                                    model[i].1 = model[i].1.wrapping_add(v);
                                    model[i].1
                                }
                                None => {
                                    model.push((k, v));
                                    v
                                }
                            };
                            let got = d.update_or_insert_with(
                                &k,
                                &0,
                                |x: &mut u16, n: u16| {
                                    *x = x.wrapping_add(n);
                                    *x
                                },
                                v,
                            );
                            prop_assert_eq!(got.unwrap(), want);
                        }
                    }
                }
                prop_assert_eq!(d.items().unwrap(), model.clone());
                prop_assert_eq!(d.len().unwrap(), model.len());
                Ok(())
            })
            .unwrap();
        runner
            .run(&proptest::collection::vec(list_op(), 0..40), |ops| {
                l.clear().unwrap();
                let mut model: Vec<u16> = Vec::new();
                for op in ops {
                    match op {
                        ListOp::Push(v) => {
                            model.push(v);
                            l.push(&v).unwrap();
                        }
                        ListOp::Insert(i, v) => {
                            let n = model.len() as i64;
                            let at = if i < 0 { (i + n).max(0) } else { i.min(n) };
                            model.insert(at as usize, v);
                            l.insert(i, &v).unwrap();
                        }
                        ListOp::Pop => match model.pop() {
                            Some(v) => prop_assert_eq!(l.pop().unwrap(), v),
                            None => prop_assert!(
                                matches!(l.pop(), Err(Error::IndexOutOfRange { .. })),
                                "expected IndexOutOfRange"
                            ),
                        },
                        ListOp::PopAt(i) => match norm(i, model.len()) {
                            Some(j) => prop_assert_eq!(l.pop_at(i).unwrap(), model.remove(j)),
                            None => prop_assert!(
                                matches!(l.pop_at(i), Err(Error::IndexOutOfRange { .. })),
                                "expected IndexOutOfRange"
                            ),
                        },
                        ListOp::Set(i, v) => match norm(i, model.len()) {
                            Some(j) => {
                                model[j] = v;
                                l.set(i, &v).unwrap();
                            }
                            None => prop_assert!(
                                matches!(l.set(i, &v), Err(Error::IndexOutOfRange { .. })),
                                "expected IndexOutOfRange"
                            ),
                        },
                        ListOp::Get(i) => match norm(i, model.len()) {
                            Some(j) => prop_assert_eq!(l.get(i).unwrap(), model[j]),
                            None => prop_assert!(
                                matches!(l.get(i), Err(Error::IndexOutOfRange { .. })),
                                "expected IndexOutOfRange"
                            ),
                        },
                        ListOp::Remove(v) => match model.iter().position(|x| *x == v) {
                            Some(j) => {
                                model.remove(j);
                                l.remove(&v).unwrap();
                            }
                            None => prop_assert!(
                                matches!(l.remove(&v), Err(Error::ValueMissing)),
                                "expected ValueMissing"
                            ),
                        },
                    }
                }
                prop_assert_eq!(l.snapshot().unwrap(), model);
                Ok(())
            })
            .unwrap();
    });
}
