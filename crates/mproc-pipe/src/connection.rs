//! `Connection` and `pipe`: framed, typed or raw messages over a socket.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use mproc_shm::Segment;
use mproc_shm::handle::{HandleFd, collect_fds, provide_fds};
use mproc_shm::wait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::arena::{ArenaRx, ArenaTx};
use crate::codec::{Codec, Postcard};
use crate::error::{RecvError, SendBytesError, SendError};
use crate::frame::{DEFAULT_MAX_MESSAGE, Frame, FrameDecoder, MAX_HEADER_LEN, Wire, encode_header};
use crate::sys::{self, FdKind};
use crate::wlock::WriteLock;

/// The read-ahead buffer: small messages arrive with one system call each.
const READ_BUF: usize = 64 << 10;
/// Payloads with at least this many bytes still missing are read straight
/// into their destination, bypassing the read-ahead buffer.
const DIRECT_MIN: usize = 16 << 10;
/// The default size from which [`Wire::Mproc`] connections send messages
/// through shared memory.
pub const DEFAULT_SHM_THRESHOLD: usize = 256 << 10;
/// The most shared-memory arenas a receiving end maps at once: one per
/// process sending large messages through copies of the other end. Beyond
/// it, the least recently used is unmapped (a sender killed before it
/// could retire its arena leaves one behind).
const MAX_ARENAS: usize = 64;
/// A send buffer larger than this is freed after use rather than kept.
const KEEP_SEND_BUF: usize = 1 << 20;

/// Creates a connected pair of connections (Python's `Pipe(duplex)`).
///
/// With `duplex`, both ends can send and receive. Without, the first end can
/// only receive and the second only send (Python's `(reader, writer)`).
/// Both ends speak [`Wire::Mproc`]: messages of [`DEFAULT_SHM_THRESHOLD`]
/// bytes or more travel through shared memory.
///
/// # Errors
/// The OS error if the socket pair cannot be created.
///
/// # Examples
///
/// ```
/// let (a, b) = mproc_pipe::pipe(true)?;
/// a.send(vec![1u32, 2, 3])?;
/// assert_eq!(b.recv::<Vec<u32>>()?, [1, 2, 3]);
/// b.send_bytes(b"pong")?;
/// assert_eq!(a.recv_bytes()?, b"pong");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe(duplex: bool) -> io::Result<(Connection, Connection)> {
    let (x, y) = sys::socketpair()?;
    let (rx_side, tx_side) = if duplex {
        ((true, true), (true, true))
    } else {
        ((true, false), (false, true))
    };
    if !duplex {
        // The unused directions are shut, so a wrong-end peer sees a closed
        // socket rather than a silent black hole.
        sys::shutdown(x.as_fd(), libc::SHUT_WR)?;
        sys::shutdown(y.as_fd(), libc::SHUT_RD)?;
    }
    let mut a = Connection::build(x, FdKind::Unix, rx_side.0, rx_side.1);
    let mut b = Connection::build(y, FdKind::Unix, tx_side.0, tx_side.1);
    a.set_wire(Wire::Mproc);
    b.set_wire(Wire::Mproc);
    Ok((a, b))
}

/// Descriptors that arrived with the bytes at stream positions `start..end`.
struct FdBatch {
    start: u64,
    end: u64,
    fds: Vec<OwnedFd>,
}

struct Reader {
    dec: FrameDecoder,
    /// The connection's largest accepted message (the decoder's may be
    /// lowered for one `recv_bytes_max` call).
    max: usize,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Bytes received from the descriptor so far (stream position of `buf[end]`).
    received: u64,
    /// Stream position where the frame being decoded began.
    frame_start: u64,
    batches: VecDeque<FdBatch>,
    /// The arenas of the senders on the other side (one per sending process
    /// when the peer end is shared; see [`MAX_ARENAS`]).
    arenas: Vec<ArenaRx>,
    eof: bool,
    broken: bool,
    /// Until the first message: refuse it if it is an authkey challenge.
    refuse_challenge: bool,
}

impl Reader {
    fn new(max: usize, wire: Wire) -> Self {
        Self {
            dec: FrameDecoder::with_wire(max, wire),
            max,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            received: 0,
            frame_start: 0,
            batches: VecDeque::new(),
            arenas: Vec::new(),
            eof: false,
            broken: false,
            refuse_challenge: false,
        }
    }

    fn stream_pos(&self) -> u64 {
        self.received - (self.end - self.pos) as u64
    }

