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

use mproc_shm::{Acquired, HEADER_SIZE, Layout, RawMutex, Segment, fingerprint_of};

const LAYOUT: Layout = Layout {
    kind: mproc_shm::kind::PIPE_WRITE_LOCK,
    fingerprint: fingerprint_of::<RawMutex>("mproc-pipe write lock v1"),
};

/// A process-shared mutex in its own small segment.
pub(crate) struct WriteLock {
    seg: Segment,
}

impl WriteLock {
    /// A new, unlocked lock.
    pub(crate) fn create() -> io::Result<Self> {
        let seg = Segment::anonymous(HEADER_SIZE + std::mem::size_of::<RawMutex>())
            .map_err(io::Error::other)?;
        seg.header()
            .map_err(io::Error::other)?
            .init(LAYOUT, seg.len() as u64, [0; 4]);
        Ok(Self { seg })
    }

    /// Adopts a lock received from another process, checking its layout.
    pub(crate) fn adopt(seg: Segment) -> io::Result<Self> {
        seg.check_layout(LAYOUT).map_err(io::Error::other)?;
        seg.get::<RawMutex>(HEADER_SIZE).map_err(io::Error::other)?;
        Ok(Self { seg })
    }

    /// The segment, to travel with the connection.
    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    /// Runs `f` holding the lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce() -> R) -> R {
        let Ok(m) = self.seg.get::<RawMutex>(HEADER_SIZE) else {
            // `adopt` and `create` checked that the mutex fits.
            return f();
        };
        // A writer that died holding the lock may have left half a message in
        // the socket; the reader reports that, so carry on either way.
        let (Acquired::Clean | Acquired::OwnerDied) = m.lock();
        let _unlock = Unlock(m);
        f()
    }
}

/// Unlocks when dropped, also if the write panics.
struct Unlock<'a>(&'a RawMutex);

impl Drop for Unlock<'_> {
    fn drop(&mut self) {
        // SAFETY: `WriteLock::with` locked it on this thread, and nothing the
        // lock protects (the order of bytes in the socket) is touched after.
        unsafe { self.0.unlock() };
    }
}
