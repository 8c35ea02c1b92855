//! Checked function references: descriptors in the image, and references
//! to them.

use std::any::TypeId;
use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::offset::{anchor_addr, offset_of};
use crate::sys::{self, Range};
use crate::{ExeId, FnRefError, exe_id};

/// The first words of every descriptor.
const MAGIC: [u64; 2] = [0x6d70_726f_632d_666e, 0x7265_662d_6465_7363];
/// The check compares against the magic masked with this (kept opaque to
/// the optimiser), so that the code of the check puts no copy of the magic
/// words into the image for a forged offset to point at.
const MASK: u64 = 0x5a3c_96e1_0ff0_a55a;
const MASKED: [u64; 2] = [MAGIC[0] ^ MASK, MAGIC[1] ^ MASK];

/// A descriptor of a function of type `P` (usually a fn pointer type): a
/// constant of the executable that a [`FnRef`] can name, and that
/// [`Desc::resolve`] recognises.
///
/// Make one as a `const` (an associated const of a generic type gives one
/// descriptor per instantiation), and take `&CONST`, which is `'static`:
///
/// ```
/// use mproc_fnref::Desc;
///
/// struct Tramp<F>(std::marker::PhantomData<F>);
/// impl<F: Fn() -> u32 + Copy + 'static> Tramp<F> {
///     const DESC: Desc<fn() -> u32> = Desc::new(call::<F>);
/// }
/// fn call<F: Fn() -> u32 + Copy + 'static>() -> u32 {
///     mproc_fnref::assert_zst::<F>();
///     // `F` is zero-sized (checked above) and `Copy`: its one value has no
///     // bytes, so conjuring it is copying it.
///     // SAFETY: zero-sized and `Copy`, as said above.
///     let f: F = unsafe { std::mem::zeroed() };
///     f()
/// }
/// fn offset_for<F: Fn() -> u32 + Copy + 'static>(_f: F) -> i64 {
///     let d: &'static Desc<fn() -> u32> = &Tramp::<F>::DESC;
///     d.offset()
/// }
///
/// let off = offset_for(|| 7);
/// assert_eq!(Desc::<fn() -> u32>::resolve(off)?(), 7);
/// # Ok::<(), mproc_fnref::FnRefError>(())
/// ```
///
/// Descriptors are checked on resolution: it is aligned and lies inside a
/// loaded segment of this executable, starts with magic words, and records
/// the type `P` it was made for. Memory another process can write (a
/// request on the heap, a shared-memory segment) lies outside every segment
/// checked, so an offset that arrives from elsewhere can only name a real
/// descriptor of the right type, or fail.
#[repr(C)]
pub struct Desc<P: 'static> {
    magic: [u64; 2],
    type_id: fn() -> TypeId,
    call: P,
}

impl<P: Copy + 'static> Desc<P> {
    /// A descriptor of `call`.
    pub const fn new(call: P) -> Self {
        Self {
            magic: MAGIC,
            type_id: TypeId::of::<P>,
            call,
        }
    }

    /// The function it describes.
    pub fn get(&self) -> P {
        self.call
    }

    /// Its distance from the anchor, for [`Desc::resolve`] in a process
    /// running the same executable (see also [`FnRef::new`], which records
    /// the executable too).
    pub fn offset(&'static self) -> i64 {
        offset_of((self as *const Self).cast())
    }

    /// The function described by the descriptor at `offset` from the
    /// anchor, if there is one and it was made for the type `P`.
    ///
    /// Safe for any `offset`; it does not check the executable's identity:
    /// the caller knows that the offset was made by a process running this
    /// executable (see [`FnRef::resolve`], which checks).
    ///
    /// # Errors
    /// [`FnRefError::NotAFunction`] if `offset` names no descriptor of
    /// type `P` (on platforms other than Linux, never one).
    pub fn resolve(offset: i64) -> Result<P, FnRefError> {
        let bad = FnRefError::NotAFunction { offset };
        let addr = (anchor_addr() as i64).wrapping_add(offset) as usize;
        if addr % align_of::<Self>() != 0 || !inside(addr, size_of::<Self>(), false) {
            return Err(bad);
        }
        // `addr` is aligned and `[addr, addr + size_of::<Self>())` lies
        // inside a loaded (mapped, readable, initialised) segment of this
        // executable, checked just above.
        // SAFETY: so it can be read; `[u64; 2]` has no invalid values.
        let magic = unsafe { std::ptr::read_volatile(addr as *const [u64; 2]) };
        let mask = std::hint::black_box(MASK);
        if [magic[0] ^ mask, magic[1] ^ mask] != MASKED {
            return Err(bad);
        }
        let tid_at = addr + std::mem::offset_of!(Self, type_id);
        // SAFETY: as above; the word is inside the checked range and read as
        // a plain integer, which every bit pattern is.
        let tid = unsafe { std::ptr::read_volatile(tid_at as *const usize) };
        if !inside(tid, 1, true) {
            return Err(bad);
        }
        // The words at `addr` are the magic, in a constant of this image (a
        // segment no other process can write, not a copy of the check's own
        // constant, see `MASK`), followed by a pointer into this image's
        // code: they are the start of a `Desc` made by `Desc::new` for some
        // type, whose second field is a `TypeId::of` function.
        // SAFETY: so that word is a `fn() -> TypeId`.
        let type_id = unsafe { std::mem::transmute::<usize, fn() -> TypeId>(tid) };
        if type_id() != TypeId::of::<P>() {
            return Err(bad);
        }
        // SAFETY: the descriptor was made for `P` (checked just above), so it
        // is a `Desc<P>` lying wholly inside the checked range, aligned for
        // it, and its `call` field is a valid `P` (which is `Copy`).
        Ok(unsafe { std::ptr::read_volatile(&(*(addr as *const Self)).call) })
    }
}

