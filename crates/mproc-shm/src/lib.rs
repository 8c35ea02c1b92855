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
//! A named segment does not outlive a creator that dies without dropping it
//! (SIGKILL, `abort`, `process::exit`): the first named segment a process
//! creates starts a tracker, a copy of the program that waits for the
//! creator and every process forked from it to end, and then unlinks every
//! name they created and neither dropped nor [persisted](Segment::persist).
//! Processes started by executing a program (the spawn and fork-server start
//! methods) have trackers of their own. The tracker is nobody's child, holds
//! no terminal or pipe, and exits as soon as it has cleaned up.
//!
//! # Layouts
//!
//! Every segment that mproc lays out starts with a [`Header`] (magic, layout
//! version, size, kind and type fingerprint), checked on open, so a wrong or
//! foreign segment is an error rather than undefined behaviour. Only
//! [`SharedSync`] types (atomics) are ever looked at through references.
//!
//! # Typed shared objects
//!
//! | Python (`multiprocessing`) | mproc-shm |
//! |---|---|
//! | `Value('d', 0.0)` (locked) | [`Value<f64>`](Value) |
//! | `RawValue('d', 0.0)` | [`RawValue<f64>`](RawValue) |
//! | `Array('i', 10)` (locked) | [`Array<i32>`](Array) |
//! | `RawArray('i', 10)` | [`RawArray<i32>`](RawArray) |
//! | `v.get_lock()` | [`Value::lock`], [`Array::lock`] (guards), [`Value::with_lock`] |
//! | `Value('i', 0, lock=L)`, `Array('i', 3, lock=L)` | [`Synchronized<i32, L>`](Synchronized), [`SynchronizedArray<i32, L>`](SynchronizedArray), with `L` an `mproc_sync::Lock` or `RLock` ([`ValueLock`]) |
//! | (none) | [`SharedAtomic`] integers: `fetch_add`, `compare_exchange`, … |
//! | `shared_memory.SharedMemory` | [`SharedMemory`] (interoperates with CPython) |
//!
//! Elements are plain data ([`bytemuck::Pod`]). Each object lives in its own
//! anonymous segment with a checked header, and is a handle: it serializes
//! as its descriptor, so it can be passed to a child process, and the
//! receiver checks the header (a wrong type or a foreign segment is an error).
//! Memory that another process may write is never handed out as `&T` or
//! `&[T]`, except through a lock guard.
//!
//! ```
//! use mproc_shm::{Array, SharedAtomicU64, Value};
//! use std::sync::atomic::Ordering;
//!
//! let total = Value::new(0u64)?;
//! *total.lock().unwrap() += 5;
//!
//! let data = Array::from_slice(&[1.0f64, 2.0, 3.0])?;
//! let sum: f64 = data.with_lock(|s| s.iter().sum());
//!
//! let hits = SharedAtomicU64::new(0)?;
//! hits.fetch_add(1, Ordering::Relaxed);
//! assert_eq!((total.get(), sum, hits.load(Ordering::Relaxed)), (5, 6.0, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Waiting on many things
//!
//! The [`ready`] module's [`wait`](ready::wait) blocks until any of several
//! mproc objects (connections, processes, queues, events, pool results) or
//! descriptors is ready; the [`Doorbell`](ready::Doorbell) behind it lets
//! shared-memory objects wake pollers at no cost while nobody waits.
//!
//! # Features
//!
//! * `tokio`: `ready::ready`, an async wait on one object, for the
//!   `_async` methods of the other mproc crates.
//! * `tracing`: [`tracing`](https://docs.rs/tracing) events for what mproc
//!   does on its own: here, a lock taken over from a dead owner (`warn`,
//!   with the dead owner's and the taker's pids); the other crates'
//!   `tracing` features turn this one on and add their own events.
//!
//! # Handles
//!
//! The [`handle`] module serializes descriptors beside serde data, so mproc
//! objects reach other processes under every start method.

#![doc(test(attr(deny(warnings))))]

mod array;
mod atomic;
pub mod codec;
pub mod codec_error;
mod copy;
pub mod error;
pub mod futex;
pub mod handle;
pub mod kind;
mod layout;
pub mod local;
pub mod lock_api;
pub mod mutex;
pub mod ready;
mod region;
mod segment;
mod shared_memory;
mod synchronized;
#[doc(hidden)]
pub mod sys;
mod trace;
mod tracker;
mod typed;
mod value;
pub mod wait;

