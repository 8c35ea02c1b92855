//! Checked layouts: the header every mproc-laid-out segment begins with, and
//! the rules for types that live in shared memory.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{LayoutError, SegmentError};
use crate::segment::Segment;

/// The magic number of an mproc segment header ("MPROCSHM" read little-endian).
pub const MAGIC: u64 = u64::from_le_bytes(*b"MPROCSHM");

/// The layout version this build writes and accepts.
pub const LAYOUT_VERSION: u32 = 1;

/// The size of [`Header`]; the object itself starts at this offset or later.
pub const HEADER_SIZE: usize = 128;

/// Types that may be placed in shared memory and accessed through `&Self` by
/// several processes at once.
///
/// # Safety
/// Implementors promise that:
/// * the type is `#[repr(C)]` (or `transparent`) with a layout that does not
///   depend on the compiler's choices, and contains no pointers, references or
///   descriptors;
/// * every bit pattern, and in particular all zeros, is a valid value;
/// * all state that may change after initialisation is in atomics, so that
///   concurrent access from other processes through `&Self` is not a data
///   race.
pub unsafe trait SharedSync: Sync + 'static {}

// SAFETY: atomics of integers are repr(C)-compatible, valid for every bit
// pattern, and designed for concurrent access.
unsafe impl SharedSync for AtomicU32 {}
// SAFETY: as for AtomicU32.
unsafe impl SharedSync for AtomicU64 {}
// SAFETY: as for AtomicU32.
unsafe impl SharedSync for std::sync::atomic::AtomicI32 {}
// SAFETY: as for AtomicU32.
unsafe impl SharedSync for std::sync::atomic::AtomicI64 {}
// SAFETY: as for AtomicU32.
unsafe impl SharedSync for std::sync::atomic::AtomicUsize {}
// SAFETY: as for AtomicU32.
unsafe impl SharedSync for std::sync::atomic::AtomicIsize {}
// SAFETY: as for AtomicU32.
unsafe impl SharedSync for std::sync::atomic::AtomicU8 {}
// SAFETY: as for AtomicU32.
unsafe impl SharedSync for std::sync::atomic::AtomicU16 {}
// SAFETY: as for AtomicU32.
unsafe impl SharedSync for std::sync::atomic::AtomicI8 {}
// SAFETY: as for AtomicU32.
unsafe impl SharedSync for std::sync::atomic::AtomicI16 {}
// SAFETY: an array of SharedSync elements has no padding between them and
// inherits every property elementwise.
unsafe impl<T: SharedSync, const N: usize> SharedSync for [T; N] {}

/// The header at offset 0 of every segment that mproc lays out.
///
/// The creator fills every field, then publishes `magic` last with a Release
/// store; an opener checks `magic` with an Acquire load first, so it never
/// sees a half-written header.
#[repr(C, align(128))]
#[derive(Debug)]
pub struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    kind: AtomicU32,
    size: AtomicU64,
    fingerprint: AtomicU64,
    params: [AtomicU64; 4],
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_SIZE);

// SAFETY: repr(C) of atomics only; all-zero is valid (and means "not initialised").
unsafe impl SharedSync for Header {}

/// What a segment is expected to hold, checked against its header on open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The kind of object: each crate picks its own constants
    /// (mproc-shm 0x01xx, mproc-sync 0x02xx, mproc-queue 0x03xx, …).
    pub kind: u32,
    /// The element type, from [`fingerprint_of`] (0 when there is none).
    pub fingerprint: u64,
}

impl Header {
    /// Writes a header describing `layout` and the kind-specific `params`,
    /// publishing it with a Release store of the magic number.
    ///
    /// Call this once, on a fresh zero-filled segment, before sharing it.
    pub fn init(&self, layout: Layout, size: u64, params: [u64; 4]) {
        // Relaxed: these stores are published by the Release store of `magic` below.
        self.version.store(LAYOUT_VERSION, Ordering::Relaxed);
        self.kind.store(layout.kind, Ordering::Relaxed);
        self.size.store(size, Ordering::Relaxed);
        self.fingerprint
            .store(layout.fingerprint, Ordering::Relaxed);
        for (slot, p) in self.params.iter().zip(params) {
            slot.store(p, Ordering::Relaxed);
        }
        // Release: pairs with the Acquire load of `magic` in `check`.
        self.magic.store(MAGIC, Ordering::Release);
    }

