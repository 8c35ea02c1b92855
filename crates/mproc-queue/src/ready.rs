//! Waiting on queues through a descriptor: [`Waitable`] for the three queue
//! types (ready when `get` would not block) and, with the `tokio` feature,
//! their async `get`/`put`.
//!
//! Each queue carries two [`Doorbell`](mproc_shm::ready::Doorbell)s (eventfds
//! that travel with the queue's segment): `bell` for items, `room_bell` for
//! room. A waiter counts itself in `Ctl::wait` (`bells` / `room_bells`)
//! *and* registers on the futex word that producers (consumers) already read
//! after every put (get) — `not_empty` (`not_full`). So a put costs nothing
//! more while nobody waits; only a put that finds the word armed (some
//! waiter, of either kind, registered since the last wake) reads the count
//! and rings. A waiter that the doorbell woke for nothing re-arms
//! ([`Core::bell_rearm`]): it drains the doorbell, arms the word again, and
//! rings at once if the queue turned ready meanwhile, so that another
//! waiter, woken by the ring it drained, does not miss it.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{Ordering, fence};

use mproc_shm::ready::Waitable;

use crate::core::Core;
use crate::queue::{JoinableQueue, Queue, SimpleQueue};

/// Which condition a doorbell waiter waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// An item (or the queue closed): `get` would not block.
    Item,
    /// Room (or the queue closed): `put` would not block.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Room,
}

/// Saturating decrement (a count another process may have left at zero).
fn release(count: &std::sync::atomic::AtomicU32, order: Ordering) {
    let _ = count.fetch_update(order, Ordering::Relaxed, |c| c.checked_sub(1));
}

impl Core {
    /// After a put woke `not_empty`: rings the item doorbell if anybody
    /// waits on it.
    #[cold]
    pub(crate) fn ring_for_items(&self) {
        // Relaxed: a waiter counts itself under the producer lock, which
        // this producer held when it read `not_empty` armed; a waiter that
        // counts itself later re-checks the queue and sees the item.
        if self.ctl().wait.bells.load(Ordering::Relaxed) != 0 {
            self.bell.ring();
        }
    }

    /// After a get woke `not_full`: rings the room doorbell if anybody
    /// waits on it.
    #[cold]
    pub(crate) fn ring_for_room(&self) {
        // SeqCst: pairs with the SeqCst count and registration in
        // `bell_register`; the caller read `not_full` armed with SeqCst.
        if self.ctl().wait.room_bells.load(Ordering::SeqCst) != 0 {
            self.room_bell.ring();
        }
    }

    /// The doorbell for `want`.
    pub(crate) fn bell_for(&self, want: Want) -> &mproc_shm::ready::Doorbell {
        match want {
            Want::Item => &self.bell,
            Want::Room => &self.room_bell,
        }
    }

    /// Whether `want` holds now (a snapshot).
    pub(crate) fn ready_for(&self, want: Want) -> bool {
        self.is_closed()
            || match want {
                Want::Item => self.records().has_record(),
                Want::Room => !self.is_full(),
            }
    }

    /// Counts a doorbell waiter and arms the word its wakers read. The
    /// caller re-checks [`ready_for`](Self::ready_for) afterwards.
    pub(crate) fn bell_register(&self, want: Want) {
        let w = &self.ctl().wait;
        match want {
            Want::Item => {
                // Under the producer lock, under which producers publish
                // and read `not_empty` (see `wait`).
                let _g = self.lock_prod();
                // Relaxed: ordered by the lock.
                w.bells.fetch_add(1, Ordering::Relaxed);
                w.not_empty.register();
            }
            Want::Room => {
                // SeqCst, then a fence: consumers free room with a SeqCst
                // swap and then read `not_full` and `room_bells` with
                // SeqCst (see `WaitWord::register_fenced`).
                w.room_bells.fetch_add(1, Ordering::SeqCst);
                w.not_full.register_seqcst();
                fence(Ordering::SeqCst);
            }
        }
    }

    /// Withdraws a [`bell_register`](Self::bell_register).
    pub(crate) fn bell_unregister(&self, want: Want) {
        let w = &self.ctl().wait;
        match want {
            Want::Item => {
                // Relaxed: a stale count costs at most a spurious ring.
                release(&w.bells, Ordering::Relaxed);
                w.not_empty.unregister();
            }
            Want::Room => {
                release(&w.room_bells, Ordering::Relaxed);
                w.not_full.unregister();
            }
        }
    }

    /// A registered waiter that the doorbell woke found the queue not
    /// ready: drain, arm the word again (a wake disarms it until somebody
    /// registers), and ring again if it turned ready meanwhile.
    pub(crate) fn bell_rearm(&self, want: Want) {
        let bell = self.bell_for(want);
        bell.drain();
        let w = &self.ctl().wait;
        match want {
            Want::Item => {
                let _g = self.lock_prod();
                w.not_empty.rearm();
            }
            Want::Room => {
                w.not_full.rearm();
                // SeqCst: as in `bell_register`.
                fence(Ordering::SeqCst);
            }
        }
        if self.ready_for(want) {
            bell.ring();
        }
    }
}

