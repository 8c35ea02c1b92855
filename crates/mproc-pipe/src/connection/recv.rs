//! Receiving: the read-ahead buffer, frame decoding, descriptors that came
//! with messages, polling.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mproc_shm::handle::provide_fds;
use mproc_shm::wait::{self, Deadline, LIVENESS_SLICE, spin_until};

use super::ring::{Ring, Taken};
use super::{Connection, DIRECT_MIN, MAX_ARENAS, READ_BUF, lock};
use crate::arena::ArenaRx;
use crate::codec::Codec;
use crate::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::frame::{BELL, Frame, FrameDecoder, Wire};
use crate::sys::{self, FdKind};

/// Descriptors that arrived with the bytes at stream positions `start..end`.
pub(super) struct FdBatch {
    pub(super) start: u64,
    pub(super) end: u64,
    pub(super) fds: Vec<OwnedFd>,
}

pub(super) struct Reader {
    pub(super) dec: FrameDecoder,
    /// The connection's largest accepted message (the decoder's may be
    /// lowered for one `recv_bytes_max` call).
    pub(super) max: usize,
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
    pub(super) end: usize,
    /// Bytes received from the descriptor so far (stream position of `buf[end]`).
    pub(super) received: u64,
    /// Stream position where the frame being decoded began.
    pub(super) frame_start: u64,
    pub(super) batches: VecDeque<FdBatch>,
    /// The arenas of the senders on the other side (one per sending process
    /// when the peer end is shared; see [`MAX_ARENAS`]).
    pub(super) arenas: Vec<ArenaRx>,
    pub(super) eof: bool,
    pub(super) broken: bool,
    /// Until the first message: refuse it if it is an authkey challenge.
    pub(super) refuse_challenge: bool,
    /// Frames on the socket that the ring has announced and that are not
    /// received yet (a `pipe` end; see `ring.rs`).
    pub(super) socket_due: u32,
}

