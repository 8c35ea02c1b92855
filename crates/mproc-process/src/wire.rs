//! What travels between a parent, the fork server and a child: the start
//! request (parent → child or server) and the result frame (child → parent).
//!
//! Both are length-prefixed frames over a Unix stream socket, with file
//! descriptors as `SCM_RIGHTS` ancillary data. Both sides are the same
//! executable, but the bytes still come from another process, so every
//! parser here is total: malformed input is an error, never a panic or an
//! allocation larger than what actually arrived.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use mproc_shm::handle::{MAX_FDS_PER_MESSAGE, recv_with_fds, send_with_fds};
use serde::{Deserialize, Serialize};

/// Magic of a start request frame ("MPRQ").
pub(crate) const REQUEST_MAGIC: u32 = 0x4d50_5251;
/// Magic of a result frame ("MPRS").
pub(crate) const RESULT_MAGIC: u32 = 0x4d50_5253;
/// Version of the request layout; a mismatch is refused.
pub(crate) const PROTOCOL: u32 = 2;
/// Frame header: magic (u32 LE), tag (u32 LE), payload length (u64 LE).
pub(crate) const HEADER_LEN: usize = 16;
/// The largest request or result payload accepted (64 GiB): anything larger is
/// a corrupted length, not a message.
pub(crate) const MAX_PAYLOAD: u64 = 1 << 36;
/// Received bytes are buffered in steps of at most this much, so a lying
/// length cannot make the receiver allocate memory that never arrives.
const READ_CHUNK: usize = 64 * 1024;

/// Identifies an executable file: a child refuses a request made by a
/// different binary, because functions travel as code offsets.
pub(crate) use mproc_fnref::ExeId;

/// Everything a child needs to run one function.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) protocol: u32,
    pub(crate) exe: ExeId,
    /// Offset of the monomorphized entry function from the crate's anchor.
    pub(crate) entry: i64,
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: Parent,
    pub(crate) method: u8,
    /// The parent's process-wide default start method, for the child's own
    /// children ([`NO_DEFAULT`]: the child reads its environment).
    pub(crate) default_method: u8,
    /// The parent's authkey, which the child inherits.
    pub(crate) authkey: Vec<u8>,
    /// Whether the last descriptor is a pidfd of the parent (the child's
    /// "parent sentinel"); it follows the argument descriptors.
    pub(crate) parent_sentinel: bool,
    /// How many descriptors belong to the arguments.
    pub(crate) nfds: u32,
    pub(crate) args: Vec<u8>,
}

/// The process that started a child: what the child's
/// [`parent_process`](crate::parent_process) reports.
///
/// Nested in [`Request`] where its two fields stood: postcard encodes a
/// struct as its fields in order, so the request's bytes are unchanged.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Parent {
    pub(crate) pid: i32,
    pub(crate) name: String,
}

/// [`Request::default_method`] when the parent has none it can name.
pub(crate) const NO_DEFAULT: u8 = u8::MAX;

impl Request {
    /// How many descriptors travel with the request (arguments, then the
    /// parent sentinel).
    pub(crate) fn fd_count(&self) -> usize {
        self.nfds as usize + usize::from(self.parent_sentinel)
    }
}

/// Tags of a result frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tag {
    /// The function returned; the payload is its value, encoded with the
    /// process's codec.
    Ok = 0,
    /// The function panicked; the payload is the panic message (UTF-8).
    Panic = 1,
    /// The child could not run the function; the payload says why (UTF-8).
    Error = 2,
    /// The function returned a value too large to leave in the socket
    /// buffer: no payload follows the header; the first descriptor is a
    /// memory file holding the header's length of encoded bytes.
    Spilled = 3,
}

impl Tag {
    fn from_u32(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Ok),
            1 => Some(Self::Panic),
            2 => Some(Self::Error),
            3 => Some(Self::Spilled),
            _ => None,
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub(crate) enum WireError {
    /// The OS failed.
    Io(io::Error),
    /// The peer closed before a complete frame.
    Eof,
    /// The bytes are not a valid frame.
    Invalid(&'static str),
}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Eof => f.write_str("the peer closed the connection mid-message"),
            Self::Invalid(why) => f.write_str(why),
        }
    }
}

