//! An input that fails (its iterator panics, or yields `Err` to the
//! `try_imap` family) surfaces at its position, after the results before
//! it, as CPython raises the iterable's exception there; the pool stays
//! usable.

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};

use common::{sorted_values, values, with_pool};
use mproc_pool::{Imap, Pool, TaskError, TryImapError};

fn square(x: u64) -> u64 {
    x * x
}

fn length(s: String) -> usize {
    s.len()
}

fn fail_on_1(x: u64) -> u64 {
    if x == 1 {
        panic!("one is bad");
    }
    x * x
}

/// `0..n` of plain numbers whose iterator panics when asked for `at`.
fn numbers_panicking_at(at: u64, n: u64) -> impl Iterator<Item = u64> {
    (0..n).inspect(move |&x| {
        if x == at {
            panic!("the input fails at {x}");
        }
    })
}

/// Strings of 0, 1, 2, … characters whose iterator panics when asked for
/// item `at` (encoded items, not plain numbers).
fn strings_panicking_at(at: usize, n: usize) -> impl Iterator<Item = String> {
    (0..n).map(move |x| {
        if x == at {
            panic!("the input fails at {x}");
        }
        "x".repeat(x)
    })
}

/// `square` over [`numbers_panicking_at`]`(3, 10)`, one item per task:
/// the squares of 0, 1 and 2, then the input's panic.
fn squares_one_by_one_failing_at_3(pool: &Pool) -> Imap<'_, u64> {
    pool.imap_chunked(square, numbers_panicking_at(3, 10), 1)
        .unwrap()
}

/// `0..n` as `Ok`s, with an `Err` at `at`.
fn results_failing_at(at: u64, n: u64) -> impl Iterator<Item = Result<u64, String>> {
    (0..n).map(move |x| {
        if x == at {
            Err(format!("no item {x}"))
        } else {
            Ok(x)
        }
    })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// The message of the panic that `f` must raise.
fn panic_of<T>(f: impl FnOnce() -> T) -> String {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("the input's panic never came"),
        Err(p) => panic_text(&*p),
    }
}

/// Takes items until the input's panic, which must come after them, and
/// nothing after it: returns them and the panic message.
fn until_panic<I: Iterator>(it: &mut I) -> (Vec<I::Item>, String) {
    let mut got = Vec::new();
    let msg = panic_of(|| {
        for v in it.by_ref() {
            got.push(v);
        }
    });
    assert!(it.next().is_none(), "an item after the input's panic");
    (got, msg)
}

/// [`until_panic`] where the panic must be the input's at item `at`:
/// returns the items before it.
#[track_caller]
fn until_input_panic_at<I: Iterator>(it: &mut I, at: u64) -> Vec<I::Item> {
    let (got, msg) = until_panic(it);
    assert_eq!(msg, format!("the input fails at {at}"));
    got
}

/// Checks that `f` passes on the input's panic at item `at`.
#[track_caller]
fn assert_input_panics_at<T>(at: u64, f: impl FnOnce() -> T) {
    assert_eq!(panic_of(f), format!("the input fails at {at}"));
}

/// The pool still works (right answers, no hang).
fn still_works(pool: &Pool) {
    let want: Vec<u64> = (0..100).map(|x| x * x).collect();
    assert_eq!(
        pool.map(square, (0..100u64).collect::<Vec<_>>()).unwrap(),
        want
    );
    assert_eq!(values(pool.imap(square, 0..100u64).unwrap()), want);
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
}

#[test]
fn imap_yields_the_results_before_a_panicking_input_then_its_panic() {
    with_pool(60, 2, |pool| {
        let mut it = squares_one_by_one_failing_at_3(&pool);
        let got = until_input_panic_at(&mut it, 3);
        assert_eq!(got, [Ok(0), Ok(1), Ok(4)]);
        // Nothing comes after the failure.
        drop(it);
        still_works(&pool);
    });
}

#[test]
fn imap_of_encoded_items_yields_the_results_before_a_panicking_input() {
    with_pool(60, 2, |pool| {
        for chunk in [1, 2, 5] {
            let mut it = pool
                .imap_chunked(length, strings_panicking_at(3, 10), chunk)
                .unwrap();
            let got = until_input_panic_at(&mut it, 3);
            assert_eq!(got, [Ok(0), Ok(1), Ok(2)], "chunk {chunk}");
        }
        still_works(&pool);
    });
}

/// Adaptive chunks: the failure falls inside a chunk, whose items before
/// it are still run.
#[test]
fn adaptive_imap_keeps_every_result_before_a_panicking_input() {
    with_pool(60, 2, |pool| {
        for at in [0, 3, 2_500] {
            let mut it = pool.imap(square, numbers_panicking_at(at, 10_000)).unwrap();
            let got = until_input_panic_at(&mut it, at);
            let want: Vec<Result<u64, TaskError>> = (0..at).map(|x| Ok(x * x)).collect();
            assert_eq!(got, want, "failing at {at}");
        }
        still_works(&pool);
    });
}

#[test]
fn imap_unordered_yields_every_result_before_a_panicking_input() {
    with_pool(60, 2, |pool| {
        let mut it = pool
            .imap_unordered(square, numbers_panicking_at(3, 10))
            .unwrap();
        let got = until_input_panic_at(&mut it, 3);
        assert_eq!(sorted_values(got), [0, 1, 4]);
        drop(it);
        still_works(&pool);
    });
}

