//! [`TypedSegment<T>`]: one small segment with a checked header and one `T`
//! of shared atomics right after it — the segment behind every primitive
//! whose state is a fixed struct (mproc-sync's locks, semaphores, events,
//! barriers; mproc-pipe's write lock).

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::SegmentError;
use crate::layout::{HEADER_SIZE, Layout, SharedSync, fingerprint_of};
use crate::segment::Segment;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A segment holding a header and one `T` at offset [`HEADER_SIZE`]: the
/// workspace's typed segment for fixed shared state.
///
/// The header records the segment's kind (from [`kind`](crate::kind)) and a
/// fingerprint of `T` and a version tag, so a segment received from another
/// process is opened only as what it is. `T` is [`SharedSync`] (atomics
/// only), so `&T` may be used by every thread of every process at once.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use mproc_shm::TypedSegment;
///
/// #[repr(C)]
/// #[derive(Default)]
/// struct Counter(AtomicU64);
/// // SAFETY: atomics only; all zeros is a valid counter.
/// unsafe impl mproc_shm::SharedSync for Counter {}
///
/// let c = TypedSegment::<Counter>::create(0x7f01, "example counter v1", [0; 4], |_| {})?;
/// c.get().0.fetch_add(1, Ordering::Relaxed);
/// let (again, _params) = TypedSegment::<Counter>::open(c.segment().try_clone()?, 0x7f01, "example counter v1")?;
/// assert_eq!(again.get().0.load(Ordering::Relaxed), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TypedSegment<T: SharedSync> {
    seg: Arc<Segment>,
    ptr: NonNull<T>,
    /// Which shared memory file this is (see [`TypedSegment::identity`]).
    id: u128,
    _t: PhantomData<T>,
}

// SAFETY: the pointer targets shared memory kept mapped by the Arc<Segment>
// (Send + Sync); T: SharedSync is Sync and made of atomics, so `&T` may be
// used from any thread.
unsafe impl<T: SharedSync> Send for TypedSegment<T> {}
// SAFETY: as for Send.
unsafe impl<T: SharedSync> Sync for TypedSegment<T> {}

impl<T: SharedSync> TypedSegment<T> {
    fn layout(kind: u32, tag: &'static str) -> Layout {
        Layout {
            kind,
            fingerprint: fingerprint_of::<T>(tag),
        }
    }

    /// Makes a new anonymous segment, lets `init` fill the (zeroed) state,
    /// then publishes the header with `kind`, `T`'s fingerprint under `tag`,
    /// and `params` (four numbers the opener gets back, e.g. a capacity).
    ///
    /// # Errors
    /// [`SegmentError`] if the segment cannot be created.
    pub fn create(
        kind: u32,
        tag: &'static str,
        params: [u64; 4],
        init: impl FnOnce(&T),
    ) -> Result<Self, SegmentError> {
        let size = HEADER_SIZE + std::mem::size_of::<T>();
        let seg = Segment::anonymous(size)?;
        let this = Self::wrap(Arc::new(seg))?;
        init(this.get());
        this.seg
            .header()?
            .init(Self::layout(kind, tag), size as u64, params);
        Ok(this)
    }

    /// Checks a received segment's header (kind, fingerprint, size) and
    /// returns the state and the header's parameters.
    ///
    /// # Errors
    /// [`SegmentError::Layout`] if the segment holds something else, or
    /// another error of the header check.
    pub fn open(
        seg: Segment,
        kind: u32,
        tag: &'static str,
    ) -> Result<(Self, [u64; 4]), SegmentError> {
        let params = seg.check_layout(Self::layout(kind, tag))?;
        Ok((Self::wrap(Arc::new(seg))?, params))
    }

    /// Deserializes a segment (as sent inside a handle message) and opens it
    /// as [`TypedSegment::open`] does.
    ///
    /// # Errors
    /// The deserializer's, or [`TypedSegment::open`]'s as a custom error.
    pub fn deserialize_as<'de, D: Deserializer<'de>>(
        d: D,
        kind: u32,
        tag: &'static str,
    ) -> Result<(Self, [u64; 4]), D::Error> {
        let seg = Segment::deserialize(d)?;
        Self::open(seg, kind, tag).map_err(serde::de::Error::custom)
    }

    fn wrap(seg: Arc<Segment>) -> Result<Self, SegmentError> {
        let ptr = NonNull::from(seg.get::<T>(HEADER_SIZE)?);
        let id = file_identity(&seg).unwrap_or(ptr.as_ptr() as usize as u128);
        Ok(Self {
            seg,
            ptr,
            id,
            _t: PhantomData,
        })
    }

    /// Which primitive this is: the device and inode of its shared memory
    /// file, the same for every handle to it in any process (unforgeable:
    /// the kernel's, not the segment's bytes).
    pub fn identity(&self) -> u128 {
        self.id
    }

    /// The in-segment state.
    #[inline]
    pub fn get(&self) -> &T {
        // SAFETY: `ptr` came from `Segment::get` (bounds and alignment
        // checked), the mapping lives as long as `self.seg`, which `self`
        // keeps, and T: SharedSync may be shared across processes.
        unsafe { self.ptr.as_ref() }
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T: SharedSync> Clone for TypedSegment<T> {
    fn clone(&self) -> Self {
        Self {
            seg: self.seg.clone(),
            ptr: self.ptr,
            id: self.id,
            _t: PhantomData,
        }
    }
}

impl<T: SharedSync> fmt::Debug for TypedSegment<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSegment")
            .field("segment", &self.seg)
            .finish()
    }
}

impl<T: SharedSync> Serialize for TypedSegment<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.seg.serialize(s)
    }
}

/// The (device, inode) of the file behind `seg`; `None` if `fstat` fails
/// (then the mapping's address stands in, which no other live mapping has).
fn file_identity(seg: &Segment) -> Option<u128> {
    use std::os::fd::AsFd;
    let (dev, ino) = crate::sys::file_identity(seg.as_fd()).ok()?;
    Some((u128::from(dev) << 64) | u128::from(ino))
}
