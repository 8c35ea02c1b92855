//! The control block every queue segment holds after its header.
//!
//! ```text
//! offset 0     mproc_shm::Header (128 bytes; params = [ring capacity, maxsize,
//!              overflow capacity, ring offset])
//! offset 128   Ctl: eight 128-byte lines (producer lock, tail, consumer lock, head,
//!              wait words and doorbell counts, tasks, overflow tail, overflow head)
//! offset 1152  the ring: `capacity` bytes of records
//!              then the overflow log: `overflow capacity` bytes (sparse)
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64};

use mproc_shm::{RawMutex, SharedSync};

// Layout kinds, from the workspace's registry.
pub(crate) use mproc_shm::kind::{
    JOINABLE_QUEUE as KIND_JOINABLE, LARGE_MESSAGE as KIND_LARGE, LEASE_QUEUE as KIND_LEASE,
    LEASE_TABLE as KIND_LEASE_TABLE, QUEUE as KIND_QUEUE, SIMPLE_QUEUE as KIND_SIMPLE,
};

/// Where the control block starts.
pub(crate) const CTL_OFFSET: usize = mproc_shm::HEADER_SIZE;
/// Where the ring starts.
pub(crate) const RING_OFFSET: usize = CTL_OFFSET + std::mem::size_of::<Ctl>();

/// A word on a cache line of its own, so that the other side reading it
/// does not steal the line holding a lock.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct Padded(pub(crate) AtomicU64);

/// What the producers own: written under the producer lock.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct ProducerLine {
    /// The producer lock.
    pub(crate) lock: RawMutex,
    /// The id of the last large message a producer claimed.
    pub(crate) large_seq: AtomicU64,
}

/// What the consumers own: written under the consumer lock.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct ConsumerLine {
    /// The consumer lock.
    pub(crate) lock: RawMutex,
    /// The id of the last large message a consumer started to take (stored
    /// before it looks at the side channel, so that the next holder of the
    /// lock can drop the entry of a message a killed consumer claimed).
    pub(crate) large_taken: AtomicU64,
}

/// A futex word with a waiter count: sleepers register, wakers only make a
/// system call when someone sleeps.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct WaitWord {
    /// Bumped by every notification that finds a sleeper.
    pub(crate) seq: AtomicU32,
    /// How many are registered as (about to be) sleeping (low 31 bits),
    /// and whether one registered since the last wake (top bit): see `wait`.
    pub(crate) waiters: AtomicU32,
}

/// Wait words and flags: written rarely.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct WaitLine {
    /// Consumers sleep here while the queue is empty.
    pub(crate) not_empty: WaitWord,
    /// Producers sleep here while the queue is full.
    pub(crate) not_full: WaitWord,
    /// Non-zero once `close` was called.
    pub(crate) closed: AtomicU32,
    /// How many wait on the doorbell for an item (registered under the
    /// producer lock, beside a registration on `not_empty`): see `ready`.
    pub(crate) bells: AtomicU32,
    /// How many wait on the doorbell for room (registered with SeqCst,
    /// beside a registration on `not_full`).
    pub(crate) room_bells: AtomicU32,
}

/// JoinableQueue bookkeeping.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct TaskLine {
    /// How many `task_done` calls have been made (wrapping); unfinished tasks
    /// are the number of records ever published minus this.
    pub(crate) done: AtomicU32,
    /// `join` sleeps here.
    pub(crate) all_done: WaitWord,
}

/// The overflow log's producer side: written under the producer lock, and
/// only while the log is in use.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct OverflowLine {
    /// Packed (sequence, position / 8) of the next record to write.
    pub(crate) tail: AtomicU64,
    /// The furthest byte written since the log's pages were last given back.
    pub(crate) high: AtomicU64,
}

/// The control block.
#[repr(C, align(128))]
#[derive(Debug)]
pub(crate) struct Ctl {
    pub(crate) prod: ProducerLine,
    /// Packed (sequence, position) of the next record to write; see
    /// `ring::pack`. Stored under the producer lock.
    pub(crate) tail: Padded,
    pub(crate) cons: ConsumerLine,
    /// Packed (sequence, position) of the next record to read. Stored under
    /// the consumer lock.
    pub(crate) head: Padded,
    pub(crate) wait: WaitLine,
    pub(crate) tasks: TaskLine,
    pub(crate) ovf: OverflowLine,
    /// Packed (sequence, position / 8) of the next overflow record to read.
    /// Stored under the consumer lock (or, while the log is empty, by a
    /// producer restarting it; see `overflow`).
    pub(crate) ovf_head: Padded,
}

const _: () = assert!(std::mem::size_of::<Ctl>() == 1024);
const _: () = assert!(RING_OFFSET % 128 == 0);

// SAFETY: every type below is repr(C) of atomics and RawMutex (itself
// SharedSync), all valid for every bit pattern including all zeros; padding
// from align(128) is never read.
unsafe impl SharedSync for ProducerLine {}
// SAFETY: as above.
unsafe impl SharedSync for ConsumerLine {}
// SAFETY: as above.
unsafe impl SharedSync for Padded {}
// SAFETY: as above.
unsafe impl SharedSync for WaitWord {}
// SAFETY: as above.
unsafe impl SharedSync for WaitLine {}
// SAFETY: as above.
unsafe impl SharedSync for TaskLine {}
// SAFETY: as above.
unsafe impl SharedSync for OverflowLine {}
// SAFETY: as above.
unsafe impl SharedSync for Ctl {}

impl Ctl {
    /// A zeroed control block (unlocked, empty), for rings on the heap.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn new_boxed() -> Box<Self> {
        let w = || WaitWord {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
        };
        Box::new(Self {
            prod: ProducerLine {
                lock: RawMutex::new(),
                large_seq: AtomicU64::new(0),
            },
            tail: Padded(AtomicU64::new(0)),
            cons: ConsumerLine {
                lock: RawMutex::new(),
                large_taken: AtomicU64::new(0),
            },
            head: Padded(AtomicU64::new(0)),
            wait: WaitLine {
                not_empty: w(),
                not_full: w(),
                closed: AtomicU32::new(0),
                bells: AtomicU32::new(0),
                room_bells: AtomicU32::new(0),
            },
            tasks: TaskLine {
                done: AtomicU32::new(0),
                all_done: w(),
            },
            ovf: OverflowLine {
                tail: AtomicU64::new(0),
                high: AtomicU64::new(0),
            },
            ovf_head: Padded(AtomicU64::new(0)),
        })
    }
}