/// `map` materialises its result: the items before the failure run, then
/// the input's panic goes on from `map` (no value, no error).
#[test]
fn map_and_starmap_pass_a_panicking_input_on() {
    with_pool(60, 2, |pool| {
        assert_input_panics_at(3, || pool.map(square, numbers_panicking_at(3, 10)));
        assert_input_panics_at(5, || {
            pool.map_chunked(length, strings_panicking_at(5, 10), 2)
        });
        fn add(a: u64, b: u64) -> u64 {
            a + b
        }
        assert_input_panics_at(3, || {
            pool.starmap(add, numbers_panicking_at(3, 10).map(|x| (x, x)))
        });
        still_works(&pool);
    });
}

/// `map_async` reads its input before it returns: the panic goes on from
/// it and nothing is submitted.
#[test]
fn map_async_passes_a_panicking_input_on_at_once() {
    with_pool(60, 2, |pool| {
        assert_input_panics_at(3, || pool.map_async(length, strings_panicking_at(3, 10)));
        still_works(&pool);
    });
}

/// A failing input ends the job: `close` then `join` do not wait for it.
#[test]
fn a_panicking_input_leaves_nothing_for_join_to_wait_for() {
    with_pool(60, 2, |pool| {
        let mut it = squares_one_by_one_failing_at_3(&pool);
        let (got, _) = until_panic(&mut it);
        assert_eq!(got.len(), 3);
        pool.close();
        pool.join().unwrap();
        drop(it);
    });
}

/// The input is still read lazily: an endless one works.
#[test]
fn imap_reads_an_endless_input_lazily() {
    with_pool(60, 2, |pool| {
        let got = values(pool.imap(square, (0u64..).map(|x| x + 1)).unwrap().take(5));
        assert_eq!(got, [1, 4, 9, 16, 25]);
    });
}

#[test]
fn try_imap_yields_the_results_before_an_err_then_it() {
    with_pool(60, 2, |pool| {
        let want = [
            Ok(0),
            Ok(1),
            Ok(4),
            Err(TryImapError::Input("no item 3".to_string())),
        ];
        for chunk in [1, 2, 5] {
            let it = pool.try_imap_chunked(square, results_failing_at(3, 10), chunk);
            assert_eq!(it.unwrap().collect::<Vec<_>>(), want, "chunk {chunk}");
        }
        // Far into adaptive chunks too.
        let got: Vec<_> = pool
            .try_imap(square, results_failing_at(5_000, 20_000))
            .unwrap()
            .collect();
        assert_eq!(got.len(), 5_001);
        assert!(
            got[..5_000]
                .iter()
                .enumerate()
                .all(|(i, r)| *r == Ok((i * i) as u64))
        );
        assert_eq!(
            got[5_000],
            Err(TryImapError::Input("no item 5000".to_string()))
        );
        // The error is the only one, and the input is read no further.
        let mut read = 0;
        let input = results_failing_at(3, 10).inspect(|_| read += 1);
        let got: Vec<_> = pool.try_imap(square, input).unwrap().collect();
        assert_eq!(got, want);
        assert_eq!(read, 4);
        still_works(&pool);
    });
}

/// A failed task and a failed input each surface at their position.
#[test]
fn try_imap_tells_a_failed_task_from_a_failed_input() {
    with_pool(60, 2, |pool| {
        let got: Vec<_> = pool
            .try_imap_chunked(fail_on_1, results_failing_at(3, 10), 1)
            .unwrap()
            .collect();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], Ok(0));
        match &got[1] {
            Err(TryImapError::Task(TaskError::Panicked { message, .. })) => {
                assert!(message.contains("one is bad"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[2], Ok(4));
        assert_eq!(got[3], Err(TryImapError::Input("no item 3".to_string())));
    });
}

#[test]
fn try_imap_unordered_ends_with_the_input_error() {
    with_pool(60, 2, |pool| {
        let mut got: Vec<_> = pool
            .try_imap_unordered(square, results_failing_at(3, 10))
            .unwrap()
            .collect();
        assert_eq!(
            got.pop(),
            Some(Err(TryImapError::Input("no item 3".to_string())))
        );
        assert_eq!(sorted_values(got), [0, 1, 4]);
    });
}

#[test]
fn try_imap_with_a_timeout_and_an_input_without_errors() {
    with_pool(60, 2, |pool| {
        let mut it = pool
            .try_imap(square, (0..5u64).map(Ok::<u64, std::io::Error>))
            .unwrap();
        let mut got = Vec::new();
        while let Some(r) = it.next_timeout(std::time::Duration::from_secs(30)).unwrap() {
            got.push(r.unwrap());
        }
        assert_eq!(got, [0, 1, 4, 9, 16]);
        // An input error is an `Error` whose source is the input's error.
        let input = vec![Err(std::io::Error::other("disk on fire"))];
        let e = pool
            .try_imap(square, input)
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        let source = std::error::Error::source(&e).unwrap();
        assert_eq!(source.to_string(), "disk on fire");
        assert!(
            pool.try_imap_chunked(square, results_failing_at(3, 10), 0)
                .is_err()
        );
    });
}

/// A panicking input of `Result`s: the panic comes as with `imap`.
#[test]
fn try_imap_passes_a_panic_of_its_input_on_at_its_position() {
    with_pool(60, 2, |pool| {
        let input = numbers_panicking_at(3, 10).map(Ok::<u64, String>);
        let mut it = pool.try_imap_chunked(square, input, 1).unwrap();
        let got = until_input_panic_at(&mut it, 3);
        assert_eq!(got, [Ok(0), Ok(1), Ok(4)]);
        drop(it);
        still_works(&pool);
    });
}
