//! CPython's authkey handshake run over a socket, one step at a time.
//!
//! A [`Handshake`] never waits: [`Handshake::advance`] does what the socket
//! allows without blocking and says what it waits for next, so a listener
//! can drive many handshakes from one `poll` and a slow or silent client
//! holds up nobody else. Reads are exact (a 4-byte header, then the
//! payload), so nothing the peer sends after its last handshake message is
//! consumed. The client drives its single handshake with [`Handshake::run`].

use std::io;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Instant;

use crate::auth::{
    AuthOptions, FAILURE, MAX_HANDSHAKE_MESSAGE, WELCOME, make_challenge, respond_to_challenge,
    verify_response,
};
use crate::error::{AuthError, ConnectError};
use crate::frame::{MAX_HEADER_LEN, encode_header};
use crate::sys;

/// Which side of the handshake we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Challenges first, then answers (CPython's `Listener.accept`).
    Listener,
    /// Answers first, then challenges (CPython's `Client`).
    Client,
}

/// One step of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Send our challenge (`deliver_challenge`, first half).
    SendChallenge,
    /// Read the answer to it, then send `#WELCOME#` or `#FAILURE#`.
    RecvAnswer,
    /// Read the peer's challenge, then send our answer (`answer_challenge`).
    RecvChallenge,
    /// Read the peer's verdict on our answer.
    RecvVerdict,
}

const LISTENER: [Step; 4] = [
    Step::SendChallenge,
    Step::RecvAnswer,
    Step::RecvChallenge,
    Step::RecvVerdict,
];
const CLIENT: [Step; 4] = [
    Step::RecvChallenge,
    Step::RecvVerdict,
    Step::SendChallenge,
    Step::RecvAnswer,
];

/// What a handshake needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Both sides proved they know the key.
    Done,
    /// Waiting for the socket: these `poll` events.
    Wait(libc::c_short),
}

/// One handshake in progress.
pub(crate) struct Handshake {
    key: Arc<[u8]>,
    opts: AuthOptions,
    role: Role,
    at: usize,
    deadline: Option<Instant>,
    /// The body of the challenge we sent, which the answer must sign.
    ours: Vec<u8>,
    /// A whole frame to send, and how much of it is sent.
    out: Vec<u8>,
    sent: usize,
    /// The error to report once `out` (a `#FAILURE#`) has been sent.
    failure: Option<AuthError>,
    /// The frame being received: its header, then its payload.
    head: [u8; 4],
    head_got: usize,
    body: Vec<u8>,
    body_got: usize,
}

impl Handshake {
    pub(crate) fn new(
        role: Role,
        key: Arc<[u8]>,
        opts: AuthOptions,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            key,
            opts,
            role,
            at: 0,
            deadline,
            ours: Vec::new(),
            out: Vec::new(),
            sent: 0,
            failure: None,
            head: [0; 4],
            head_got: 0,
            body: Vec::new(),
            body_got: 0,
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn steps(&self) -> &'static [Step; 4] {
        match self.role {
            Role::Listener => &LISTENER,
            Role::Client => &CLIENT,
        }
    }

    /// Runs the handshake to its end, waiting for the socket as needed.
    ///
    /// # Errors
    /// As [`Handshake::advance`], and [`ConnectError::Timeout`] past the deadline.
    pub(crate) fn run(&mut self, fd: BorrowedFd<'_>) -> Result<(), ConnectError> {
        loop {
            match self.advance(fd)? {
                Progress::Done => return Ok(()),
                Progress::Wait(events) => {
                    if !sys::wait_ready(fd, events, self.deadline)? {
                        return Err(self.timed_out());
                    }
                }
            }
        }
    }