fn header(magic: u32, tag: u32, len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&magic.to_le_bytes());
    h[4..8].copy_from_slice(&tag.to_le_bytes());
    h[8..16].copy_from_slice(&(len as u64).to_le_bytes());
    h
}

/// Parses a frame header: `(tag, payload length)`.
pub(crate) fn parse_header(h: &[u8], magic: u32) -> Result<(u32, usize), WireError> {
    let h: &[u8; HEADER_LEN] = h
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(WireError::Invalid("short frame header"))?;
    let m = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    if m != magic {
        return Err(WireError::Invalid(
            "bad frame magic (not an mproc process message)",
        ));
    }
    let tag = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    let len = u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    if len > MAX_PAYLOAD {
        return Err(WireError::Invalid(
            "frame length is larger than any mproc message",
        ));
    }
    let len = usize::try_from(len)
        .map_err(|_| WireError::Invalid("frame length does not fit in memory"))?;
    Ok((tag, len))
}

/// Sends `data` with `fds` (on the first byte), retrying short writes.
pub(crate) fn send_all(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one message",
        ));
    }
    // The socket may be non-blocking: wait for room instead of failing.
    let send = |data: &[u8], fds: &[BorrowedFd<'_>]| loop {
        match send_with_fds(sock, data, fds) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => crate::sys::wait_writable(sock)?,
            r => return r,
        }
    };
    let mut sent = send(data, fds)?;
    while sent < data.len() {
        sent += send(&data[sent..], &[])?;
    }
    Ok(())
}

/// Encodes a request as a complete frame.
pub(crate) fn encode_request(req: &Request) -> io::Result<Vec<u8>> {
    let body =
        postcard::to_stdvec(req).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&header(REQUEST_MAGIC, PROTOCOL, body.len()));
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a request body (after its header), checking the protocol version.
pub(crate) fn decode_request(body: &[u8]) -> Result<Request, WireError> {
    let req: Request =
        postcard::from_bytes(body).map_err(|_| WireError::Invalid("malformed start request"))?;
    if req.protocol != PROTOCOL {
        return Err(WireError::Invalid(
            "start request from a different mproc protocol version",
        ));
    }
    Ok(req)
}

/// Reads exactly `n` more bytes into `buf` (growing it in bounded steps),
/// collecting descriptors. Blocking.
fn recv_exact(
    sock: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    n: usize,
    fds: &mut Vec<OwnedFd>,
) -> Result<(), WireError> {
    let target = buf.len() + n;
    while buf.len() < target {
        let step = (target - buf.len()).min(READ_CHUNK);
        let start = buf.len();
        buf.resize(start + step, 0);
        let got = recv_with_fds(sock, &mut buf[start..], fds);
        match got {
            Ok(0) => {
                buf.truncate(start);
                return Err(WireError::Eof);
            }
            Ok(k) => buf.truncate(start + k),
            Err(e) => {
                buf.truncate(start);
                return Err(WireError::Io(e));
            }
        }
    }
    Ok(())
}

/// Reads one request frame (blocking). `Ok(None)` means the peer closed
/// cleanly before sending anything.
pub(crate) fn read_request(
    sock: BorrowedFd<'_>,
) -> Result<Option<(Request, Vec<OwnedFd>)>, WireError> {
    let mut fds = Vec::new();
    let mut buf = Vec::with_capacity(HEADER_LEN);
    match recv_exact(sock, &mut buf, HEADER_LEN, &mut fds) {
        Err(WireError::Eof) if buf.is_empty() => return Ok(None),
        r => r?,
    }
    let (tag, len) = parse_header(&buf, REQUEST_MAGIC)?;
    if tag != PROTOCOL {
        return Err(WireError::Invalid(
            "start request from a different mproc protocol version",
        ));
    }
    buf.clear();
    recv_exact(sock, &mut buf, len, &mut fds)?;
    let req = decode_request(&buf)?;
    Ok(Some((req, fds)))
}

/// The largest payload sent inline in a result frame. It always fits in an
/// empty socket buffer, so a child never blocks on sending its result and
/// its parent need not read until the child has exited; larger values go
/// through a memory file ([`Tag::Spilled`]).
pub(crate) const INLINE_MAX: usize = 16 * 1024;