/// The setters of an mproc builder, each written as one line under its own
/// doc text: `name(arg: Type) => field = value;` becomes
/// `pub fn name(mut self, arg: Type) -> Self { self.field = value; self }`.
/// Used inside an `impl` block of the builder; not a stable API.
#[doc(hidden)]
#[macro_export]
macro_rules! builder_setters {
    ($($(#[doc = $doc:literal])* $name:ident($arg:ident: $ty:ty) => $field:ident = $value:expr;)*) => {$(
        $(#[doc = $doc])*
        pub fn $name(mut self, $arg: $ty) -> Self {
            self.$field = $value;
            self
        }
    )*};
}

/// The impls of an error enum with one case of its own (`$own`, which
/// `Display` shows as `$msg`) beside `$wrap($inner)`, which it shows and
/// chains as the inner error itself: `From<$inner>`, `Display` and
/// `Error`. For mproc's "timed out, or the call failed" errors; not a
/// stable API.
#[doc(hidden)]
#[macro_export]
macro_rules! own_or_inner_error {
    ($ty:ident { $own:ident => $msg:literal, $wrap:ident($inner:ty) }) => {
        impl ::core::convert::From<$inner> for $ty {
            fn from(e: $inner) -> Self {
                Self::$wrap(e)
            }
        }

        impl ::core::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self {
                    Self::$own => f.write_str($msg),
                    Self::$wrap(e) => ::core::fmt::Display::fmt(e, f),
                }
            }
        }

        impl ::std::error::Error for $ty {
            fn source(&self) -> Option<&(dyn ::std::error::Error + 'static)> {
                match self {
                    Self::$own => None,
                    Self::$wrap(e) => ::std::error::Error::source(e),
                }
            }
        }
    };
}

pub use crate::array::{Array, ArrayGuard, Iter, RawArray};
pub use crate::atomic::{
    AtomicInt, SharedAtomic, SharedAtomicI8, SharedAtomicI16, SharedAtomicI32, SharedAtomicI64,
    SharedAtomicIsize, SharedAtomicU8, SharedAtomicU16, SharedAtomicU32, SharedAtomicU64,
    SharedAtomicUsize,
};
pub use crate::error::{
    LayoutError, LockError, LockTimeoutError, MapGuard, RangeError, SegmentError, TryLockError,
};
pub use crate::layout::{
    HEADER_SIZE, Header, LAYOUT_VERSION, Layout, MAGIC, SharedSync, fingerprint_of,
};
pub use crate::lock_api::{Guard, LockRef, RawLock};
pub use crate::mutex::{Acquired, RawMutex};
pub use crate::segment::{MAX_SEGMENT_SIZE, NAME_PREFIX, Segment, unlink_named};
pub use crate::shared_memory::{PYTHON_NAME_PREFIX, SharedMemory};
pub use crate::synchronized::{
    LockedArray, LockedValue, Synchronized, SynchronizedArray, ValueLock, WrongLock,
};
pub use crate::typed::TypedSegment;
pub use crate::value::{RawValue, Value, ValueGuard};
pub use bytemuck::{Pod, Zeroable};

/// Support for mproc's own macros (`trace_event!`), and the entry points of
/// the fuzz targets and their corpus-replay tests. Not part of the
/// supported API.
#[doc(hidden)]
pub mod __private {
    pub use crate::fuzzing::segment_header;
    #[cfg(feature = "tracing")]
    pub use tracing;
}

/// The fuzz targets' entry points (reached through `__private`).
mod fuzzing {
    use crate::{Array, RawArray, RawValue, Segment, SharedAtomicU32, SharedAtomicU64, Value};

    /// Treats `data` as the whole content of a segment received from an
    /// untrusted process and tries to open it as every kind of shared object.
    /// Must never panic or touch memory outside the segment; returns how many
    /// openings succeeded (a well-formed header passes exactly one kind).
    pub fn segment_header(data: &[u8]) -> usize {
        let Ok(seg) = Segment::anonymous(data.len().max(1)) else {
            return 0;
        };
        if seg.write(0, data).is_err() {
            return 0;
        }
        let mut ok = 0;
        macro_rules! try_open {
            ($($t:ty),*) => {$(
                if let Ok(clone) = seg.try_clone() {
                    if let Ok(obj) = <$t>::from_segment(clone) {
                        ok += 1;
                        exercise(&obj);
                    }
                }
            )*};
        }
        try_open!(
            Value<u64>,
            Value<f64>,
            Value<[u8; 3]>,
            RawValue<u32>,
            Array<u8>,
            Array<u64>,
            Array<f64>,
            RawArray<u16>
        );
        try_open!(SharedAtomicU64, SharedAtomicU32);
        ok
    }

    trait Exercise {
        fn touch(&self);
    }
    impl<T: crate::Pod + Send> Exercise for Value<T> {
        fn touch(&self) {
            if let Ok(g) = self.try_lock() {
                let _ = *g;
            }
        }
    }
    impl<T: crate::Pod + Send> Exercise for RawValue<T> {
        fn touch(&self) {
            let _ = self.get();
        }
    }
    impl<T: crate::Pod + Send> Exercise for Array<T> {
        fn touch(&self) {
            if let Ok(g) = self.try_lock() {
                let _ = g.last().copied();
            }
        }
    }
    impl<T: crate::Pod + Send> Exercise for RawArray<T> {
        fn touch(&self) {
            let _ = self.iter().count();
        }
    }
    impl<A: crate::AtomicInt> Exercise for crate::SharedAtomic<A> {
        fn touch(&self) {
            let _ = self.segment().len();
        }
    }
    fn exercise(obj: &impl Exercise) {
        obj.touch();
    }
}
