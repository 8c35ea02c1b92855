//! [`LeaseQueue`]: a queue whose items are leased, not taken, so that
//! work is never lost with its worker.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec::{Codec, Postcard, with_scratch};
use crate::core::{Consumer, Core, GetFail, Took};
use crate::error::{
    CreateError, GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use crate::layout::KIND_LEASE;
use crate::queue::{Queue, QueueBuilder};
use crate::wait::{Deadline, SLICE};

#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
mod table;

use table::{Leased, Outcome, Params, Table};

/// How often (in gets of one handle) a busy consumer looks at the clock to
/// see whether a scan for dead holders and expired leases is due.
const SCAN_EVERY: u32 = 256;
/// The least time between two scans (by any process).
const SCAN_NS: u64 = mproc_shm::wait::LIVENESS_SLICE.as_nanos() as u64;

/// Configuration for a [`LeaseQueue`]: the queue's own settings (see
/// [`QueueBuilder`]) and the lease table's.
///
/// ```
/// use std::time::Duration;
/// use mproc_queue::{LeaseQueue, LeaseQueueBuilder};
///
/// let q: LeaseQueue<String> = LeaseQueueBuilder::new()
///     .max_leases(8)
///     .lease_timeout(Duration::from_secs(30))
///     .max_deliveries(3)
///     .build()?;
/// q.put("job".to_owned())?;
/// let lease = q.get_lease()?;
/// assert_eq!(*lease, "job");
/// lease.ack()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LeaseQueueBuilder {
    queue: QueueBuilder,
    leases: usize,
    max_item: usize,
    timeout: Option<Duration>,
    max_deliveries: u32,
}

impl Default for LeaseQueueBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaseQueueBuilder {
    /// A lease queue with [`QueueBuilder::new`]'s settings, 64 leases at
    /// once, items of up to 64 KiB, leases that do not expire and no limit
    /// on deliveries.
    pub fn new() -> Self {
        Self {
            queue: QueueBuilder::new(),
            leases: 64,
            max_item: 64 << 10,
            timeout: None,
            max_deliveries: 0,
        }
    }

    /// As [`QueueBuilder::maxsize`]: the most items queued (leased ones do
    /// not count); 0 (the default) means no limit.
    pub fn maxsize(mut self, n: usize) -> Self {
        self.queue = self.queue.maxsize(n);
        self
    }

    /// As [`QueueBuilder::capacity`].
    pub fn capacity(mut self, bytes: usize) -> Self {
        self.queue = self.queue.capacity(bytes);
        self
    }

    /// As [`QueueBuilder::overflow`].
    pub fn overflow(mut self, bytes: usize) -> Self {
        self.queue = self.queue.overflow(bytes);
        self
    }

    mproc_shm::builder_setters! {
        /// The most items leased (or waiting for redelivery) at once, by all
        /// consumers together (1 to 65536; default 64). A `get_lease` beyond it
        /// waits for an ack.
        max_leases(n: usize) => leases = n;
        /// The largest item, encoded, in bytes (default 64 KiB, at most 1 GiB):
        /// every lease keeps a copy of its item in shared memory, in a slot of
        /// this size. Larger items are refused by `put` with an
        /// [`EncodeError`](crate::EncodeError). The table takes `max_leases`
        /// times this much address space; its pages are used only once written.
        max_item_size(bytes: usize) => max_item = bytes;
        /// Leases not acked within `timeout` are taken back and their items
        /// delivered again (default: leases last until their holder acks, nacks
        /// or dies). Expiry is noticed by the consumers' periodic scans, so it
        /// comes some milliseconds late; an ack that comes before it is noticed
        /// still counts.
        lease_timeout(timeout: Duration) => timeout = Some(timeout);
        /// Drops an item once it was delivered `k` times without an ack (a
        /// *poison* item, whose consumers keep dying or failing on it) instead
        /// of delivering it again; [`LeaseQueue::dropped`] counts them. 0 (the
        /// default) means no limit.
        max_deliveries(k: u32) => max_deliveries = k;
    }

