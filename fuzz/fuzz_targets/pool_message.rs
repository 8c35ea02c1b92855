//! Fuzzes mproc-pool's message parsers (batch and reply headers, task value
//! decoding with failures): no panic, no allocation beyond the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mproc_pool::__private::pool_message(data);
});