/// The [`Waitable`] of a queue: ready when `get` would not block (an
/// item, or the queue closed).
impl<T, C> Waitable for Queue<T, C> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.core.bell.as_fd()
    }
    fn ready_now(&self) -> bool {
        self.core.ready_for(Want::Item)
    }
    fn is_doorbell(&self) -> bool {
        true
    }
    fn register(&self) {
        self.core.bell_register(Want::Item);
    }
    fn unregister(&self) {
        self.core.bell_unregister(Want::Item);
    }
    fn rearm(&self) {
        self.core.bell_rearm(Want::Item);
    }
}

macro_rules! waitable_wrapper {
    ($($t:ident),*) => {$(
        /// As for [`Queue`]: ready when `get` would not block.
        impl<T, C> Waitable for $t<T, C> {
            fn wait_fd(&self) -> BorrowedFd<'_> {
                self.q.wait_fd()
            }
            fn ready_now(&self) -> bool {
                self.q.ready_now()
            }
            fn is_doorbell(&self) -> bool {
                true
            }
            fn register(&self) {
                self.q.register();
            }
            fn unregister(&self) {
                self.q.unregister();
            }
            fn rearm(&self) {
                self.q.rearm();
            }
        }
    )*};
}

waitable_wrapper!(SimpleQueue, JoinableQueue);

/// One condition of one queue, as a [`Waitable`] (for the async methods).
#[cfg(feature = "tokio")]
struct Cond<'a>(&'a Core, Want);

#[cfg(feature = "tokio")]
impl Waitable for Cond<'_> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.0.bell_for(self.1).as_fd()
    }
    fn ready_now(&self) -> bool {
        self.0.ready_for(self.1)
    }
    fn is_doorbell(&self) -> bool {
        true
    }
    fn register(&self) {
        self.0.bell_register(self.1);
    }
    fn unregister(&self) {
        self.0.bell_unregister(self.1);
    }
    fn rearm(&self) {
        self.0.bell_rearm(self.1);
    }
}

#[cfg(feature = "tokio")]
mod asynchronous {
    use super::{Cond, Want};
    use crate::codec::Codec;
    use crate::error::{BrokenError, GetError, PutError, TryGetError, TryPutError};
    use crate::queue::{JoinableQueue, Queue, SimpleQueue};

    impl<T, C: Codec<T>> Queue<T, C> {
        /// Takes the item at the front, awaiting one while the queue is
        /// empty (the async [`get`](Queue::get)). Needs a tokio runtime
        /// with I/O enabled; no thread waits: the runtime's reactor watches
        /// the queue's doorbell, which producers ring only while somebody
        /// waits.
        ///
        /// Cancellation-safe: an item is taken only in a synchronous step
        /// that the future returns right after, so dropping the future never
        /// loses one.
        ///
        /// # Errors
        /// As [`Queue::get`]; [`GetError::Broken`] also when the doorbell
        /// cannot be watched (no runtime, out of descriptors).
        pub async fn get_async(&self) -> Result<T, GetError> {
            loop {
                match self.try_get() {
                    Ok(v) => return Ok(v),
                    Err(TryGetError::Empty) => {}
                    Err(TryGetError::Closed) => return Err(GetError::Closed),
                    Err(TryGetError::Decode(e)) => return Err(GetError::Decode(e)),
                    Err(TryGetError::Broken(e)) => return Err(GetError::Broken(e)),
                }
                mproc_shm::ready::ready(&Cond(&self.core, Want::Item))
                    .await
                    .map_err(|e| GetError::Broken(BrokenError::io(e)))?;
            }
        }

        /// Puts `item` at the back, awaiting room while the queue is full
        /// (the async [`put`](Queue::put); a queue without `maxsize` is
        /// never full, see the crate docs).
        ///
        /// Not cancellation-safe in one respect: dropping the future while
        /// it awaits room drops the item (it was not put, and nothing is
        /// half-put).
        ///
        /// # Errors
        /// As [`Queue::put`], handing the item back; [`PutError::Broken`]
        /// also when the doorbell cannot be watched.
        pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
            let mut item = item;
            loop {
                match self.try_put(item) {
                    Ok(()) => return Ok(()),
                    Err(TryPutError::Full(t)) => item = t,
                    Err(TryPutError::Closed(t)) => return Err(PutError::Closed(t)),
                    Err(TryPutError::Encode(t, e)) => return Err(PutError::Encode(t, e)),
                    Err(TryPutError::Broken(t, e)) => return Err(PutError::Broken(t, e)),
                }
                if let Err(e) = mproc_shm::ready::ready(&Cond(&self.core, Want::Room)).await {
                    return Err(PutError::Broken(item, BrokenError::io(e)));
                }
            }
        }
    }

    macro_rules! async_wrapper {
        ($($t:ident),*) => {$(
            impl<T, C: Codec<T>> $t<T, C> {
                /// As [`Queue::get_async`] (cancellation-safe).
                ///
                /// # Errors
                /// As [`Queue::get_async`].
                pub async fn get_async(&self) -> Result<T, GetError> {
                    self.q.get_async().await
                }

                /// As [`Queue::put_async`] (dropping the future drops the item).
                ///
                /// # Errors
                /// As [`Queue::put_async`].
                pub async fn put_async(&self, item: T) -> Result<(), PutError<T>> {
                    self.q.put_async(item).await
                }
            }
        )*};
    }

    async_wrapper!(SimpleQueue, JoinableQueue);
}
