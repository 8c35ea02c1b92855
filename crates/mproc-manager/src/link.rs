//! One authenticated connection between a client and the server, with an
//! optional shared-memory fast path.
//!
//! Every connection is a socket (Unix or TCP) with CPython's handshake. On a
//! Unix socket the client then hands the server two mproc-queue rings in
//! shared memory (requests, replies): messages go through them, which costs
//! no system call when the other side is awake (it spins briefly on another
//! CPU, or yields on the same one), and the socket stays open only to tell
//! either side that the other has gone (a closed socket polls as hung up).

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use mproc_pipe::{Connection, RecvError};
use mproc_queue::{GetTimeoutError, QueueBuilder};
use serde::de::DeserializeOwned;

use crate::sys;

/// A one-way ring of encoded messages.
pub(crate) type Ring = mproc_queue::Queue<Vec<u8>, mproc_queue::Bytes>;

/// The rings' size: requests are small, larger ones go to side segments.
const RING_BYTES: usize = 256 << 10;
/// How long one wait on a ring lasts before checking the peer's socket.
const SLICE: Duration = Duration::from_millis(50);

/// Why receiving failed.
#[derive(Debug)]
pub(crate) enum LinkError {
    /// Nothing arrived in time.
    Timeout,
    /// The peer has gone, or the link is unusable.
    Gone(String),
    /// A message did not decode.
    Decode(String),
}

impl From<RecvError> for LinkError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Timeout => Self::Timeout,
            RecvError::Decode(e) => Self::Decode(e.to_string()),
            RecvError::Eof | RecvError::Truncated => {
                Self::Gone("the peer closed the connection".into())
            }
            other => Self::Gone(other.to_string()),
        }
    }
}

/// A connection, with or without rings.
pub(crate) struct Link {
    pub(crate) sock: Connection,
    /// (incoming, outgoing), from this side's point of view.
    rings: Option<(Ring, Ring)>,
}

impl Link {
    pub(crate) fn plain(sock: Connection) -> Self {
        Self { sock, rings: None }
    }

    /// The socket's descriptor, to poll it for hang-up.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor belongs to `self.sock`, which outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }
    }

    /// Client side: makes the two rings and hands them to the server over
    /// the socket (which must be a Unix socket).
    pub(crate) fn upgrade_client(&mut self) -> Result<(), String> {
        let make = || {
            QueueBuilder::new()
                .capacity(RING_BYTES)
                .build::<Vec<u8>, mproc_queue::Bytes>()
        };
        let requests = make().map_err(|e| e.to_string())?;
        let replies = make().map_err(|e| e.to_string())?;
        self.sock
            .send_ref(&(&requests, &replies))
            .map_err(|e| e.to_string())?;
        self.rings = Some((replies, requests));
        Ok(())
    }

    /// Server side: receives the client's rings.
    pub(crate) fn upgrade_server(&mut self, deadline: Instant) -> Result<(), String> {
        let (requests, replies): (Ring, Ring) = self
            .sock
            .recv_deadline(deadline)
            .map_err(|e| e.to_string())?;
        self.rings = Some((requests, replies));
        Ok(())
    }

    /// Sends encoded bytes.
    pub(crate) fn send_bytes(&self, bytes: Vec<u8>) -> Result<(), String> {
        match &self.rings {
            Some((_, out)) => out.put(bytes).map_err(|e| e.to_string()),
            None => self.sock.send_bytes(&bytes).map_err(|e| e.to_string()),
        }
    }

    /// Receives one message's bytes, waiting until `deadline` (`None`: for
    /// ever), noticing a peer that hangs up.
    pub(crate) fn recv_bytes(&self, deadline: Option<Instant>) -> Result<Vec<u8>, LinkError> {
        let Some((incoming, _)) = &self.rings else {
            return Ok(match deadline {
                Some(d) => self.sock.recv_bytes_deadline(d)?,
                None => self.sock.recv_bytes()?,
            });
        };
        loop {
            let slice = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => left.min(SLICE),
                    None => Duration::ZERO,
                },
                None => SLICE,
            };
            match incoming.get_timeout(slice) {
                Ok(b) => return Ok(b),
                Err(GetTimeoutError::Timeout) => {
                    if sys::peer_gone(self.fd()) {
                        // A last message may have been put just before the peer left.
                        return incoming
                            .try_get()
                            .map_err(|_| LinkError::Gone("the peer hung up".into()));
                    }
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(LinkError::Timeout);
                    }
                }
                Err(e) => return Err(LinkError::Gone(e.to_string())),
            }
        }
    }

    /// Receives and decodes one message.
    pub(crate) fn recv<T: DeserializeOwned>(
        &self,
        deadline: Option<Instant>,
    ) -> Result<T, LinkError> {
        let b = self.recv_bytes(deadline)?;
        postcard::from_bytes(&b).map_err(|e| LinkError::Decode(e.to_string()))
    }
}
