//! `List<T>`: a shared list.

use std::collections::VecDeque;
use std::ops::{Range, RangeFrom, RangeFull, RangeTo};

use mproc_shm::codec::{Codec, Postcard};

use crate::code_ref;
use crate::error::Error;
use crate::proto::{Kind, Op, Reply, SliceWire, Val};
use crate::proxy::{bytes, container_methods, count, proxy_type, run_update, unexpected, unit};

/// How many items an iterator fetches per round trip by default.
pub(crate) const DEFAULT_BATCH: u32 = 64;

/// A Python slice, `start:stop:step`, for [`List`] and
/// [`Array`](crate::Array) methods. Made from a Rust range of `i64`, whose
/// bounds follow Python: negative ones count from the end, and bounds out
/// of range are clamped (`1..`, `..-1`, `-3..-1`, `..`), then
/// [`Slice::step`] for an extended slice (`l[::2]`, `l[::-1]`).
///
/// # Examples
///
/// ```
/// use mproc_manager::Slice;
///
/// let m = mproc_manager::Manager::start()?;
/// let l = m.list_from(0..6)?;
/// assert_eq!(l.get_slice(1..-1)?, [1, 2, 3, 4]);
/// assert_eq!(l.get_slice(Slice::from(..).step(-2))?, [5, 3, 1]);
/// l.set_slice(..2, &[9])?; // l[:2] = [9]
/// assert_eq!(l.snapshot()?, [9, 2, 3, 4, 5]);
/// l.del_slice(Slice::from(..).step(2))?; // del l[::2]
/// assert_eq!(l.snapshot()?, [2, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    start: Option<i64>,
    stop: Option<i64>,
    step: i64,
}

impl Slice {
    /// `start:stop` (`None`: from the beginning, to the end). Also for a
    /// backwards slice such as Python's `l[8:2:-2]`:
    /// `Slice::new(Some(8), Some(2)).step(-2)` (clippy rejects `8..2`).
    pub fn new(start: Option<i64>, stop: Option<i64>) -> Self {
        Self {
            start,
            stop,
            step: 1,
        }
    }

    /// The same slice with a step (`start:stop:step`); a step of 0 makes
    /// every method fail, as in Python (`ValueError`).
    #[must_use]
    pub fn step(self, step: i64) -> Self {
        Self { step, ..self }
    }

    fn wire(self) -> SliceWire {
        SliceWire {
            start: self.start,
            stop: self.stop,
            step: self.step,
        }
    }
}

impl From<Range<i64>> for Slice {
    fn from(r: Range<i64>) -> Self {
        Self::new(Some(r.start), Some(r.end))
    }
}

impl From<RangeFrom<i64>> for Slice {
    fn from(r: RangeFrom<i64>) -> Self {
        Self::new(Some(r.start), None)
    }
}

impl From<RangeTo<i64>> for Slice {
    fn from(r: RangeTo<i64>) -> Self {
        Self::new(None, Some(r.end))
    }
}

impl From<RangeFull> for Slice {
    fn from(_: RangeFull) -> Self {
        Self::new(None, None)
    }
}

/// An iterator over a shared list ([`List::iter`]), fetching items in
/// batches.
///
/// Like CPython's list iterator it goes by index and never fails on a
/// change: items appended meanwhile are reached, and removing items makes
/// it skip some. Each batch is a copy taken in one round trip, so a change
/// shows from the next batch on (with a batch of 1, at the next item, as
/// in CPython). It holds no state in the server, only a clone of the
/// proxy (which keeps the list alive while iterating).
pub struct ListIter<T, C = Postcard> {
    list: List<T, C>,
    next: u64,
    batch: u32,
    buf: VecDeque<Result<T, Error>>,
    done: bool,
}

impl<T, C> std::fmt::Debug for ListIter<T, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListIter")
            .field("list", &self.list)
            .field("next", &self.next)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

impl<T, C: Codec<T>> Iterator for ListIter<T, C> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            let op = Op::ListPage {
                from: self.next,
                max: self.batch,
            };
            match self.list.raw.call(op) {
                Ok(Reply::List(items)) => {
                    self.done = items.is_empty();
                    self.next += items.len() as u64;
                    // Decoded at once: the references granted with them are
                    // adopted (or given back) now, whatever the caller takes.
                    self.buf.extend(items.iter().map(|v| self.list.dec(v)));
                }
                Ok(r) => self.fail(unexpected(r)),
                Err(e) => self.fail(e),
            }
        }
        self.buf.pop_front()
    }
}

impl<T, C> ListIter<T, C> {
    fn fail(&mut self, e: Error) {
        self.done = true;
        self.buf.push_back(Err(e));
    }
}

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
    List<T; C>, List, Kind::List
}

impl<T, C: Codec<T>> List<T, C> {
    fn enc(&self, item: &T) -> Result<Val, Error> {
        self.raw.enc::<C, T>(item)
    }

