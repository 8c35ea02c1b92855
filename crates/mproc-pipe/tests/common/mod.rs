//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub(crate) use mproc_testkit::watchdog_secs as watchdog;

/// A deterministic byte pattern of `n` bytes.
pub(crate) fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}
