//! Multi-producer multi-consumer queues in shared memory, for any number of
//! processes: CPython's `Queue`, `SimpleQueue` and `JoinableQueue` without
//! the feeder thread, the pipe and their traps.
//!
//! # Hello, world!
//!
//! ```
//! use mproc_queue::Queue;
//!
//! let q: Queue<String> = Queue::new(8)?;
//! q.put("hello".to_owned())?;
//! assert_eq!(q.get()?, "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Queues
//!
//! [`Queue`] (with an optional item limit), [`JoinableQueue`] (adds
//! `task_done`/`join`), [`SimpleQueue`] (no limit, no timeouts) and
//! [`LeaseQueue`] (items acked by their consumers, see below). Blocking
//! operations come as `put`/`try_put`/`put_timeout`/`put_deadline` and
//! `get`/`try_get`/`get_timeout`/`get_deadline`; `qsize`, `is_empty` and
//! `is_full` read shared counters.
//!
//! # Batches
//!
//! [`Queue::put_many`] and [`Queue::get_many`] (with `try_`, `_timeout` and
//! `_deadline` forms) move many small items per exchange of the ring's
//! header words: a producer publishes a group of records with one store,
//! a consumer claims a run of them with one compare-and-swap. The crash
//! guarantees are those of single puts: once `put_many` returns, every
//! item is in the queue; a producer killed in the middle leaves a prefix
//! of its items (whole, in order, none after a missing one). A consumer
//! killed in the middle of `get_many` loses at most the run it had
//! claimed.
//!
//! # Leases
//!
//! [`LeaseQueue`] delivers each item *at least once*: `get_lease` hands out
//! the item with a [`Lease`], and the item is gone only once the lease is
//! acked. Items whose consumer died (or whose lease expired, or was
//! dropped without an ack) are delivered again, first and in order, with a
//! delivery count, and a poison item can be dropped after a number of
//! deliveries.
//!
//! # How it works
//!
//! Each queue is one anonymous shared memory segment (a checked header, a
//! control block, a ring of length-prefixed records and an overflow log)
//! plus a Unix socket pair that carries the descriptors of messages too
//! large for the ring. Producers serialize into a thread-local buffer, then
//! copy the record into the ring under a producer lock and publish it with
//! one atomic store; consumers copy a record out and claim it with one
//! compare-and-swap, without a lock (a consumer lock orders only the
//! messages that travel as descriptors). No lock is held while encoding or
//! decoding. A process killed at any point leaves no torn record visible and
//! no lock held (the locks recover from the death of their owner); waiting
//! uses futexes after a short spin.
//!
//! When the ring is full and its consumers do not make room within a couple
//! of milliseconds (or at once, for `try_put`), records go to the overflow
//! log: a region of up to 16 GiB whose memory exists only while items are
//! in it and is given back once consumers drained it. Records leave in put
//! order whichever store holds them. So a queue without an item limit never
//! keeps a producer waiting on consumers, and a process may put any amount
//! and exit before anyone gets it.
//!
//! # Codecs
//!
//! Items are encoded with [`Postcard`] by default; plain-data items can use
//! [`Pod`], and `Vec<u8>` items [`Bytes`], which copy the bytes with no
//! encoding. mproc handles (queues,
//! locks, segments) cannot travel inside items: putting one is an
//! [`EncodeError`] (send handles as process arguments instead).
//!
//! # Differences from CPython
//!
//! * `put` never returns before the item is in shared memory: no feeder
//!   thread, no `join_thread`/`cancel_join_thread`, encode errors are returned,
//!   and a process may exit right after `put` without losing the item.
//! * [`close`](Queue::close) closes the queue for *every* process that shares
//!   it (CPython's only concerns the calling process's feeder): later puts
//!   fail with `Closed`, consumers drain what is left and then get `Closed`.
//! * `maxsize` counts items as in CPython, and 0 means no item limit. The
//!   bytes are bounded too, but only by the overflow log (16 GiB by default,
//!   see [`QueueBuilder::overflow`]): a put waits for consumers only when
//!   the log is full. Items larger than a quarter of the ring (1 MiB by
//!   default, see [`QueueBuilder::capacity`]) each go into a segment of
//!   their own, whose descriptor travels over the side channel; when that
//!   channel is full (a few hundred such items in flight), they are copied
//!   into the log instead.
//! * `qsize`, `is_empty` and `is_full` read shared counters, so they work on
//!   every platform; like CPython's they are snapshots while others work.
//! * A process killed in the middle of `put` or `get` neither corrupts nor
//!   locks the queue (the locks detect the death of their owner); a consumer
//!   killed in the middle of `get` loses at most the item it was taking, and
//!   only if it had claimed it: every item, large ones included, is copied
//!   out before it is claimed.
//! * CPython lets a queue reach another process only by inheritance; these
//!   queues serialize as handles and travel any way mproc sends handles.
//!
//! # Waiting on many things, and async
//!
//! The queues are [`Waitable`](mproc_shm::ready::Waitable): `mproc_pipe::wait`
//! (or [`mproc_shm::ready::wait`]) takes them beside connections, process
//! handles and events, and reports a queue when `get` would not block. The
//! descriptor behind it is a doorbell (an eventfd) that producers ring only
//! while somebody waits: a put pays nothing for it otherwise.
//!
//! # Features
//!
//! * `tokio`: `get_async` and `put_async` on the three queues, awaiting the
//!   doorbell through tokio's reactor (no thread per waiter, no timer).
//!   `get_async` is cancellation-safe; dropping a `put_async` future that
//!   waits for room drops its item.
//! * `tracing`: `tracing` events from the [`LeaseQueue`]: a lease taken
//!   back for redelivery (`warn`: the dead consumer's pid, or an expired
//!   lease, and the deliveries so far), the item redelivered (`info`), an
//!   item dropped after its last delivery (`warn`).
//!
//! # Handles
//!
//! Queues implement `Serialize`/`Deserialize` as handles (see
//! [`mproc_shm::handle`]): serialized inside `collect_fds` they carry their
//! segment and socket descriptors, so they reach child processes under every
//! start method. `Clone` shares a queue within a process.

#![doc(test(attr(deny(warnings))))]

mod codec;
mod core;
mod error;
mod layout;
mod lease;
mod overflow;
mod queue;
mod ready;
mod records;
mod ring;
mod sys;
mod wait;

#[cfg(any(test, fuzzing))]
mod fuzz;

pub use crate::codec::{Bytes, Codec, CodecError, Encode, Pod, Postcard};
pub use crate::error::{
    BrokenError, CreateError, DecodeError, EncodeError, GetError, GetTimeoutError,
    JoinTimeoutError, PutError, PutManyError, PutTimeoutError, TaskDoneError, TryGetError,
    TryPutError,
};
pub use crate::lease::{AckError, Lease, LeaseQueue, LeaseQueueBuilder};
pub use crate::queue::{JoinableQueue, Queue, QueueBuilder, SimpleQueue};

/// Entry points for the fuzz targets in `fuzz/` (only under `cfg(fuzzing)`).
/// Not part of the supported API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod __private {
    /// Fuzzes the ring's record parser and protocol; see `fuzz/fuzz_targets/queue_record.rs`.
    pub fn queue_record(data: &[u8]) {
        crate::fuzz::queue_record(data);
    }

    /// Fuzzes the lease table; see `fuzz/fuzz_targets/lease_table.rs`.
    pub fn lease_table(data: &[u8]) {
        crate::lease::fuzz::lease_table(data);
    }
}
