//! mproc-bench.

fn main() {}
