//! One authenticated connection between a client and the server, with an
//! optional shared-memory fast path.
//!
//! Every connection is a socket (Unix or TCP) with CPython's handshake. On a
//! Unix socket the client then hands the server two mproc-queue rings in
//! shared memory (requests, replies): messages go through them, which costs
//! no system call when the other side is awake (it spins briefly on another
//! CPU, or yields on the same one), and the socket stays open only to tell
//! either side that the other has gone (a closed socket polls as hung up).

use std::cell::Cell;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use mproc_pipe::{Connection, RecvError, RecvTimeoutError};
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

impl From<RecvTimeoutError> for LinkError {
    fn from(e: RecvTimeoutError) -> Self {
        match e {
            RecvTimeoutError::Timeout => Self::Timeout,
            RecvTimeoutError::Decode(e) => Self::Decode(e.to_string()),
            RecvTimeoutError::Eof | RecvTimeoutError::Truncated => {
                Self::Gone("the peer closed the connection".into())
            }
            other => Self::Gone(other.to_string()),
        }
    }
}

impl From<RecvError> for LinkError {
    fn from(e: RecvError) -> Self {
        RecvTimeoutError::from(e).into()
    }
}

/// The longest busy-wait for an answer before the ring's own waiting.
const SPIN: Duration = Duration::from_micros(30);
/// Failed spins in a row after which a link stops spinning.
const SPIN_FAILS: u32 = 3;
/// A link that stopped spinning tries again once every this many receives.
const SPIN_PROBE: u32 = 256;

/// Whether busy-waiting for the peer pays on this link, learnt as it goes.
///
/// When the peer runs on another CPU, an answer usually arrives within a
/// few microseconds, and spinning for it saves a sleep and a wake-up (tens
/// of microseconds on virtual machines). When both share one CPU, the
/// answer cannot come while we spin, so spinning only delays it: after a
/// few spins that see nothing the link stops, and probes now and then in
/// case the scheduler moved things. CPU affinity alone cannot tell (a
/// process pinned to one CPU may talk to a peer pinned to another).
#[derive(Debug, Default)]
struct Spin {
    fails: Cell<u32>,
    since: Cell<u32>,
}

impl Spin {
    fn should(&self) -> bool {
        if !several_cpus() {
            return false;
        }
        if self.fails.get() < SPIN_FAILS {
            return true;
        }
        let n = self.since.get() + 1;
        self.since.set(n % SPIN_PROBE);
        n >= SPIN_PROBE
    }

    fn record(&self, success: bool) {
        self.fails.set(if success {
            0
        } else {
            (self.fails.get() + 1).min(SPIN_FAILS)
        });
    }
}

fn several_cpus() -> bool {
    static N: OnceLock<bool> = OnceLock::new();
    *N.get_or_init(sys::several_cpus_online)
}

/// A connection, with or without rings.
pub(crate) struct Link {
    pub(crate) sock: Connection,
    /// (incoming, outgoing), from this side's point of view.
    rings: Option<(Ring, Ring)>,
    spin: Spin,
}

impl Link {
    pub(crate) fn plain(sock: Connection) -> Self {
        Self {
            sock,
            rings: None,
            spin: Spin::default(),
        }
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
        if self.spin.should() {
            let t0 = Instant::now();
            let mut i = 0u32;
            let arrived = loop {
                if !incoming.is_empty() {
                    break true;
                }
                i += 1;
                if i % 16 == 0 && t0.elapsed() > SPIN {
                    break false;
                }
                std::hint::spin_loop();
            };
            self.spin.record(arrived);
        }
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
