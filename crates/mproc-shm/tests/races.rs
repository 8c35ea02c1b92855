//! Threads of one process racing on the unlocked copies (`Segment::read` and
//! `write`, `RawArray`, `RawValue`, `SharedMemory`).
//!
//! These races are allowed by the API, so they must not be data races: every
//! value read is one that some writer wrote, element by element (no tearing
//! within an aligned word), and under ThreadSanitizer the run is clean:
//!
//! ```text
//! echo 'race:test::event::CompletedTest' > /tmp/tsan.supp   # libtest's own channel (std is not instrumented)
//! TSAN_OPTIONS=suppressions=/tmp/tsan.supp \
//! RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer" \
//!     cargo +nightly test -p mproc-shm --target x86_64-unknown-linux-gnu --test races
//! ```
//!
//! With the plain `memcpy` (and `read_volatile`) copies these types had
//! before, TSan reports a data race in every test here; with the atomic
//! copies it reports none. Miri cannot run them (it does not model `mmap`
//! of a memfd); the unit tests of the copies themselves run on heap memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use mproc_shm::{RawArray, RawValue, Segment};
use mproc_testkit::watchdog_secs;

/// The patterns the writers store: no two share a byte, so a torn word is
/// never mistaken for a whole one.
const PATTERNS: [u64; 3] = [
    0x1111_1111_1111_1111,
    0x2222_2222_2222_2222,
    0x3333_3333_3333_3333,
];
const ROUNDS: usize = 400;
const LEN: usize = 1024;

fn is_written(x: u64) -> bool {
    x == 0 || PATTERNS.contains(&x)
}

/// Runs `write(&shared, k)` for every pattern index k on two threads until
/// `read(&shared)` has run `ROUNDS` times on the calling thread; `read`
/// returns the words it saw and each must be one that some writer wrote.
fn race<S: Send + Sync + 'static>(
    shared: S,
    write: impl Fn(&S, usize) + Send + Sync + 'static,
    read: impl Fn(&S) -> Vec<u64> + Send + 'static,
) {
    watchdog_secs(120, move || {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(shared);
        let write = Arc::new(write);
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (stop, shared, write) =
                    (Arc::clone(&stop), Arc::clone(&shared), Arc::clone(&write));
                thread::spawn(move || {
                    let mut k = w;
                    // Relaxed: only a stop flag; join orders the rest.
                    while !stop.load(Ordering::Relaxed) {
                        write(&shared, k % PATTERNS.len());
                        k += 1;
                    }
                })
            })
            .collect();
        for _ in 0..ROUNDS {
            let seen = read(&shared);
            assert!(
                seen.iter().all(|&x| is_written(x)),
                "torn value in {seen:x?}"
            );
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
    });
}

#[test]
fn raw_array_bulk_and_element_copies_race_without_tearing() {
    race(
        RawArray::<u64>::new(LEN).unwrap(),
        |w, k| {
            w.copy_from(0, &[PATTERNS[k]; LEN]).unwrap();
            for i in (k..LEN).step_by(7) {
                w.set(i, PATTERNS[(k + 1) % PATTERNS.len()]).unwrap();
            }
        },
        |r| {
            let mut v = r.to_vec();
            v.extend(r.iter().step_by(5));
            v.extend((0..LEN).step_by(11).map(|i| r.get(i).unwrap()));
            let mut part = [0u64; 13];
            r.copy_to(LEN - 13, &mut part).unwrap();
            v.extend(part);
            v
        },
    );
}

#[test]
fn raw_array_of_u32_elements_never_tear() {
    race(
        RawArray::<u32>::new(LEN).unwrap(),
        |w, k| {
            let p = PATTERNS[k] as u32;
            w.copy_from(1, &[p; LEN - 2]).unwrap();
            for i in (k..LEN).step_by(3) {
                w.set(i, p).unwrap();
            }
        },
        |r| r.iter().map(|x| u64::from(x) * 0x1_0000_0001).collect(),
    );
}

#[test]
fn raw_value_racing_get_and_set() {
    race(
        RawValue::new([0u64; 4]).unwrap(),
        |w, k| w.set([PATTERNS[k]; 4]),
        |v| (0..64).flat_map(|_| v.get()).collect(),
    );
}

#[test]
fn segment_copies_race_without_tearing_aligned_words() {
    race(
        Segment::anonymous(8 * LEN).unwrap(),
        |w, k| {
            let bytes: Vec<u8> = [PATTERNS[k]; LEN]
                .iter()
                .flat_map(|x| x.to_ne_bytes())
                .collect();
            w.write(0, &bytes).unwrap();
            // A write of part of the range races with the whole-range one.
            w.write(8 * k + 8, &bytes[..8 * 5]).unwrap();
        },
        |seg| {
            let mut out = vec![0u8; 8 * LEN];
            seg.read(0, &mut out).unwrap();
            out.chunks_exact(8)
                .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
                .collect()
        },
    );
}
