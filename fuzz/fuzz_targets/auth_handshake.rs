//! Fuzzes mproc-pipe's authkey handshake parsing (challenges and responses).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mproc_pipe::__private::auth_handshake(data);
});