    /// Checks the header against `layout` and the mapping size `actual`, and
    /// returns the kind-specific parameters.
    ///
    /// # Errors
    /// A [`LayoutError`] naming the first field that disagrees.
    pub fn check(&self, layout: Layout, actual: u64) -> Result<[u64; 4], LayoutError> {
        // Acquire: pairs with the Release store in `init`.
        let magic = self.magic.load(Ordering::Acquire);
        if magic != MAGIC {
            return Err(LayoutError::BadMagic(magic));
        }
        let version = self.version.load(Ordering::Relaxed);
        if version != LAYOUT_VERSION {
            return Err(LayoutError::Version {
                expected: LAYOUT_VERSION,
                found: version,
            });
        }
        let kind = self.kind.load(Ordering::Relaxed);
        if kind != layout.kind {
            return Err(LayoutError::Kind {
                expected: layout.kind,
                found: kind,
            });
        }
        let fp = self.fingerprint.load(Ordering::Relaxed);
        if fp != layout.fingerprint {
            return Err(LayoutError::Fingerprint {
                expected: layout.fingerprint,
                found: fp,
            });
        }
        let recorded = self.size.load(Ordering::Relaxed);
        if recorded > actual {
            return Err(LayoutError::Size { recorded, actual });
        }
        Ok(std::array::from_fn(|i| {
            self.params[i].load(Ordering::Relaxed)
        }))
    }
}

impl Header {
    /// The size the creator recorded (a snapshot; meaningful after
    /// [`Header::check`] succeeded).
    pub fn recorded_size(&self) -> u64 {
        // Relaxed: read after the Acquire load of `magic` in `check`, which
        // pairs with the Release store that published this field.
        self.size.load(Ordering::Relaxed)
    }
}

impl Segment {
    /// A shared reference to a [`SharedSync`] value at `offset`.
    ///
    /// This is the one sanctioned way to look at shared memory through a
    /// reference: `T` consists of atomics, so other processes writing it at
    /// the same time is not a data race.
    ///
    /// # Errors
    /// [`SegmentError::OutOfBounds`] if `T` does not fit at `offset`, or
    /// [`LayoutError::Corrupt`] if `offset` is not aligned for `T`.
    pub fn get<T: SharedSync>(&self, offset: usize) -> Result<&T, SegmentError> {
        let size = std::mem::size_of::<T>();
        match offset.checked_add(size) {
            Some(end) if end <= self.len() => {}
            _ => {
                return Err(SegmentError::OutOfBounds {
                    offset,
                    len: size,
                    size: self.len(),
                });
            }
        }
        if offset % std::mem::align_of::<T>() != 0 {
            return Err(LayoutError::Corrupt("misaligned offset").into());
        }
        // T: SharedSync is valid for every bit pattern and consists of atomics, so
        // other processes mutating it concurrently is not a data race.
        // SAFETY: [offset, offset+size) is inside the live mapping and aligned for T
        // (both checked above; the mapping is page-aligned); the reference borrows `self`.
        Ok(unsafe { &*self.as_ptr().add(offset).cast::<T>() })
    }

    /// The segment's [`Header`].
    ///
    /// # Errors
    /// [`LayoutError::TooSmall`] if the segment cannot hold one.
    pub fn header(&self) -> Result<&Header, SegmentError> {
        if self.len() < HEADER_SIZE {
            return Err(LayoutError::TooSmall { size: self.len() }.into());
        }
        self.get::<Header>(0)
    }

    /// Checks that this segment holds `layout`, returning the header's
    /// kind-specific parameters.
    ///
    /// # Errors
    /// [`SegmentError::Layout`] describing the mismatch.
    pub fn check_layout(&self, layout: Layout) -> Result<[u64; 4], SegmentError> {
        Ok(self.header()?.check(layout, self.len() as u64)?)
    }
}

/// A fingerprint of a plain-data type for [`Layout::fingerprint`]: its size
/// and alignment, mixed with `tag` (a name the caller chooses, stable across
/// builds, for example `"f64"`).
///
/// It tells apart types of different size or alignment, and types whose
/// callers pass different tags.
pub const fn fingerprint_of<T>(tag: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let words = [
        std::mem::size_of::<T>() as u64,
        std::mem::align_of::<T>() as u64,
    ];
    let mut w = 0;
    while w < words.len() {
        let mut b = 0;
        while b < 8 {
            h ^= (words[w] >> (b * 8)) & 0xff;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            b += 1;
        }
        w += 1;
    }
    let bytes = tag.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}
