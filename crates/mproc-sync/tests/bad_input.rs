//! Segments of the wrong kind, corrupt headers and impossible lock words, and
//! the replay of the `sync_open` fuzz corpus.

#![cfg(target_os = "linux")] // needs Linux: processes, memfd segments, Linux-only calls

mod common;

use std::time::Duration;

use common::watchdog;
use mproc_shm::{HEADER_SIZE, Segment};
use mproc_sync::{
    Barrier, BoundedSemaphore, Event, Lock, OpenError, RLock, Semaphore, TryLockError,
};

fn bytes_of(seg: &Segment) -> Vec<u8> {
    let mut v = vec![0; seg.len()];
    seg.read(0, &mut v).unwrap();
    v
}

fn segment_with(data: &[u8]) -> Segment {
    let seg = Segment::anonymous(data.len()).unwrap();
    seg.write(0, data).unwrap();
    seg
}

#[test]
fn wrong_kind_is_a_clear_error() {
    let ev = Event::new().unwrap();
    let e = Lock::from_segment(ev.segment().try_clone().unwrap()).unwrap_err();
    assert!(matches!(e, OpenError::Segment(_)), "{e:?}");
    assert!(e.to_string().contains("kind"), "{e}");
    assert!(RLock::from_segment(ev.segment().try_clone().unwrap()).is_err());
    let sem = Semaphore::new(1).unwrap();
    assert!(BoundedSemaphore::from_segment(sem.segment().try_clone().unwrap()).is_err());
    assert!(Semaphore::from_segment(sem.segment().try_clone().unwrap()).is_ok());
    // Through serde, as a handle sent to another process.
    let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(&ev).unwrap();
    let r: Result<Lock, _> = mproc_shm::handle::from_bytes_with_fds(&bytes, fds);
    assert!(r.is_err());
    let (bytes, fds) = mproc_shm::handle::to_bytes_with_fds(&ev).unwrap();
    let r: Result<Event, _> = mproc_shm::handle::from_bytes_with_fds(&bytes, fds);
    assert!(r.is_ok());
}

#[test]
fn corrupt_header_and_parameters() {
    let lock = Lock::new().unwrap();
    let mut raw = bytes_of(lock.segment());
    raw[0] ^= 0xff; // magic
    assert!(Lock::from_segment(segment_with(&raw)).is_err());
    // Too short to hold the state.
    let raw = bytes_of(lock.segment());
    assert!(Lock::from_segment(segment_with(&raw[..HEADER_SIZE])).is_err());
    // A barrier whose parties parameter is zero.
    let b = Barrier::new(2).unwrap();
    let mut raw = bytes_of(b.segment());
    let params = 32; // magic 8, version 4, kind 4, size 8, fingerprint 8, then params
    raw[params..params + 8].copy_from_slice(&0u64.to_le_bytes());
    let e = Barrier::from_segment(segment_with(&raw)).unwrap_err();
    assert!(matches!(e, OpenError::Corrupt(_)), "{e:?}");
    // A bounded semaphore whose maximum is out of range.
    let s = BoundedSemaphore::new(2).unwrap();
    let mut raw = bytes_of(s.segment());
    raw[params..params + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(BoundedSemaphore::from_segment(segment_with(&raw)).is_err());
}

#[test]
fn impossible_owner_is_a_dead_owner() {
    watchdog(Duration::from_secs(30), || {
        let lock = Lock::new().unwrap();
        // The lock word is the first field after the header: pid above PID_MAX_LIMIT.
        lock.segment()
            .write(HEADER_SIZE, &((1u32 << 22) + 7).to_le_bytes())
            .unwrap();
        assert!(lock.is_locked());
        match lock.try_lock() {
            Err(TryLockError::OwnerDied(g)) => drop(g),
            other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
        }
        // A waiters bit with no owner.
        lock.segment()
            .write(HEADER_SIZE, &(1u32 << 31).to_le_bytes())
            .unwrap();
        assert!(
            lock.lock_timeout(Duration::from_secs(10))
                .unwrap_err()
                .is_owner_died()
        );
        // The same through a blocking lock on an RLock.
        let r = RLock::new().unwrap();
        r.segment()
            .write(HEADER_SIZE, &u32::MAX.to_le_bytes())
            .unwrap();
        assert!(r.lock().is_err());
        // A semaphore holder slot naming an impossible pid gives its units back.
        let s = Semaphore::new(0).unwrap();
        let slot = HEADER_SIZE + 8;
        let v: u64 = ((u64::from(u32::MAX)) << 32) | 3;
        s.segment().write(slot, &v.to_le_bytes()).unwrap();
        let e = s.try_acquire().unwrap_err();
        assert!(e.is_owner_died());
        drop(e);
        assert_eq!(s.value(), 3);
    });
}

fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/sync_open")
}

#[test]
fn fuzz_corpus_replays() {
    watchdog(Duration::from_secs(60), || {
        let mut n = 0;
        for entry in std::fs::read_dir(corpus_dir()).expect("corpus directory") {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            mproc_sync::__private::open_segment(&data);
            n += 1;
        }
        assert!(n >= 8, "corpus has only {n} files");
    });
}

/// Regenerates the seed corpus: `cargo test --test bad_input -- --ignored write_corpus`.
#[test]
#[ignore = "writes the fuzz corpus"]
fn write_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let put = |name: &str, data: &[u8]| std::fs::write(dir.join(name), data).unwrap();
    let lock = Lock::new().unwrap();
    put("lock", &bytes_of(lock.segment()));
    let mut raw = bytes_of(lock.segment());
    raw[HEADER_SIZE..HEADER_SIZE + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    put("lock_impossible_owner", &raw);
    put("rlock", &bytes_of(RLock::new().unwrap().segment()));
    put("semaphore", &bytes_of(Semaphore::new(3).unwrap().segment()));
    let mut raw = bytes_of(Semaphore::new(0).unwrap().segment());
    for b in &mut raw[HEADER_SIZE + 8..HEADER_SIZE + 64] {
        *b = 0xff;
    }
    put("semaphore_garbage_holders", &raw);
    put(
        "bounded",
        &bytes_of(BoundedSemaphore::new(2).unwrap().segment()),
    );
    put("event_set", &{
        let e = Event::new().unwrap();
        e.set();
        bytes_of(e.segment())
    });
    put("barrier", &bytes_of(Barrier::new(3).unwrap().segment()));
    put(
        "condition",
        &bytes_of(mproc_sync::Condition::new().unwrap().segment()),
    );
    put("zeros", &[0; 512]);
    put("short", &bytes_of(lock.segment())[..100]);
}
