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
//! `task_done`/`join`) and [`SimpleQueue`] (no limit, no timeouts). Blocking
//! operations come as `put`/`try_put`/`put_timeout`/`put_deadline` and
//! `get`/`try_get`/`get_timeout`/`get_deadline`; `qsize`, `is_empty` and
//! `is_full` read shared counters.
//!
//! # How it works
//!
//! Each queue is one anonymous shared memory segment (a checked header, a
//! control block and a ring of length-prefixed records) plus a Unix socket
//! pair that carries the descriptors of messages too large for the ring.
//! Producers serialize into a thread-local buffer, then copy the record into
//! the ring under a producer lock and publish it with one atomic store;
//! consumers copy a record out under a consumer lock and consume it with one
//! atomic store. Neither lock is held while encoding or decoding. A process
//! killed at any point leaves no torn record visible and no lock held (the
//! locks recover from the death of their owner); waiting uses futexes after a
//! short spin.
//!
//! # Codecs
//!
//! Items are encoded with [`Postcard`] by default; plain-data items can use
//! [`Pod`], and `Vec<u8>` items [`Bytes`], which copy the bytes with no
//! encoding. mproc handles (queues,
//! locks, segments) cannot travel inside items: putting one is an
//! [`EncodeError`] (send handles as process arguments instead).
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
mod queue;
mod ring;
#[cfg_attr(target_os = "linux", path = "sys/linux.rs")]
#[cfg_attr(not(target_os = "linux"), path = "sys/unsupported.rs")]
mod sys;
mod wait;

#[cfg(any(test, fuzzing))]
mod fuzz;

pub use crate::codec::{Bytes, Codec, Pod, Postcard};
pub use crate::error::{
    BrokenError, CreateError, DecodeError, EncodeError, GetError, GetTimeoutError,
    JoinTimeoutError, PutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
pub use crate::queue::{JoinableQueue, Queue, QueueBuilder, SimpleQueue};

/// Entry points for the fuzz targets in `fuzz/` (only under `cfg(fuzzing)`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod __fuzz {
    /// Fuzzes the ring's record parser and protocol; see `fuzz/fuzz_targets/queue_record.rs`.
    pub fn queue_record(data: &[u8]) {
        crate::fuzz::queue_record(data);
    }
}
