//! The typed region behind `Value`, `Array` and their raw variants: a segment
//! holding a header, a lock word and `len` elements of a plain-data type.
//!
//! ```text
//! offset 0          Header (128 bytes): kind, fingerprint, params = [len, size, align, data offset]
//! offset 128        RawMutex (unused by the raw variants), alone on its 128-byte line
//! offset data_off   len × T, data_off = 256 rounded up to align_of::<T>()
//! ```

use std::any::TypeId;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use bytemuck::Pod;

use crate::copy;
use crate::error::{LayoutError, RangeError, SegmentError};
use crate::layout::{HEADER_SIZE, Layout, fingerprint_of};
use crate::lock_api::LockRef;
use crate::mutex::RawMutex;
use crate::segment::Segment;

pub(crate) use crate::kind::{
    ARRAY as KIND_ARRAY, ATOMIC as KIND_ATOMIC, RAW_ARRAY as KIND_RAW_ARRAY,
    RAW_VALUE as KIND_RAW_VALUE, VALUE as KIND_VALUE,
};

/// Where the lock word sits: right after the header, on its own line.
pub(crate) const LOCK_OFFSET: usize = HEADER_SIZE;
/// The smallest offset of the data: after the lock's 128-byte line.
const DATA_MIN_OFFSET: usize = 2 * HEADER_SIZE;
// The word-atomic copies of the raw kinds need the data to start on a word.
const _: () = assert!(DATA_MIN_OFFSET % std::mem::size_of::<usize>() == 0);
/// The largest element alignment a mapping (page-aligned) can guarantee.
const MAX_ALIGN: usize = 4096;

/// A stable name for the element type, used in its fingerprint.
///
/// Primitive types get their own name; any other `Pod` type is told apart by
/// size and alignment only (`type_name` and `TypeId` are not stable across
/// builds, so they cannot go into a segment another binary may open).
pub(crate) fn elem_tag<T: 'static>() -> &'static str {
    let id = TypeId::of::<T>();
    macro_rules! tag {
        ($($t:ty),*) => {
            $(if id == TypeId::of::<$t>() { return stringify!($t); })*
        };
    }
    tag!(
        u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
    );
    "pod"
}

/// The layout of a region of `T` of the given kind.
pub(crate) fn layout_of<T: 'static>(kind: u32) -> Layout {
    Layout {
        kind,
        fingerprint: fingerprint_of::<T>(elem_tag::<T>()),
    }
}

/// Computes `(data_off, total_size)` for `len` elements of `T`.
fn geometry<T>(len: usize) -> Result<(usize, usize), SegmentError> {
    let align = std::mem::align_of::<T>();
    if std::mem::size_of::<T>() == 0 {
        // An element count alone would then say nothing about the mapping, and
        // a peer could name an endless array.
        return Err(LayoutError::ZeroSizedElement.into());
    }
    if align > MAX_ALIGN {
        return Err(LayoutError::Alignment { align }.into());
    }
    let data_off = DATA_MIN_OFFSET.next_multiple_of(align);
    let bytes = len.checked_mul(std::mem::size_of::<T>());
    match bytes.and_then(|b| b.checked_add(data_off)) {
        Some(total) => Ok((data_off, total)),
        None => Err(SegmentError::TooLarge { size: u64::MAX }),
    }
}

/// How a fresh region's elements start out.
pub(crate) enum Init<'a, T> {
    /// All zeros (the fresh segment already is: nothing is written, so no
    /// page is touched).
    Zeroed,
    /// Every element a copy of this one.
    Fill(T),
    /// Copies of these elements (as many as the region holds).
    Copy(&'a [T]),
}