    /// The descriptors that belong to the frame at `start..next`.
    ///
    /// A sender attaches a frame's descriptors to its first byte, and Linux
    /// ends a `recvmsg` right after the message that carried descriptors. So
    /// descriptors that arrived in a read covering `a..b` belong to the last
    /// frame that starts in `a..b`. Batches matching no frame start (only a
    /// misbehaving peer sends those) are closed.
    fn claim_fds(&mut self, start: u64, next: u64) -> Vec<OwnedFd> {
        let mut out = Vec::new();
        while let Some(b) = self.batches.front() {
            if b.end <= start {
                self.batches.pop_front();
            } else if b.start <= start && next >= b.end {
                if let Some(b) = self.batches.pop_front() {
                    out.extend(b.fds);
                }
            } else {
                break;
            }
        }
        out
    }
}

struct Writer {
    buf: Vec<u8>,
    arena: Option<ArenaTx>,
}

/// When a blocking call gives up.
#[derive(Clone, Copy)]
enum Deadline {
    Never,
    At(Instant),
}

impl Deadline {
    fn after(d: Duration) -> Self {
        sys::deadline_after(d).map_or(Self::Never, Self::At)
    }
}

impl From<Deadline> for wait::Deadline {
    fn from(d: Deadline) -> Self {
        match d {
            Deadline::Never => Self::Never,
            Deadline::At(t) => Self::At(t),
        }
    }
}

/// One end of a message channel (Python's `multiprocessing.connection.Connection`).
///
/// Messages are framed exactly as CPython frames them, so a `Connection` can
/// talk to a Python process (see [`Wire`]). Typed messages use the codec `C`
/// ([`Postcard`] by default); raw messages are `send_bytes`/`recv_bytes`.
///
/// Methods take `&self`: one thread may send while another receives, and
/// messages from concurrent senders are never interleaved. A connection is a
/// handle: it can be sent to another process (as a process argument or
/// inside a message on another connection), which receives a duplicate of
/// its socket. Values sent with [`Connection::send`] may themselves contain
/// mproc handles (segments, connections) on Unix-socket connections.
///
/// Dropping a connection closes it; [`Connection::close`] does the same and
/// reports errors.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (a, b) = mproc_pipe::pipe(true)?;
/// assert!(!b.poll(Duration::ZERO)?);
/// a.send(&("job", 7u64))?;
/// assert!(b.poll(Duration::from_secs(5))?);
/// let (name, n): (String, u64) = b.recv()?;
/// assert_eq!((name.as_str(), n), ("job", 7));
/// drop(a);
/// assert!(b.recv_bytes().unwrap_err().is_eof());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Connection<C = Postcard> {
    fd: OwnedFd,
    kind: FdKind,
    readable: bool,
    writable: bool,
    wire: Wire,
    shm_threshold: Option<usize>,
    shared: Arc<Shared>,
    _codec: PhantomData<fn() -> C>,
}

/// What the clones of a connection made by [`Connection::try_clone`] share:
/// they read and write one stream, so they take turns through these.
struct Shared {
    reader: Mutex<Reader>,
    writer: Mutex<Writer>,
    /// Set when an oversized or malformed message made the connection
    /// unreadable; read without the reader's lock by `readable`, `poll`
    /// and `wait`.
    unreadable: AtomicBool,
    /// The process-shared write lock, made when a writable copy of the
    /// connection first leaves for another process.
    wlock: OnceLock<WriteLock>,
}

