//! Fuzzes mproc-mpi's message parsers (hello, task and result headers, the
//! items a worker decodes, the results rank 0 decodes): no panic, no
//! allocation beyond the input. They build without MPI.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mproc_mpi::__private::mpi_message(data);
});