/// A segment laid out as `len` elements of `T` after a header and a lock.
pub(crate) struct Region<T> {
    /// Shared by every clone of the handle in this process; the mapping (and a
    /// creator's name) lives until the last clone is dropped.
    seg: Arc<Segment>,
    data: NonNull<T>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for Region<T> {
    fn clone(&self) -> Self {
        Self {
            seg: Arc::clone(&self.seg),
            data: self.data,
            len: self.len,
            _t: PhantomData,
        }
    }
}

// SAFETY: the region owns its segment (Send + Sync); `T: Send` keeps
// non-sendable types out. The elements are only touched through raw pointers
// by the wrappers, which add their own rules: a lock (plain copies and
// guards), or word-atomic copies only.
unsafe impl<T: Send> Send for Region<T> {}
// SAFETY: as for Send; `&Region` gives no access to the elements by itself.
unsafe impl<T: Send> Sync for Region<T> {}

impl<T> Region<T> {
    /// The number of elements.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The first element. Valid for `len` elements while `self` lives.
    pub(crate) fn data(&self) -> *mut T {
        self.data.as_ptr()
    }

    /// The lock word of a locked region.
    pub(crate) fn lock(&self) -> &RawMutex {
        // SAFETY: every region is at least DATA_MIN_OFFSET bytes, so the lock at
        // LOCK_OFFSET (128, aligned) is inside the mapping; RawMutex is atomics only,
        // so sharing it with other processes is sound; the reference borrows `self`.
        unsafe { &*self.seg.as_ptr().add(LOCK_OFFSET).cast::<RawMutex>() }
    }

    /// The lock with the first element it protects (a `Value`).
    pub(crate) fn lock_one(&self) -> LockRef<'_, RawMutex, T> {
        // `data` is valid and aligned for `len >= 1` elements while `self`
        // lives (checked when the region was made or opened).
        // SAFETY: so is the pointer; any bytes form a valid T (every locked
        // region's constructor checks Pod), and every access goes through the lock.
        unsafe { LockRef::new(self.lock(), self.data) }
    }

    /// The lock with all the elements it protects (an `Array`).
    pub(crate) fn lock_all(&self) -> LockRef<'_, RawMutex, [T]> {
        let all = NonNull::slice_from_raw_parts(self.data, self.len);
        // SAFETY: as in `lock_one`, for all `len` elements.
        unsafe { LockRef::new(self.lock(), all) }
    }

    /// The underlying segment.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }
}

impl<T: Pod> Region<T> {
    /// Lays out a fresh anonymous region of `len` elements, all copied from
    /// `init`, and publishes its header.
    pub(crate) fn create(kind: u32, len: usize, init: Init<'_, T>) -> Result<Self, SegmentError> {
        let (_, total) = geometry::<T>(len)?;
        Self::lay_out(Segment::anonymous(total)?, kind, len, init)
    }

    /// As [`Region::create`], in a named POSIX segment.
    pub(crate) fn create_named(
        name: &str,
        kind: u32,
        len: usize,
        init: Init<'_, T>,
    ) -> Result<Self, SegmentError> {
        let (_, total) = geometry::<T>(len)?;
        Self::lay_out(Segment::create_named(name, total)?, kind, len, init)
    }

    fn lay_out(
        seg: Segment,
        kind: u32,
        len: usize,
        init: Init<'_, T>,
    ) -> Result<Self, SegmentError> {
        let (data_off, total) = geometry::<T>(len)?;
        debug_assert!(seg.len() >= total);
        // SAFETY: `data_off + len * size_of::<T>() <= seg.len()` (the segment was
        // made `total` bytes long), and `data_off` is a multiple of T's alignment
        // (at most the page alignment of the mapping).
        let data = unsafe { NonNull::new_unchecked(seg.as_ptr().add(data_off).cast::<T>()) };
        let region = Self {
            seg: Arc::new(seg),
            data,
            len,
            _t: PhantomData,
        };
        // The segment is fresh and zero-filled and nobody can use it before the
        // header is published, so the elements are written without the lock;
        // the header's Release store publishes them.
        match init {
            Init::Zeroed => {}
            Init::Fill(v) => {
                for i in 0..len {
                    // SAFETY: `i < len`: inside the element range checked above.
                    unsafe { region.data().add(i).write(v) };
                }
            }
            Init::Copy(src) => {
                debug_assert_eq!(src.len(), len);
                // SAFETY: the region is not shared yet (see above).
                unsafe { region.copy_in_plain(0, &src[..len.min(src.len())]) }
                    .map_err(|_| LayoutError::Corrupt("initialiser"))?;
            }
        }
        let params = [
            len as u64,
            std::mem::size_of::<T>() as u64,
            std::mem::align_of::<T>() as u64,
            data_off as u64,
        ];
        region
            .seg
            .header()?
            .init(layout_of::<T>(kind), total as u64, params);
        Ok(region)
    }

