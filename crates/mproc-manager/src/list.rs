//! `List<T>`: a shared list.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::code_ref;
use crate::error::Error;
use crate::proto::{Kind, Op, Reply};
use crate::proxy::{bytes, count, proxy_type, unexpected, unit};

proxy_type! {
    /// A proxy of a list in the manager (CPython's `ListProxy`).
    ///
    /// Indices follow Python: negative ones count from the end. Items come
    /// back as copies; change one in place with [`List::update_with`].
    ///
    /// # Examples
    ///
    /// ```
    /// let m = mproc_manager::Manager::start()?;
    /// let l = m.list::<i32>()?;
    /// l.extend(&[1, 2, 3])?;
    /// l.push(&4)?;
    /// assert_eq!(l.get(-1)?, 4);
    /// assert_eq!(l.snapshot()?, vec![1, 2, 3, 4]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    List<T>, List, Kind::List
}

impl<T: Serialize + DeserializeOwned> List<T> {
    /// Appends an item (Python's `append`).
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Encode`] if the item does not serialize.
    pub fn push(&self, item: &T) -> Result<(), Error> {
        unit(self.raw.call(Op::ListPush(self.raw.enc(item)?))?)
    }

    /// Appends every item, in one round trip.
    ///
    /// # Errors
    /// As for [`List::push`].
    pub fn extend<'a, I>(&self, items: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        let enc: Result<Vec<_>, Error> = items.into_iter().map(|i| self.raw.enc(i)).collect();
        unit(self.raw.call(Op::ListExtend(enc?))?)
    }

    /// A copy of the item at `index` (Python's `l[i]`).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`]; [`Error::Decode`] if it is not a `T`.
    pub fn get(&self, index: i64) -> Result<T, Error> {
        let b = bytes(self.raw.call(Op::ListGet(index))?)?;
        self.raw.dec(&b)
    }

    /// Replaces the item at `index` (Python's `l[i] = v`).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`], and those of [`List::push`].
    pub fn set(&self, index: i64, item: &T) -> Result<(), Error> {
        unit(self.raw.call(Op::ListSet(index, self.raw.enc(item)?))?)
    }

    /// Inserts before `index`, clamped to the list as Python does.
    ///
    /// # Errors
    /// As for [`List::push`].
    pub fn insert(&self, index: i64, item: &T) -> Result<(), Error> {
        unit(self.raw.call(Op::ListInsert(index, self.raw.enc(item)?))?)
    }

    /// Removes and returns the last item (Python's `pop()`).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] when empty.
    pub fn pop(&self) -> Result<T, Error> {
        let b = bytes(self.raw.call(Op::ListPop(None))?)?;
        self.raw.dec(&b)
    }

    /// Removes and returns the item at `index` (Python's `pop(i)`).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn pop_at(&self, index: i64) -> Result<T, Error> {
        let b = bytes(self.raw.call(Op::ListPop(Some(index)))?)?;
        self.raw.dec(&b)
    }

    /// Removes the first item equal to `item` (compared by encoding).
    ///
    /// # Errors
    /// [`Error::ValueMissing`] if there is none (Python's `ValueError`).
    pub fn remove(&self, item: &T) -> Result<(), Error> {
        unit(self.raw.call(Op::ListRemove(self.raw.enc_bytes(item)?))?)
    }

    /// The index of the first item equal to `item`.
    ///
    /// # Errors
    /// [`Error::ValueMissing`] if there is none.
    pub fn index(&self, item: &T) -> Result<usize, Error> {
        Ok(count(self.raw.call(Op::ListIndex(self.raw.enc_bytes(item)?))?)? as usize)
    }

    /// How many items equal `item`.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn count(&self, item: &T) -> Result<usize, Error> {
        Ok(count(self.raw.call(Op::ListCount(self.raw.enc_bytes(item)?))?)? as usize)
    }

    /// The number of items.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn len(&self) -> Result<usize, Error> {
        Ok(count(self.raw.call(Op::Len)?)? as usize)
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len()? == 0)
    }

    /// Removes every item.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn clear(&self) -> Result<(), Error> {
        unit(self.raw.call(Op::Clear)?)
    }

    /// A copy of the whole list, in one round trip (Python's `l[:]`).
    ///
    /// # Errors
    /// As for [`List::get`].
    pub fn snapshot(&self) -> Result<Vec<T>, Error> {
        match self.raw.call(Op::ListSnapshot)? {
            Reply::List(items) => items.iter().map(|b| self.raw.dec(b)).collect(),
            r => Err(unexpected(r)),
        }
    }

    /// Runs `f(&mut item, arg)` on the item at `index` inside the server,
    /// atomically, and returns its result. See [`Dict::update_with`](crate::Dict::update_with)
    /// for the rules on `f`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`], [`Error::ForeignExecutable`],
    /// [`Error::Panicked`], [`Error::Update`].
    pub fn update_with<A, R, F>(&self, index: i64, arg: A, f: F) -> Result<R, Error>
    where
        F: Fn(&mut T, A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        if !self.raw.session.same_exe()? {
            return Err(Error::ForeignExecutable);
        }
        let func = code_ref::offset_of::<F, T, A, R>(f);
        let b = bytes(self.raw.call(Op::ListApply {
            index,
            func,
            arg: self.raw.enc_bytes(&arg)?,
        })?)?;
        self.raw.dec(&b)
    }
}
