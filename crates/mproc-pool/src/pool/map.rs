//! `map`, `starmap`, `imap` and `try_imap`: work whose values come back in
//! a `Vec` or an iterator.

use std::cell::RefCell;
use std::rc::Rc;

use mproc_shm::codec::Codec;

use super::{Pool, fixed_chunksize};
use crate::error::PoolError;
use crate::imap::{Imap, TryImap};
use crate::input::{Producer, UntilErr, producer};
use crate::job::assemble;
use crate::star::{StarFn, star};
use crate::worker::entry_of;

impl<C> Pool<C> {
    crate::__task_forms! {
        pool_task;

        /// Applies `f` to every item and returns the values in input order
        /// (Python's `map`).
        ///
        /// Chunks are sized adaptively from the measured time per item (a few
        /// milliseconds of work each), so maps of tiny functions beat a serial
        /// loop. The input is consumed lazily, a bounded window at a time. An
        /// integer range (`0..n`, `a..=b`) travels as ranges, never as items,
        /// one part per worker, split again while running so that no worker
        /// idles while another has work left; a `Vec` of plain numbers travels
        /// as bytes.
        ///
        /// If the input iterator panics, the items before it still run, then
        /// the panic goes on from `map` (CPython's `map` reads the whole input
        /// first, so the iterable's exception comes from `map` too). An input
        /// of `Result`s is best collected first (`collect::<Result<Vec<_>,
        /// _>>()?`), or streamed with [`try_imap`](Pool::try_imap).
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate; otherwise every item
        /// runs, and the first failure in input order is returned
        /// ([`PoolError::Task`] with its index).
        pub fn map<F, A, R, I>(&self, f: F, iterable: I) -> Result<Vec<R>, PoolError>
        where { I: IntoIterator<Item = A> }
        {
            self.map_inner(f, iterable, None)
        }

        /// [`map`](Pool::map) with a fixed chunk size.
        ///
        /// # Errors
        /// [`PoolError::ZeroChunksize`] for 0; otherwise as [`map`](Pool::map).
        pub fn map_chunked<F, A, R, I>(
            &self,
            f: F,
            iterable: I,
            chunksize: usize,
        ) -> Result<Vec<R>, PoolError>
        where { I: IntoIterator<Item = A> }
        {
            self.map_inner(f, iterable, fixed_chunksize(chunksize)?)
        }

        fn map_inner<F, A, R, I>(
            &self,
            f: F,
            iterable: I,
            chunksize: Option<usize>,
        ) -> Result<Vec<R>, PoolError>
        where { I: IntoIterator<Item = A> }
        {
            let mut it = self.imap_inner(f, iterable, chunksize, true)?;
            it.set_eager();
            let mut chunks = Vec::new();
            while let Some(c) = it.next_chunk(None).unwrap_or(None) {
                chunks.push(c);
            }
            assemble(chunks.into_iter())
        }
    }

    /// Applies `f` to argument tuples (Python's `starmap`): `f` takes the
    /// tuple's fields as separate arguments.
    ///
    /// # Errors
    /// As [`map`](Pool::map).
    ///
    /// # Examples
    ///
    /// ```
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// let pool = mproc_pool::Pool::new(2)?;
    /// assert_eq!(pool.starmap(add, vec![(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn starmap<F, Args, I>(&self, f: F, iterable: I) -> Result<Vec<F::Output>, PoolError>
    where
        F: StarFn<Args>,
        C: Codec<Args> + Codec<F::Output>,
        I: IntoIterator<Item = Args>,
    {
        self.map(star(f), iterable)
    }

    crate::__task_forms! {
        pool_task;

        /// Applies `f` to every item and yields the results in input order as
        /// they finish (Python's `imap`). The input is consumed lazily with a
        /// bounded number of chunks in flight; chunk sizes adapt as in
        /// [`map`](Pool::map). Each item is `Ok(value)` or the task's error, and
        /// iteration goes on after an error.
        ///
        /// If the input iterator panics, the results of the items before it
        /// come first, then the panic goes on from [`next`](Iterator::next) at
        /// its position (as CPython raises the iterable's exception there), and
        /// nothing follows. For an input of `Result`s, see
        /// [`try_imap`](Pool::try_imap).
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        pub fn imap<'p, F, A, R, I>(&'p self, f: F, iterable: I) -> Result<Imap<'p, R>, PoolError>
        where { I: IntoIterator<Item = A>, A: 'p, I: 'p }
        {
            self.imap_inner(f, iterable, None, true)
        }

