//! `Queue<T>` and `JoinableQueue<T>` that live in the manager.

use std::time::{Duration, Instant};

use mproc_shm::codec::Codec;

use crate::error::{
    Error, GetTimeoutError, JoinTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use crate::proto::{Kind, Op, RemoteError, WaitMs};
use crate::proxy::{boolean, bytes, count, proxy_type, unit};
use crate::sync::{until, wait_ms};

/// The queue methods shared by both queue types.
macro_rules! queue_methods {
    () => {
        /// Puts an item, waiting while `wait` allows; `Ok(Err(item))`
        /// when the queue stayed full.
        fn put_inner(&self, item: T, wait: WaitMs) -> Result<Result<(), T>, PutError<T>> {
            let enc = match self.raw.enc::<C, T>(&item) {
                Ok(b) => b,
                Err(error) => return Err(PutError { item, error }),
            };
            match self
                .raw
                .call_or_give_up(Op::Put(enc, wait), RemoteError::Full)
                .and_then(|r| r.map(unit).transpose())
            {
                Ok(Some(())) => Ok(Ok(())),
                Ok(None) => Ok(Err(item)),
                Err(error) => Err(PutError { item, error }),
            }
        }

        /// Puts an item, waiting while the queue is full. The item is
        /// serialized and stored in the server before this returns.
        ///
        /// # Errors
        /// [`Error::Disconnected`] or [`Error::Encode`], with the item back.
        pub fn put(&self, item: T) -> Result<(), PutError<T>> {
            match self.put_inner(item, None)? {
                Ok(()) => Ok(()),
                // Without a limit, the server waits until there is room.
                Err(item) => Err(PutError {
                    item,
                    error: Error::from_remote(RemoteError::Full),
                }),
            }
        }

        /// Puts an item if there is room now.
        ///
        /// # Errors
        /// [`TryPutError::Full`], and those of `put`, with the item back.
        pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
            self.put_inner(item, Some(0))?.map_err(TryPutError::Full)
        }

        /// Puts an item, waiting up to `timeout` for room.
        ///
        /// # Errors
        /// [`PutTimeoutError::Timeout`], and those of `put`, with the item back.
        pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
            self.put_inner(item, wait_ms(Some(timeout)))?
                .map_err(PutTimeoutError::Timeout)
        }

        /// Puts an item, waiting until `deadline` for room.
        ///
        /// # Errors
        /// [`PutTimeoutError::Timeout`], and those of `put`, with the item back.
        pub fn put_deadline(&self, item: T, deadline: Instant) -> Result<(), PutTimeoutError<T>> {
            self.put_inner(item, until(deadline))?
                .map_err(PutTimeoutError::Timeout)
        }

        /// Takes the oldest item, waiting while `wait` allows; `None` when
        /// the queue stayed empty.
        fn get_inner(&self, wait: WaitMs) -> Result<Option<T>, Error> {
            match self
                .raw
                .call_or_give_up(Op::Get(wait), RemoteError::Empty)?
            {
                Some(r) => self.raw.dec::<C, T>(&bytes(r)?).map(Some),
                None => Ok(None),
            }
        }

        /// Takes the oldest item, waiting while the queue is empty.
        ///
        /// A consumer killed while it waits takes nothing: the server puts
        /// back an item it could not deliver (only an item already on its
        /// way to a consumer dying at that very moment can be lost).
        ///
        /// # Errors
        /// [`Error::Disconnected`]; [`Error::Decode`] if the item is not a `T`.
        pub fn get(&self) -> Result<T, Error> {
            // Without a limit, the server waits until there is an item.
            self.get_inner(None)?
                .ok_or_else(|| Error::from_remote(RemoteError::Empty))
        }

        /// Takes the oldest item if there is one.
        ///
        /// # Errors
        /// [`TryGetError::Empty`], and those of `get` as [`TryGetError::Call`].
        pub fn try_get(&self) -> Result<T, TryGetError> {
            self.get_inner(Some(0))?.ok_or(TryGetError::Empty)
        }

        /// Takes the oldest item, waiting up to `timeout`.
        ///
        /// # Errors
        /// [`GetTimeoutError::Timeout`], and those of `get` as
        /// [`GetTimeoutError::Call`].
        pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
            self.get_inner(wait_ms(Some(timeout)))?
                .ok_or(GetTimeoutError::Timeout)
        }

        /// Takes the oldest item, waiting until `deadline`.
        ///
        /// # Errors
        /// As for `get_timeout`.
        pub fn get_deadline(&self, deadline: Instant) -> Result<T, GetTimeoutError> {
            self.get_inner(until(deadline))?
                .ok_or(GetTimeoutError::Timeout)
        }

        /// The number of items (exact: the server holds them).
        ///
        /// # Errors
        /// [`Error::Disconnected`].
        pub fn qsize(&self) -> Result<usize, Error> {
            Ok(count(self.raw.call(Op::QSize)?)? as usize)
        }

        /// Whether the queue is empty.
        ///
        /// # Errors
        /// [`Error::Disconnected`].
        pub fn is_empty(&self) -> Result<bool, Error> {
            Ok(self.qsize()? == 0)
        }

        /// Whether the queue holds `maxsize` items (Python's `full()`;
        /// never for an unbounded queue). Exact when asked: the server
        /// holds the items.
        ///
        /// # Errors
        /// [`Error::Disconnected`].
        pub fn is_full(&self) -> Result<bool, Error> {
            boolean(self.raw.call(Op::QFull)?)
        }
    };
}