/// Sends a result frame (blocking, but it never waits for the reader: see
/// [`INLINE_MAX`]).
pub(crate) fn send_result(
    sock: BorrowedFd<'_>,
    tag: Tag,
    payload: &[u8],
    fds: &[OwnedFd],
) -> io::Result<()> {
    let mut borrowed: Vec<BorrowedFd<'_>> = Vec::new();
    let spilled;
    let (tag, inline) = if payload.len() <= INLINE_MAX {
        (tag, payload)
    } else if tag == Tag::Ok {
        spilled = crate::sys::memfd_with(payload)?;
        borrowed.push(spilled.as_fd());
        (Tag::Spilled, &[][..])
    } else {
        // A message: keep its start.
        (tag, &payload[..INLINE_MAX])
    };
    let len = if tag == Tag::Spilled {
        payload.len()
    } else {
        inline.len()
    };
    if borrowed.is_empty() && fds.is_empty() {
        // The common case, without allocating (a forked child copies every
        // heap page it writes).
        return crate::sys::send_two(sock, &header(RESULT_MAGIC, tag as u32, len), inline);
    }
    borrowed.extend(fds.iter().map(|f| f.as_fd()));
    let mut frame = Vec::with_capacity(HEADER_LEN + inline.len());
    frame.extend_from_slice(&header(RESULT_MAGIC, tag as u32, len));
    frame.extend_from_slice(inline);
    send_all(sock, &frame, &borrowed)
}

/// A complete result frame.
#[derive(Debug)]
pub(crate) struct ResultFrame {
    pub(crate) tag: Tag,
    pub(crate) payload: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

/// Accumulates a result frame from non-blocking reads.
#[derive(Debug, Default)]
pub(crate) struct ResultReader {
    buf: Vec<u8>,
    fds: Vec<OwnedFd>,
    /// `(tag, payload length)` once the header has arrived and checked out.
    head: Option<(Tag, usize)>,
}

impl ResultReader {
    /// Bytes still needed (`None` = the frame is complete).
    fn wanted(&self) -> Option<usize> {
        match self.head {
            None => Some(HEADER_LEN - self.buf.len()),
            Some((Tag::Spilled, _)) => None,
            Some((_, len)) => {
                let have = self.buf.len() - HEADER_LEN;
                if have >= len { None } else { Some(len - have) }
            }
        }
    }

    /// Whether a complete frame has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.head.is_some() && self.wanted().is_none()
    }

    /// Appends received bytes and descriptors. Never takes more bytes than
    /// the frame needs; returns how many of `data` it used.
    pub(crate) fn feed(&mut self, data: &[u8], fds: Vec<OwnedFd>) -> Result<usize, WireError> {
        self.fds.extend(fds);
        let mut used = 0;
        while used < data.len() {
            let Some(want) = self.wanted() else { break };
            let take = want.min(data.len() - used);
            self.buf.extend_from_slice(&data[used..used + take]);
            used += take;
            if self.head.is_none() && self.buf.len() == HEADER_LEN {
                let (tag, len) = parse_header(&self.buf, RESULT_MAGIC)?;
                let tag = Tag::from_u32(tag).ok_or(WireError::Invalid("unknown result tag"))?;
                self.head = Some((tag, len));
            }
        }
        Ok(used)
    }