    /// Creates a [`LeaseQueue`].
    ///
    /// # Errors
    /// [`CreateError`] for out-of-range settings, or when the shared memory
    /// or side channel cannot be made.
    pub fn build<T, C: Codec<T>>(self) -> Result<LeaseQueue<T, C>, CreateError> {
        if !(1..=table::MAX_SLOTS).contains(&self.leases) {
            return Err(CreateError::InvalidLeases(self.leases));
        }
        if self.max_item > table::MAX_SLOT_BYTES {
            return Err(CreateError::InvalidItemSize(self.max_item));
        }
        let fp = crate::queue::fingerprint::<T, C>();
        let core = self.queue.build_core(KIND_LEASE, fp)?;
        let timeout_ns = self.timeout.map_or(0, |t| {
            u64::try_from(t.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        let table = Table::create(
            Params {
                slots: self.leases,
                slot_bytes: self.max_item,
                max_deliveries: self.max_deliveries,
                timeout_ns,
            },
            fp,
        )
        .map_err(CreateError::Segment)?;
        Ok(LeaseQueue::assemble(core, table))
    }
}

/// A queue whose consumers *lease* items: [`get_lease`](Self::get_lease)
/// hands out an item with a [`Lease`], and the item leaves the queue for
/// good only when the lease is [acked](Lease::ack). If the consumer
/// process dies first (or, with [`LeaseQueueBuilder::lease_timeout`], the
/// lease expires), the item is delivered again to another consumer:
/// delivery is *at least once*.
///
/// * Items taken back are delivered again in the order they were first
///   delivered (put order), and before any item not yet delivered.
/// * [`Lease::delivery_count`] says how many times the item was delivered
///   (1 the first time); with [`LeaseQueueBuilder::max_deliveries`], an
///   item delivered that many times is dropped instead of delivered again.
/// * Dropping a [`Lease`] without acking it is a [`nack`](Lease::nack): the
///   item is delivered again at once (a consumer that panics gives its item
///   back this way).
/// * Taking an item and recording its lease is one step as far as a
///   SIGKILL is concerned: the item is copied into the lease table before
///   the queue lets go of it, and the next consumer finishes or undoes a
///   take that a killed one left half-done.
/// * A dead holder is noticed by the other consumers' scans: at a handle's
///   first `get_lease` (so a consumer started to replace a dead one
///   redelivers its item first), every 256 leases of a busy handle (at
///   most one scan per 20 ms among all), and whenever a consumer would
///   otherwise wait. Until a death is noticed, new items go on being
///   delivered. The check is the one the locks use for a dead owner
///   (`mproc_shm::mutex::process_alive`), with the limits stated there
///   (pid reuse, one pid namespace).
/// * Duplicates happen only for items whose lease was taken back (a dead
///   or expired holder may have done the work without acking it).
///
/// Producers use `put` as on a [`Queue`]; items are limited in size (see
/// [`LeaseQueueBuilder::max_item_size`]). The queue is a handle like
/// [`Queue`]: clones share it, and it serializes to reach other processes.
///
/// # Examples
///
/// ```
/// use mproc_queue::LeaseQueue;
///
/// let q: LeaseQueue<u32> = LeaseQueue::new()?;
/// q.put(1)?;
/// q.put(2)?;
/// let a = q.get_lease()?;
/// assert_eq!((*a, a.delivery_count()), (1, 1));
/// drop(a); // not acked: delivered again, before 2
/// let a = q.get_lease()?;
/// assert_eq!((*a, a.delivery_count()), (1, 2));
/// a.ack()?;
/// assert_eq!(*q.get_lease()?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LeaseQueue<T, C = Postcard> {
    q: Queue<T, C>,
    shared: Arc<Shared>,
}

/// What the clones of one handle share.
struct Shared {
    table: Table,
    /// The slot to look at first for a free one.
    hint: AtomicUsize,
    /// Gets by this handle, for [`SCAN_EVERY`].
    gets: AtomicU32,
}

impl<T, C> Clone for LeaseQueue<T, C> {
    fn clone(&self) -> Self {
        Self {
            q: self.q.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T, C> fmt::Debug for LeaseQueue<T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseQueue")
            .field("queue", &self.q)
            .field("table", &self.shared.table)
            .finish()
    }
}

/// A get's [`Table::want_slots`], withdrawn when it returns.
struct WantsSlots<'t> {
    t: &'t Table,
    wanted: Cell<bool>,
}

impl WantsSlots<'_> {
    fn want(&self) {
        if !self.wanted.replace(true) {
            self.t.want_slots();
        }
    }
}

impl Drop for WantsSlots<'_> {
    fn drop(&mut self) {
        if self.wanted.get() {
            self.t.unwant_slots();
        }
    }
}

