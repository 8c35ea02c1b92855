//! Progress that moves: an ordered `imap` streams its results from the
//! start instead of computing far ahead of the consumer, and the `imap`
//! iterators know how many items are left when the input's length is known.

mod common;

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{watchdog, with_pool};
use mproc_pool::Pool;
use mproc_shm::SharedAtomicU64;

/// Items computed so far, counted by every worker (set by the initializer).
static COMPUTED: OnceLock<SharedAtomicU64> = OnceLock::new();

fn set_counter(c: SharedAtomicU64) {
    let _ = COMPUTED.set(c);
}

/// Sleeps 2 ms (so the test does not depend on CPU time), then counts itself.
fn slow_counted(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    if let Some(c) = COMPUTED.get() {
        c.fetch_add(1, Ordering::AcqRel);
    }
    x * 2
}

fn plus_one(x: u64) -> u64 {
    x + 1
}

/// Runs an ordered `imap` of [`slow_counted`] over `input` on 2 workers and
/// returns, for each result as it arrives, how many items had been computed
/// by then beyond the ones already delivered.
fn lead_per_result(input: impl Iterator<Item = u64> + 'static, n: usize) -> Vec<u64> {
    let counter = SharedAtomicU64::new(0).unwrap();
    let pool = Pool::builder()
        .processes(2)
        .initializer(set_counter, counter.clone())
        .build()
        .unwrap();
    let mut leads = Vec::with_capacity(n);
    for (i, r) in pool.imap(slow_counted, input).unwrap().enumerate() {
        assert_eq!(r, Ok(i as u64 * 2));
        let computed = counter.load(Ordering::Acquire);
        leads.push(computed.saturating_sub(i as u64 + 1));
    }
    assert_eq!(leads.len(), n);
    leads
}

/// Computing never runs far ahead of the consumer: no result waits behind
/// a large part of the input computed out of order. (Cutting the input into
/// a few shares, as before, put the lead at 3 items per result, 371 of 500
/// at worst. Cut from the front, it stays within what is in flight, a few
/// items, plus what one worker computes while the other is held up: a
/// quarter of the input is 250 ms of work, far beyond a scheduling delay.)
fn assert_streams(leads: &[u64]) {
    let worst = leads.iter().copied().max().unwrap_or(0);
    let n = leads.len() as u64;
    assert!(
        worst <= n / 4,
        "a result arrived after {worst} items beyond it were computed (of {n}); leads: {:?}",
        &leads[..leads.len().min(40)]
    );
}

#[test]
fn ordered_imap_over_a_range_streams_from_the_start() {
    watchdog(120, || assert_streams(&lead_per_result(0..500u64, 500)));
}

#[test]
fn ordered_imap_over_a_vec_streams_from_the_start() {
    watchdog(120, || {
        let v: Vec<u64> = (0..500).collect();
        assert_streams(&lead_per_result(v.into_iter(), 500));
    });
}

#[test]
fn imap_len_counts_down_as_items_are_consumed() {
    with_pool(60, 2, |pool| {
        for ordered in [true, false] {
            let mut it = if ordered {
                pool.imap(plus_one, 0..100u64).unwrap()
            } else {
                pool.imap_unordered(plus_one, 0..100u64).unwrap()
            };
            assert_eq!(it.len(), 100);
            assert_eq!(it.size_hint(), (100, Some(100)));
            let mut seen = Vec::new();
            for left in (0..100).rev() {
                seen.push(it.next().unwrap().unwrap());
                assert_eq!(it.len(), left);
                assert_eq!(it.size_hint(), (left, Some(left)));
            }
            assert_eq!(it.next(), None);
            assert_eq!(it.len(), 0);
            seen.sort_unstable();
            assert_eq!(seen, (1..=100).collect::<Vec<_>>());
        }
        // A Vec and an ExactSizeIterator input.
        let it = pool.imap(plus_one, vec![1u64, 2, 3]).unwrap();
        assert_eq!(it.len(), 3);
        let it = pool
            .imap(plus_one, [5u64; 7].into_iter().map(|x| x + 1))
            .unwrap();
        assert_eq!(it.len(), 7);
        assert_eq!(it.map(Result::unwrap).sum::<u64>(), 7 * 7);
        // A chunked imap, after part of it was consumed.
        let mut it = pool.imap_chunked(plus_one, 0..50u64, 8).unwrap();
        it.by_ref().take(20).for_each(drop);
        assert_eq!(it.len(), 30);
        assert_eq!(it.count(), 30);
    });
}

#[test]
fn imap_of_unknown_length_has_an_open_size_hint() {
    with_pool(60, 2, |pool| {
        let mut it = pool
            .imap(plus_one, (0..10u64).filter(|x| x % 2 == 0))
            .unwrap();
        assert_eq!(it.size_hint().1, None);
        assert_eq!(it.by_ref().count(), 5);
        assert_eq!(it.size_hint(), (0, Some(0)));
    });
}