    fn dec(&self, item: &Val) -> Result<T, Error> {
        self.raw.dec::<C, T>(item)
    }

    /// Appends an item (Python's `append`).
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Encode`] if the item does not serialize.
    pub fn push(&self, item: &T) -> Result<(), Error> {
        unit(self.raw.call(Op::ListPush(self.enc(item)?))?)
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
        let enc = self.encode_all(items)?;
        unit(self.raw.call(Op::ListExtend(enc))?)
    }

    /// A copy of the item at `index` (Python's `l[i]`).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`]; [`Error::Decode`] if it is not a `T`.
    pub fn get(&self, index: i64) -> Result<T, Error> {
        let b = bytes(self.raw.call(Op::ListGet(index))?)?;
        self.dec(&b)
    }

    /// Replaces the item at `index` (Python's `l[i] = v`).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`], and those of [`List::push`].
    pub fn set(&self, index: i64, item: &T) -> Result<(), Error> {
        unit(self.raw.call(Op::ListSet(index, self.enc(item)?))?)
    }

    /// Inserts before `index`, clamped to the list as Python does.
    ///
    /// # Errors
    /// As for [`List::push`].
    pub fn insert(&self, index: i64, item: &T) -> Result<(), Error> {
        unit(self.raw.call(Op::ListInsert(index, self.enc(item)?))?)
    }

    /// Removes and returns the last item (Python's `pop()`).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`] when empty.
    pub fn pop(&self) -> Result<T, Error> {
        let b = bytes(self.raw.call(Op::ListPop(None))?)?;
        self.dec(&b)
    }

    /// Removes and returns the item at `index` (Python's `pop(i)`).
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`].
    pub fn pop_at(&self, index: i64) -> Result<T, Error> {
        let b = bytes(self.raw.call(Op::ListPop(Some(index)))?)?;
        self.dec(&b)
    }

    /// Removes the first item equal to `item` (compared by encoding).
    ///
    /// # Errors
    /// [`Error::ValueMissing`] if there is none (Python's `ValueError`).
    pub fn remove(&self, item: &T) -> Result<(), Error> {
        unit(
            self.raw
                .call(Op::ListRemove(self.raw.enc_bytes::<C, T>(item)?))?,
        )
    }

    /// The index of the first item equal to `item`.
    ///
    /// # Errors
    /// [`Error::ValueMissing`] if there is none.
    pub fn index(&self, item: &T) -> Result<usize, Error> {
        Ok(count(
            self.raw
                .call(Op::ListIndex(self.raw.enc_bytes::<C, T>(item)?))?,
        )? as usize)
    }

    /// How many items equal `item`.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn count(&self, item: &T) -> Result<usize, Error> {
        Ok(count(
            self.raw
                .call(Op::ListCount(self.raw.enc_bytes::<C, T>(item)?))?,
        )? as usize)
    }

    container_methods!("items");

    /// A copy of the whole list, in one round trip (Python's `l[:]`).
    ///
    /// # Errors
    /// As for [`List::get`].
    pub fn snapshot(&self) -> Result<Vec<T>, Error> {
        let r = self.raw.call(Op::ListSnapshot)?;
        self.decode_all(r)
    }

    /// Iterates over the list in batches of 64 items, without a full copy
    /// (see [`ListIter`] for what a change during iteration does).
    pub fn iter(&self) -> ListIter<T, C> {
        self.iter_batched(DEFAULT_BATCH as usize)
    }

    /// [`List::iter`] fetching `batch` items per round trip (at least 1, at
    /// most 4096).
    pub fn iter_batched(&self, batch: usize) -> ListIter<T, C> {
        ListIter {
            list: self.clone(),
            next: 0,
            batch: batch.clamp(1, 4096) as u32,
            buf: VecDeque::new(),
            done: false,
        }
    }

    fn decode_all(&self, r: Reply) -> Result<Vec<T>, Error> {
        match r {
            Reply::List(items) => items.iter().map(|b| self.dec(b)).collect(),
            r => Err(unexpected(r)),
        }
    }

    fn encode_all<'a, I>(&self, items: I) -> Result<Vec<Val>, Error>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        items.into_iter().map(|i| self.enc(i)).collect()
    }

    /// Copies of the items of a slice (Python's `l[start:stop:step]`).
    ///
    /// # Errors
    /// [`Error::Remote`] for a step of 0; those of [`List::get`].
    pub fn get_slice(&self, slice: impl Into<Slice>) -> Result<Vec<T>, Error> {
        let r = self.raw.call(Op::ListSlice(slice.into().wire()))?;
        self.decode_all(r)
    }

    /// Replaces a slice with `items` (Python's `l[a:b] = items`), in one
    /// atomic step: a plain slice may change the list's length; an
    /// extended slice (step other than 1) needs as many items as it has.
    ///
    /// # Errors
    /// [`Error::SizeMismatch`] for an extended slice of another length;
    /// [`Error::Remote`] for a step of 0; those of [`List::push`].
    pub fn set_slice<'a, I>(&self, slice: impl Into<Slice>, items: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = &'a T>,
        T: 'a,
    {
        let items = self.encode_all(items)?;
        unit(
            self.raw
                .call(Op::ListSetSlice(slice.into().wire(), items))?,
        )
    }

    /// Removes a slice (Python's `del l[start:stop:step]`).
    ///
    /// # Errors
    /// [`Error::Remote`] for a step of 0; [`Error::Disconnected`].
    pub fn del_slice(&self, slice: impl Into<Slice>) -> Result<(), Error> {
        unit(self.raw.call(Op::ListDelSlice(slice.into().wire()))?)
    }

    /// Reverses the list in place (Python's `reverse`).
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn reverse(&self) -> Result<(), Error> {
        unit(self.raw.call(Op::ListReverse)?)
    }

    /// Repeats the list's items `n` times in place (Python's `l *= n`; `n`
    /// of 0 or less empties it).
    ///
    /// # Errors
    /// [`Error::Remote`] if the list would take more than 256 MiB in the
    /// server (Python's `MemoryError`; the server copies the items where
    /// CPython shares them); [`Error::Disconnected`].
    pub fn repeat_in_place(&self, n: i64) -> Result<(), Error> {
        unit(self.raw.call(Op::ListRepeat(n))?)
    }

    /// A plain `Vec` of the list's items followed by `other`'s (Python's
    /// `proxy + list`, which returns a plain list). The shared list is
    /// unchanged; [`List::extend`] is `+=`.
    ///
    /// # Errors
    /// As for [`List::snapshot`].
    pub fn concat(&self, other: &[T]) -> Result<Vec<T>, Error>
    where
        T: Clone,
    {
        let mut v = self.snapshot()?;
        v.extend_from_slice(other);
        Ok(v)
    }

    /// Sorts the list in place, inside the server, by the items' own order
    /// (Python's `sort(reverse=…)`; stable, and `reverse` keeps equal items
    /// in their order, as Python's does). Atomic: no other operation sees
    /// the list half sorted.
    ///
    /// The server holds encoded bytes, so the sort runs a function of this
    /// executable that decodes the items as `T` (as [`List::update_with`]
    /// does): the client and the server must run the same executable, and
    /// items that contain proxies cannot be sorted (they do not decode in
    /// the server: [`Error::Update`]). Otherwise sort a
    /// [`snapshot`](List::snapshot) and [`set_slice`](List::set_slice) it
    /// back (`l.set_slice(.., &sorted)`).
    ///
    /// # Errors
    /// [`Error::ForeignExecutable`]; [`Error::Update`] if an item does not
    /// decode as a `T`.
    pub fn sort(&self, reverse: bool) -> Result<(), Error>
    where
        T: Ord,
    {
        self.sort_with(code_ref::plain_sort_offset::<C, T>(), reverse)
    }

    /// Sorts the list in place by `key(&item)` (Python's
    /// `sort(key=…, reverse=…)`). `key` is a `fn` or non-capturing closure
    /// run in the server, as for [`List::sort`].
    ///
    /// # Errors
    /// As for [`List::sort`]; [`Error::Panicked`] if `key` panicked (the
    /// list is then unchanged).
    pub fn sort_by_key<K, F>(&self, key: F, reverse: bool) -> Result<(), Error>
    where
        F: Fn(&T) -> K + Copy + Send + 'static,
        K: Ord,
    {
        self.sort_with(code_ref::sort_offset::<F, C, T, K>(key), reverse)
    }

    fn sort_with(&self, func: i64, reverse: bool) -> Result<(), Error> {
        if !self.raw.session.same_exe()? {
            return Err(Error::ForeignExecutable);
        }
        unit(self.raw.call(Op::ListSort { func, reverse })?)
    }

    /// Runs `f(&mut item, arg)` on the item at `index` inside the server,
    /// atomically, and returns its result. See [`Dict::update_with`](crate::Dict::update_with)
    /// for the rules on `f`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfRange`], [`Error::ForeignExecutable`],
    /// [`Error::Panicked`], [`Error::Update`].
    pub fn update_with<A, R, F>(&self, index: i64, f: F, arg: A) -> Result<R, Error>
    where
        F: Fn(&mut T, A) -> R + Copy + Send + 'static,
        C: Codec<A> + Codec<R>,
    {
        let func = code_ref::Update::<F, C, T, A, R>::offset(f);
        run_update::<C, A, R>(&self.raw, func, &arg, |func, arg| Op::ListApply {
            index,
            func,
            arg,
        })
    }
}
