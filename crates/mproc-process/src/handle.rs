//! A started child: [`ProcessHandle`], and [`PendingStart`] for a start
//! the fork server has not answered yet.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mproc_shm::codec::CodecError;

use crate::error::{JoinError, JoinTimeoutError, StartError, TryJoinError};
use crate::status::{ExitStatus, Pid};
use crate::watch::{End, Inner, Profile};
use crate::wire::{ResultReader, Tag};
use crate::{server, start, state, sys};

/// How a handle decodes its child's return value: the codec's `decode`,
/// monomorphized where the codec was known (the builder), so that the
/// handle's type does not name the codec.
pub(crate) type Decoder<R> = fn(&[u8]) -> Result<R, CodecError>;

/// What a handle needs from its builder.
pub(crate) struct Prepared<R> {
    pub(crate) profile: Profile,
    pub(crate) threaded_fork: bool,
    pub(crate) kill_on_drop: bool,
    pub(crate) decode: Decoder<R>,
}

impl<R> Prepared<R> {
    pub(crate) fn handle(self, started: start::Started) -> ProcessHandle<R> {
        let inner = Arc::new(Inner {
            pid: started.pid,
            profile: self.profile,
            watch: started.watch,
            end: Mutex::new(End::Running),
        });
        state::register(inner.clone());
        ProcessHandle {
            inner,
            chan: Some(started.chan),
            theirs: started.theirs,
            reader: ResultReader::default(),
            joined: None,
            kill_on_drop: self.kill_on_drop,
            decode: self.decode,
        }
    }
}

pub(crate) enum Pending<R> {
    /// Sent to the fork server; its reply is not read yet.
    Server(Prepared<R>, server::Pending),
    /// Started already (spawn and fork are synchronous).
    Done(ProcessHandle<R>),
    /// Waited for.
    Taken,
}

/// A child whose start was asked for by [`Process::start_pending`](crate::Process::start_pending), not yet
/// known to exist.
///
/// Dropping it without [`wait`](Self::wait) detaches the child (if it is
/// created), as dropping a [`ProcessHandle`] does; with
/// [`Process::kill_on_drop`](crate::Process::kill_on_drop), the drop waits for the fork server's answer
/// and kills the child.
#[must_use = "wait for the start to learn whether the child exists"]
pub struct PendingStart<R> {
    pub(crate) state: Pending<R>,
}

impl<R> fmt::Debug for PendingStart<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PendingStart");
        match &self.state {
            Pending::Server(p, _) => d.field("name", &p.profile.name).field("answered", &false),
            Pending::Done(h) => d.field("name", &h.name()).field("answered", &true),
            Pending::Taken => &mut d,
        };
        d.finish_non_exhaustive()
    }
}

impl<R> Drop for PendingStart<R> {
    fn drop(&mut self) {
        if let Pending::Server(p, _) = &self.state {
            if p.kill_on_drop {
                // The handle's own drop kills the child.
                let _ = self.take();
            }
        }
    }
}

impl<R> PendingStart<R> {
    /// Waits until the child exists (the fork server answered) and returns
    /// its handle. Returns at once for the start methods other than
    /// [`StartMethod::ForkServer`](crate::StartMethod::ForkServer).
    ///
    /// # Errors
    /// [`StartError::ForkServer`] if the fork server died before it
    /// answered, [`StartError::Os`] if it could not fork,
    /// [`StartError::Rejected`] if it refused the request.
    pub fn wait(mut self) -> Result<ProcessHandle<R>, StartError> {
        self.take()
    }

    fn take(&mut self) -> Result<ProcessHandle<R>, StartError> {
        match std::mem::replace(&mut self.state, Pending::Taken) {
            Pending::Server(p, sent) => Ok(p.handle(server::finish(sent)?)),
            Pending::Done(h) => Ok(h),
            Pending::Taken => Err(StartError::Rejected("the start was already waited for")),
        }
    }
}

/// A started child process.
///
/// Dropping the handle never blocks: the child runs on (unless
/// [`Process::kill_on_drop`](crate::Process::kill_on_drop) was set). A child whose handle was dropped is
/// reaped by this process's next [`Process::start`](crate::Process::start) or [`active_children`](crate::active_children)
/// call (fork-server children are reaped by the fork server at once).
#[must_use = "dropping a handle detaches the child; join it to get its result"]
pub struct ProcessHandle<R> {
    inner: Arc<Inner>,
    chan: Option<OwnedFd>,
    /// Our copy of the child's end of `chan`, for reuse after the join.
    theirs: Option<OwnedFd>,
    reader: ResultReader,
    /// What a join after the first returns.
    joined: Option<JoinError>,
    kill_on_drop: bool,
    decode: Decoder<R>,
}