impl<P> fmt::Debug for Desc<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Desc").finish_non_exhaustive()
    }
}

fn image() -> &'static [Range] {
    static IMAGE: OnceLock<Vec<Range>> = OnceLock::new();
    IMAGE.get_or_init(|| sys::image_segments(anchor_addr()))
}

/// Whether `[addr, addr + len)` lies inside one loaded segment of this
/// executable (an executable one if `exec`).
fn inside(addr: usize, len: usize, exec: bool) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    image()
        .iter()
        .any(|r| addr >= r.start && end <= r.end && (r.exec || !exec))
}

/// A typed reference to a function of type `P` (usually a fn pointer type),
/// that can travel to another process: the offset of its [`Desc`] and the
/// identity of the executable that made it.
///
/// It is plain data (serializable, and two integers plus an [`ExeId`] to
/// store elsewhere, see [`from_parts`](Self::from_parts)); resolving it
/// checks everything, so a reference from an untrusted source gives a
/// function of type `P` or an error, never undefined behaviour.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct FnRef<P> {
    offset: i64,
    exe: ExeId,
    #[serde(skip)]
    ty: PhantomData<fn() -> P>,
}

impl<P: Copy + 'static> FnRef<P> {
    /// A reference to the function `desc` describes, made by this
    /// executable.
    ///
    /// # Errors
    /// [`FnRefError::Unsupported`] off Linux, [`FnRefError::Exe`] if the
    /// running executable cannot be identified.
    pub fn new(desc: &'static Desc<P>) -> Result<Self, FnRefError> {
        Ok(Self::from_parts(desc.offset(), exe_id()?))
    }

    /// The function, if the reference was made by this executable and names
    /// a descriptor of type `P`.
    ///
    /// # Errors
    /// [`FnRefError::ForeignExecutable`] if another executable made it,
    /// [`FnRefError::NotAFunction`] if it names no descriptor of type `P`,
    /// and the errors of [`FnRef::new`].
    pub fn resolve(&self) -> Result<P, FnRefError> {
        let this = exe_id()?;
        if this != self.exe {
            return Err(FnRefError::ForeignExecutable {
                made_by: self.exe,
                this,
            });
        }
        Desc::<P>::resolve(self.offset)
    }
}

impl<P> FnRef<P> {
    /// Reassembles a reference from [`offset`](Self::offset) and
    /// [`exe`](Self::exe) (for storage other than serde). Nothing is
    /// checked until [`resolve`](Self::resolve).
    pub fn from_parts(offset: i64, exe: ExeId) -> Self {
        Self {
            offset,
            exe,
            ty: PhantomData,
        }
    }

    /// The offset of the descriptor from the anchor.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The identity of the executable that made the reference.
    pub fn exe(&self) -> ExeId {
        self.exe
    }
}

impl<P> Clone for FnRef<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P> Copy for FnRef<P> {}

impl<P> PartialEq for FnRef<P> {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset && self.exe == other.exe
    }
}

impl<P> Eq for FnRef<P> {}

impl<P> fmt::Debug for FnRef<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnRef")
            .field("offset", &self.offset)
            .field("exe", &self.exe)
            .finish()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn double(x: u32) -> u32 {
        x * 2
    }
    fn wide(x: u64) -> u64 {
        x + 1
    }

    const DOUBLE: Desc<fn(u32) -> u32> = Desc::new(double);
    const WIDE: Desc<fn(u64) -> u64> = Desc::new(wide);

    #[test]
    fn references_resolve_and_garbage_does_not() {
        let r = FnRef::new(&DOUBLE).unwrap();
        assert_eq!(r.resolve().unwrap()(21), 42);
        let off = r.offset();
        let heap = Box::new(Desc::new(double as fn(u32) -> u32));
        let on_heap = offset_of((&*heap as *const Desc<fn(u32) -> u32>).cast());
        for bad in [
            0i64,
            1,
            8,
            -8,
            off + 8,
            off - 16,
            off + 1,
            i64::MAX,
            i64::MIN,
            1 << 40,
            // A well-formed descriptor outside the image: not trusted.
            on_heap,
        ] {
            assert!(
                matches!(
                    FnRef::<fn(u32) -> u32>::from_parts(bad, r.exe()).resolve(),
                    Err(FnRefError::NotAFunction { offset }) if offset == bad
                ),
                "offset {bad} resolved"
            );
        }
    }

    #[test]
    fn a_descriptor_of_another_type_does_not_resolve() {
        let w = FnRef::new(&WIDE).unwrap();
        assert_eq!(w.resolve().unwrap()(1), 2);
        let as_narrow = FnRef::<fn(u32) -> u32>::from_parts(w.offset(), w.exe());
        assert!(matches!(
            as_narrow.resolve(),
            Err(FnRefError::NotAFunction { .. })
        ));
    }

    #[test]
    fn another_executable_is_refused() {
        let r = FnRef::new(&DOUBLE).unwrap();
        let mut other = r.exe();
        other.mtime_nsec += 1;
        let e = FnRef::<fn(u32) -> u32>::from_parts(r.offset(), other)
            .resolve()
            .unwrap_err();
        assert!(matches!(e, FnRefError::ForeignExecutable { made_by, .. } if made_by == other));
        assert_eq!(
            e.to_string(),
            "the function reference was made by a different executable \
             (was the binary rebuilt or replaced?)"
        );
    }
}
