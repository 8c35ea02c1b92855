//! The async forms (feature `tokio`): `Connection::recv_async`/`send_async`
//! and `Listener::accept_async`, waiting on tokio's reactor through
//! [`AsyncFd`] (no thread per waiter, no timer that polls).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use mproc_shm::handle::provide_fds;
use mproc_shm::wait::Deadline;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::codec::{Codec, Encode};
use crate::connection::Connection;
use crate::error::{ConnectError, RecvError, RecvTimeoutError, SendBytesError, SendError};
use crate::listener::{Address, Attempt, Listener};

/// Registers a duplicate of `fd` with the current runtime's reactor (a
/// duplicate: the reactor refuses a descriptor registered twice, and
/// several tasks may wait on clones of one connection).
fn reactor_fd(fd: BorrowedFd<'_>, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // Registering outside a runtime panics: make it an error.
    tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    register(fd.try_clone_to_owned()?, interest)
}

/// Registers `fd` (owned: it stays open, naming the same file, as long as
/// the registration) with the current runtime's reactor.
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the AsyncFd owns `fd`, so the descriptor stays open and names
    // the same file description until the AsyncFd (and its registration)
    // is dropped.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

impl<C> Connection<C> {
    /// Receives a typed value, awaiting it on the tokio reactor (the async
    /// [`Connection::recv`]). Needs a tokio runtime with I/O enabled.
    ///
    /// Cancellation-safe: a message is taken from the connection only in
    /// the poll that returns it, so dropping the future loses nothing (a
    /// message partly read from the socket stays buffered, and the next
    /// receive continues it).
    ///
    /// # Errors
    /// As [`Connection::recv`]; `Io` outside a runtime.
    pub async fn recv_async<T>(&self) -> Result<T, RecvError>
    where
        C: Codec<T>,
    {
        let (bytes, fds) = self.recv_frame_async().await?;
        provide_fds(fds, || C::decode(&bytes)).map_err(RecvError::Decode)
    }

    /// Receives one message's bytes, awaiting them (the async
    /// [`Connection::recv_bytes`]). Cancellation-safe as
    /// [`Connection::recv_async`].
    ///
    /// # Errors
    /// As [`Connection::recv_bytes`]; `Io` outside a runtime.
    pub async fn recv_bytes_async(&self) -> Result<Vec<u8>, RecvError> {
        Ok(self.recv_frame_async().await?.0)
    }

    async fn recv_frame_async(&self) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvError> {
        let mut afd = None;
        loop {
            match self.recv_frame(Deadline::Now, None) {
                Err(RecvTimeoutError::Timeout) => {}
                got => return got.map_err(RecvTimeoutError::untimed),
            }
            // A `pipe` end asks its next sender for a doorbell on the
            // socket; then one more look before waiting for it.
            if self.ready_to_receive(true) {
                continue;
            }
            let afd = match &mut afd {
                Some(a) => a,
                None => {
                    afd.insert(reactor_fd(self.as_fd(), Interest::READABLE).map_err(RecvError::Io)?)
                }
            };
            afd.readable().await.map_err(RecvError::Io)?.clear_ready();
        }
    }

    /// Sends a typed value once the socket can take data (the async
    /// [`Connection::send`]).
    ///
    /// The wait is on the reactor; the send itself is [`Connection::send`]'s,
    /// which returns at once for a message that fits in the free space of
    /// the socket buffer (or of the shared-memory ring, between
    /// [`pipe`](crate::pipe) ends), and otherwise blocks this thread until
    /// the receiver has read enough. Cancellation-safe: the value is sent in
    /// the poll that returns, or not at all.
    ///
    /// # Errors
    /// As [`Connection::send`]; `Io` outside a runtime.
    pub async fn send_async<T>(&self, value: T) -> Result<(), SendError<T>>
    where
        C: Encode<T>,
    {
        match self.writable_async().await {
            Ok(()) => self.send(value),
            Err(e) => Err(SendError::new(value, SendBytesError::Io(e))),
        }
    }

    /// Sends `buf` as one message once the socket can take data (the async
    /// [`Connection::send_bytes`]; see [`Connection::send_async`]).
    ///
    /// # Errors
    /// As [`Connection::send_bytes`]; `Io` outside a runtime.
    pub async fn send_bytes_async(&self, buf: &[u8]) -> Result<(), SendBytesError> {
        self.writable_async().await.map_err(SendBytesError::Io)?;
        self.send_bytes(buf)
    }

    /// Waits on the reactor until the socket is writable (or hung up: the
    /// send reports that).
    async fn writable_async(&self) -> io::Result<()> {
        if !self.writable() || crate::sys::writable_now(self.as_fd()) {
            return Ok(());
        }
        let afd = reactor_fd(self.as_fd(), Interest::WRITABLE)?;
        loop {
            let mut guard = afd.writable().await?;
            if crate::sys::writable_now(self.as_fd()) {
                return Ok(());
            }
            guard.clear_ready();
        }
    }
}

impl Listener {
    /// Accepts a client, awaiting it (and its authkey handshake) on the
    /// tokio reactor: the async [`Listener::accept`]. Handshakes of several
    /// clients go on at once, and each has its deadline, as with `accept`.
    ///
    /// Cancellation-safe: a client whose handshake is under way stays
    /// pending in the listener, and the next accept continues it.
    ///
    /// # Errors
    /// As [`Listener::accept`]; `Io` outside a runtime.
    pub async fn accept_async(&self) -> Result<Connection, ConnectError> {
        self.accept_with_peer_async().await.map(|(c, _)| c)
    }

    /// Like [`Listener::accept_async`], also returning the client's address.
    ///
    /// # Errors
    /// As [`Listener::accept_async`].
    pub async fn accept_with_peer_async(
        &self,
    ) -> Result<(Connection, Option<Address>), ConnectError> {
        loop {
            let (polls, deadline) = match self.try_accept()? {
                Attempt::Done(c, peer) => return Ok((c, peer)),
                Attempt::Wait(polls, deadline) => (polls, deadline),
            };
            // Several descriptors and a deadline: one epoll set (with a
            // timer) that the reactor watches as one descriptor.
            let set = WaitSet::new(&polls, deadline)?;
            let afd = register(set.epoll, Interest::READABLE)?;
            let _ready = afd.readable().await?;
        }
    }
}

/// An epoll descriptor watching `poll` entries, plus a timer at a deadline.
struct WaitSet {
    epoll: OwnedFd,
    _timer: Option<OwnedFd>,
}

impl WaitSet {
    fn new(polls: &[libc::pollfd], deadline: Option<Instant>) -> io::Result<Self> {
        let epoll = crate::sys::epoll_create()?;
        for p in polls {
            let mut events = 0u32;
            if p.events & libc::POLLIN != 0 {
                events |= libc::EPOLLIN as u32;
            }
            if p.events & libc::POLLOUT != 0 {
                events |= libc::EPOLLOUT as u32;
            }
            crate::sys::epoll_add(epoll.as_fd(), p.fd, events)?;
        }
        let timer = match deadline {
            Some(d) => {
                let t = crate::sys::timer_at(d)?;
                crate::sys::epoll_add(epoll.as_fd(), t.as_raw_fd(), libc::EPOLLIN as u32)?;
                Some(t)
            }
            None => None,
        };
        Ok(Self {
            epoll,
            _timer: timer,
        })
    }
}