enum LeaseFailure {
    Fail(GetFail),
    Decode(crate::DecodeError),
}

impl<T, C: Codec<T>> LeaseQueue<T, C> {
    /// Creates a lease queue with [`LeaseQueueBuilder::new`]'s settings.
    ///
    /// # Errors
    /// As [`LeaseQueueBuilder::build`].
    pub fn new() -> Result<Self, CreateError> {
        LeaseQueueBuilder::new().build()
    }

    fn assemble(core: Core, table: Table) -> Self {
        let max_item = table.params().slot_bytes;
        Self {
            q: Queue::from_core_limited(core, max_item),
            shared: Arc::new(Shared {
                table,
                hint: AtomicUsize::new(0),
                gets: AtomicU32::new(0),
            }),
        }
    }

    /// As [`Queue::put`].
    ///
    /// # Errors
    /// As [`Queue::put`]; [`PutError::Encode`] also for an item larger than
    /// [`LeaseQueueBuilder::max_item_size`].
    pub fn put(&self, item: T) -> Result<(), PutError<T>> {
        self.q.put(item)
    }

    /// As [`Queue::try_put`].
    ///
    /// # Errors
    /// As [`Queue::try_put`] and [`LeaseQueue::put`].
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.q.try_put(item)
    }

    /// As [`Queue::put_timeout`].
    ///
    /// # Errors
    /// As [`Queue::put_timeout`] and [`LeaseQueue::put`].
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.q.put_timeout(item, timeout)
    }

    /// As [`Queue::put_deadline`].
    ///
    /// # Errors
    /// As [`Queue::put_deadline`] and [`LeaseQueue::put`].
    pub fn put_deadline(&self, item: T, deadline: Instant) -> Result<(), PutTimeoutError<T>> {
        self.q.put_deadline(item, deadline)
    }

    /// Leases the next item: one whose lease was taken back if there is
    /// one, else the front of the queue; waits while there is none (or
    /// while [`max_leases`](LeaseQueueBuilder::max_leases) are out).
    ///
    /// # Errors
    /// [`GetError::Closed`] once the queue is closed, drained, and no lease
    /// is out (a lease still out could come back); [`GetError::Decode`] if
    /// the item cannot be decoded (it is dropped and counted in
    /// [`LeaseQueue::dropped`]); [`GetError::Broken`] if the shared state is
    /// corrupted.
    pub fn get_lease(&self) -> Result<Lease<'_, T, C>, GetError> {
        self.lease_inner(Deadline::Never).map_err(|e| match e {
            LeaseFailure::Decode(e) => GetError::Decode(e),
            LeaseFailure::Fail(GetFail::Closed | GetFail::Empty) => GetError::Closed,
            LeaseFailure::Fail(GetFail::Broken(e)) => GetError::Broken(e),
        })
    }

    /// Leases an item if one is there right now.
    ///
    /// # Errors
    /// [`TryGetError::Empty`] if none is (or every lease is out), otherwise
    /// as [`LeaseQueue::get_lease`].
    pub fn try_get_lease(&self) -> Result<Lease<'_, T, C>, TryGetError> {
        self.lease_inner(Deadline::Now).map_err(|e| match e {
            LeaseFailure::Decode(e) => TryGetError::Decode(e),
            LeaseFailure::Fail(GetFail::Empty) => TryGetError::Empty,
            LeaseFailure::Fail(GetFail::Closed) => TryGetError::Closed,
            LeaseFailure::Fail(GetFail::Broken(e)) => TryGetError::Broken(e),
        })
    }

    /// Leases an item, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`GetTimeoutError::Timeout`] if none came, otherwise as
    /// [`LeaseQueue::get_lease`].
    pub fn get_lease_timeout(&self, timeout: Duration) -> Result<Lease<'_, T, C>, GetTimeoutError> {
        self.lease_with(Deadline::after(timeout))
    }

    /// Leases an item, waiting until `deadline` at most.
    ///
    /// # Errors
    /// As [`LeaseQueue::get_lease_timeout`].
    pub fn get_lease_deadline(
        &self,
        deadline: Instant,
    ) -> Result<Lease<'_, T, C>, GetTimeoutError> {
        self.lease_with(Deadline::At(deadline))
    }

    fn lease_with(&self, deadline: Deadline) -> Result<Lease<'_, T, C>, GetTimeoutError> {
        self.lease_inner(deadline).map_err(|e| match e {
            LeaseFailure::Decode(e) => GetTimeoutError::Decode(e),
            LeaseFailure::Fail(GetFail::Empty) => GetTimeoutError::Timeout,
            LeaseFailure::Fail(GetFail::Closed) => GetTimeoutError::Closed,
            LeaseFailure::Fail(GetFail::Broken(e)) => GetTimeoutError::Broken(e),
        })
    }

    fn lease_inner(&self, deadline: Deadline) -> Result<Lease<'_, T, C>, LeaseFailure> {
        let t = &self.shared.table;
        let core = &*self.q.core;
        let me = mproc_shm::mutex::current_pid();
        with_scratch(|out| {
            // The common case: the first attempt finds an item. Made here,
            // it skips setting up the waits of `get_locked`.
            let r = match core.attempt_locked(|c| self.attempt(c, me, out)) {
                Some(r) => Some(r),
                None if deadline == Deadline::Now => None,
                None => self.lease_waiting(deadline, me, out),
            };
            let l = match r {
                Some(Ok(l)) => l,
                Some(Err(e)) => return Err(LeaseFailure::Fail(e)),
                None if core.is_closed() && t.in_use() == 0 && core.len() == 0 => {
                    return Err(LeaseFailure::Fail(GetFail::Closed));
                }
                None => return Err(LeaseFailure::Fail(GetFail::Empty)),
            };
            match C::decode(out) {
                Ok(item) => Ok(Lease {
                    q: self,
                    l,
                    item,
                    _codec: PhantomData,
                }),
                Err(e) => {
                    // Undecodable: it would fail every consumer in turn.
                    t.discard(l);
                    core.notify_consumers();
                    Err(LeaseFailure::Decode(e.into()))
                }
            }
        })
    }

    /// The attempts of a get after its first, waiting in between.
    fn lease_waiting(
        &self,
        deadline: Deadline,
        me: u32,
        out: &mut Vec<u8>,
    ) -> Option<Result<Leased, GetFail>> {
        let t = &self.shared.table;
        let wants = WantsSlots {
            t,
            wanted: Cell::new(false),
        };
        self.q.core.get_locked(
            deadline,
            |has_record, closed| {
                // Before the slots are looked at: acks notify from now on.
                wants.want();
                t.has_waiting()
                    || (has_record && t.has_free(self.hint()))
                    || (closed && !has_record && t.in_use() == 0)
            },
            || {
                if t.params().timeout_ns != 0 || t.leased_elsewhere(me) {
                    mproc_shm::wait::LIVENESS_SLICE
                } else {
                    SLICE
                }
            },
            |c| self.attempt(c, me, out),
        )
    }

    fn hint(&self) -> usize {
        // Relaxed: only where to look first.
        self.shared.hint.load(Ordering::Relaxed)
    }

    /// The steps of an attempt before a take that the common case skips:
    /// finishes a take a killed consumer left half-done, scans when due
    /// (the `n`th get of this handle), then leases an item taken back if
    /// there is one (`Err`); otherwise returns when a new lease expires.
    fn before_take(
        &self,
        c: &Consumer<'_>,
        me: u32,
        n: u32,
        out: &mut Vec<u8>,
    ) -> Result<u64, Leased> {
        let t = &self.shared.table;
        let timeout = t.params().timeout_ns;
        t.recover(c);
        let now = if timeout != 0 || n % SCAN_EVERY == 0 {
            let now = crate::sys::monotonic_ns();
            // A handle's first get always scans: a consumer started to
            // replace a dead one redelivers its item first.
            if n == 0 || t.scan_due(now, SCAN_NS) {
                t.scan(c, me, now);
            }
            now
        } else {
            0
        };
        let expires = if timeout != 0 {
            now.saturating_add(timeout)
        } else {
            0
        };
        match t.redeliver(c, me, expires, out) {
            Some(l) => Err(l),
            None => Ok(expires),
        }
    }

    /// One attempt under the consumer lock: finish a take a killed consumer
    /// left half-done, scan when due, then lease an item taken back, else
    /// take the next record into a free slot.
    fn attempt(
        &self,
        c: &Consumer<'_>,
        me: u32,
        out: &mut Vec<u8>,
    ) -> Option<Result<Leased, GetFail>> {
        let t = &self.shared.table;
        let timeout = t.params().timeout_ns;
        // Relaxed: a per-handle heuristic (a plain load and store: racing
        // threads only make a scan a little early or late).
        let n = self.shared.gets.load(Ordering::Relaxed);
        self.shared.gets.store(n.wrapping_add(1), Ordering::Relaxed);
        // The common case, told by two loads: no take to finish, nothing
        // to redeliver, no scan due and leases that do not expire (so no
        // clock either).
        let expires = if timeout == 0 && n % SCAN_EVERY != 0 && t.quiet() {
            0
        } else {
            match self.before_take(c, me, n, out) {
                Ok(expires) => expires,
                Err(l) => return Some(Ok(l)),
            }
        };
        // Nothing to take (or no room to take it): a scan may find leases
        // to take back.
        let idle = |out: &mut Vec<u8>| {
            let now = crate::sys::monotonic_ns();
            if t.scan_due(now, SCAN_NS) && t.scan(c, me, now) > 0 {
                let expires = if timeout != 0 {
                    now.saturating_add(timeout)
                } else {
                    0
                };
                return t.redeliver(c, me, expires, out).map(Ok);
            }
            None
        };
        let Some(s) = t.free_slot(self.hint()) else {
            return idle(out);
        };
        match c.take(out, &mut |b, consumed| t.keep(c, s, b, consumed)) {
            Ok(Took::Taken) => {
                // Relaxed: as in `hint`.
                self.shared.hint.store(s, Ordering::Relaxed);
                Some(t.commit(c, s, me, expires).map_err(GetFail::Broken))
            }
            Ok(Took::Empty) => {
                t.abandon(c);
                idle(out)
            }
            Ok(Took::Closed) => {
                t.abandon(c);
                if t.in_use() == 0 {
                    return Some(Err(GetFail::Closed));
                }
                idle(out)
            }
            Err(e) => {
                t.abandon(c);
                Some(Err(e))
            }
        }
    }
}

