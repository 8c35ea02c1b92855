//! CPython's Connection framing, as a pure encoder and an incremental decoder.
//!
//! A frame is a 4-byte big-endian signed length followed by that many bytes.
//! Lengths above `i32::MAX` are written as `-1` followed by an 8-byte
//! big-endian unsigned length. Between two mproc peers (and only then,
//! [`Wire::Mproc`]) a header of `-2` introduces a fixed 24-byte record that
//! points at a message in a shared-memory arena; CPython never writes
//! negative lengths other than `-1`, so the two never meet.

use std::fmt;
use std::mem::MaybeUninit;

/// The default largest message a connection accepts: 1 GiB.
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

/// The longest header: `-1` plus an 8-byte length.
pub const MAX_HEADER_LEN: usize = 12;

/// The header value that introduces a shared-memory record (mproc peers only).
const SHM_MARK: i32 = -2;
/// The header value of a doorbell: a frame of no message that wakes a
/// receiver waiting on the socket of a [`pipe`](crate::pipe) end whose
/// messages travel through shared memory (see `connection/ring.rs`).
const BELL_MARK: i32 = -3;
/// A doorbell as written to the socket.
pub(crate) const BELL: [u8; 4] = BELL_MARK.to_be_bytes();
/// The size of a shared-memory record: arena id, start, length (u64 BE each).
pub(crate) const SHM_RECORD_LEN: usize = 24;

/// A fresh payload buffer never starts larger than this; it grows as bytes
/// arrive, so a header cannot make us allocate memory its sender never sends.
pub(crate) const INITIAL_ALLOC: usize = 1 << 20;

/// Which framing dialect a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Wire {
    /// Exactly CPython's framing: what a Python peer sends and understands.
    #[default]
    Cpython,
    /// CPython's framing plus mproc's shared-memory records for large
    /// messages. Only for connections whose both ends are mproc (a [`pipe`](crate::pipe),
    /// or a Listener/Client pair where both sides opted in).
    Mproc,
}

/// Writes the header for a payload of `len` bytes into `out`, returning the
/// number of header bytes used (4 or 12).
pub fn encode_header(len: u64, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    if len <= i32::MAX as u64 {
        out[..4].copy_from_slice(&(len as i32).to_be_bytes());
        4
    } else {
        out[..4].copy_from_slice(&(-1i32).to_be_bytes());
        out[4..12].copy_from_slice(&len.to_be_bytes());
        12
    }
}

/// Encodes one whole frame (header and payload) into a new vector.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(payload.len() as u64, &mut h);
    let mut v = Vec::with_capacity(n + payload.len());
    v.extend_from_slice(&h[..n]);
    v.extend_from_slice(payload);
    v
}

/// Encodes a shared-memory record frame.
pub(crate) fn encode_shm(r: ShmRef) -> [u8; 4 + SHM_RECORD_LEN] {
    let mut out = [0u8; 4 + SHM_RECORD_LEN];
    out[..4].copy_from_slice(&SHM_MARK.to_be_bytes());
    out[4..12].copy_from_slice(&r.arena.to_be_bytes());
    out[12..20].copy_from_slice(&r.start.to_be_bytes());
    out[20..28].copy_from_slice(&r.len.to_be_bytes());
    out
}

/// Where a message lies in the sender's shared-memory arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShmRef {
    pub(crate) arena: u64,
    pub(crate) start: u64,
    pub(crate) len: u64,
}

/// One decoded frame.
#[derive(Clone, PartialEq, Eq)]
pub enum Frame {
    /// An ordinary message.
    Bytes(Vec<u8>),
    /// A pointer into the peer's shared-memory arena ([`Wire::Mproc`] only).
    Shm {
        /// The arena's identity.
        arena: u64,
        /// The message's position in the arena's byte stream.
        start: u64,
        /// The message's length.
        len: u64,
    },
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bytes(b) => write!(f, "Frame::Bytes({} bytes)", b.len()),
            Self::Shm { arena, start, len } => f
                .debug_struct("Frame::Shm")
                .field("arena", arena)
                .field("start", start)
                .field("len", len)
                .finish(),
        }
    }
}

/// Why a byte stream is not a valid frame sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A header announced more than the configured maximum.
    TooLarge {
        /// The announced length.
        len: u64,
        /// The maximum.
        max: u64,
    },
    /// A negative length that is not a valid marker.
    BadLength(i32),
    /// The decoder already failed; the stream cannot be resynchronised.
    Failed,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len, max } => write!(
                f,
                "message of {len} bytes exceeds the maximum of {max} bytes"
            ),
            Self::BadLength(n) => write!(f, "bad message length {n}"),
            Self::Failed => f.write_str("the message stream is broken by an earlier error"),
        }
    }
}

