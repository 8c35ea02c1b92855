//! Shared helpers for the integration tests (included with `mod common;`).

#![allow(dead_code, unused_imports)] // cargo also builds this file as a test target of its own

pub(crate) use mproc_testkit::watchdog;
