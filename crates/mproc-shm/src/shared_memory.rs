//! `SharedMemory`: CPython's `multiprocessing.shared_memory.SharedMemory`,
//! byte for byte and name for name, so Rust and Python processes can attach
//! to the same segment.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::SegmentError;
use crate::segment::Segment;

/// The prefix CPython gives generated names (`psm_` + 8 hex digits).
pub const PYTHON_NAME_PREFIX: &str = "psm_";

/// A named POSIX shared-memory block of raw bytes, compatible with CPython's
/// `multiprocessing.shared_memory.SharedMemory`.
///
/// | Python | mproc |
/// |---|---|
/// | `SharedMemory(create=True, size=n)` | [`SharedMemory::create`]`(n)` (name `psm_` + 8 hex digits) |
/// | `SharedMemory(name, create=True, size=n)` | [`SharedMemory::create_named`]`(name, n)` |
/// | `SharedMemory(name)` | [`SharedMemory::open`]`(name)` |
/// | `.name`, `.size` | [`SharedMemory::name`], [`SharedMemory::size`] |
/// | `.buf[a:b]`, `.buf[a:b] = data` | [`SharedMemory::read`], [`SharedMemory::write`] (copies) |
/// | `.close()` | [`SharedMemory::close`] (or drop) |
/// | `.unlink()` | [`SharedMemory::unlink`] |
///
/// The block has no mproc header (Python would not write one): it is plain
/// bytes, created with `O_CREAT|O_EXCL` and mode 0600 as CPython does.
///
/// It travels to other processes as a handle (its descriptor, plus the
/// name): the receiver maps the same block, even if the name has been
/// unlinked meanwhile, and never unlinks it.
///
/// # Differences from CPython
/// * **The creator unlinks the name when it is dropped.** In CPython only an
///   explicit `unlink()` removes it (and, up to 3.12, the resource tracker
///   of *any* process that attached, at its exit). Here ownership is
///   explicit: the creating handle owns the name, openers never unlink it.
///   Call [`SharedMemory::persist`] to keep the name alive after the creator
///   goes away; whoever unlinks it later calls [`SharedMemory::unlink`] or
///   [`unlink_named`](crate::unlink_named).
/// * **A crash does not leak the name either.** As with CPython's resource
///   tracker, a creator that dies without dropping the block (SIGKILL,
///   `process::exit`) leaves it to a small tracker process, started with the
///   first named segment, which unlinks it once the creator and every
///   process forked from it are gone. Only creators register: an opener's
///   exit never unlinks the block (CPython's tracker, up to 3.12, does).
/// * The bytes are reached through copies, never a `&[u8]`/memoryview,
///   because another process may write them at any time. The copies are
///   atomic word by word ([`Segment::read`]), so racing with other
///   processes or threads may tear data but is never undefined behaviour,
///   as with CPython's unsynchronised `buf`.
///
/// # Examples
///
/// ```
/// use mproc_shm::SharedMemory;
///
/// let shm = SharedMemory::create(1024)?;
/// assert!(shm.name().starts_with("psm_"));
/// shm.write(0, b"spam")?;
///
/// let peer = SharedMemory::open(shm.name())?;   // e.g. in another process
/// let mut buf = [0u8; 4];
/// peer.read(0, &mut buf)?;
/// assert_eq!(&buf, b"spam");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Serialize)]
#[serde(transparent)]
pub struct SharedMemory {
    seg: Segment,
}

/// Strips the leading slash a Python user may pass (CPython's internal
/// `_name` form).
fn plain(name: &str) -> &str {
    name.strip_prefix('/').unwrap_or(name)
}

impl SharedMemory {
    /// Creates a block of `size` zero bytes under a fresh name of CPython's
    /// form, `psm_` followed by 8 hex digits, retrying on collisions.
    ///
    /// # Errors
    /// [`SegmentError::ZeroSize`] for a size of zero (CPython's ValueError),
    /// and OS errors.
    pub fn create(size: usize) -> Result<Self, SegmentError> {
        Ok(Self {
            seg: Segment::create_unique(PYTHON_NAME_PREFIX, size)?,
        })
    }

