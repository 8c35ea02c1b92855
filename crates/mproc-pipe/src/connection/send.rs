//! Sending: typed and raw messages, whole under the write locks.

use std::os::fd::{AsFd, BorrowedFd};

use mproc_shm::handle::collect_fds;

use super::ring::INLINE_MAX;
use super::{Connection, KEEP_SEND_BUF, lock};
use crate::arena::ArenaTx;
use crate::codec::Encode;
use crate::error::{SendBytesError, SendError};
use crate::frame::{MAX_HEADER_LEN, Wire, encode_header};
use crate::sys::{self, FdKind};

impl<C> Connection<C> {
    /// Sends a typed value (Python's `send`). On failure the value comes back
    /// inside the error.
    ///
    /// The message is the codec's encoding of the value and nothing else,
    /// exactly as CPython's `send(obj)` is `send_bytes` of the pickle: the
    /// wire does not say whether a message was sent typed or raw. With
    /// [`Postcard`](crate::Postcard), a value of a zero-sized type (`()`, a unit struct) encodes
    /// as no bytes, so `send(())` and `send_bytes(b"")` send the same empty
    /// message (CPython's `send(None)` sends a non-empty pickle); either is
    /// received by `recv::<()>()` and by `recv_bytes()`. This is deliberate:
    /// a marker byte for `()` alone would make typed messages differ from
    /// their codec's encoding, which Python peers and custom codecs rely on.
    /// Send a value with content (an enum variant, `Some(())`) when the
    /// receiver must tell the two apart.
    ///
    /// # Errors
    /// [`SendError`] wrapping a [`SendBytesError`]: `NotWritable`,
    /// `Disconnected`, `Encode`, `CannotPassHandles` or `Io`.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, b) = mproc_pipe::pipe(true)?;
    /// a.send(())?;
    /// a.send_bytes(b"")?;
    /// assert_eq!(b.recv_bytes()?, b"");
    /// b.recv::<()>()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send<T>(&self, value: T) -> Result<(), SendError<T>>
    where
        C: Encode<T>,
    {
        match self.send_ref(&value) {
            Ok(()) => Ok(()),
            Err(e) => Err(SendError::new(value, e)),
        }
    }

    /// Sends a typed value by reference.
    ///
    /// # Errors
    /// As [`Connection::send`].
    pub fn send_ref<T: ?Sized>(&self, value: &T) -> Result<(), SendBytesError>
    where
        C: Encode<T>,
    {
        if !self.writable {
            return Err(SendBytesError::NotWritable);
        }
        let mut w = lock(&self.shared.writer);
        let w = &mut *w;
        w.buf.clear();
        w.buf.extend_from_slice(&[0; MAX_HEADER_LEN]);
        let (r, fds) = collect_fds(|| C::encode(value, &mut w.buf));
        let result = match r {
            Err(e) => Err(SendBytesError::Encode(e)),
            Ok(()) if !fds.is_empty() && self.kind != FdKind::Unix => {
                Err(SendBytesError::CannotPassHandles)
            }
            Ok(()) => {
                let payload_len = w.buf.len() - MAX_HEADER_LEN;
                let inline = fds.is_empty().then_some(&w.buf[MAX_HEADER_LEN..]);
                if fds.is_empty() && self.use_shm(payload_len) {
                    self.deliver(inline, || {
                        ArenaTx::send(&mut w.arena, self.fd.as_fd(), &w.buf[MAX_HEADER_LEN..])
                    })
                } else {
                    let mut h = [0u8; MAX_HEADER_LEN];
                    let n = encode_header(payload_len as u64, &mut h);
                    w.buf[MAX_HEADER_LEN - n..MAX_HEADER_LEN].copy_from_slice(&h[..n]);
                    let inline = fds.is_empty().then_some(&w.buf[MAX_HEADER_LEN..]);
                    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                    self.deliver(inline, || {
                        sys::write_all(
                            self.fd.as_fd(),
                            self.kind,
                            &[&w.buf[MAX_HEADER_LEN - n..]],
                            &borrowed,
                        )
                        .map_err(SendBytesError::from_io)
                    })
                }
            }
        };
        if w.buf.capacity() > KEEP_SEND_BUF {
            w.buf = Vec::new();
        }
        result
    }

