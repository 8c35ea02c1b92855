//! Fuzzes the check of a segment header received from another process: the
//! bytes become a segment, which is opened as every kind of mproc-shm object
//! (Value, RawValue, Array, RawArray, SharedAtomic). It must never panic or
//! read outside the segment.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mproc_shm::__private::segment_header(data);
});
