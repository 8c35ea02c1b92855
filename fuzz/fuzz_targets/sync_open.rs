//! Fuzzes opening a segment received from another process as each mproc-sync
//! primitive (Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event,
//! Barrier) and using it with non-blocking operations. It must never panic,
//! hang, or read outside the segment.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mproc_sync::__private::open_segment(data);
});
