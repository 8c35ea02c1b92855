//! Shared memory segments: anonymous (memfd) by default, named on request.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::copy;
use crate::error::SegmentError;
use crate::handle::HandleFd;
use crate::sys;
use crate::tracker::{self, check_name};

/// The largest segment mproc will create or map: 1 TiB. Anything larger is
/// almost certainly a corrupted size, not a request.
pub const MAX_SEGMENT_SIZE: u64 = 1 << 40;

/// The prefix of names that mproc generates for named segments.
pub const NAME_PREFIX: &str = "mproc_";

/// A region of memory shared between processes.
///
/// A segment is a file (a memfd, or a POSIX shared-memory object when named)
/// mapped shared into this process. It never hands out references to its
/// bytes (except to atomics, [`Segment::get`]), only a raw pointer
/// ([`Segment::as_ptr`]) and copying accessors, because another thread or
/// process may write them at any time. [`Segment::read`] and
/// [`Segment::write`] are atomic copies that may race (the result may be
/// torn, never undefined); [`Segment::read_plain`] and
/// [`Segment::write_plain`] are plain `memcpy`s, `unsafe` because the caller
/// must know that nobody writes the bytes meanwhile (a lock, or a hand-over
/// protocol).
///
/// A segment attached to the memory of an mproc object (by name with
/// [`Segment::open_named`], or from its descriptor) must follow that
/// object's protocol as every process does: the elements of a locked
/// [`Array`](crate::Array) or [`Value`](crate::Value) are accessed plainly
/// under their lock (a guard hands out `&mut [T]`), so no copy through such
/// a segment, atomic or not, may touch them while a thread of this process
/// could hold that lock. mproc never hands out such a segment itself except
/// through the `unsafe` [`Array::segment`](crate::Array::segment) and
/// [`Value::segment`](crate::Value::segment).
///
/// * [`Segment::anonymous`] makes a memfd: it has no name, cannot leak into
///   `/dev/shm`, and is freed when the last process holding it closes it.
/// * [`Segment::create_named`] and [`Segment::create_unique`] make a POSIX
///   named segment with `O_EXCL` and mode 0600; the creator unlinks the name
///   on drop (unless [`Segment::persist`] is called), and if it dies without
///   dropping it (SIGKILL), a tracker process unlinks it once the creator and
///   the processes forked from it are gone. [`Segment::open_named`] attaches
///   to one and never unlinks it.
///
/// A segment is a handle: serializing it inside
/// [`collect_fds`](crate::handle::collect_fds) sends its descriptor, and the
/// receiving process maps the same memory. The received segment is always an
/// opener: it never unlinks a name.
///
/// Anonymous segments are sealed against shrinking (`F_SEAL_SHRINK`), so no
/// process they are handed to can truncate them under the others' mappings,
/// and an anonymous segment received from another process that is not so
/// sealed is refused when it is deserialized.
/// Named POSIX segments cannot be sealed: a process that can open the name
/// (the same user, given mode 0600) could truncate one, and accesses beyond
/// the new end would then raise `SIGBUS`; share named segments only with
/// processes you trust that far.
///
/// # Examples
///
/// ```
/// use mproc_shm::Segment;
///
/// let seg = Segment::anonymous(4096)?;
/// seg.write(0, b"hello")?;
/// let mut out = [0u8; 5];
/// seg.read(0, &mut out)?;
/// assert_eq!(&out, b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Segment {
    ptr: NonNull<u8>,
    len: usize,
    fd: HandleFd,
    name: Option<String>,
    unlink_on_drop: bool,
}

// SAFETY: a Segment owns a mapping and a descriptor, both usable from any
// thread; it exposes the bytes only through raw pointers and copies, so no
// aliasing guarantee is shared across threads.
unsafe impl Send for Segment {}
// SAFETY: as for Send. Threads sharing `&Segment` can only reach the bytes
// through atomics ([`Segment::read`], [`Segment::write`], [`Segment::get`] of
// `SharedSync` types) or through `unsafe` methods and raw pointers whose
// contracts exclude racing plain accesses, so no safe use is a data race.
unsafe impl Sync for Segment {}

fn check_size(size: u64) -> Result<usize, SegmentError> {
    if size == 0 {
        return Err(SegmentError::ZeroSize);
    }
    if size > MAX_SEGMENT_SIZE {
        return Err(SegmentError::TooLarge { size });
    }
    usize::try_from(size).map_err(|_| SegmentError::TooLarge { size })
}