impl<T, C> LeaseQueue<T, C> {
    /// Items in the queue, not counting leased ones nor those waiting to be
    /// delivered again (a snapshot, as [`Queue::qsize`]).
    pub fn qsize(&self) -> usize {
        self.q.qsize()
    }

    /// Whether no item is queued, leased or waiting to be delivered again
    /// (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.q.is_empty() && self.shared.table.in_use() == 0
    }

    /// Items leased or waiting to be delivered again (a snapshot).
    pub fn leased(&self) -> usize {
        self.shared.table.in_use()
    }

    /// Items dropped: delivered [`max_deliveries`](LeaseQueueBuilder::max_deliveries)
    /// times without an ack, or undecodable.
    pub fn dropped(&self) -> u64 {
        self.shared.table.dropped()
    }

    /// As [`Queue::close`]: puts fail from now on; `get_lease` fails with
    /// `Closed` once the queue is drained and every lease is acked.
    pub fn close(&self) {
        self.q.close();
    }

    /// As [`Queue::is_closed`].
    pub fn is_closed(&self) -> bool {
        self.q.is_closed()
    }
}

/// Why [`Lease::ack`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AckError {
    /// The lease had expired and was taken back: the item was, or will be,
    /// delivered again.
    Expired,
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the lease expired and its item was taken back")
    }
}