impl Shared {
    fn new(reader: Reader) -> Arc<Self> {
        Arc::new(Self {
            reader: Mutex::new(reader),
            writer: Mutex::new(Writer {
                buf: Vec::new(),
                arena: None,
            }),
            unreadable: AtomicBool::new(false),
            wlock: OnceLock::new(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Connection<Postcard> {
    /// Wraps a connected stream socket or pipe descriptor, readable and
    /// writable, speaking CPython's framing.
    ///
    /// # Errors
    /// The OS error if the descriptor cannot be inspected.
    pub fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        Self::from_fd_with(fd, true, true)
    }

    /// Wraps a descriptor with the given directions (at least one).
    ///
    /// # Errors
    /// `InvalidInput` if neither direction is allowed; the OS error if the
    /// descriptor cannot be inspected.
    pub fn from_fd_with(fd: OwnedFd, readable: bool, writable: bool) -> io::Result<Self> {
        if !readable && !writable {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "at least one of readable and writable must be set",
            ));
        }
        let kind = sys::fd_kind(fd.as_fd())?;
        Ok(Self::build(fd, kind, readable, writable))
    }

    fn build(fd: OwnedFd, kind: FdKind, readable: bool, writable: bool) -> Self {
        Self {
            fd,
            kind,
            readable,
            writable,
            wire: Wire::Cpython,
            shm_threshold: None,
            shared: Shared::new(Reader::new(DEFAULT_MAX_MESSAGE, Wire::Cpython)),
            _codec: PhantomData,
        }
    }
}

impl<C: Codec> Connection<C> {
    /// The same connection with another codec for typed messages.
    pub fn with_codec<D: Codec>(self) -> Connection<D> {
        Connection {
            fd: self.fd,
            kind: self.kind,
            readable: self.readable,
            writable: self.writable,
            wire: self.wire,
            shm_threshold: self.shm_threshold,
            shared: self.shared,
            _codec: PhantomData,
        }
    }

    /// Whether this end can receive: `false` for the write-only end of a
    /// one-way pipe, and from the moment an oversized or malformed message
    /// made the connection unreadable (as CPython's `readable` after
    /// "bad message length").
    pub fn readable(&self) -> bool {
        self.readable && !self.is_unreadable()
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The framing dialect spoken.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    /// Sets the framing dialect. [`Wire::Mproc`] enables the shared-memory
    /// path for large messages, at [`DEFAULT_SHM_THRESHOLD`]; set it only when
    /// the peer is mproc too, since a Python peer cannot read those messages.
    /// It is ignored (stays [`Wire::Cpython`]) on connections that cannot
    /// carry descriptors.
    pub fn set_wire(&mut self, wire: Wire) {
        let wire = if self.kind == FdKind::Unix {
            wire
        } else {
            Wire::Cpython
        };
        self.wire = wire;
        self.shm_threshold = (wire == Wire::Mproc).then_some(DEFAULT_SHM_THRESHOLD);
        lock(&self.shared.reader).dec.set_wire(wire);
    }

    /// The message size from which sends go through shared memory
    /// (`None`: never). Only [`Wire::Mproc`] connections use it.
    pub fn shm_threshold(&self) -> Option<usize> {
        self.shm_threshold
    }

    /// Sets the message size from which sends go through shared memory;
    /// `None` turns the path off. Ignored unless the wire is [`Wire::Mproc`].
    pub fn set_shm_threshold(&mut self, threshold: Option<usize>) {
        if self.wire == Wire::Mproc {
            self.shm_threshold = threshold;
        }
    }

    /// The largest message accepted on receive (default 1 GiB).
    pub fn max_message(&self) -> usize {
        lock(&self.shared.reader).max
    }

    /// Sets the largest message accepted on receive. A longer message fails
    /// with [`RecvError::TooLarge`] without being read or allocated.
    pub fn set_max_message(&mut self, max: usize) {
        let mut r = lock(&self.shared.reader);
        r.max = max;
        if r.dec.is_idle() {
            r.dec.set_max(max);
        }
    }

    /// Whether this connection can carry mproc handles (a Unix socket).
    pub fn can_pass_handles(&self) -> bool {
        self.kind == FdKind::Unix
    }

    /// Another handle to this connection, with a duplicate of its socket
    /// (like [`std::fs::File::try_clone`]); each clone is closed on its own.
    ///
    /// Clones share everything but the descriptor: the bytes read ahead,
    /// the shared-memory arena of large messages, and the settings as they
    /// were. Receives and sends through any of them take turns, so a
    /// message is never torn between clones, and it does not matter which
    /// clone receives.
    ///
    /// To share one end with several processes (CPython passes one writer
    /// to many children), pass a clone to each child as an argument (or
    /// send one inside a message): every process then gets its own copy of
    /// the socket. The copies of a writable end send each message whole, under
    /// a process-shared write lock made when the first copy leaves, and
    /// messages above the shared-memory threshold travel through an arena
    /// per sending process; the receiving end keeps up to 64 of these
    /// mapped, and unmaps the least recently used beyond that (a sender
    /// that has not sent a large message for that long then gets its next
    /// one refused as a protocol error on the receiving side).
    ///
    /// Receiving from copies in *several processes* is not supported: each
    /// process reads ahead of the message it needs, so concurrent readers
    /// in different processes would each take parts of the others'
    /// messages. Give each reading process its own connection (or use a
    /// queue).
    ///
    /// # Errors
    /// The OS error if the descriptor cannot be duplicated.
    ///
    /// # Examples
    ///
    /// ```
    /// let (rx, tx) = mproc_pipe::pipe(false)?;
    /// let tx2 = tx.try_clone()?;
    /// let t = std::thread::spawn(move || tx2.send("from a clone"));
    /// tx.send("from the original")?;
    /// t.join().unwrap()?;
    /// drop(tx);
    /// let mut got = vec![rx.recv::<String>()?, rx.recv::<String>()?];
    /// got.sort();
    /// assert_eq!(got, ["from a clone", "from the original"]);
    /// // The clone is gone and the original dropped: end of file.
    /// assert!(rx.recv_bytes().unwrap_err().is_eof());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
            kind: self.kind,
            readable: self.readable,
            writable: self.writable,
            wire: self.wire,
            shm_threshold: self.shm_threshold,
            shared: Arc::clone(&self.shared),
            _codec: PhantomData,
        })
    }