    /// Creates a block of `size` zero bytes named `name` (a leading `/` is
    /// accepted and dropped, as CPython's `.name` does).
    ///
    /// # Errors
    /// [`SegmentError::AlreadyExists`] (CPython's FileExistsError),
    /// [`SegmentError::ZeroSize`], [`SegmentError::InvalidName`], OS errors.
    pub fn create_named(name: &str, size: usize) -> Result<Self, SegmentError> {
        Ok(Self {
            seg: Segment::create_named(plain(name), size)?,
        })
    }

    /// Attaches to an existing block, whoever made it (Rust or Python). Its
    /// size is the size of the file, as in CPython. This handle never unlinks
    /// the name on drop.
    ///
    /// # Errors
    /// [`SegmentError::NotFound`] (CPython's FileNotFoundError), OS errors.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Self {
            seg: Segment::open_named(plain(name))?,
        })
    }

    /// The name, without a leading slash (as CPython's `.name`).
    pub fn name(&self) -> &str {
        self.seg.name().unwrap_or_default()
    }

    /// The size in bytes (exact on Linux, as in CPython).
    pub fn size(&self) -> usize {
        self.seg.len()
    }

    /// Copies `out.len()` bytes at `offset` out of the block (an atomic
    /// copy that may race with writers, see [`Segment::read`]).
    ///
    /// # Errors
    /// [`SegmentError::OutOfBounds`] if the range does not fit.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), SegmentError> {
        self.seg.read(offset, out)
    }

    /// Copies `data` into the block at `offset` (see [`Segment::write`]).
    ///
    /// # Errors
    /// [`SegmentError::OutOfBounds`] if the range does not fit.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), SegmentError> {
        self.seg.write(offset, data)
    }

    /// Copies the whole block out.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.size()];
        let _ = self.seg.read(0, &mut v);
        v
    }

    /// The start of the mapping, for callers that synchronise access
    /// themselves (see [`Segment::as_ptr`]).
    pub fn as_ptr(&self) -> *mut u8 {
        self.seg.as_ptr()
    }

    /// The underlying segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Whether dropping this handle unlinks the name (true for the creator
    /// until [`SharedMemory::persist`] or [`SharedMemory::unlink`]).
    pub fn unlinks_on_drop(&self) -> bool {
        self.seg.unlinks_on_drop()
    }

    /// Keeps the name when this (creating) handle is dropped, and when this
    /// program ends, however it ends; someone must then
    /// [`unlink`](SharedMemory::unlink) it.
    pub fn persist(&mut self) {
        self.seg.persist();
    }

    /// Removes the name now (CPython's `unlink()`); the memory stays usable
    /// by everyone who has it mapped.
    ///
    /// # Errors
    /// [`SegmentError::NotFound`] if the name is already gone (CPython's
    /// FileNotFoundError on a second unlink).
    pub fn unlink(&mut self) -> Result<(), SegmentError> {
        self.seg.unlink()
    }

    /// Unmaps this handle (CPython's `close()`); the creator also unlinks
    /// the name unless it was persisted. Dropping does the same.
    pub fn close(self) {
        drop(self);
    }
}

impl fmt::Debug for SharedMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedMemory")
            .field("name", &self.name())
            .field("size", &self.size())
            .field("unlinks_on_drop", &self.unlinks_on_drop())
            .finish()
    }
}

// The other half of the derived `Serialize`: a segment, which must carry
// its name.
impl<'de> Deserialize<'de> for SharedMemory {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let seg = Segment::deserialize(d)?;
        if seg.name().is_none() {
            return Err(serde::de::Error::custom(
                "a SharedMemory handle must carry its name",
            ));
        }
        Ok(Self { seg })
    }
}

#[cfg(test)]
mod tests;
