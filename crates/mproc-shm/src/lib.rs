//! Shared memory for mproc: segments that cannot leak, typed shared values and
//! arrays, CPython-compatible named segments, and the handle mechanism that
//! lets every mproc object travel to another process as a file descriptor.
//!
//! # Hello, world!
//!
//! ```
//! use mproc_shm::Segment;
//!
//! // An anonymous (memfd) segment: no name, nothing in /dev/shm to leak.
//! let seg = Segment::anonymous(4096)?;
//! seg.write(0, b"hello")?;
//! let mut buf = [0u8; 5];
//! seg.read(0, &mut buf)?;
//! assert_eq!(&buf, b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Segments
//!
//! [`Segment`] is a mapped shared memory file. It is anonymous by default;
//! named POSIX segments exist only on request and are owned by their creator.
//!
//! # Layouts
//!
//! Every segment that mproc lays out starts with a [`Header`] (magic, layout
//! version, size, kind and type fingerprint), checked on open, so a wrong or
//! foreign segment is an error rather than undefined behaviour. Only
//! [`SharedSync`] types (atomics) are ever looked at through references.
//!
//! # Handles
//!
//! The [`handle`] module serializes descriptors beside serde data, so mproc
//! objects reach other processes under every start method.

#![doc(test(attr(deny(warnings))))]

pub mod error;
pub mod futex;
pub mod handle;
mod layout;
pub mod mutex;
mod segment;
#[cfg_attr(target_os = "linux", path = "sys/linux.rs")]
mod sys;

pub use crate::error::{LayoutError, SegmentError};
pub use crate::layout::{fingerprint_of, Header, Layout, SharedSync, HEADER_SIZE, LAYOUT_VERSION, MAGIC};
pub use crate::mutex::{Acquired, RawMutex};
pub use crate::segment::{unlink_named, Segment, MAX_SEGMENT_SIZE, NAME_PREFIX};
