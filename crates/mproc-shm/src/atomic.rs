//! Shared atomic integers: one atomic in its own segment, usable from every
//! process that holds the handle, with the full `std` atomic API.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicI8, AtomicI16, AtomicI32, AtomicI64, AtomicIsize, AtomicU8, AtomicU16, AtomicU32,
    AtomicU64, AtomicUsize, Ordering,
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::SegmentError;
use crate::layout::{HEADER_SIZE, Layout, SharedSync, fingerprint_of};
use crate::region::KIND_ATOMIC;
use crate::segment::Segment;

mod sealed {
    pub trait Sealed {}
}

/// The std atomic integer types that [`SharedAtomic`] can hold.
///
/// This trait is sealed; it is implemented for `AtomicU8` … `AtomicU64`,
/// `AtomicI8` … `AtomicI64`, `AtomicUsize` and `AtomicIsize`.
/// (`AtomicBool` is left out: not every byte is a valid `bool`.)
pub trait AtomicInt: SharedSync + sealed::Sealed {
    /// The integer type.
    type Int: Copy;
    /// A stable name for the fingerprint.
    #[doc(hidden)]
    const TAG: &'static str;
    /// Stores `v` (initialisation, before the segment is shared).
    #[doc(hidden)]
    fn init(&self, v: Self::Int);
}

macro_rules! atomic_int {
    ($($a:ty => $i:ty, $tag:literal, $alias:ident;)*) => {$(
        impl sealed::Sealed for $a {}
        impl AtomicInt for $a {
            type Int = $i;
            const TAG: &'static str = $tag;
            fn init(&self, v: $i) {
                // Relaxed: published by the header's Release store.
                self.store(v, Ordering::Relaxed);
            }
        }
        #[doc = concat!("A shared `", stringify!($i), "` atomic: [`SharedAtomic`]`<", stringify!($a), ">`.")]
        pub type $alias = SharedAtomic<$a>;
    )*};
}

atomic_int! {
    AtomicU8 => u8, "atomic_u8", SharedAtomicU8;
    AtomicU16 => u16, "atomic_u16", SharedAtomicU16;
    AtomicU32 => u32, "atomic_u32", SharedAtomicU32;
    AtomicU64 => u64, "atomic_u64", SharedAtomicU64;
    AtomicUsize => usize, "atomic_usize", SharedAtomicUsize;
    AtomicI8 => i8, "atomic_i8", SharedAtomicI8;
    AtomicI16 => i16, "atomic_i16", SharedAtomicI16;
    AtomicI32 => i32, "atomic_i32", SharedAtomicI32;
    AtomicI64 => i64, "atomic_i64", SharedAtomicI64;
    AtomicIsize => isize, "atomic_isize", SharedAtomicIsize;
}

/// Where the atomic sits: on its own line after the header.
const ATOMIC_OFFSET: usize = HEADER_SIZE;
/// The segment size: header plus one 128-byte line.
const ATOMIC_SEGMENT_SIZE: usize = 2 * HEADER_SIZE;

fn layout_of<A: AtomicInt>() -> Layout {
    Layout {
        kind: KIND_ATOMIC,
        fingerprint: fingerprint_of::<A>(A::TAG),
    }
}

/// A std atomic integer in shared memory, the lock-free alternative to a
/// locked [`Value`](crate::Value) for counters and flags (CPython has none).
///
/// It dereferences to the std atomic, so every method of, say,
/// [`AtomicU64`] is available with its usual orderings: `load`, `store`,
/// `swap`, `fetch_add`, `fetch_sub`, `fetch_max`, `compare_exchange`,
/// `fetch_update` and so on. Atomics are the one kind of shared memory that
/// may be looked at through a reference, because every access is atomic.
///
/// Like the other shared objects it is a handle owning an anonymous segment
/// (header plus the atomic on its own cache line), sent to other processes as
/// a descriptor, or shared by name.
///
/// ```
/// use mproc_shm::SharedAtomicU64;
/// use std::sync::atomic::Ordering;
///
/// let hits = SharedAtomicU64::new(0)?;
/// hits.fetch_add(5, Ordering::Relaxed);
/// assert_eq!(hits.compare_exchange(5, 7, Ordering::AcqRel, Ordering::Acquire), Ok(5));
/// assert_eq!(hits.load(Ordering::Acquire), 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SharedAtomic<A: AtomicInt> {
    seg: Arc<Segment>,
    _a: std::marker::PhantomData<A>,
}

