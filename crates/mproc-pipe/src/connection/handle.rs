//! How a connection travels to another process (as an mproc handle).

use std::marker::PhantomData;
use std::os::fd::AsFd;

use mproc_shm::Segment;
use mproc_shm::handle::HandleFd;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::recv::Reader;
use super::ring::Ring;
use super::{Connection, MAX_ARENAS, OpenEnd, Shared, lock};
use crate::arena::ArenaRx;
use crate::frame::Wire;
use crate::sys::{self, FdKind};
use crate::wlock::WriteLock;

/// How a connection travels to another process.
#[derive(Serialize, Deserialize)]
struct WireForm {
    fd: HandleFd,
    readable: bool,
    writable: bool,
    mproc: bool,
    shm_threshold: Option<u64>,
    max_message: u64,
    /// Bytes already read from the socket but not yet consumed.
    buffered: Vec<u8>,
    /// The peers' arenas as mapped here, and how far each has been read.
    arenas: Vec<(Segment, u64, u64)>,
    /// The write lock shared by the copies of a writable connection.
    wlock: Option<Segment>,
    /// The ring of a `pipe` end, and which end (counted open for the
    /// receiver when sent).
    ring: Option<(Segment, u8)>,
}

impl<C> Serialize for Connection<C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let r = lock(&self.shared.reader);
        if !r.dec.is_idle() || !r.batches.is_empty() || r.socket_due > 0 {
            return Err(S::Error::custom(
                "cannot send a connection in the middle of receiving a message",
            ));
        }
        let mut arenas = Vec::with_capacity(r.arenas.len());
        for a in &r.arenas {
            let (seg, id, next) = a.parts();
            arenas.push((seg.try_clone().map_err(S::Error::custom)?, id, next));
        }
        let wlock = if self.writable {
            Some(self.write_lock().map_err(S::Error::custom)?)
        } else {
            None
        };
        let ring = match &self.shared.ring {
            Some(ring) => {
                let (seg, end) = ring.parts();
                Some((seg.try_clone().map_err(S::Error::custom)?, end as u8))
            }
            None => None,
        };
        let fd = HandleFd::new(self.fd.try_clone().map_err(S::Error::custom)?);
        // The copy that the receiver will make holds the end from now on: a
        // sender on the other side must not see it closed while it travels.
        if let Some(ring) = &self.shared.ring {
            ring.opened();
        }
        WireForm {
            fd,
            readable: self.readable,
            writable: self.writable,
            mproc: self.wire == Wire::Mproc,
            shm_threshold: self.shm_threshold.map(|t| t as u64),
            max_message: r.max as u64,
            buffered: r.buf[r.pos..r.end].to_vec(),
            arenas,
            wlock,
            ring,
        }
        .serialize(s)
    }
}

impl<'de, C> Deserialize<'de> for Connection<C> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let w = WireForm::deserialize(d)?;
        let fd = w.fd.into_inner();
        let kind = sys::fd_kind(fd.as_fd()).map_err(D::Error::custom)?;
        let wire = if w.mproc && kind == FdKind::Unix {
            Wire::Mproc
        } else {
            Wire::Cpython
        };
        let max = usize::try_from(w.max_message).unwrap_or(usize::MAX);
        let mut reader = Reader::new(max, wire);
        reader.end = w.buffered.len();
        reader.received = w.buffered.len() as u64;
        reader.buf = w.buffered;
        if w.arenas.len() > MAX_ARENAS {
            return Err(D::Error::custom("too many shared-memory arenas"));
        }
        for (seg, id, next) in w.arenas {
            let a = ArenaRx::from_parts(seg, id, next).map_err(D::Error::custom)?;
            reader.arenas.push(a);
        }
        let ring = match w.ring {
            Some(_) if kind != FdKind::Unix => {
                return Err(D::Error::custom("a pipe ring without its Unix socket"));
            }
            Some((seg, end)) => Some(Ring::adopt(seg, usize::from(end)).map_err(D::Error::custom)?),
            None => None,
        };
        let shared = Shared::new(reader, ring);
        if let Some(seg) = w.wlock {
            let l = WriteLock::adopt(seg).map_err(D::Error::custom)?;
            let _ = shared.wlock.set(l);
        }
        Ok(Self {
            fd,
            kind,
            readable: w.readable,
            writable: w.writable,
            wire,
            shm_threshold: if wire == Wire::Mproc {
                w.shm_threshold.map(|t| t as usize)
            } else {
                None
            },
            // The sender counted this copy open (see `serialize`).
            open: shared.ring.clone().map(OpenEnd),
            shared,
            _codec: PhantomData,
        })
    }
}