proxy_type! {
    /// A FIFO queue in the manager (CPython's `m.Queue()`, a `queue.Queue`
    /// in the server). Unlike `mproc-queue`'s shared-memory queues, it can be
    /// used by processes on other hosts.
    ///
    /// # Examples
    ///
    /// ```
    /// let m = mproc_manager::Manager::start()?;
    /// let q = m.queue::<String>(0)?;
    /// q.put("hello".to_string())?;
    /// assert_eq!(q.get()?, "hello");
    /// assert!(q.try_get().unwrap_err().to_string().contains("empty"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    Queue<T; C>, Queue | JoinableQueue, Kind::Queue
}

impl<T, C: Codec<T>> Queue<T, C> {
    queue_methods!();
}

proxy_type! {
    /// A queue whose consumers report finished items, so that a producer
    /// can wait for all of them ([`JoinableQueue::join`]).
    JoinableQueue<T; C>, JoinableQueue, Kind::JoinableQueue
}

impl<T, C: Codec<T>> JoinableQueue<T, C> {
    queue_methods!();

    /// Marks one item taken earlier as finished.
    ///
    /// # Errors
    /// [`Error::TooManyTaskDone`] if more calls than items put.
    pub fn task_done(&self) -> Result<(), Error> {
        unit(self.raw.call(Op::TaskDone)?)
    }

    /// Waits until every item put has been marked finished.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn join(&self) -> Result<(), Error> {
        // Without a limit, the server waits until every task is done.
        unit(self.raw.call(Op::Join(None))?)
    }

    /// Waits up to `timeout` for every item to be finished.
    ///
    /// # Errors
    /// [`JoinTimeoutError::Timeout`]; [`Error::Disconnected`] as
    /// [`JoinTimeoutError::Call`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        self.join_inner(wait_ms(Some(timeout)))
    }

    /// Waits until `deadline` for every item to be finished.
    ///
    /// # Errors
    /// As for [`JoinableQueue::join_timeout`].
    pub fn join_deadline(&self, deadline: Instant) -> Result<(), JoinTimeoutError> {
        self.join_inner(until(deadline))
    }

    fn join_inner(&self, wait: WaitMs) -> Result<(), JoinTimeoutError> {
        match self
            .raw
            .call_or_give_up(Op::Join(wait), RemoteError::Timeout)?
        {
            Some(r) => Ok(unit(r)?),
            None => Err(JoinTimeoutError::Timeout),
        }
    }
}
