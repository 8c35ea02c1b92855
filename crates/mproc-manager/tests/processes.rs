//! Proxies passed to child processes; concurrent server-side updates.

mod common;

use common::{watchdog, with_manager};
use mproc_manager::{Dict, List, Manager, Queue, Value};
use mproc_process::{Process, StartMethod};

const CHILDREN: usize = 4;
const ROUNDS: u64 = 250;

fn hammer((d, l, v, me): (Dict<String, u64>, List<u64>, Value<Vec<u64>>, usize)) -> u64 {
    for i in 0..ROUNDS {
        d.update_or_insert_with(&"total".to_string(), &0, |t: &mut u64, n: u64| *t += n, 1)
            .unwrap();
        d.update_or_insert_with(&format!("child-{me}"), &0, |t: &mut u64, n: u64| *t += n, i)
            .unwrap();
        l.update_with(0, |x: &mut u64, n: u64| *x += n, 2).unwrap();
        v.update_with(|xs: &mut Vec<u64>, x: u64| xs.push(x), me as u64)
            .unwrap();
    }
    l.push(&(me as u64)).unwrap();
    d.get("total").unwrap().unwrap()
}

#[test]
fn children_update_a_dict_and_a_list_concurrently_without_losing_one() {
    with_manager(120, |m| {
        let d = m.dict::<String, u64>().unwrap();
        let l = m.list_from([0u64]).unwrap();
        let v = m.value(Vec::<u64>::new()).unwrap();
        let kids: Vec<_> = (0..CHILDREN)
            .map(|i| {
                Process::new(hammer, (d.clone(), l.clone(), v.clone(), i))
                    .start()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            let seen = k.join().unwrap();
            assert!(seen >= ROUNDS && seen <= ROUNDS * CHILDREN as u64);
        }
        assert_eq!(d.get("total").unwrap(), Some(ROUNDS * CHILDREN as u64));
        for i in 0..CHILDREN {
            assert_eq!(
                d.get(&format!("child-{i}")).unwrap(),
                Some(ROUNDS * (ROUNDS - 1) / 2)
            );
        }
        assert_eq!(l.get(0).unwrap(), 2 * ROUNDS * CHILDREN as u64);
        let mut tail = l.snapshot().unwrap()[1..].to_vec();
        tail.sort();
        assert_eq!(tail, (0..CHILDREN as u64).collect::<Vec<_>>());
        let pushed = v.get().unwrap();
        assert_eq!(pushed.len() as u64, ROUNDS * CHILDREN as u64);
        for i in 0..CHILDREN as u64 {
            assert_eq!(pushed.iter().filter(|&&x| x == i).count() as u64, ROUNDS);
        }
        m.shutdown().unwrap();
    });
}

fn consume((q, out): (Queue<Option<u32>>, List<u32>)) -> usize {
    let mut n = 0;
    while let Some(x) = q.get().unwrap() {
        out.push(&(x * 10)).unwrap();
        n += 1;
    }
    n
}

#[test]
fn a_queue_feeds_children_under_every_safe_start_method() {
    watchdog(120, || {
        for method in [StartMethod::ForkServer, StartMethod::Spawn] {
            let m = Manager::start().unwrap();
            let q = m.queue::<Option<u32>>(8).unwrap();
            let out = m.list::<u32>().unwrap();
            let kids: Vec<_> = (0..2)
                .map(|_| {
                    Process::new(consume, (q.clone(), out.clone()))
                        .start_method(method)
                        .start()
                        .unwrap()
                })
                .collect();
            for i in 0..100 {
                q.put(Some(i)).unwrap();
            }
            q.put(None).unwrap();
            q.put(None).unwrap();
            let total: usize = kids.into_iter().map(|mut k| k.join().unwrap()).sum();
            assert_eq!(total, 100);
            let mut got = out.snapshot().unwrap();
            got.sort();
            assert_eq!(got, (0..100).map(|i| i * 10).collect::<Vec<_>>());
        }
    });
}

#[test]
fn a_proxy_travels_over_an_mproc_connection() {
    with_manager(60, |m| {
        let d = m.dict::<u32, String>().unwrap();
        let (a, b) = mproc_pipe::pipe(true).unwrap();
        a.send(&d).unwrap();
        let back: Dict<u32, String> = b.recv().unwrap();
        back.insert(&1, &"one".into()).unwrap();
        assert_eq!(d.get(&1).unwrap().as_deref(), Some("one"));
    });
}

fn count_words((d, words): (Dict<String, u64>, Vec<String>)) -> usize {
    d.update_or_insert_many_with(
        &0,
        |n: &mut u64, k: u64| *n += k,
        words.iter().map(|w| (w, 1u64)),
    )
    .unwrap()
    .len()
}

#[test]
fn batched_server_side_updates_from_children_count_exactly() {
    with_manager(60, |m| {
        let d = m.dict::<String, u64>().unwrap();
        let words: Vec<String> = "the cat and the hat and the bat"
            .split(' ')
            .map(String::from)
            .collect();
        let kids: Vec<_> = (0..3)
            .map(|_| {
                Process::new(count_words, (d.clone(), words.clone()))
                    .start()
                    .unwrap()
            })
            .collect();
        for mut k in kids {
            assert_eq!(k.join().unwrap(), 8);
        }
        let mut items = d.items().unwrap();
        items.sort();
        assert_eq!(
            items,
            [
                ("and".into(), 6),
                ("bat".into(), 3),
                ("cat".into(), 3),
                ("hat".into(), 3),
                ("the".into(), 9)
            ]
        );
        // A failing update in a batch reports its error.
        let r = d.update_or_insert_many_with(
            &0,
            |_n: &mut u64, _k: u64| -> u64 { panic!("no") },
            [(&"x".to_string(), 1u64)],
        );
        assert!(matches!(r, Err(mproc_manager::Error::Panicked(_))), "{r:?}");
    });
}
