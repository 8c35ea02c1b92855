//! The tour of mproc.

fn main() {}