impl std::error::Error for FrameError {}

#[derive(Clone)]
enum State {
    Header {
        buf: [u8; MAX_HEADER_LEN],
        have: usize,
    },
    Payload {
        buf: Vec<u8>,
        len: usize,
    },
    Shm {
        buf: [u8; SHM_RECORD_LEN],
        have: usize,
    },
    Failed,
}

/// An incremental decoder of CPython-framed messages: feed it bytes in any
/// chunks, and it yields whole frames.
///
/// It is a pure function of the bytes fed and its settings. It never
/// allocates more than the configured maximum message size, and never more
/// than `max(1 MiB, 2 × bytes received)` for one message, whatever a header
/// claims: a hostile length costs the attacker as much memory as it costs us.
///
/// # Examples
///
/// ```
/// use mproc_pipe::{encode_frame, Frame, FrameDecoder};
///
/// let mut wire = encode_frame(b"hello");
/// wire.extend(encode_frame(b""));
/// let mut dec = FrameDecoder::new(1024);
/// let (used, frame) = dec.decode(&wire)?;
/// assert_eq!(frame, Some(Frame::Bytes(b"hello".to_vec())));
/// let (_, frame) = dec.decode(&wire[used..])?;
/// assert_eq!(frame, Some(Frame::Bytes(Vec::new())));
/// # Ok::<(), mproc_pipe::FrameError>(())
/// ```
#[derive(Clone)]
pub struct FrameDecoder {
    max: usize,
    wire: Wire,
    /// Whether doorbells are skipped (else they are invalid lengths).
    bells: bool,
    state: State,
}

impl fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Header { have, .. } => format!("header ({have} bytes)"),
            State::Payload { buf, len } => format!("payload ({} of {len} bytes)", buf.len()),
            State::Shm { have, .. } => format!("shared-memory record ({have} bytes)"),
            State::Failed => "failed".to_owned(),
        };
        f.debug_struct("FrameDecoder")
            .field("max", &self.max)
            .field("wire", &self.wire)
            .field("state", &state)
            .finish()
    }
}

impl FrameDecoder {
    /// A decoder of CPython framing accepting messages of up to `max` bytes.
    pub fn new(max: usize) -> Self {
        Self::with_wire(max, Wire::Cpython)
    }

    /// A decoder of the given dialect accepting messages of up to `max` bytes.
    pub fn with_wire(max: usize, wire: Wire) -> Self {
        Self {
            max,
            wire,
            bells: false,
            state: State::Header {
                buf: [0; MAX_HEADER_LEN],
                have: 0,
            },
        }
    }

    /// The largest message accepted.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Changes the largest message accepted, for frames not yet started.
    pub fn set_max(&mut self, max: usize) {
        self.max = max;
    }

    /// The dialect decoded.
    pub fn wire(&self) -> Wire {
        self.wire
    }

    pub(crate) fn set_wire(&mut self, wire: Wire) {
        self.wire = wire;
    }

    /// Skips doorbells between frames (the socket of a `pipe` end).
    pub(crate) fn set_bells(&mut self, on: bool) {
        self.bells = on;
    }

    /// Whether the decoder sits between frames (no partial frame held).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }

    /// Whether the decoder failed; it then rejects everything.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// How many bytes of memory the decoder currently holds for a payload.
    pub fn allocated(&self) -> usize {
        match &self.state {
            State::Payload { buf, .. } => buf.capacity(),
            _ => 0,
        }
    }

