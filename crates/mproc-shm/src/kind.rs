//! The registry of segment kinds: the `kind` field of every segment
//! [`Header`](crate::Header) in the workspace, in one place so that no two
//! segment layouts can share a number.
//!
//! A kind says what a segment holds; the header's fingerprint then says which
//! version of that layout and which element type. The high byte names the
//! crate (0x01 mproc-shm, 0x02 mproc-sync, 0x03 mproc-queue, 0x04 mproc-pipe,
//! 0x06 mproc-pool), the low byte the object. A new segment layout takes the
//! next free number of its crate here.

/// A locked [`Value`](crate::Value).
pub const VALUE: u32 = 0x0101;
/// A [`RawValue`](crate::RawValue).
pub const RAW_VALUE: u32 = 0x0102;
/// A locked [`Array`](crate::Array).
pub const ARRAY: u32 = 0x0103;
/// A [`RawArray`](crate::RawArray).
pub const RAW_ARRAY: u32 = 0x0104;
/// A [`SharedAtomic`](crate::SharedAtomic).
pub const ATOMIC: u32 = 0x0105;

/// mproc-sync's `Lock`.
pub const LOCK: u32 = 0x0201;
/// mproc-sync's `RLock`.
pub const RLOCK: u32 = 0x0202;
/// mproc-sync's `Semaphore`.
pub const SEMAPHORE: u32 = 0x0203;
/// mproc-sync's `BoundedSemaphore`.
pub const BOUNDED_SEMAPHORE: u32 = 0x0204;
/// mproc-sync's `Condition`.
pub const CONDITION: u32 = 0x0205;
/// mproc-sync's `Event`.
pub const EVENT: u32 = 0x0206;
/// mproc-sync's `Barrier`.
pub const BARRIER: u32 = 0x0207;

/// mproc-queue's `Queue`.
pub const QUEUE: u32 = 0x0301;
/// mproc-queue's `SimpleQueue`.
pub const SIMPLE_QUEUE: u32 = 0x0302;
/// mproc-queue's `JoinableQueue`.
pub const JOINABLE_QUEUE: u32 = 0x0303;
/// The dedicated segment of a queue message too large for its ring.
pub const LARGE_MESSAGE: u32 = 0x0304;
/// mproc-queue's `LeaseQueue` (its queue segment).
pub const LEASE_QUEUE: u32 = 0x0305;
/// A `LeaseQueue`'s lease table.
pub const LEASE_TABLE: u32 = 0x0306;

/// The shared-memory ring between the two ends of an mproc-pipe `pipe()`.
pub const PIPE_ARENA: u32 = 0x0401;
/// The write lock that copies of a writable mproc-pipe connection share.
pub const PIPE_WRITE_LOCK: u32 = 0x0402;

/// An mproc-pool worker's progress block.
pub const POOL_PROGRESS: u32 = 0x0601;

/// Every kind above, for the uniqueness check.
#[cfg(test)]
const ALL: &[u32] = &[
    VALUE,
    RAW_VALUE,
    ARRAY,
    RAW_ARRAY,
    ATOMIC,
    LOCK,
    RLOCK,
    SEMAPHORE,
    BOUNDED_SEMAPHORE,
    CONDITION,
    EVENT,
    BARRIER,
    QUEUE,
    SIMPLE_QUEUE,
    JOINABLE_QUEUE,
    LARGE_MESSAGE,
    LEASE_QUEUE,
    LEASE_TABLE,
    PIPE_ARENA,
    PIPE_WRITE_LOCK,
    POOL_PROGRESS,
];

#[cfg(test)]
mod tests {
    #[test]
    fn kinds_are_distinct_and_non_zero() {
        let mut v = super::ALL.to_vec();
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), super::ALL.len());
        assert!(!v.contains(&0), "0 marks a header not yet initialised");
    }
}