impl<A: AtomicInt> Clone for SharedAtomic<A> {
    /// Another handle to the same atomic in this process (no new mapping).
    fn clone(&self) -> Self {
        Self {
            seg: Arc::clone(&self.seg),
            _a: std::marker::PhantomData,
        }
    }
}

impl<A: AtomicInt> SharedAtomic<A> {
    /// Creates a shared atomic holding `v` in a fresh anonymous segment.
    ///
    /// # Errors
    /// [`SegmentError`] if the segment cannot be created.
    pub fn new(v: A::Int) -> Result<Self, SegmentError> {
        Self::lay_out(Segment::anonymous(ATOMIC_SEGMENT_SIZE)?, v)
    }

    /// Creates a shared atomic holding `v` in a named POSIX segment that
    /// unrelated processes can open with [`SharedAtomic::open_named`];
    /// unlinked on drop.
    ///
    /// # Errors
    /// As [`Segment::create_named`].
    pub fn create_named(name: &str, v: A::Int) -> Result<Self, SegmentError> {
        Self::lay_out(Segment::create_named(name, ATOMIC_SEGMENT_SIZE)?, v)
    }

    /// Opens a shared atomic made by [`SharedAtomic::create_named`] (of the
    /// same atomic type).
    ///
    /// # Errors
    /// [`SegmentError::NotFound`], or [`SegmentError::Layout`] if the segment
    /// holds something else.
    pub fn open_named(name: &str) -> Result<Self, SegmentError> {
        Self::from_segment(Segment::open_named(name)?)
    }

    /// Adopts a segment that holds a `SharedAtomic<A>`, checking its header.
    ///
    /// # Errors
    /// [`SegmentError::Layout`] for a foreign segment or another kind or type.
    pub fn from_segment(seg: Segment) -> Result<Self, SegmentError> {
        let params = seg.check_layout(layout_of::<A>())?;
        if params != [0; 4] || seg.header()?.recorded_size() != ATOMIC_SEGMENT_SIZE as u64 {
            return Err(
                crate::error::LayoutError::Corrupt("unexpected atomic segment parameters").into(),
            );
        }
        seg.get::<A>(ATOMIC_OFFSET)?;
        Ok(Self {
            seg: Arc::new(seg),
            _a: std::marker::PhantomData,
        })
    }

    fn lay_out(seg: Segment, v: A::Int) -> Result<Self, SegmentError> {
        seg.get::<A>(ATOMIC_OFFSET)?.init(v);
        seg.header()?
            .init(layout_of::<A>(), ATOMIC_SEGMENT_SIZE as u64, [0; 4]);
        Ok(Self {
            seg: Arc::new(seg),
            _a: std::marker::PhantomData,
        })
    }

    /// The segment holding the atomic.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// The segment's name, if it was created or opened by name.
    pub fn name(&self) -> Option<&str> {
        self.seg.name()
    }

    /// Another handle to the same atomic (the segment mapped again).
    ///
    /// # Errors
    /// OS errors from `dup` or `mmap`.
    pub fn try_clone(&self) -> Result<Self, SegmentError> {
        Ok(self.clone())
    }
}

impl<A: AtomicInt> Deref for SharedAtomic<A> {
    type Target = A;
    fn deref(&self) -> &A {
        // SAFETY: construction checked (via `Segment::get`) that an aligned `A` fits at
        // ATOMIC_OFFSET; `A` is an atomic, so sharing it with other processes is sound;
        // the reference borrows `self`, which keeps the mapping alive.
        unsafe { &*self.seg.as_ptr().add(ATOMIC_OFFSET).cast::<A>() }
    }
}

impl<A: AtomicInt> fmt::Debug for SharedAtomic<A>
where
    A: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedAtomic")
            .field("value", &**self)
            .field("segment", &self.seg)
            .finish()
    }
}

impl<A: AtomicInt> Serialize for SharedAtomic<A> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

impl<'de, A: AtomicInt> Deserialize<'de> for SharedAtomic<A> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::from_segment(Segment::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
