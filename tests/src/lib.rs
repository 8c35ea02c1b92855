//! Shared helpers for the cross-crate tests: watchdogs and leak checks.
