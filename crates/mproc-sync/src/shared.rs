//! The segment behind every primitive: one small anonymous segment with a
//! checked header, and the in-segment state right after it.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use mproc_shm::{HEADER_SIZE, Layout, Segment, SharedSync, fingerprint_of};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{CreateError, OpenError};

/// Layout kinds of mproc-sync segments (0x02xx), from the workspace's
/// registry [`mproc_shm::kind`]. (The two semaphores are named after their
/// types, which the semaphore macro pastes in.)
pub(crate) mod kind {
    pub(crate) use mproc_shm::kind::{BARRIER, CONDITION, EVENT, LOCK, RLOCK};
    #[allow(non_upper_case_globals)]
    pub(crate) const Semaphore: u32 = mproc_shm::kind::SEMAPHORE;
    #[allow(non_upper_case_globals)]
    pub(crate) const BoundedSemaphore: u32 = mproc_shm::kind::BOUNDED_SEMAPHORE;
}

/// A segment holding a header and one `T` at offset [`HEADER_SIZE`].
pub(crate) struct Shared<T: SharedSync> {
    seg: Arc<Segment>,
    ptr: NonNull<T>,
    /// Which shared memory file this is (see [`Shared::identity`]).
    id: u128,
    _t: PhantomData<T>,
}

// SAFETY: the pointer targets shared memory kept mapped by the Arc<Segment>
// (Send + Sync); T: SharedSync is Sync and made of atomics, so `&T` may be
// used from any thread.
unsafe impl<T: SharedSync> Send for Shared<T> {}
// SAFETY: as for Send.
unsafe impl<T: SharedSync> Sync for Shared<T> {}

impl<T: SharedSync> Shared<T> {
    fn layout(kind: u32, tag: &'static str) -> Layout {
        Layout {
            kind,
            fingerprint: fingerprint_of::<T>(tag),
        }
    }

    /// Makes a new anonymous segment, lets `init` fill the (zeroed) state,
    /// then publishes the header.
    pub(crate) fn create(
        kind: u32,
        tag: &'static str,
        params: [u64; 4],
        init: impl FnOnce(&T),
    ) -> Result<Self, CreateError> {
        let size = HEADER_SIZE + std::mem::size_of::<T>();
        let seg = Segment::anonymous(size)?;
        let this = Self::wrap(Arc::new(seg))?;
        init(this.get());
        this.seg
            .header()?
            .init(Self::layout(kind, tag), size as u64, params);
        Ok(this)
    }

    /// Checks a received segment's header and returns the state and the
    /// header's parameters.
    pub(crate) fn open(
        seg: Segment,
        kind: u32,
        tag: &'static str,
    ) -> Result<(Self, [u64; 4]), OpenError> {
        let params = seg.check_layout(Self::layout(kind, tag))?;
        Ok((Self::wrap(Arc::new(seg))?, params))
    }

    fn wrap(seg: Arc<Segment>) -> Result<Self, mproc_shm::SegmentError> {
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
    pub(crate) fn identity(&self) -> u128 {
        self.id
    }

    /// The in-segment state.
    #[inline]
    pub(crate) fn get(&self) -> &T {
        // SAFETY: `ptr` came from `Segment::get` (bounds and alignment
        // checked), the mapping lives as long as `self.seg`, which `self`
        // keeps, and T: SharedSync may be shared across processes.
        unsafe { self.ptr.as_ref() }
    }

    /// The segment.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T: SharedSync> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Self {
            seg: self.seg.clone(),
            ptr: self.ptr,
            id: self.id,
            _t: PhantomData,
        }
    }
}

impl<T: SharedSync> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("segment", &self.seg)
            .finish()
    }
}

impl<T: SharedSync> Serialize for Shared<T> {
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

/// Deserializes a segment and opens it as `T` of `kind`.
pub(crate) fn deserialize_shared<'de, D: Deserializer<'de>, T: SharedSync>(
    d: D,
    kind: u32,
    tag: &'static str,
) -> Result<(Shared<T>, [u64; 4]), D::Error> {
    let seg = Segment::deserialize(d)?;
    Shared::open(seg, kind, tag).map_err(serde::de::Error::custom)
}
