//! Fuzzes mproc-process's wire formats: start requests (parent → child or
//! fork server) and result frames (child → parent, fed in pieces). The first
//! byte chooses which. Malformed input must be an error: no panic, no
//! allocation beyond what arrived.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mproc_process::__private::fuzz_wire(data);
});