    fn use_shm(&self, len: usize) -> bool {
        self.wire == Wire::Mproc
            && self.kind == FdKind::Unix
            && self.shm_threshold.is_some_and(|t| len >= t)
    }

    /// Sends `buf` as one message (Python's `send_bytes`). Between mproc
    /// peers ([`Wire::Mproc`]) a large message goes through shared memory;
    /// otherwise the bytes are CPython-framed, header and payload in one
    /// write.
    ///
    /// # Errors
    /// `NotWritable`, `Disconnected` or `Io`.
    pub fn send_bytes(&self, buf: &[u8]) -> Result<(), SendBytesError> {
        if !self.writable {
            return Err(SendBytesError::NotWritable);
        }
        let mut w = lock(&self.shared.writer);
        if self.use_shm(buf.len()) {
            return self.deliver(Some(buf), || {
                ArenaTx::send(&mut w.arena, self.fd.as_fd(), buf)
            });
        }
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(buf.len() as u64, &mut h);
        self.deliver(Some(buf), || {
            sys::write_all(self.fd.as_fd(), self.kind, &[&h[..n], buf], &[])
                .map_err(SendBytesError::from_io)
        })
    }

    /// Sends one message under the write locks. On a `pipe` end, `inline`
    /// (the payload, when it carries no descriptors) goes through the
    /// shared-memory ring if it fits; otherwise `write` puts the message on
    /// the socket, and the ring announces it at its place in the order.
    /// Other connections just `write`.
    fn deliver(
        &self,
        inline: Option<&[u8]>,
        write: impl FnOnce() -> Result<(), SendBytesError>,
    ) -> Result<(), SendBytesError> {
        let Some(ring) = self.shared.ring.as_deref() else {
            return self.exclusive(write);
        };
        let fd = self.fd.as_fd();
        // A ring takes messages that nobody will read: the socket says
        // whether the other end is really gone.
        if ring.peer_closed() && sys::peer_gone(fd) {
            return Err(SendBytesError::Disconnected);
        }
        match inline.filter(|b| b.len() <= INLINE_MAX) {
            Some(b) => self.exclusive(|| ring.push(fd, false, b)),
            // Announce, then write: a frame larger than the socket's buffer
            // is written only while the receiver reads it, and the receiver
            // reads the socket for the frames the ring has announced.
            None => self.exclusive(|| {
                ring.push(fd, true, &[])?;
                write()
            }),
        }
    }

    /// Runs one message's write, holding the process-shared write lock once
    /// the connection has copies in other processes. The caller holds the
    /// writer's mutex, which serializes the clones in this process.
    fn exclusive<R>(&self, write: impl FnOnce() -> R) -> R {
        match self.shared.wlock.get() {
            Some(l) => l.with(write),
            None => write(),
        }
    }

    /// Sends `size` bytes of `buf` from `offset` (all the rest when `size` is
    /// `None`), as Python's `send_bytes(buf, offset, size)`.
    ///
    /// # Errors
    /// [`SendBytesError::OutOfRange`] if the range does not fit, else as
    /// [`Connection::send_bytes`].
    pub fn send_bytes_range(
        &self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<(), SendBytesError> {
        let size_v = size.unwrap_or(buf.len().saturating_sub(offset));
        match offset.checked_add(size_v) {
            Some(end) if offset <= buf.len() && end <= buf.len() => {
                self.send_bytes(&buf[offset..end])
            }
            _ => Err(SendBytesError::OutOfRange {
                offset,
                size: size_v,
                len: buf.len(),
            }),
        }
    }
}
