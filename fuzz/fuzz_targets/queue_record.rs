//! Fuzzes mproc-queue's ring: arbitrary ring bytes and head/tail words must
//! give a clear "corrupted" result, never a panic or an out-of-bounds access;
//! and an operation stream on a healthy ring must match a `VecDeque` model.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mproc_queue::__private::queue_record(data);
});