impl std::error::Error for AckError {}

/// The slot of a [`Lease`] that was acked or given back (no table has
/// that many slots).
const DONE: u32 = u32::MAX;
const _: () = assert!(table::MAX_SLOTS < DONE as usize);

/// An item leased from a [`LeaseQueue`]: the item (through `Deref`, or
/// [`Lease::item`]) and the duty to [`ack`](Lease::ack) it.
///
/// Dropping a lease without acking it [nacks](Lease::nack) it: the item is
/// delivered again, before any new item.
#[must_use = "a lease that is dropped gives its item back (nack); call `ack` once done"]
pub struct Lease<'q, T, C = Postcard> {
    q: &'q LeaseQueue<T, C>,
    /// The lease; its slot is [`DONE`] once acked or given back (a
    /// sentinel, not a flag: a `bool` here makes every `Result` holding a
    /// lease slower to move).
    l: Leased,
    item: T,
    _codec: PhantomData<fn() -> C>,
}

impl<T: fmt::Debug, C> fmt::Debug for Lease<'_, T, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("item", &self.item)
            .field("delivery_count", &self.l.deliveries)
            .finish_non_exhaustive()
    }
}

impl<T, C> Lease<'_, T, C> {
    /// The leased item.
    pub fn item(&self) -> &T {
        &self.item
    }

    /// The leased item, mutably (changes are not seen by later deliveries).
    pub fn item_mut(&mut self) -> &mut T {
        &mut self.item
    }

    /// How many times this item was delivered, this time included (1 the
    /// first time).
    pub fn delivery_count(&self) -> u32 {
        self.l.deliveries
    }

    /// Finishes the item: it leaves the queue for good.
    ///
    /// # Errors
    /// [`AckError::Expired`] if the lease expired and was taken back before
    /// this call (see [`LeaseQueueBuilder::lease_timeout`]).
    pub fn ack(mut self) -> Result<(), AckError> {
        let l = self.l;
        self.l.slot = DONE;
        let t = &self.q.shared.table;
        let r = t.ack(l);
        // A consumer may wait for a free slot (or for none in use).
        if t.slots_wanted() {
            self.q.q.core.notify_consumers();
        }
        match r {
            Outcome::Done => Ok(()),
            Outcome::Lost => Err(AckError::Expired),
        }
    }

    /// Gives the item back: it is delivered again (to any consumer, this
    /// one included) before any new item. What dropping the lease does.
    pub fn nack(mut self) {
        self.give_back();
    }

    fn give_back(&mut self) {
        if self.l.slot == DONE {
            return;
        }
        let (t, core) = (&self.q.shared.table, &self.q.q.core);
        let l = self.l;
        self.l.slot = DONE;
        if core.with_consumer(|c| t.nack(c, l)) == Outcome::Done {
            core.notify_consumers();
        }
    }
}

