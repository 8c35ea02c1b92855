//! `Connection` and `pipe`: framed, typed or raw messages over a socket.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use mproc_shm::Segment;

use crate::arena::ArenaTx;
use crate::codec::Postcard;
use crate::frame::{DEFAULT_MAX_MESSAGE, Wire};
use crate::sys::{self, FdKind};
use crate::wlock::WriteLock;
use recv::Reader;
use ring::Ring;

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
/// bytes or more travel through shared memory. Small messages (up to
/// 16 KiB, without handles) travel through a shared-memory ring between
/// the two ends, with no system call while the receiver is awake: a
/// receiver spins briefly when another CPU may run the sender, then
/// sleeps on a futex that the sender wakes only when it finds it asleep.
/// The socket still carries the other messages, end of file, and a
/// doorbell for receivers that wait on the descriptor through [`wait`](crate::wait()),
/// [`Connection::poll`] or the async forms. (Polling the descriptor
/// yourself, for example in your own epoll loop, does not see the
/// messages in the ring: wait through those.)
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
    let (ra, rb) = Ring::pair()?;
    let mut a = Connection::build(x, FdKind::Unix, rx_side.0, rx_side.1, Some(ra));
    let mut b = Connection::build(y, FdKind::Unix, tx_side.0, tx_side.1, Some(rb));
    a.set_wire(Wire::Mproc);
    b.set_wire(Wire::Mproc);
    Ok((a, b))
}

struct Writer {
    buf: Vec<u8>,
    arena: Option<ArenaTx>,
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
    /// Counts this value as a holder of its ring end (a [`pipe`] end).
    /// Declared after `fd`, so that the socket is closed when its drop
    /// wakes the peer to look for end of file.
    open: Option<OpenEnd>,
    _codec: PhantomData<fn() -> C>,
}

/// One `Connection` holding an end of a ring ([`Ring::opened`]); dropping
/// it counts the holder out and wakes a parked receiver on the other side.
struct OpenEnd(Arc<Ring>);

impl OpenEnd {
    /// Counts one more holder of the end.
    fn new(ring: &Arc<Ring>) -> Self {
        ring.opened();
        Self(Arc::clone(ring))
    }
}

impl Drop for OpenEnd {
    fn drop(&mut self) {
        self.0.closed();
    }
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
    /// The shared-memory ring of a [`pipe`] end (`None` on other
    /// connections, whose messages all travel on the socket).
    ring: Option<Arc<Ring>>,
}

impl Shared {
    fn new(mut reader: Reader, ring: Option<Ring>) -> Arc<Self> {
        reader.dec.set_bells(ring.is_some());
        Arc::new(Self {
            reader: Mutex::new(reader),
            writer: Mutex::new(Writer {
                buf: Vec::new(),
                arena: None,
            }),
            unreadable: AtomicBool::new(false),
            wlock: OnceLock::new(),
            ring: ring.map(Arc::new),
        })
    }
}

use mproc_shm::local::lock;

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
        Ok(Self::build(fd, kind, readable, writable, None))
    }

    /// A connection whose ring end (if any) is already counted open.
    fn build(
        fd: OwnedFd,
        kind: FdKind,
        readable: bool,
        writable: bool,
        ring: Option<Ring>,
    ) -> Self {
        let shared = Shared::new(Reader::new(DEFAULT_MAX_MESSAGE, Wire::Cpython), ring);
        Self {
            fd,
            kind,
            readable,
            writable,
            wire: Wire::Cpython,
            shm_threshold: None,
            open: shared.ring.clone().map(OpenEnd),
            shared,
            _codec: PhantomData,
        }
    }
}

impl<C> Connection<C> {
    /// The same connection with another codec for typed messages.
    pub fn with_codec<D>(self) -> Connection<D> {
        Connection {
            fd: self.fd,
            kind: self.kind,
            readable: self.readable,
            writable: self.writable,
            wire: self.wire,
            shm_threshold: self.shm_threshold,
            shared: self.shared,
            open: self.open,
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
    /// with [`RecvError::TooLarge`](crate::RecvError::TooLarge) without being read or allocated.
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
            open: self.shared.ring.as_ref().map(OpenEnd::new),
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
}

/// The connection's socket. Reading or writing it directly bypasses the
/// connection's framing and buffering; it is meant for passing the
/// descriptor on, and for polling a connection that did not come from
/// [`pipe`] (a `pipe` end's small messages travel through shared memory:
/// wait for them with [`wait`](crate::wait()), [`Connection::poll`] or the async forms,
/// which ask the sender to ring the socket).
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

    /// Whether a receive would find something at once: a message or end of
    /// file in the ring of a `pipe` end (with `arm`, asking its next sender
    /// to ring the socket's doorbell first: the caller is about to poll the
    /// descriptor), or bytes read ahead. Errors count as ready: the receive
    /// reports them.
    pub(crate) fn ready_to_receive(&self, arm: bool) -> bool {
        match self.shared.ring.as_deref() {
            Some(ring) => self.ring_ready(ring, arm).unwrap_or(true),
            None => self.has_buffered(),
        }
    }

    /// Whether this is a `pipe()` end with a shared-memory ring.
    pub(crate) fn has_ring(&self) -> bool {
        self.shared.ring.is_some()
    }

    /// Asks the ring's next sender to ring the socket (a `wait` is about to
    /// poll it); nothing for a connection without a ring.
    pub(crate) fn arm_doorbell(&self) {
        if let Some(ring) = self.shared.ring.as_deref() {
            ring.arm();
        }
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

mod handle;
mod recv;
mod ring;
mod send;

#[cfg(test)]
mod tests;
