//! Shared memory segments, typed shared values and arrays, and handle passing for mproc