    /// Consumes bytes from the front of `input`, stopping right after the end
    /// of the first frame it completes. Returns how many bytes it used and
    /// the completed frame, if any. With `None`, all of `input` was used.
    ///
    /// # Errors
    /// [`FrameError`] for a length above the maximum or an invalid length;
    /// the decoder is then failed for good.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), FrameError> {
        let mut used = 0;
        loop {
            match &mut self.state {
                State::Failed => return Err(FrameError::Failed),
                State::Header { buf, have } => {
                    // How many header bytes are needed so far: 4, or 12 after a -1.
                    let need = if *have >= 4 && buf[..4] == [0xff; 4] {
                        MAX_HEADER_LEN
                    } else {
                        4
                    };
                    let take = (need - *have).min(input.len() - used);
                    buf[*have..*have + take].copy_from_slice(&input[used..used + take]);
                    *have += take;
                    used += take;
                    if *have < need {
                        return Ok((used, None));
                    }
                    let short = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    let len: u64 = match short {
                        -1 if need == 4 => continue, // read the 8-byte length
                        -1 => u64::from_be_bytes(buf[4..12].try_into().unwrap_or([0xff; 8])),
                        SHM_MARK if self.wire == Wire::Mproc => {
                            self.state = State::Shm {
                                buf: [0; SHM_RECORD_LEN],
                                have: 0,
                            };
                            continue;
                        }
                        BELL_MARK if self.bells => {
                            self.reset();
                            continue;
                        }
                        n if n < 0 => return Err(self.fail(FrameError::BadLength(n))),
                        n => n as u64,
                    };
                    let len = match usize::try_from(len) {
                        Ok(l) if l <= self.max => l,
                        _ => {
                            return Err(self.fail(FrameError::TooLarge {
                                len,
                                max: self.max as u64,
                            }));
                        }
                    };
                    if len == 0 {
                        self.reset();
                        return Ok((used, Some(Frame::Bytes(Vec::new()))));
                    }
                    self.state = State::Payload {
                        buf: Vec::with_capacity(len.min(INITIAL_ALLOC)),
                        len,
                    };
                }
                State::Payload { buf, len } => {
                    let take = (*len - buf.len()).min(input.len() - used);
                    grow_for(buf, *len, take);
                    buf.extend_from_slice(&input[used..used + take]);
                    used += take;
                    if buf.len() < *len {
                        return Ok((used, None));
                    }
                    let frame = Frame::Bytes(std::mem::take(buf));
                    self.reset();
                    return Ok((used, Some(frame)));
                }
                State::Shm { buf, have } => {
                    let take = (SHM_RECORD_LEN - *have).min(input.len() - used);
                    buf[*have..*have + take].copy_from_slice(&input[used..used + take]);
                    *have += take;
                    used += take;
                    if *have < SHM_RECORD_LEN {
                        return Ok((used, None));
                    }
                    let field =
                        |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().unwrap_or([0; 8]));
                    let (arena, start, len) = (field(0), field(8), field(16));
                    if len > self.max as u64 {
                        return Err(self.fail(FrameError::TooLarge {
                            len,
                            max: self.max as u64,
                        }));
                    }
                    self.reset();
                    return Ok((used, Some(Frame::Shm { arena, start, len })));
                }
            }
        }
    }

    fn reset(&mut self) {
        self.state = State::Header {
            buf: [0; MAX_HEADER_LEN],
            have: 0,
        };
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.state = State::Failed;
        e
    }

    /// Bytes still missing from the payload being received, if one is.
    pub(crate) fn payload_remaining(&self) -> Option<usize> {
        match &self.state {
            State::Payload { buf, len } => Some(len - buf.len()),
            _ => None,
        }
    }

    /// Spare room to read the current payload into directly: at most the
    /// bytes still missing, grown by the same policy as [`FrameDecoder::decode`].
    pub(crate) fn payload_spare(&mut self) -> &mut [MaybeUninit<u8>] {
        match &mut self.state {
            State::Payload { buf, len } => {
                let want = *len - buf.len();
                grow_for(buf, *len, want);
                let room = (buf.capacity() - buf.len()).min(want);
                &mut buf.spare_capacity_mut()[..room]
            }
            _ => &mut [],
        }
    }

    /// Marks `n` bytes of [`FrameDecoder::payload_spare`] as received, and
    /// returns the frame if it is now complete.
    ///
    /// # Safety
    /// The first `n` bytes of the slice last returned by `payload_spare` must
    /// have been initialised, and `n` must not exceed its length.
    pub(crate) unsafe fn payload_advance(&mut self, n: usize) -> Option<Frame> {
        let State::Payload { buf, len } = &mut self.state else {
            return None;
        };
        debug_assert!(buf.len() + n <= buf.capacity());
        // SAFETY: guaranteed by the caller: those bytes of the spare capacity are initialised.
        unsafe { buf.set_len(buf.len() + n) };
        if buf.len() < *len {
            return None;
        }
        let frame = Frame::Bytes(std::mem::take(buf));
        self.reset();
        Some(frame)
    }
}

/// Makes room in `buf` (headed for `len` bytes) for at least one more byte,
/// growing geometrically and never past `len`.
fn grow_for(buf: &mut Vec<u8>, len: usize, want: usize) {
    if want == 0 || buf.len() < buf.capacity() {
        return;
    }
    let target = buf.capacity().saturating_mul(2).max(INITIAL_ALLOC).min(len);
    buf.reserve_exact(target - buf.len());
}

#[cfg(test)]
mod tests;