    /// Closes the connection, reporting an error from `close` (dropping it
    /// ignores errors). Python's `close()`.
    ///
    /// # Errors
    /// The OS error from `close(2)`.
    pub fn close(self) -> io::Result<()> {
        // `OwnedFd` ignores close errors; close through libc to report them.
        let raw = std::os::fd::IntoRawFd::into_raw_fd(self.fd);
        // SAFETY: `raw` came out of an OwnedFd we owned, so nobody else will close it.
        let r = unsafe { libc::close(raw) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    // ----- sending -----

    /// Sends a typed value (Python's `send`). On failure the value comes back
    /// inside the error.
    ///
    /// The message is the codec's encoding of the value and nothing else,
    /// exactly as CPython's `send(obj)` is `send_bytes` of the pickle: the
    /// wire does not say whether a message was sent typed or raw. With
    /// [`Postcard`], a value of a zero-sized type (`()`, a unit struct) encodes
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
    pub fn send<T: Serialize>(&self, value: T) -> Result<(), SendError<T>> {
        match self.send_ref(&value) {
            Ok(()) => Ok(()),
            Err(e) => Err(SendError::new(value, e)),
        }
    }

    /// Sends a typed value by reference.
    ///
    /// # Errors
    /// As [`Connection::send`].
    pub fn send_ref<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendBytesError> {
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
                if fds.is_empty() && self.use_shm(payload_len) {
                    self.exclusive(|| {
                        ArenaTx::send(&mut w.arena, self.fd.as_fd(), &w.buf[MAX_HEADER_LEN..])
                    })
                } else {
                    let mut h = [0u8; MAX_HEADER_LEN];
                    let n = encode_header(payload_len as u64, &mut h);
                    w.buf[MAX_HEADER_LEN - n..MAX_HEADER_LEN].copy_from_slice(&h[..n]);
                    let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
                    self.exclusive(|| {
                        sys::write_all(
                            self.fd.as_fd(),
                            self.kind,
                            &[&w.buf[MAX_HEADER_LEN - n..]],
                            &borrowed,
                        )
                    })
                    .map_err(SendBytesError::from_io)
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
            return self.exclusive(|| ArenaTx::send(&mut w.arena, self.fd.as_fd(), buf));
        }
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(buf.len() as u64, &mut h);
        self.exclusive(|| sys::write_all(self.fd.as_fd(), self.kind, &[&h[..n], buf], &[]))
            .map_err(SendBytesError::from_io)
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

    // ----- receiving -----

    /// Receives a typed value (Python's `recv`), blocking until one arrives.
    ///
    /// # Errors
    /// [`RecvError::Eof`] once the peer has closed and nothing is left;
    /// `Decode` if the message is not a `T`; others as [`RecvError`].
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        self.recv_typed(Deadline::Never)
    }

    /// Receives a typed value if one is already there.
    ///
    /// # Errors
    /// [`RecvError::Timeout`] if none is; otherwise as [`Connection::recv`].
    pub fn try_recv<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        self.recv_typed(Deadline::At(Instant::now()))
    }

    /// Receives a typed value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvError::Timeout`] if none arrived; otherwise as [`Connection::recv`].
    pub fn recv_timeout<T: DeserializeOwned>(&self, timeout: Duration) -> Result<T, RecvError> {
        self.recv_typed(Deadline::after(timeout))
    }

    /// Receives a typed value, waiting until `deadline`.
    ///
    /// # Errors
    /// [`RecvError::Timeout`] if none arrived; otherwise as [`Connection::recv`].
    pub fn recv_deadline<T: DeserializeOwned>(&self, deadline: Instant) -> Result<T, RecvError> {
        self.recv_typed(Deadline::At(deadline))
    }

    fn recv_typed<T: DeserializeOwned>(&self, deadline: Deadline) -> Result<T, RecvError> {
        let (bytes, fds) = self.recv_frame(deadline, None)?;
        provide_fds(fds, || C::decode(&bytes)).map_err(RecvError::Decode)
    }

    /// Receives one message's bytes (Python's `recv_bytes()`).
    ///
    /// # Errors
    /// As [`Connection::recv`], without `Decode`.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_frame(Deadline::Never, None)?.0)
    }

