//! Fuzzes mproc-manager's request decoder and dispatcher: any bytes are
//! decoded as a request and run against a fresh in-memory server (never
//! waiting). No panic, no unbounded allocation, no call through a forged
//! update-function offset.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mproc_manager::__private::fuzz_request(data);
});
