//! Fuzzes mproc-queue's lease table: operation streams on a small lease
//! queue must match a model, and bytes scribbled over the table between
//! operations must never cause a panic or an access outside the segment.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mproc_queue::__private::lease_table(data);
});