    /// Receives one message's bytes if one is already there.
    ///
    /// # Errors
    /// [`RecvError::Timeout`] if none is; otherwise as [`Connection::recv_bytes`].
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_frame(Deadline::At(Instant::now()), None)?.0)
    }

    /// Receives one message's bytes, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvError::Timeout`] if none arrived; otherwise as [`Connection::recv_bytes`].
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_frame(Deadline::after(timeout), None)?.0)
    }

    /// Receives one message's bytes, waiting until `deadline`.
    ///
    /// # Errors
    /// [`RecvError::Timeout`] if none arrived; otherwise as [`Connection::recv_bytes`].
    pub fn recv_bytes_deadline(&self, deadline: Instant) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_frame(Deadline::At(deadline), None)?.0)
    }

    /// Receives one message of at most `max_len` bytes (Python's
    /// `recv_bytes(maxlength)`).
    ///
    /// # Errors
    /// [`RecvError::TooLarge`] for a longer message, which is left unread and
    /// makes the connection unreadable (as in CPython); otherwise as
    /// [`Connection::recv_bytes`].
    pub fn recv_bytes_max(&self, max_len: usize) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_frame(Deadline::Never, Some(max_len))?.0)
    }

    /// Receives one message into `buf`, returning its length (Python's
    /// `recv_bytes_into`).
    ///
    /// # Errors
    /// [`RecvError::BufferTooShort`] carrying the whole (consumed) message if
    /// it does not fit; otherwise as [`Connection::recv_bytes`].
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let (msg, _) = self.recv_frame(Deadline::Never, None)?;
        match buf.get_mut(..msg.len()) {
            Some(dst) => {
                dst.copy_from_slice(&msg);
                Ok(msg.len())
            }
            None => Err(RecvError::BufferTooShort(msg)),
        }
    }

    /// Whether a message (or end of file) is ready to be received, waiting up
    /// to `timeout` (Python's `poll(timeout)`; `Duration::ZERO` checks
    /// without waiting). Never consumes data.
    ///
    /// # Errors
    /// [`RecvError::NotReadable`] on a write-only end; [`RecvError::Broken`]
    /// once an earlier bad message made the connection unreadable; `Io` on
    /// OS errors (`EBADF` for a descriptor closed behind mproc's back).
    pub fn poll(&self, timeout: Duration) -> Result<bool, RecvError> {
        self.poll_deadline(sys::deadline_after(timeout))
    }

    /// Like [`Connection::poll`], waiting until `deadline` (`None`: for ever).
    ///
    /// # Errors
    /// As [`Connection::poll`].
    pub fn poll_deadline(&self, deadline: Option<Instant>) -> Result<bool, RecvError> {
        if !self.readable {
            return Err(RecvError::NotReadable);
        }
        if self.is_unreadable() {
            return Err(RecvError::Broken);
        }
        if self.has_buffered() {
            return Ok(true);
        }
        // Busy-wait briefly first (see `wait::begin_socket_wait`): a
        // reader woken from `poll` by a writer on another CPU pays that
        // CPU's wake-up.
        if let Some(s) = wait::begin_socket_wait() {
            let d = deadline.map_or(wait::Deadline::Never, wait::Deadline::At);
            s.until(d, || sys::readable_now(self.fd.as_fd()));
        }
        sys::wait_readable(self.fd.as_fd(), deadline).map_err(RecvError::Io)
    }

    fn recv_frame(
        &self,
        deadline: Deadline,
        max_len: Option<usize>,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvError> {
        if !self.readable {
            return Err(RecvError::NotReadable);
        }
        let mut guard = lock(&self.shared.reader);
        let r = &mut *guard;
        if r.broken {
            return Err(RecvError::Broken);
        }
        let conn_max = r.max;
        let limit = max_len.map_or(conn_max, |m| m.min(conn_max));
        let mut result = self.recv_frame_locked(r, deadline, limit);
        if r.dec.is_idle() {
            r.dec.set_max(conn_max);
        }
        if let (true, Ok((msg, _))) = (r.refuse_challenge, &result) {
            r.refuse_challenge = false;
            if crate::auth::is_challenge(msg) {
                result = Err(RecvError::Protocol(
                    "the listener requires an authkey and none was given",
                ));
            }
        }
        match result {
            Err(e @ (RecvError::TooLarge { .. } | RecvError::Protocol(_) | RecvError::Broken)) => {
                r.broken = true;
                // Relaxed: a flag read on its own; the reader's lock orders
                // everything else.
                self.shared.unreadable.store(true, Ordering::Relaxed);
                Err(e)
            }
            Ok((msg, _)) if msg.len() > limit => Err(RecvError::TooLarge {
                len: msg.len() as u64,
                max: limit as u64,
            }),
            other => other,
        }
    }

    fn recv_frame_locked(
        &self,
        r: &mut Reader,
        deadline: Deadline,
        limit: usize,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvError> {
        // The last read found nothing to read.
        let mut empty = false;
        // The decision to spin, taken before a read without waiting.
        let mut spin: Option<wait::Spin> = None;
        loop {
            if r.pos < r.end {
                if r.dec.is_idle() {
                    r.frame_start = r.stream_pos();
                    r.dec.set_max(limit);
                }
                let (n, frame) = r
                    .dec
                    .decode(&r.buf[r.pos..r.end])
                    .map_err(RecvError::from_frame)?;
                r.pos += n;
                if let Some(f) = frame {
                    return self.finish(r, f);
                }
                continue;
            }
            r.pos = 0;
            r.end = 0;
            if r.eof {
                return Err(if r.dec.is_idle() {
                    RecvError::Eof
                } else {
                    RecvError::Truncated
                });
            }
            // On a socket, read first without waiting: a message that is
            // already there costs no `poll`. When there is none, busy-wait
            // briefly for one (see `spin_for_data`) before sleeping.
            // When this wait may spin (see `wait::begin_socket_wait`), read
            // first without waiting: a message that is already there costs
            // no `poll`. When there is none, busy-wait briefly for one
            // before sleeping.
            let nonblock = if let (true, Some(s)) = (std::mem::take(&mut empty), spin.take()) {
                s.until(deadline.into(), || sys::readable_now(self.fd.as_fd()));
                self.wait_for_data(deadline)?
            } else if let Some(s) = (self.kind != FdKind::Other)
                .then(wait::begin_socket_wait)
                .flatten()
            {
                spin = Some(s);
                true
            } else {
                self.wait_for_data(deadline)?
            };
            let mut fds = Vec::new();
            let direct = r
                .dec
                .payload_remaining()
                .is_some_and(|rem| rem >= DIRECT_MIN);
            let got = if direct {
                let spare = r.dec.payload_spare();
                // SAFETY: `spare` is writable spare capacity of the payload Vec,
                // valid for `spare.len()` bytes.
                unsafe {
                    sys::read(
                        self.fd.as_fd(),
                        self.kind,
                        spare.as_mut_ptr().cast(),
                        spare.len(),
                        &mut fds,
                        nonblock,
                    )
                }
            } else {
                if r.buf.len() < READ_BUF {
                    r.buf.resize(READ_BUF, 0);
                }
                // SAFETY: `r.buf` is an initialised buffer of `r.buf.len()` bytes.
                unsafe {
                    sys::read(
                        self.fd.as_fd(),
                        self.kind,
                        r.buf.as_mut_ptr(),
                        r.buf.len(),
                        &mut fds,
                        nonblock,
                    )
                }
            };
            let n = match got {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    empty = true;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => 0,
                Err(e) => return Err(RecvError::Io(e)),
            };
            if n == 0 {
                r.eof = true;
                continue;
            }
            r.received += n as u64;
            if !fds.is_empty() {
                r.batches.push_back(FdBatch {
                    start: r.received - n as u64,
                    end: r.received,
                    fds,
                });
            }
            if direct {
                // SAFETY: the read initialised the first `n` bytes of the spare slice.
                if let Some(f) = unsafe { r.dec.payload_advance(n) } {
                    return self.finish(r, f);
                }
            } else {
                r.end = n;
            }
        }
    }

    /// Waits until the descriptor is readable or `deadline`; returns whether
    /// the read that follows must not block (it must not outlast a deadline).
    fn wait_for_data(&self, deadline: Deadline) -> Result<bool, RecvError> {
        match deadline {
            Deadline::Never => Ok(false),
            Deadline::At(d) => {
                if !sys::wait_readable(self.fd.as_fd(), Some(d)).map_err(RecvError::Io)? {
                    return Err(RecvError::Timeout);
                }
                Ok(true)
            }
        }
    }

    fn finish(&self, r: &mut Reader, frame: Frame) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvError> {
        let mut fds = r.claim_fds(r.frame_start, r.stream_pos());
        match frame {
            Frame::Bytes(b) => Ok((b, fds)),
            Frame::Shm { arena, start, len } => {
                if fds.len() > 1 {
                    return Err(RecvError::Protocol(
                        "shared-memory record with several descriptors",
                    ));
                }
                if let Some(fd) = fds.pop() {
                    let a = ArenaRx::adopt(fd, arena)?;
                    r.arenas.retain(|b| b.id() != arena);
                    if r.arenas.len() >= MAX_ARENAS {
                        // The least recently used: most likely a sender that
                        // was killed before it could retire its arena.
                        r.arenas.remove(0);
                    }
                    r.arenas.push(a);
                }
                let Some(i) = r.arenas.iter().position(|a| a.id() == arena) else {
                    return Err(RecvError::Protocol(
                        "shared-memory record for an unknown arena",
                    ));
                };
                // Keep the list in order of use, the most recent last.
                let mut a = r.arenas.remove(i);
                let msg = a.read(start, len)?;
                r.arenas.push(a);
                // Unmap the arenas that their senders gave up and that are read.
                r.arenas.retain(|a| !a.finished());
                Ok((msg, Vec::new()))
            }
        }
    }
}

/// The connection's socket. Reading or writing it directly bypasses the
/// connection's framing and buffering; it is meant for polling and for
/// passing the descriptor on.
impl<C> AsFd for Connection<C> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<C> AsRawFd for Connection<C> {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl<C> Connection<C> {
    /// Whether bytes already read from the socket wait in this connection.
    ///
    /// A receive in progress on another thread holds the reader; then the
    /// answer is `false` and callers look at the descriptor instead of
    /// waiting for that receive to finish.
    pub(crate) fn has_buffered(&self) -> bool {
        let r = match self.shared.reader.try_lock() {
            Ok(r) => r,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return false,
        };
        r.pos < r.end || r.eof
    }

    /// Whether an oversized or malformed message made the connection
    /// unreadable: `wait` then never reports it ready.
    pub(crate) fn is_unreadable(&self) -> bool {
        // Relaxed: pairs with the store in `recv_frame`; a late view only
        // delays the report by one call.
        self.shared.unreadable.load(Ordering::Relaxed)
    }

    /// A copy of the process-shared write lock's segment, made on first use.
    fn write_lock(&self) -> io::Result<Segment> {
        let l = match self.shared.wlock.get() {
            Some(l) => l,
            None => {
                // A racing thread may set its own first; both are unused so far.
                let _ = self.shared.wlock.set(WriteLock::create()?);
                self.shared.wlock.get().ok_or(io::ErrorKind::Other)?
            }
        };
        l.segment().try_clone().map_err(io::Error::other)
    }

    /// Makes the first receive fail if the first message is an authkey
    /// challenge: set on the connections of clients without an authkey.
    pub(crate) fn refuse_challenge_first(&mut self) {
        lock(&self.shared.reader).refuse_challenge = true;
    }
}

impl<C> fmt::Debug for Connection<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fd.as_raw_fd())
            .field("readable", &self.readable)
            .field("writable", &self.writable)
            .field("wire", &self.wire)
            .finish_non_exhaustive()
    }
}

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
}

impl<C> Serialize for Connection<C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let r = lock(&self.shared.reader);
        if !r.dec.is_idle() || !r.batches.is_empty() {
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
        let fd = HandleFd::new(self.fd.try_clone().map_err(S::Error::custom)?);
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
        let shared = Shared::new(reader);
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
            shared,
            _codec: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests;
