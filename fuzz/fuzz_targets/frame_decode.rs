//! Fuzzes mproc-pipe's frame decoder (CPython framing plus mproc's
//! shared-memory records): no panic, bounded allocation, chunking-independent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mproc_pipe::__private::frame_decode(data);
});