impl<R> fmt::Debug for ProcessHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.inner.pid)
            .field("name", &self.inner.profile.name)
            .field("daemon", &self.inner.profile.daemon)
            .field("exitcode", &self.exitcode())
            .finish_non_exhaustive()
    }
}

impl<R> Drop for ProcessHandle<R> {
    fn drop(&mut self) {
        if self.kill_on_drop {
            let _ = self.inner.signal(libc::SIGKILL);
        }
    }
}

impl<R> ProcessHandle<R> {
    /// The child's process id.
    pub fn pid(&self) -> Pid {
        Pid(self.inner.pid)
    }

    /// The child's name.
    pub fn name(&self) -> &str {
        &self.inner.profile.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.inner.profile.daemon
    }

    /// A descriptor that becomes readable when the child ends (CPython's
    /// `Process.sentinel`): poll it together with other descriptors (pipes,
    /// other children) to wait for whichever happens first, then call
    /// [`try_join`](ProcessHandle::try_join) or [`status`](Self::status).
    /// It stays readable once the child has ended. `None` only on kernels
    /// without pidfds (before Linux 5.3).
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        self.inner.watch.fd(self.inner.pid)
    }

    /// Whether the child is still running (reaps it if it ended).
    pub fn is_alive(&self) -> bool {
        matches!(self.inner.poll_end(), End::Running)
    }

    /// Waits until the child has ended, for at most `timeout`, without
    /// reaping it or reading its exit status; returns whether it ended.
    ///
    /// A fork-server child's exit status comes from the server a moment
    /// after the child is gone, and [`join`](Self::join) waits for it; this
    /// returns as soon as the child itself has ended (for the other start
    /// methods it reaps the child, and a later `join` returns at once).
    pub fn wait_ended_timeout(&self, timeout: Duration) -> bool {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.wait_ended_deadline(d),
            None => !matches!(self.inner.wait_end(None), End::Running),
        }
    }

    /// [`wait_ended_timeout`](Self::wait_ended_timeout) with a deadline.
    pub fn wait_ended_deadline(&self, deadline: Instant) -> bool {
        self.inner.wait_gone(deadline)
    }

    /// How the child ended, or `None` while it runs. Does not block.
    /// A status that cannot be known (the fork server died) reads as
    /// `Exited(255)`, as in CPython.
    pub fn status(&self) -> Option<ExitStatus> {
        self.inner.poll_status().ok().flatten()
    }

    /// CPython's `exitcode`: `None` while running, the exit code, or `-N`
    /// when signal N killed the child.
    pub fn exitcode(&self) -> Option<i32> {
        self.status().map(ExitStatus::exitcode)
    }

    /// Sends SIGTERM (a no-op if the child already ended).
    ///
    /// # Errors
    /// The OS error if the signal could not be sent.
    pub fn terminate(&self) -> io::Result<()> {
        self.inner.signal(libc::SIGTERM)
    }

    /// Sends SIGKILL (a no-op if the child already ended).
    ///
    /// # Errors
    /// The OS error if the signal could not be sent.
    pub fn kill(&self) -> io::Result<()> {
        self.inner.signal(libc::SIGKILL)
    }

    /// Sends SIGINT (Python 3.14's `interrupt`).
    ///
    /// # Errors
    /// The OS error if the signal could not be sent.
    pub fn interrupt(&self) -> io::Result<()> {
        self.inner.signal(libc::SIGINT)
    }

    /// Terminates with escalation: SIGTERM, wait up to `deadline`, then
    /// SIGKILL, and returns how the child ended.
    ///
    /// # Errors
    /// The OS error if a signal could not be sent; `TimedOut` if the child
    /// did not end within 10 s of SIGKILL (a process stuck in the kernel).
    pub fn terminate_deadline(&self, deadline: Instant) -> io::Result<ExitStatus> {
        self.terminate()?;
        let end = self.inner.wait_end(Some(deadline));
        let end = if matches!(end, End::Running) {
            self.kill()?;
            self.inner
                .wait_end(Some(Instant::now() + Duration::from_secs(10)))
        } else {
            end
        };
        match end {
            End::Running => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the child survived SIGKILL for 10 s",
            )),
            End::Ended(s) => Ok(s),
            End::Lost => Ok(ExitStatus::Exited(255)),
        }
    }

    /// [`terminate_deadline`](Self::terminate_deadline) with a grace period.
    ///
    /// # Errors
    /// As for [`terminate_deadline`](Self::terminate_deadline).
    pub fn terminate_timeout(&self, grace: Duration) -> io::Result<ExitStatus> {
        self.terminate_deadline(
            Instant::now()
                .checked_add(grace)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600)),
        )
    }

    /// Waits for the child to end and returns its return value.
    ///
    /// Reads the result while waiting, so a child with a large result never
    /// blocks on a full socket buffer while its parent waits. A signal
    /// arriving meanwhile does not interrupt the wait.
    ///
    /// # Errors
    /// [`JoinError::Panicked`] (with the message) if the function panicked,
    /// [`JoinError::Failed`] (with the [`ExitStatus`]) if the child ended
    /// without returning. Joining again returns the same error, or
    /// [`JoinError::AlreadyJoined`] with the exit status if the value was
    /// returned: like CPython's, a join may be repeated.
    pub fn join(&mut self) -> Result<R, JoinError> {
        self.join_inner(None).map_err(|e| match e {
            JoinTimeoutError::Join(e) => e,
            JoinTimeoutError::Timeout => JoinError::Io(io::ErrorKind::TimedOut.into()),
        })
    }

    /// Returns the value if the child has ended, without blocking.
    ///
    /// # Errors
    /// [`TryJoinError::Running`] while the child runs; otherwise as for
    /// [`join`](Self::join).
    pub fn try_join(&mut self) -> Result<R, TryJoinError> {
        self.join_inner(Some(Instant::now()))
            .map_err(TryJoinError::from)
    }

    /// Waits up to `timeout` for the child to end.
    ///
    /// # Errors
    /// [`JoinTimeoutError::Timeout`] if it is still running (the handle stays
    /// usable); otherwise as for [`join`](Self::join).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, JoinTimeoutError> {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.join_deadline(d),
            None => self.join().map_err(JoinTimeoutError::Join),
        }
    }

    /// Waits until `deadline` for the child to end.
    ///
    /// # Errors
    /// As for [`join_timeout`](Self::join_timeout).
    pub fn join_deadline(&mut self, deadline: Instant) -> Result<R, JoinTimeoutError> {
        self.join_inner(Some(deadline))
    }

    fn join_inner(&mut self, deadline: Option<Instant>) -> Result<R, JoinTimeoutError> {
        if let Some(outcome) = &self.joined {
            return Err(outcome.replay().into());
        }
        let r = self.join_first(deadline);
        if let Err(JoinTimeoutError::Join(e)) = &r {
            self.joined = Some(e.replay());
        }
        r
    }

    /// The first join: the value, or why there is none (kept by the caller
    /// for later joins).
    fn join_first(&mut self, deadline: Option<Instant>) -> Result<R, JoinTimeoutError> {
        // A child never blocks on sending its result (large values go
        // through a memory file), so the socket is read only once it ended.
        let end = self.inner.wait_end(deadline);
        if matches!(end, End::Running) {
            return Err(JoinTimeoutError::Timeout);
        }
        if let Some(chan) = self.chan.take() {
            loop {
                match self.reader.read_some(chan.as_fd()) {
                    Ok(true) if !self.reader.is_complete() => {
                        // Non-blocking socket, child gone: is anything left?
                        let mut p = [sys::pollin(chan.as_fd())];
                        if sys::poll(&mut p, Some(Duration::ZERO)).map_err(JoinError::Io)? == 0 {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(e) => return Err(JoinError::InvalidResult(e.to_string()).into()),
                }
            }
            // A channel whose frame was read whole can serve the next child.
            if let (Some(theirs), true) = (self.theirs.take(), self.reader.is_complete()) {
                start::recycle_channel(chan, theirs);
            }
        }
        self.theirs = None;
        let status = match end {
            End::Ended(s) => s,
            End::Lost => return Err(JoinError::Lost.into()),
            End::Running => unreachable!("loop exits only once ended"),
        };
        // Whatever follows, the value is taken now: later joins say so.
        self.joined = Some(JoinError::AlreadyJoined { status });
        let frame = self
            .reader
            .take()
            .map_err(|e| JoinError::InvalidResult(e.to_string()))?;
        match frame {
            Some(f) if f.tag == Tag::Ok && status.success() => {
                mproc_shm::codec::decode_with_fds(self.decode, &f.payload, f.fds)
                    .map_err(|e| JoinError::Decode(e).into())
            }
            Some(f) if f.tag == Tag::Panic => Err(JoinError::Panicked {
                message: String::from_utf8_lossy(&f.payload).into_owned(),
                status,
            }
            .into()),
            Some(f) if f.tag == Tag::Error => Err(JoinError::Bootstrap {
                message: String::from_utf8_lossy(&f.payload).into_owned(),
                status,
            }
            .into()),
            _ => Err(JoinError::Failed(status).into()),
        }
    }
}