    /// Checks that `seg` holds a region of `T` of this kind (with exactly
    /// `want_len` elements if given) and adopts it.
    pub(crate) fn open(
        seg: Segment,
        kind: u32,
        want_len: Option<usize>,
    ) -> Result<Self, SegmentError> {
        let [len, size, align, data_off] = seg.check_layout(layout_of::<T>(kind))?;
        if size != std::mem::size_of::<T>() as u64 || align != std::mem::align_of::<T>() as u64 {
            return Err(LayoutError::Corrupt(
                "element size or alignment disagrees with the fingerprint",
            )
            .into());
        }
        let len =
            usize::try_from(len).map_err(|_| LayoutError::Corrupt("impossible element count"))?;
        if want_len.is_some_and(|w| w != len) {
            return Err(
                LayoutError::Corrupt("a value segment must hold exactly one element").into(),
            );
        }
        let (expect_off, total) =
            geometry::<T>(len).map_err(|_| LayoutError::Corrupt("impossible element count"))?;
        if data_off != expect_off as u64 {
            return Err(LayoutError::Corrupt("impossible data offset").into());
        }
        let recorded = seg.header()?.recorded_size();
        if recorded != total as u64 {
            return Err(
                LayoutError::Corrupt("recorded size disagrees with the element count").into(),
            );
        }
        if total > seg.len() {
            return Err(SegmentError::Truncated {
                expected: total as u64,
                found: seg.len() as u64,
            });
        }
        // SAFETY: as in `lay_out`: the element range was checked to lie inside
        // the mapping, and `expect_off` is aligned for T.
        let data = unsafe { NonNull::new_unchecked(seg.as_ptr().add(expect_off).cast::<T>()) };
        Ok(Self {
            seg: Arc::new(seg),
            data,
            len,
            _t: PhantomData,
        })
    }

    /// Maps the same region again.
    pub(crate) fn try_clone(&self) -> Result<Self, SegmentError> {
        Ok(self.clone())
    }

    /// Checks that `[start, start + n)` lies inside the region.
    pub(crate) fn check_range(&self, start: usize, n: usize) -> Result<(), RangeError> {
        match start.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(RangeError {
                start,
                len: n,
                array_len: self.len,
            }),
        }
    }

    /// Copies elements `[start, start + out.len())` out with a plain `memcpy`.
    ///
    /// # Safety
    /// Nobody writes the elements meanwhile: the caller holds the region's
    /// lock (a locked kind, whose every access takes it).
    pub(crate) unsafe fn copy_out_plain(
        &self,
        start: usize,
        out: &mut [T],
    ) -> Result<(), RangeError> {
        self.check_range(start, out.len())?;
        // SAFETY: the range lies inside the region (checked above) and `out` is
        // a distinct Rust buffer; the caller holds the lock, so nobody writes it.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data().add(start), out.as_mut_ptr(), out.len())
        };
        Ok(())
    }

    /// Copies `src` into elements `[start, start + src.len())` with a plain
    /// `memcpy`.
    ///
    /// # Safety
    /// Nobody else reads or writes the elements meanwhile: the caller holds
    /// the region's lock, or the region is not shared yet.
    pub(crate) unsafe fn copy_in_plain(&self, start: usize, src: &[T]) -> Result<(), RangeError> {
        self.check_range(start, src.len())?;
        // SAFETY: the range lies inside the region and cannot overlap `src`, a
        // Rust buffer outside the mapping; the caller has it to itself.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.data().add(start), src.len()) };
        Ok(())
    }

    /// Copies elements `[start, start + out.len())` out with word-sized
    /// relaxed atomics: racing writers may leave a mix of old and new
    /// elements, but an element no wider than a machine word is never torn.
    ///
    /// # Safety
    /// The region is of a raw kind: its elements are only ever accessed
    /// through [`Region::load`] and [`Region::store`] (or before it is shared).
    pub(crate) unsafe fn load(&self, start: usize, out: &mut [T]) -> Result<(), RangeError> {
        self.check_range(start, out.len())?;
        // The range lies inside the region, whose start is word-aligned
        // (DATA_MIN_OFFSET is a multiple of the word), so every word overlapping
        // it lies inside the page-granular mapping. Any bytes form valid Pod.
        // SAFETY: as above; by the caller's promise, racing accesses are atomics.
        unsafe { copy::load_words(self.data().add(start).cast(), bytemuck::cast_slice_mut(out)) };
        Ok(())
    }

    /// Copies `src` into elements `[start, start + src.len())` with word-sized
    /// relaxed atomics (see [`Region::load`]).
    ///
    /// # Safety
    /// As for [`Region::load`].
    pub(crate) unsafe fn store(&self, start: usize, src: &[T]) -> Result<(), RangeError> {
        self.check_range(start, src.len())?;
        // SAFETY: as in `load`; words only partly in the range are updated with a
        // compare-and-swap that keeps the neighbouring elements' bytes.
        unsafe { copy::store_words(self.data().add(start).cast(), bytemuck::cast_slice(src)) };
        Ok(())
    }
}