        /// [`imap`](Pool::imap) with a fixed chunk size.
        ///
        /// # Errors
        /// [`PoolError::ZeroChunksize`] for 0; [`PoolError::NotRunning`].
        pub fn imap_chunked<'p, F, A, R, I>(
            &'p self,
            f: F,
            iterable: I,
            chunksize: usize,
        ) -> Result<Imap<'p, R>, PoolError>
        where { I: IntoIterator<Item = A>, A: 'p, I: 'p }
        {
            self.imap_inner(f, iterable, fixed_chunksize(chunksize)?, true)
        }

        /// Like [`imap`](Pool::imap), but yields results in the order they
        /// finish (Python's `imap_unordered`); each item's result comes exactly
        /// once.
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        pub fn imap_unordered<'p, F, A, R, I>(
            &'p self,
            f: F,
            iterable: I,
        ) -> Result<Imap<'p, R>, PoolError>
        where { I: IntoIterator<Item = A>, A: 'p, I: 'p }
        {
            self.imap_inner(f, iterable, None, false)
        }

        /// [`imap`](Pool::imap) over an input of `Result`s: the results of the
        /// `Ok` items, in order, and at the first `Err` (as CPython raises the
        /// iterable's exception at its position)
        /// [`TryImapError::Input`](crate::TryImapError::Input) with it, after which the input is not read
        /// and the iterator ends. A failed task is [`TryImapError::Task`](crate::TryImapError::Task).
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        ///
        /// # Examples
        ///
        /// ```
        /// use mproc_pool::{Pool, TryImapError};
        ///
        /// let pool = Pool::new(2)?;
        /// let input = ["1", "2", "x", "4"].map(str::parse::<u32>);
        /// let mut it = pool.try_imap(|x: u32| x * 10, input)?;
        /// assert_eq!(it.next(), Some(Ok(10)));
        /// assert_eq!(it.next(), Some(Ok(20)));
        /// assert!(matches!(it.next(), Some(Err(TryImapError::Input(_)))));
        /// assert_eq!(it.next(), None);
        /// # Ok::<(), Box<dyn std::error::Error>>(())
        /// ```
        pub fn try_imap<'p, F, A, R, E, I>(
            &'p self,
            f: F,
            iterable: I,
        ) -> Result<TryImap<'p, R, E>, PoolError>
        where { I: IntoIterator<Item = Result<A, E>>, A: 'p, E: 'p, I: 'p }
        {
            self.try_imap_inner(f, iterable, None, true)
        }

        /// [`try_imap`](Pool::try_imap) with a fixed chunk size.
        ///
        /// # Errors
        /// [`PoolError::ZeroChunksize`] for 0; [`PoolError::NotRunning`].
        pub fn try_imap_chunked<'p, F, A, R, E, I>(
            &'p self,
            f: F,
            iterable: I,
            chunksize: usize,
        ) -> Result<TryImap<'p, R, E>, PoolError>
        where { I: IntoIterator<Item = Result<A, E>>, A: 'p, E: 'p, I: 'p }
        {
            self.try_imap_inner(f, iterable, fixed_chunksize(chunksize)?, true)
        }

        /// [`try_imap`](Pool::try_imap) yielding results in the order they
        /// finish (as [`imap_unordered`](Pool::imap_unordered)); the input's
        /// error comes after the results of every item before it.
        ///
        /// # Errors
        /// [`PoolError::NotRunning`] after close/terminate.
        pub fn try_imap_unordered<'p, F, A, R, E, I>(
            &'p self,
            f: F,
            iterable: I,
        ) -> Result<TryImap<'p, R, E>, PoolError>
        where { I: IntoIterator<Item = Result<A, E>>, A: 'p, E: 'p, I: 'p }
        {
            self.try_imap_inner(f, iterable, None, false)
        }

        fn try_imap_inner<'p, F, A, R, E, I>(
            &'p self,
            f: F,
            iterable: I,
            chunksize: Option<usize>,
            ordered: bool,
        ) -> Result<TryImap<'p, R, E>, PoolError>
        where { I: IntoIterator<Item = Result<A, E>>, A: 'p, E: 'p, I: 'p }
        {
            let error = Rc::new(RefCell::new(None));
            let input = UntilErr {
                it: iterable.into_iter(),
                error: error.clone(),
                failed: false,
            };
            let inner = self.imap_inner(f, input, chunksize, ordered)?;
            Ok(TryImap { inner, error })
        }

        fn imap_inner<'p, F, A, R, I>(
            &'p self,
            _f: F,
            iterable: I,
            chunksize: Option<usize>,
            ordered: bool,
        ) -> Result<Imap<'p, R>, PoolError>
        where { I: IntoIterator<Item = A>, A: 'p, I: 'p }
        {
            let entry = entry_of::<C, F, A, R>();
            let prod: Box<dyn Producer + 'p> = producer::<C, A, I>(iterable);
            Imap::new::<C>(&self.engine, prod, entry, chunksize, ordered)
        }
    }
}