    /// Does every step the socket allows now, without waiting.
    ///
    /// # Errors
    /// [`ConnectError::Auth`] when the peer fails or breaks the handshake,
    /// [`ConnectError::Io`] on OS errors.
    pub(crate) fn advance(&mut self, fd: BorrowedFd<'_>) -> Result<Progress, ConnectError> {
        loop {
            while self.sent < self.out.len() {
                match sys::send_nonblock(fd, &self.out[self.sent..]) {
                    Ok(n) => self.sent += n,
                    // A `#FAILURE#` that does not fit at once is not worth waiting for.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.failure.is_none() => {
                        return Ok(Progress::Wait(libc::POLLOUT));
                    }
                    Err(e) => {
                        return Err(self.failure.take().map_or_else(|| io_error(e), Into::into));
                    }
                }
            }
            if let Some(e) = self.failure.take() {
                return Err(e.into());
            }
            let Some(&step) = self.steps().get(self.at) else {
                return Ok(Progress::Done);
            };
            if step == Step::SendChallenge {
                let (msg, body) = make_challenge(self.opts.digest)?;
                self.ours = body;
                self.queue(&msg);
            } else {
                let Some(frame) = self.read_frame(fd, step)? else {
                    return Ok(Progress::Wait(libc::POLLIN));
                };
                self.on_frame(step, &frame)?;
            }
            self.at += 1;
        }
    }

    fn queue(&mut self, msg: &[u8]) {
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(msg.len() as u64, &mut h);
        self.out.clear();
        self.out.extend_from_slice(&h[..n]);
        self.out.extend_from_slice(msg);
        self.sent = 0;
    }

    fn on_frame(&mut self, step: Step, frame: &[u8]) -> Result<(), ConnectError> {
        match step {
            Step::RecvAnswer => match verify_response(&self.key, &self.ours, frame, &self.opts) {
                Ok(()) => self.queue(WELCOME),
                Err(e) => {
                    self.queue(FAILURE);
                    self.failure = Some(e);
                }
            },
            Step::RecvChallenge => {
                let answer = respond_to_challenge(&self.key, frame, &self.opts)?;
                self.queue(&answer);
            }
            Step::RecvVerdict if frame != WELCOME => return Err(AuthError::Rejected.into()),
            Step::RecvVerdict | Step::SendChallenge => {}
        }
        Ok(())
    }

    /// Reads the rest of the current frame; `None` until it is complete.
    fn read_frame(
        &mut self,
        fd: BorrowedFd<'_>,
        step: Step,
    ) -> Result<Option<Vec<u8>>, ConnectError> {
        while self.head_got < self.head.len() {
            let n = recv_some(fd, &mut self.head[self.head_got..])?;
            if n == 0 {
                return Ok(None);
            }
            self.head_got += n;
            if self.head_got == self.head.len() {
                let len = i32::from_be_bytes(self.head);
                match usize::try_from(len) {
                    Ok(len) if len <= MAX_HANDSHAKE_MESSAGE => self.body = vec![0; len],
                    // Longer than any handshake message: the peer is talking,
                    // not authenticating. Its bytes are left unread.
                    _ => return Err(not_a_handshake_message(step).into()),
                }
            }
        }
        while self.body_got < self.body.len() {
            let n = recv_some(fd, &mut self.body[self.body_got..])?;
            if n == 0 {
                return Ok(None);
            }
            self.body_got += n;
        }
        self.head_got = 0;
        self.body_got = 0;
        Ok(Some(std::mem::take(&mut self.body)))
    }

    /// The error for a handshake past its deadline: what it waited for, and
    /// what usually explains the silence.
    pub(crate) fn timed_out(&self) -> ConnectError {
        let what = if self.sent < self.out.len() {
            "the peer to read its handshake messages"
        } else {
            match (self.role, self.steps().get(self.at)) {
                (Role::Client, Some(Step::RecvChallenge)) => {
                    "the listener's challenge (a listener without an authkey sends none)"
                }
                (Role::Listener, Some(Step::RecvAnswer)) => {
                    "the client's answer to our challenge (a client without an authkey sends none)"
                }
                (Role::Client, Some(Step::RecvVerdict)) => "the listener's verdict on our answer",
                (Role::Client, _) => "the listener's answer to our challenge",
                (Role::Listener, Some(Step::RecvChallenge)) => "the client's challenge",
                (Role::Listener, _) => "the client's verdict on our answer",
            }
        };
        ConnectError::Timeout(what)
    }
}

/// The error for a frame too long to be a handshake message where `step`
/// expected one.
fn not_a_handshake_message(step: Step) -> AuthError {
    match step {
        Step::RecvAnswer => AuthError::AnswerExpected,
        Step::RecvChallenge => AuthError::ChallengeExpected,
        Step::RecvVerdict | Step::SendChallenge => {
            AuthError::Protocol("handshake message too long")
        }
    }
}

/// Receives what is there: `Ok(0)` when nothing is; end of file is an error.
fn recv_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, ConnectError> {
    match sys::recv_nonblock(fd, buf) {
        Ok(0) => Err(AuthError::Closed.into()),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(io_error(e)),
    }
}

fn io_error(e: io::Error) -> ConnectError {
    match e.raw_os_error() {
        Some(libc::EPIPE) | Some(libc::ECONNRESET) => AuthError::Closed.into(),
        _ => ConnectError::Io(e),
    }
}

#[cfg(test)]
mod tests;
