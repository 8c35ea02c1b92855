//! mproc-sync's segments: the workspace's [`TypedSegment`] under a short
//! name, and the kinds of its primitives.

use mproc_shm::SharedSync;
pub(crate) use mproc_shm::TypedSegment as Shared;
use serde::Deserializer;

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

/// Deserializes a segment and opens it as `T` of `kind`.
pub(crate) fn deserialize_shared<'de, D: Deserializer<'de>, T: SharedSync>(
    d: D,
    kind: u32,
    tag: &'static str,
) -> Result<(Shared<T>, [u64; 4]), D::Error> {
    Shared::deserialize_as(d, kind, tag)
}