/// What every handle over a [`Region`] (`Value`, `RawValue`, `Array`,
/// `RawArray`) has in the same form: `Clone` (another handle to the same
/// mapping), `open_named`, `from_segment` (the header checked for the
/// handle's kind, element type and, for values, length), `name`,
/// `try_clone`, `Debug`, serde as its segment (a descriptor in a handle
/// message), and the constructors of its shape:
///
/// - `region_handle!(value Value, KIND_VALUE)`: `new(v)` and
///   `create_named(name, v)`, one element;
/// - `region_handle!(array Array, KIND_ARRAY, Iter)`: `new(len)`,
///   `from_slice`, `create_named(name, len)`, `len`, `is_empty`, and
///   `IntoIterator` for `&Array` (over the type's own `iter`, which returns
///   an `Iter`).
///
/// `$ty` is a struct with one field `region: Region<T>`; `$kind` its kind.
macro_rules! region_handle {
    (value $ty:ident, $kind:expr) => {
        $crate::region::region_handle!(@any $ty, $kind, Some(1), "a value");

        impl<T: ::bytemuck::Pod + Send> $ty<T> {
            /// Creates a value initialised to `v` in a fresh anonymous segment.
            ///
            /// # Errors
            /// [`SegmentError`](crate::SegmentError) if the segment cannot be created.
            pub fn new(v: T) -> Result<Self, $crate::SegmentError> {
                let init = $crate::region::Init::Fill(v);
                let region = $crate::region::Region::create($kind, 1, init)?;
                Ok(Self { region })
            }

            /// Creates a value initialised to `v` in a named POSIX segment
            #[doc = concat!("that unrelated processes can open with [`", stringify!($ty), "::open_named`].")]
            /// The name is unlinked when this handle is dropped.
            ///
            /// # Errors
            /// As [`Segment::create_named`](crate::Segment::create_named).
            pub fn create_named(name: &str, v: T) -> Result<Self, $crate::SegmentError> {
                let init = $crate::region::Init::Fill(v);
                let region = $crate::region::Region::create_named(name, $kind, 1, init)?;
                Ok(Self { region })
            }
        }

        impl<T> ::std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("segment", self.region.segment())
                    .finish_non_exhaustive()
            }
        }
    };
    (array $ty:ident, $kind:expr, $iter:ident) => {
        $crate::region::region_handle!(@any $ty, $kind, None, "an array");

        impl<T: ::bytemuck::Pod + Send> $ty<T> {
            /// Creates an array of `len` zeros in a fresh anonymous segment.
            ///
            /// # Errors
            /// [`SegmentError`](crate::SegmentError) if the segment cannot be
            /// created (or `len` elements of `T` overflow the address space).
            pub fn new(len: usize) -> Result<Self, $crate::SegmentError> {
                let init = $crate::region::Init::Zeroed;
                let region = $crate::region::Region::create($kind, len, init)?;
                Ok(Self { region })
            }

            /// Creates an array holding a copy of `data`.
            ///
            /// # Errors
            #[doc = concat!("As [`", stringify!($ty), "::new`].")]
            pub fn from_slice(data: &[T]) -> Result<Self, $crate::SegmentError> {
                let init = $crate::region::Init::Copy(data);
                let region = $crate::region::Region::create($kind, data.len(), init)?;
                Ok(Self { region })
            }

            /// Creates an array of `len` zeros in a named POSIX segment that
            #[doc = concat!("unrelated processes can open with [`", stringify!($ty), "::open_named`];")]
            /// unlinked on drop.
            ///
            /// # Errors
            /// As [`Segment::create_named`](crate::Segment::create_named).
            pub fn create_named(name: &str, len: usize) -> Result<Self, $crate::SegmentError> {
                let init = $crate::region::Init::Zeroed;
                let region = $crate::region::Region::create_named(name, $kind, len, init)?;
                Ok(Self { region })
            }

            /// The number of elements.
            pub fn len(&self) -> usize {
                self.region.len()
            }

            /// Whether the array has no elements.
            pub fn is_empty(&self) -> bool {
                self.region.len() == 0
            }
        }

        impl<T> ::std::fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("len", &self.region.len())
                    .field("segment", self.region.segment())
                    .finish_non_exhaustive()
            }
        }

        impl<'a, T: ::bytemuck::Pod + Send> IntoIterator for &'a $ty<T> {
            type Item = T;
            type IntoIter = $iter<'a, T>;
            fn into_iter(self) -> $iter<'a, T> {
                self.iter()
            }
        }
    };
    // What every shape shares; `$len` is the element count a segment must
    // hold (`None`: any), `$what` how docs name one (`"a value"`).
    (@any $ty:ident, $kind:expr, $len:expr, $what:literal) => {
        impl<T> Clone for $ty<T> {
            /// Another handle to the same shared memory in this process (no new mapping).
            fn clone(&self) -> Self {
                Self {
                    region: self.region.clone(),
                }
            }
        }

        impl<T: ::bytemuck::Pod + Send> $ty<T> {
            #[doc = concat!("Opens ", $what, " made by [`", stringify!($ty), "::create_named`] (with the same `T`).")]
            ///
            /// # Errors
            /// [`SegmentError::NotFound`](crate::SegmentError::NotFound), or
            /// [`SegmentError::Layout`](crate::SegmentError::Layout) if the
            /// segment holds something else.
            pub fn open_named(name: &str) -> Result<Self, $crate::SegmentError> {
                Self::from_segment($crate::Segment::open_named(name)?)
            }

            #[doc = concat!("Adopts a segment that holds a `", stringify!($ty), "<T>`, checking its header.")]
            ///
            /// # Errors
            /// [`SegmentError::Layout`](crate::SegmentError::Layout) for a
            /// foreign segment or another kind or type,
            /// [`SegmentError::Truncated`](crate::SegmentError::Truncated) for a
            /// segment smaller than its header says.
            pub fn from_segment(seg: $crate::Segment) -> Result<Self, $crate::SegmentError> {
                Ok(Self {
                    region: $crate::region::Region::open(seg, $kind, $len)?,
                })
            }

            /// The segment's name, if it was created or opened by name.
            pub fn name(&self) -> Option<&str> {
                self.region.segment().name()
            }

            /// Another handle to the same memory: the same as `clone`, kept
            /// for code written before handles were `Clone`.
            ///
            /// # Errors
            /// None today; the signature is kept for compatibility.
            pub fn try_clone(&self) -> Result<Self, $crate::SegmentError> {
                Ok(Self {
                    region: self.region.try_clone()?,
                })
            }
        }

        impl<T> ::serde::Serialize for $ty<T> {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                ::serde::Serialize::serialize(self.region.segment(), s)
            }
        }

        impl<'de, T: ::bytemuck::Pod + Send> ::serde::Deserialize<'de> for $ty<T> {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let seg = <$crate::Segment as ::serde::Deserialize>::deserialize(d)?;
                Self::from_segment(seg).map_err(::serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use region_handle;