    /// Reads once from a non-blocking socket. Returns `Ok(false)` at end of
    /// file or when the frame is complete, `Ok(true)` if more may come.
    pub(crate) fn read_some(&mut self, sock: BorrowedFd<'_>) -> Result<bool, WireError> {
        let mut chunk = vec![0u8; self.wanted().unwrap_or(0).clamp(1, READ_CHUNK)];
        let mut fds = Vec::new();
        match recv_with_fds(sock, &mut chunk, &mut fds) {
            Ok(0) => {
                self.fds.extend(fds);
                Ok(false)
            }
            Ok(n) => {
                self.feed(&chunk[..n], fds)?;
                Ok(!self.is_complete())
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
            // The child died with our request unread: the same as end of file.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(WireError::Io(e)),
        }
    }

    /// Takes the complete frame, if there is one. A spilled value is read
    /// from its memory file and returned as a [`Tag::Ok`] frame.
    pub(crate) fn take(&mut self) -> Result<Option<ResultFrame>, WireError> {
        if !self.is_complete() {
            return Ok(None);
        }
        let Some((tag, len)) = self.head.take() else {
            return Ok(None);
        };
        let mut buf = std::mem::take(&mut self.buf);
        buf.drain(..HEADER_LEN);
        let mut fds = std::mem::take(&mut self.fds);
        if tag == Tag::Spilled {
            if fds.is_empty() {
                return Err(WireError::Invalid("a spilled result came without its file"));
            }
            let file = fds.remove(0);
            let payload = crate::sys::read_file_prefix(file.as_fd(), len)?;
            return Ok(Some(ResultFrame {
                tag: Tag::Ok,
                payload,
                fds,
            }));
        }
        Ok(Some(ResultFrame {
            tag,
            payload: buf,
            fds,
        }))
    }
}

/// Decodes a start request frame from bytes alone (fuzzing entry).
pub(crate) fn fuzz_request(data: &[u8]) -> Result<Request, WireError> {
    let (tag, len) = parse_header(data, REQUEST_MAGIC)?;
    if tag != PROTOCOL {
        return Err(WireError::Invalid(
            "start request from a different mproc protocol version",
        ));
    }
    let body = data
        .get(HEADER_LEN..)
        .ok_or(WireError::Invalid("short frame"))?;
    let body = body.get(..len).ok_or(WireError::Eof)?;
    decode_request(body)
}

/// Feeds bytes into a result reader in arbitrary pieces (fuzzing entry).
pub(crate) fn fuzz_result(data: &[u8]) -> Result<Option<(Tag, usize)>, WireError> {
    let mut r = ResultReader::default();
    let mut rest = data;
    while !rest.is_empty() {
        let step = (usize::from(rest[0]) % 7 + 1).min(rest.len());
        let used = r.feed(&rest[..step], Vec::new())?;
        if used < step || r.is_complete() {
            break;
        }
        rest = &rest[step..];
    }
    Ok(r.take()?.map(|f| (f.tag, f.payload.len())))
}

/// Sample corpus inputs (selector byte included; see `fuzz_wire`).
pub(crate) fn samples() -> Vec<(&'static str, Vec<u8>)> {
    let req = Request {
        protocol: PROTOCOL,
        exe: ExeId {
            dev: 1,
            ino: 2,
            size: 3,
            mtime: 4,
            mtime_nsec: 5,
        },
        entry: -4096,
        name: "Process-1:2".to_owned(),
        identity: vec![1, 2],
        daemon: true,
        parent: Parent {
            pid: 42,
            name: "MainProcess".to_owned(),
        },
        method: 0,
        default_method: 1,
        authkey: vec![7; 32],
        parent_sentinel: false,
        nfds: 0,
        args: vec![7, 1, 2, 3],
    };
    let reqf = encode_request(&req).unwrap_or_default();
    let result = |tag: Tag, payload: &[u8]| {
        let mut f = vec![1u8];
        f.extend_from_slice(&header(RESULT_MAGIC, tag as u32, payload.len()));
        f.extend_from_slice(payload);
        f
    };
    let with_sel = |sel: u8, b: &[u8]| {
        let mut v = vec![sel];
        v.extend_from_slice(b);
        v
    };
    vec![
        ("valid_request", with_sel(0, &reqf)),
        ("truncated_request", with_sel(0, &reqf[..reqf.len() - 3])),
        (
            "request_huge_length",
            with_sel(0, &{
                let mut h = reqf.clone();
                h[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
                h
            }),
        ),
        ("valid_result_ok", result(Tag::Ok, &[1, 2, 3, 4])),
        ("valid_result_panic", result(Tag::Panic, b"boom")),
        ("result_spilled_without_file", result(Tag::Spilled, &[])),
        ("result_bad_tag", {
            let mut r = result(Tag::Ok, &[9]);
            r[5] = 77;
            r
        }),
        ("garbage", vec![2, 0xff, 0x13, 0x37, 0, 0, 0, 0]),
    ]
}