impl Segment {
    /// Creates an anonymous segment of `size` bytes, zero-filled.
    ///
    /// The memfd is sealed against shrinking, so no process it is handed to
    /// can truncate it under the others' mappings.
    ///
    /// # Errors
    /// [`SegmentError::ZeroSize`] or [`SegmentError::TooLarge`] for a size of
    /// zero or above [`MAX_SEGMENT_SIZE`]; [`SegmentError::Io`] if the OS
    /// refuses.
    pub fn anonymous(size: usize) -> Result<Self, SegmentError> {
        let len = check_size(size as u64)?;
        let fd = sys::memfd_create("mproc").map_err(SegmentError::Io)?;
        sys::ftruncate(fd.as_fd(), len as u64).map_err(SegmentError::Io)?;
        // A peer that could shrink the file would make our accesses SIGBUS.
        sys::seal_size(fd.as_fd()).map_err(SegmentError::Io)?;
        Self::map(fd, len, None, false)
    }

    /// Creates a named POSIX segment `name` (without a leading slash) of
    /// `size` zero-filled bytes, exclusively (`O_CREAT|O_EXCL`, mode 0600).
    /// The name is unlinked when this segment is dropped.
    ///
    /// # Errors
    /// [`SegmentError::AlreadyExists`] if the name is taken,
    /// [`SegmentError::InvalidName`] for an empty name or one with `/`, and
    /// the size and OS errors of [`Segment::anonymous`].
    pub fn create_named(name: &str, size: usize) -> Result<Self, SegmentError> {
        check_name(name)?;
        let len = check_size(size as u64)?;
        let posix = format!("/{name}");
        let fd = sys::shm_open(&posix, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, 0o600)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    SegmentError::AlreadyExists(name.to_owned())
                } else {
                    SegmentError::Io(e)
                }
            })?;
        // From here on the name is removed even if this process dies.
        tracker::register(name);
        let unlink = || {
            let _ = unlink_named(name);
        };
        if let Err(e) = sys::ftruncate(fd.as_fd(), len as u64) {
            unlink();
            return Err(SegmentError::Io(e));
        }
        Self::map(fd, len, Some(name.to_owned()), true).inspect_err(|_| unlink())
    }

    /// Creates a named segment whose name is `prefix` followed by random hex
    /// digits (16 of them, or 8 when `prefix` is Python's `psm_`), retrying
    /// on collisions. The name is unlinked on drop.
    ///
    /// # Errors
    /// As [`Segment::create_named`].
    pub fn create_unique(prefix: &str, size: usize) -> Result<Self, SegmentError> {
        let digits = if prefix == "psm_" { 8 } else { 16 };
        for _ in 0..100 {
            let name = format!("{prefix}{}", random_hex(digits));
            match Self::create_named(&name, size) {
                Err(SegmentError::AlreadyExists(_)) => continue,
                r => return r,
            }
        }
        Err(SegmentError::Io(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free segment name found",
        )))
    }

    /// Attaches to an existing named segment, mapping all of it. The segment
    /// returned never unlinks the name.
    ///
    /// # Errors
    /// [`SegmentError::NotFound`] if no segment has that name,
    /// [`SegmentError::ZeroSize`] for an empty one, and OS errors.
    pub fn open_named(name: &str) -> Result<Self, SegmentError> {
        check_name(name)?;
        let fd = sys::shm_open(&format!("/{name}"), libc::O_RDWR, 0).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                SegmentError::NotFound(name.to_owned())
            } else {
                SegmentError::Io(e)
            }
        })?;
        let size = sys::file_size(fd.as_fd()).map_err(SegmentError::Io)?;
        let len = check_size(size)?;
        Self::map(fd, len, Some(name.to_owned()), false)
    }

    /// Maps a segment from a descriptor (for example one received from
    /// another process), all of its current size.
    ///
    /// # Errors
    /// Size and OS errors as for [`Segment::anonymous`].
    pub fn from_fd(fd: OwnedFd) -> Result<Self, SegmentError> {
        let size = sys::file_size(fd.as_fd()).map_err(SegmentError::Io)?;
        let len = check_size(size)?;
        Self::map(fd, len, None, false)
    }

    fn map(
        fd: OwnedFd,
        len: usize,
        name: Option<String>,
        unlink_on_drop: bool,
    ) -> Result<Self, SegmentError> {
        let ptr = sys::mmap_shared(fd.as_fd(), len).map_err(SegmentError::Io)?;
        let ptr =
            NonNull::new(ptr).ok_or_else(|| SegmentError::Io(io::ErrorKind::OutOfMemory.into()))?;
        Ok(Self {
            ptr,
            len,
            fd: HandleFd::new(fd),
            name,
            unlink_on_drop,
        })
    }

    /// Maps the same memory a second time through a duplicated descriptor.
    /// The clone never unlinks a name.
    ///
    /// # Errors
    /// Returns OS errors from `dup` or `mmap`.
    pub fn try_clone(&self) -> Result<Self, SegmentError> {
        let fd = self.fd.try_clone().map_err(SegmentError::Io)?.into_inner();
        Self::map(fd, self.len, self.name.clone(), false)
    }

    /// The size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: segments are never empty.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The start of the mapping. It is page-aligned and valid for
    /// [`Segment::len`] bytes while `self` lives.
    ///
    /// Other threads and processes may write through their own mapping at
    /// any time, so any access through this pointer must be atomic, or
    /// synchronised by a protocol (a lock) that all of them follow.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// The POSIX name (without a leading slash), if the segment has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether dropping this segment unlinks its name.
    pub fn unlinks_on_drop(&self) -> bool {
        self.unlink_on_drop
    }

    /// Keeps the name after this segment is dropped, and after this program
    /// ends, however it ends: the caller takes over the duty to unlink it
    /// (for example with [`unlink_named`]).
    pub fn persist(&mut self) {
        if let (true, Some(name)) = (self.unlink_on_drop, &self.name) {
            tracker::unregister(name);
        }
        self.unlink_on_drop = false;
    }

    /// Unlinks the segment's name now. The memory stays mapped and usable by
    /// everyone who has it open; nobody new can attach by name.
    ///
    /// # Errors
    /// [`SegmentError::NotFound`] if the name is already gone (as CPython's
    /// second `unlink`), [`SegmentError::InvalidName`] if the segment has no
    /// name.
    pub fn unlink(&mut self) -> Result<(), SegmentError> {
        let name = self
            .name
            .as_deref()
            .ok_or_else(|| SegmentError::InvalidName(String::new()))?;
        self.unlink_on_drop = false;
        unlink_named(name)
    }

    /// Faults in every page of this process's mapping now, so that later
    /// accesses (a timed loop, a latency-sensitive path) take no page faults.
    /// The contents are unchanged. Does nothing on kernels before 5.14.
    ///
    /// # Errors
    /// [`SegmentError::Io`] if the kernel cannot provide the memory (`ENOMEM`).
    pub fn prefault(&self) -> Result<(), SegmentError> {
        sys::populate(self.as_ptr(), self.len).map_err(SegmentError::Io)
    }

    /// Copies `out.len()` bytes starting at `offset` out of the segment.
    ///
    /// Other threads and processes may write the same bytes meanwhile: the
    /// copy is made of relaxed atomic loads (whole aligned words, single
    /// bytes at the ends), so it may mix old and new bytes, but an aligned
    /// word written whole by one [`Segment::write`] is read whole, and the
    /// race is never undefined behaviour. Take a lock (or use another
    /// protocol) for a consistent snapshot; with one,
    /// [`Segment::read_plain`] is the faster copy.
    ///
    /// (Strictly, Rust's memory model gives no meaning to racing atomic
    /// accesses of different sizes: two racing copies that cover the same
    /// word, one whole and one in part, are of that kind. They follow the
    /// byte-wise atomic `memcpy` of the C++ proposal P1478, which every
    /// supported CPU performs byte by byte as expected.)
    ///
    /// # Errors
    /// [`SegmentError::OutOfBounds`] if the range does not fit.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), SegmentError> {
        self.check_range(offset, out.len())?;
        // SAFETY: the range was checked to lie inside the mapping; every racing
        // access that mproc's safe API makes to segment bytes is atomic.
        unsafe { copy::load_bytes(self.as_ptr().add(offset), out) };
        Ok(())
    }

    /// Copies `data` into the segment starting at `offset`.
    ///
    /// The copy is made of relaxed atomic stores, so racing with other
    /// readers and writers is allowed (see [`Segment::read`]);
    /// [`Segment::write_plain`] is the faster copy for bytes nobody else
    /// touches meanwhile.
    ///
    /// # Errors
    /// [`SegmentError::OutOfBounds`] if the range does not fit.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), SegmentError> {
        self.check_range(offset, data.len())?;
        // SAFETY: as in `read`.
        unsafe { copy::store_bytes(self.as_ptr().add(offset), data) };
        Ok(())
    }

    /// Copies `out.len()` bytes starting at `offset` out of the segment with
    /// a plain `memcpy`: the fast copy, for bytes a protocol keeps still.
    ///
    /// # Errors
    /// [`SegmentError::OutOfBounds`] if the range does not fit.
    ///
    /// # Safety
    /// No thread of this process writes the range during the call, through
    /// this segment or any other mapping of the same memory (another
    /// process's writes are outside the Rust abstract machine; a protocol
    /// should exclude them too, or the copy may be torn). Holding a lock that
    /// every writer of the range takes is enough, and so is a range that was
    /// written before it was handed over and is never written again.
    pub unsafe fn read_plain(&self, offset: usize, out: &mut [u8]) -> Result<(), SegmentError> {
        self.check_range(offset, out.len())?;
        // SAFETY: the range lies inside the mapping and `out` is a distinct Rust
        // buffer; the caller promises that nobody writes the range meanwhile.
        unsafe {
            std::ptr::copy_nonoverlapping(self.as_ptr().add(offset), out.as_mut_ptr(), out.len())
        };
        Ok(())
    }

    /// Copies `data` into the segment starting at `offset` with a plain
    /// `memcpy`: the fast copy, for bytes the caller has to itself.
    ///
    /// # Errors
    /// [`SegmentError::OutOfBounds`] if the range does not fit.
    ///
    /// # Safety
    /// No thread of this process reads or writes the range during the call,
    /// through this segment or any other mapping of the same memory, and no
    /// `&`/`&mut` reference to those bytes is alive (a protocol should
    /// exclude other processes too). Holding a lock that every user of the
    /// range takes is enough, and so is a segment that has not been shared yet.
    pub unsafe fn write_plain(&self, offset: usize, data: &[u8]) -> Result<(), SegmentError> {
        self.check_range(offset, data.len())?;
        // SAFETY: the range lies inside the mapping and cannot overlap `data`, a
        // Rust buffer outside it; the caller promises it has the range to itself.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().add(offset), data.len())
        };
        Ok(())
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<(), SegmentError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(SegmentError::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are the mapping made in `map`, and no reference
        // into it can outlive `self` (none is ever handed out).
        unsafe { sys::munmap(self.ptr.as_ptr(), self.len) };
        if self.unlink_on_drop {
            if let Some(name) = &self.name {
                let _ = unlink_named(name);
            }
        }
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("len", &self.len)
            .field("name", &self.name)
            .field("fd", &self.fd)
            .field("unlink_on_drop", &self.unlink_on_drop)
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
struct Wire {
    fd: HandleFd,
    len: u64,
    name: Option<String>,
}

impl Serialize for Segment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fd = self.fd.try_clone().map_err(serde::ser::Error::custom)?;
        Wire {
            fd,
            len: self.len as u64,
            name: self.name.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Segment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = Wire::deserialize(d)?;
        let fd = w.fd.into_inner();
        let actual = sys::file_size(fd.as_fd()).map_err(D::Error::custom)?;
        if actual < w.len {
            return Err(D::Error::custom(SegmentError::Truncated {
                expected: w.len,
                found: actual,
            }));
        }
        // An anonymous segment that another process could still shrink would
        // turn our accesses into SIGBUS: mproc seals every memfd it makes, so
        // refuse one that is not sealed. Named POSIX segments cannot be sealed
        // at all; for them the risk is documented on `Segment`.
        if w.name.is_none() {
            let sealed = sys::seals(fd.as_fd())
                .map_err(D::Error::custom)?
                .is_some_and(sys::is_size_sealed);
            if !sealed {
                return Err(D::Error::custom(
                    "received an anonymous shared memory segment that is not sealed against shrinking",
                ));
            }
        }
        let len = check_size(w.len).map_err(D::Error::custom)?;
        Self::map(fd, len, w.name, false).map_err(D::Error::custom)
    }
}

/// Removes a named segment by name (without a leading slash), and its
/// registration with this program's tracker, if it has one: the name is
/// withdrawn first, so a crash in between leaves the name rather than
/// letting the tracker remove a segment someone creates anew under it.
///
/// # Errors
/// [`SegmentError::NotFound`] if there is no such name.
pub fn unlink_named(name: &str) -> Result<(), SegmentError> {
    check_name(name)?;
    tracker::unregister(name);
    sys::shm_unlink(&format!("/{name}")).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            SegmentError::NotFound(name.to_owned())
        } else {
            SegmentError::Io(e)
        }
    })
}

/// `n` random lowercase hex digits from the OS random source.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    if getrandom::fill(&mut bytes).is_err() {
        // Fall back to a time-and-pid mix; names only need to be unlikely to collide.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let x = t ^ (u64::from(std::process::id()) << 32);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (x >> ((i % 8) * 8)) as u8;
        }
    }
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(n);
    s
}

#[cfg(test)]
mod tests;
