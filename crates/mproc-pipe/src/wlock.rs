//! The write lock shared by the copies of a connection in several processes.
//!
//! Clones in one process take turns through the connection's own mutex. A
//! copy sent to another process has its own state, and the kernel splits a
//! large write to a stream socket into pieces that another writer's pieces
//! may come between. So once a writable connection has been sent to another
//! process, every copy sends each message (header and payload, or a
//! shared-memory record) under this process-shared mutex, and messages from
//! different processes are never interleaved.

use std::io;
use std::ptr::NonNull;

use mproc_shm::{LockRef, RawMutex, Segment, TypedSegment};

const TAG: &str = "mproc-pipe write lock v1";

/// A process-shared mutex in its own small segment.
pub(crate) struct WriteLock {
    seg: TypedSegment<RawMutex>,
}

impl WriteLock {
    /// A new, unlocked lock.
    pub(crate) fn create() -> io::Result<Self> {
        let seg = TypedSegment::create(mproc_shm::kind::PIPE_WRITE_LOCK, TAG, [0; 4], |_| {})
            .map_err(io::Error::other)?;
        Ok(Self { seg })
    }

    /// Adopts a lock received from another process, checking its layout.
    pub(crate) fn adopt(seg: Segment) -> io::Result<Self> {
        let (seg, _) = TypedSegment::open(seg, mproc_shm::kind::PIPE_WRITE_LOCK, TAG)
            .map_err(io::Error::other)?;
        Ok(Self { seg })
    }

    /// The segment, to travel with the connection.
    pub(crate) fn segment(&self) -> &Segment {
        self.seg.segment()
    }

    /// Runs `f` holding the lock (released also if `f` panics).
    pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: the lock protects no memory (only the order of bytes in the
        // socket), so the data is `()`, for which a dangling pointer is valid.
        let lock = unsafe { LockRef::new(self.seg.get(), NonNull::<()>::dangling()) };
        // A writer that died holding the lock may have left half a message in
        // the socket; the reader reports that, so carry on either way.
        let _held = lock.lock().unwrap_or_else(mproc_shm::LockError::into_inner);
        f()
    }
}