impl<T, C> Deref for Lease<'_, T, C> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.item
    }
}

impl<T, C> DerefMut for Lease<'_, T, C> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.item
    }
}

impl<T, C> Drop for Lease<'_, T, C> {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// The queue's core, deserialized with a lease queue's kind.
struct LeaseCore<T, C>(Core, PhantomData<fn() -> (T, C)>);

impl<'de, T, C: Codec<T>> Deserialize<'de> for LeaseCore<T, C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fp = crate::queue::fingerprint::<T, C>();
        Ok(Self(Core::deserialize(d, KIND_LEASE, fp)?, PhantomData))
    }
}

/// Serializes a core as its handle.
struct CoreRef<'a>(&'a Core);

impl Serialize for CoreRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<T, C: Codec<T>> Serialize for LeaseQueue<T, C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (CoreRef(&self.q.core), self.shared.table.segment()).serialize(s)
    }
}

impl<'de, T, C: Codec<T>> Deserialize<'de> for LeaseQueue<T, C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let (core, seg) = <(LeaseCore<T, C>, mproc_shm::Segment)>::deserialize(d)?;
        let table =
            Table::open(seg, crate::queue::fingerprint::<T, C>()).map_err(D::Error::custom)?;
        Ok(Self::assemble(core.0, table))
    }
}

#[cfg(test)]
mod tests;