impl Reader {
    pub(super) fn new(max: usize, wire: Wire) -> Self {
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
            socket_due: 0,
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
    pub(super) fn claim_fds(&mut self, start: u64, next: u64) -> Vec<OwnedFd> {
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

impl<C> Connection<C> {
    /// Receives a typed value (Python's `recv`), blocking until one arrives.
    ///
    /// # Errors
    /// [`RecvError::Eof`] once the peer has closed and nothing is left;
    /// `Decode` if the message is not a `T`; others as [`RecvError`].
    pub fn recv<T>(&self) -> Result<T, RecvError>
    where
        C: Codec<T>,
    {
        self.recv_typed(Deadline::Never)
            .map_err(RecvTimeoutError::untimed)
    }

    /// Receives a typed value if one is already there.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if none is; otherwise as [`Connection::recv`].
    pub fn try_recv<T>(&self) -> Result<T, TryRecvError>
    where
        C: Codec<T>,
    {
        self.recv_typed(Deadline::Now)
            .map_err(RecvTimeoutError::untried)
    }

    /// Receives a typed value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if none arrived; otherwise as [`Connection::recv`].
    pub fn recv_timeout<T>(&self, timeout: Duration) -> Result<T, RecvTimeoutError>
    where
        C: Codec<T>,
    {
        self.recv_typed(Deadline::after(timeout))
    }

    /// Receives a typed value, waiting until `deadline`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if none arrived; otherwise as [`Connection::recv`].
    pub fn recv_deadline<T>(&self, deadline: Instant) -> Result<T, RecvTimeoutError>
    where
        C: Codec<T>,
    {
        self.recv_typed(Deadline::At(deadline))
    }

    fn recv_typed<T>(&self, deadline: Deadline) -> Result<T, RecvTimeoutError>
    where
        C: Codec<T>,
    {
        let (bytes, fds) = self.recv_frame(deadline, None)?;
        provide_fds(fds, || C::decode(&bytes)).map_err(RecvTimeoutError::Decode)
    }

    /// Receives one message's bytes (Python's `recv_bytes()`).
    ///
    /// # Errors
    /// As [`Connection::recv`], without `Decode`.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.recv_frame(Deadline::Never, None)
            .map(|(m, _)| m)
            .map_err(RecvTimeoutError::untimed)
    }

    /// Receives one message's bytes if one is already there.
    ///
    /// # Errors
    /// [`TryRecvError::Empty`] if none is; otherwise as [`Connection::recv_bytes`].
    pub fn try_recv_bytes(&self) -> Result<Vec<u8>, TryRecvError> {
        self.recv_frame(Deadline::Now, None)
            .map(|(m, _)| m)
            .map_err(RecvTimeoutError::untried)
    }

    /// Receives one message's bytes, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if none arrived; otherwise as [`Connection::recv_bytes`].
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        Ok(self.recv_frame(Deadline::after(timeout), None)?.0)
    }

    /// Receives one message's bytes, waiting until `deadline`.
    ///
    /// # Errors
    /// [`RecvTimeoutError::Timeout`] if none arrived; otherwise as [`Connection::recv_bytes`].
    pub fn recv_bytes_deadline(&self, deadline: Instant) -> Result<Vec<u8>, RecvTimeoutError> {
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
        self.recv_frame(Deadline::Never, Some(max_len))
            .map(|(m, _)| m)
            .map_err(RecvTimeoutError::untimed)
    }

    /// Receives one message into `buf`, returning its length (Python's
    /// `recv_bytes_into`).
    ///
    /// # Errors
    /// [`RecvError::BufferTooShort`] carrying the whole (consumed) message if
    /// it does not fit; otherwise as [`Connection::recv_bytes`].
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize, RecvError> {
        let (msg, _) = self
            .recv_frame(Deadline::Never, None)
            .map_err(RecvTimeoutError::untimed)?;
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
        if let Some(ring) = self.shared.ring.as_deref() {
            return self.poll_ring(ring, deadline);
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

    pub(crate) fn recv_frame(
        &self,
        deadline: Deadline,
        max_len: Option<usize>,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvTimeoutError> {
        if !self.readable {
            return Err(RecvTimeoutError::NotReadable);
        }
        let mut guard = lock(&self.shared.reader);
        let r = &mut *guard;
        if r.broken {
            return Err(RecvTimeoutError::Broken);
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
                result = Err(RecvTimeoutError::Protocol(
                    "the listener requires an authkey and none was given",
                ));
            }
        }
        match result {
            Err(
                e @ (RecvTimeoutError::TooLarge { .. }
                | RecvTimeoutError::Protocol(_)
                | RecvTimeoutError::Broken),
            ) => {
                r.broken = true;
                // Relaxed: a flag read on its own; the reader's lock orders
                // everything else.
                self.shared.unreadable.store(true, Ordering::Relaxed);
                Err(e)
            }
            Ok((msg, _)) if msg.len() > limit => Err(RecvTimeoutError::TooLarge {
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
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvTimeoutError> {
        match self.shared.ring.as_deref() {
            Some(ring) => self.recv_ring(r, ring, deadline, limit),
            None => self.recv_socket(r, deadline, limit),
        }
    }

    /// Receives from a `pipe` end: the next record of the ring, or the
    /// socket frame it announces (see `ring.rs`).
    fn recv_ring(
        &self,
        r: &mut Reader,
        ring: &Ring,
        deadline: Deadline,
        limit: usize,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvTimeoutError> {
        let mut spun = false;
        loop {
            if r.socket_due > 0 {
                // The ring announced a frame on the socket; its sender
                // may still be writing it.
                let got = match self.recv_socket(r, deadline, limit) {
                    Err(RecvTimeoutError::Eof) => Err(RecvTimeoutError::Truncated),
                    got => got,
                };
                if got.is_ok() {
                    r.socket_due -= 1;
                }
                return got;
            }
            match ring.take()? {
                Some(Taken::Msg(m)) if m.len() > limit => {
                    return Err(RecvTimeoutError::TooLarge {
                        len: m.len() as u64,
                        max: limit as u64,
                    });
                }
                Some(Taken::Msg(m)) => return Ok((m, Vec::new())),
                Some(Taken::Socket) => {
                    r.socket_due += 1;
                    continue;
                }
                None => {}
            }
            // Senders publish before they close, so an empty ring after end
            // of file stays empty; bytes on the socket that no record
            // announced are a frame whose sender died while writing it.
            if r.eof {
                return Err(if r.pos < r.end || !r.dec.is_idle() {
                    RecvTimeoutError::Truncated
                } else {
                    RecvTimeoutError::Eof
                });
            }
            if deadline.passed() {
                // End of file is an answer too, also without waiting.
                self.look_at_socket(r)?;
                if r.eof || !ring.is_empty() {
                    continue;
                }
                return Err(RecvTimeoutError::Timeout);
            }
            // Spin while another CPU may run the sender (the policy of
            // `mproc_shm::wait`), then sleep. No `sched_yield` rounds: a
            // process that yields stays runnable, so on a CPU shared with
            // busy processes it waits a whole time slice for its turn,
            // where a sleeper that is woken gets the CPU at once.
            if !spun {
                spun = true;
                if spin_until(deadline, || !ring.is_empty()) {
                    continue;
                }
            }
            if let Some(t) = deadline.sleep_for(LIVENESS_SLICE) {
                ring.park(t);
                if ring.is_empty() {
                    // Woken without a message, or the slice ended: a sender
                    // that closed (or died) left end of file on the socket.
                    self.look_at_socket(r)?;
                }
            }
        }
    }

    /// [`Connection::poll_deadline`] of a `pipe` end.
    fn poll_ring(&self, ring: &Ring, deadline: Option<Instant>) -> Result<bool, RecvError> {
        if self.ring_ready(ring, false)? {
            return Ok(true);
        }
        let until = deadline.map_or(Deadline::Never, Deadline::At);
        if spin_until(until, || !ring.is_empty()) {
            return Ok(true);
        }
        loop {
            if self.ring_ready(ring, true)? {
                return Ok(true);
            }
            // In slices: two threads polling one end may share a doorbell.
            let slice = until.sleep_for(wait::SLICE).unwrap_or_default();
            let slice_end = Instant::now() + slice;
            if !sys::wait_readable(self.fd.as_fd(), Some(slice_end)).map_err(RecvError::Io)?
                && until.passed()
            {
                return Ok(false);
            }
        }
    }

    /// Receives one frame from the socket.
    fn recv_socket(
        &self,
        r: &mut Reader,
        deadline: Deadline,
        limit: usize,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvTimeoutError> {
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
                    .map_err(RecvTimeoutError::from_frame)?;
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
                    RecvTimeoutError::Eof
                } else {
                    RecvTimeoutError::Truncated
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
                s.until(deadline, || sys::readable_now(self.fd.as_fd()));
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
            let direct = r
                .dec
                .payload_remaining()
                .is_some_and(|rem| rem >= DIRECT_MIN);
            let n = match self.read_into(r, direct, nonblock) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    empty = true;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => 0,
                Err(e) => return Err(RecvTimeoutError::Io(e)),
            };
            if n == 0 {
                r.eof = true;
                continue;
            }
            if direct {
                // SAFETY: the read initialised the first `n` bytes of the spare slice.
                if let Some(f) = unsafe { r.dec.payload_advance(n) } {
                    return self.finish(r, f);
                }
            }
        }
    }

    /// Waits until the descriptor is readable or `deadline`; returns whether
    /// the read that follows must not block (it must not outlast a deadline).
    fn wait_for_data(&self, deadline: Deadline) -> Result<bool, RecvTimeoutError> {
        match deadline {
            Deadline::Never => Ok(false),
            Deadline::At(_) | Deadline::Now => {
                let d = match deadline {
                    Deadline::At(d) => d,
                    _ => Instant::now(),
                };
                if !sys::wait_readable(self.fd.as_fd(), Some(d)).map_err(RecvTimeoutError::Io)? {
                    return Err(RecvTimeoutError::Timeout);
                }
                Ok(true)
            }
        }
    }

    fn finish(
        &self,
        r: &mut Reader,
        frame: Frame,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvTimeoutError> {
        let mut fds = r.claim_fds(r.frame_start, r.stream_pos());
        match frame {
            Frame::Bytes(b) => Ok((b, fds)),
            Frame::Shm { arena, start, len } => {
                if fds.len() > 1 {
                    return Err(RecvTimeoutError::Protocol(
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
                    return Err(RecvTimeoutError::Protocol(
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

impl<C> Connection<C> {
    /// Reads what the socket holds without waiting, when nothing read
    /// ahead is left, and drops doorbells at the front of what is buffered:
    /// afterwards `r.pos < r.end` means a frame (or part of one) is there.
    fn look_at_socket(&self, r: &mut Reader) -> Result<(), RecvError> {
        if r.pos == r.end && !r.eof {
            r.pos = 0;
            r.end = 0;
            match self.read_into(r, false, true) {
                Ok(0) => r.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => r.eof = true,
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
        if r.dec.is_idle() {
            while r.end - r.pos >= BELL.len() && r.buf[r.pos..r.pos + BELL.len()] == BELL {
                r.pos += BELL.len();
            }
        }
        // Bytes that no record announced (a sender that died while writing
        // a frame, or a peer off the protocol): end of file settles it.
        if r.pos < r.end && !r.eof && sys::at_eof(self.fd.as_fd()) {
            r.eof = true;
        }
        Ok(())
    }

    /// Whether a receive from this `pipe` end would find a message or end of
    /// file now. With `arm`, first asks the next sender to ring the socket's
    /// doorbell, for a caller about to wait on the descriptor.
    pub(crate) fn ring_ready(&self, ring: &Ring, arm: bool) -> Result<bool, RecvError> {
        if arm {
            ring.arm();
        }
        if !ring.is_empty() {
            return Ok(true);
        }
        let mut r = match self.shared.reader.try_lock() {
            Ok(r) => r,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            // A receive in progress on another thread: look at the descriptor.
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        if r.socket_due > 0 || r.eof || r.broken {
            return Ok(true);
        }
        self.look_at_socket(&mut r)?;
        Ok(r.pos < r.end || r.eof || !ring.is_empty())
    }

    /// Reads from the socket: straight into the payload being decoded
    /// (`direct`), or into the read-ahead buffer from position 0 (the caller
    /// has consumed it). Keeps the descriptors that came along, and returns
    /// the byte count (0: end of file).
    fn read_into(&self, r: &mut Reader, direct: bool, nonblock: bool) -> io::Result<usize> {
        let mut fds = Vec::new();
        let n = if direct {
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
            }?
        } else {
            if r.buf.len() < READ_BUF {
                r.buf.resize(READ_BUF, 0);
            }
            // SAFETY: `r.buf` is an initialised buffer of `r.buf.len()` bytes.
            let n = unsafe {
                sys::read(
                    self.fd.as_fd(),
                    self.kind,
                    r.buf.as_mut_ptr(),
                    r.buf.len(),
                    &mut fds,
                    nonblock,
                )
            }?;
            r.end = n;
            n
        };
        r.received += n as u64;
        if !fds.is_empty() {
            r.batches.push_back(FdBatch {
                start: r.received - n as u64,
                end: r.received,
                fds,
            });
        }
        Ok(n)
    }
}
