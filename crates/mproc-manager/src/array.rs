//! `Array<T>`: a shared list of fixed length.

use mproc_shm::codec::Codec;

use crate::error::Error;
use crate::list::{List, ListIter, Slice};
use crate::proto::Kind;
use crate::proxy::proxy_type;

proxy_type! {
    /// A proxy of an array in the manager: a sequence of fixed length
    /// (CPython's `m.Array(typecode, seq)` and its `ArrayProxy`, which has
    /// `len`, item and slice access, nothing that resizes).
    ///
    /// CPython's typecode becomes the item type `T`, any serde type. Slice
    /// assignment must keep the length ([`Error::SizeMismatch`] otherwise,
    /// as for a shared ctypes array). For an array of plain numbers shared
    /// without a server, see mproc-shm's `Array`.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = mproc_manager::Manager::start()?;
    /// let a = m.array([1.0f64, 2.0, 3.0, 4.0])?;
    /// a.set(-1, &40.0)?;
    /// assert_eq!(a.get(0)?, 1.0);
    /// a.set_slice(1..3, &[20.0, 30.0])?;
    /// assert_eq!(a.to_vec()?, [1.0, 20.0, 30.0, 40.0]);
    /// assert!(a.set_slice(..2, &[0.0]).is_err()); // the length is fixed
    /// assert_eq!(a.len()?, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Array<T; C>, Array, Kind::Array
}

impl<T, C: Codec<T>> Array<T, C> {
    /// The same object seen as a list, for the operations both have (the
    /// server refuses any that would change an array's length).
    fn list(&self) -> List<T, C> {
        List::wrap(self.raw.clone())
    }

    /// A copy of the item at `index` (negative counts from the end).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`]; [`Error::Decode`] if it is not a `T`.
    pub fn get(&self, index: i64) -> Result<T, Error> {
        self.list().get(index)
    }

    /// Replaces the item at `index`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`]; [`Error::Encode`].
    pub fn set(&self, index: i64, item: &T) -> Result<(), Error> {
        self.list().set(index, item)
    }

    /// The number of items (fixed when the array was made).
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn len(&self) -> Result<usize, Error> {
        self.list().len()
    }

    /// Whether the array has no items.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    /// Copies of the items of a slice (Python's `a[start:stop:step]`).
    ///
    /// # Errors
    /// As for [`List::get_slice`].
    pub fn get_slice(&self, slice: impl Into<Slice>) -> Result<Vec<T>, Error> {
        self.list().get_slice(slice)
    }

    /// Replaces a slice with as many items (Python's `a[i:j] = items`).
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] if `items` is not as long as the slice; as
    /// for [`List::set_slice`].
    pub fn set_slice<'a, I>(&self, slice: impl Into<Slice>, items: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        self.list().set_slice(slice, items)
    }

    /// A copy of every item, in one round trip (Python's `a[:]`).
    ///
    /// # Errors
    /// As for [`Array::get`].
    pub fn to_vec(&self) -> Result<Vec<T>, Error> {
        self.list().snapshot()
    }

    /// Iterates over the items in batches (see [`ListIter`]).
    pub fn iter(&self) -> ListIter<T, C> {
        self.list().iter()
    }
}
