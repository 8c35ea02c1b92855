//! A started child as the parent sees it ([`Inner`], shared by its handle
//! and the registry of children) and how the parent learns that it ended
//! ([`Watch`]).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::authkey::AuthKey;
use crate::method::StartMethod;
use crate::status::ExitStatus;
use crate::sys::{self, RawPid};
use mproc_shm::local::lock;

/// How a parent learns that a child ended.
#[derive(Debug)]
pub(crate) enum Watch {
    /// Our own child: `waitpid`, with a pidfd (opened on first timed wait)
    /// to poll.
    Direct { pidfd: OnceLock<Option<OwnedFd>> },
    /// A fork-server child: the server writes its wait status to this pipe,
    /// and sent a pidfd to signal it by.
    Server {
        status: OwnedFd,
        pidfd: Option<OwnedFd>,
    },
}

impl Watch {
    pub(crate) fn direct() -> Self {
        Self::Direct {
            pidfd: OnceLock::new(),
        }
    }

    pub(crate) fn server(status: OwnedFd, pidfd: Option<OwnedFd>) -> Self {
        Self::Server { status, pidfd }
    }

    /// A descriptor that becomes readable when the child ends.
    pub(crate) fn fd(&self, pid: RawPid) -> Option<BorrowedFd<'_>> {
        match self {
            Self::Direct { pidfd } => pidfd
                .get_or_init(|| sys::pidfd_open(pid).ok())
                .as_ref()
                .map(|f| f.as_fd()),
            Self::Server { status, .. } => Some(status.as_fd()),
        }
    }
}

/// What is known of a child's end.
#[derive(Clone, Copy, Debug)]
pub(crate) enum End {
    Running,
    Ended(ExitStatus),
    /// The status cannot be known (fork server died, or reaped elsewhere).
    Lost,
}

/// What a child is, as its builder set it: kept by its handle and the
/// registry of children.
#[derive(Debug)]
pub(crate) struct Profile {
    pub(crate) name: String,
    pub(crate) daemon: bool,
    pub(crate) method: StartMethod,
    pub(crate) authkey: AuthKey,
}

/// A started child, shared by its handle and the registry of children.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) pid: RawPid,
    pub(crate) profile: Profile,
    pub(crate) watch: Watch,
    pub(crate) end: Mutex<End>,
}

impl Inner {
    /// Checks (without blocking) whether the child ended; reaps it if so.
    pub(crate) fn poll_end(&self) -> End {
        let mut end = lock(&self.end);
        self.update(&mut end)
    }

    /// [`poll_end`](Self::poll_end) with the lock held by the caller.
    fn update(&self, end: &mut End) -> End {
        if let End::Running = *end {
            *end = match &self.watch {
                Watch::Direct { .. } => match sys::waitpid(self.pid, false) {
                    Ok(None) => End::Running,
                    Ok(Some(raw)) => End::Ended(ExitStatus::from_raw(raw)),
                    Err(_) => End::Lost,
                },
                Watch::Server { status, .. } => {
                    let mut buf = [0u8; 4];
                    match sys::read(status.as_fd(), &mut buf) {
                        Ok(4) => End::Ended(ExitStatus::from_raw(i32::from_le_bytes(buf))),
                        Ok(_) => End::Lost,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => End::Running,
                        Err(_) => End::Lost,
                    }
                }
            };
        }
        *end
    }

    /// `Ok(None)` while running; the status (255 for a lost one) once ended.
    pub(crate) fn poll_status(&self) -> io::Result<Option<ExitStatus>> {
        Ok(match self.poll_end() {
            End::Running => None,
            End::Ended(s) => Some(s),
            End::Lost => Some(ExitStatus::Exited(255)),
        })
    }

    /// Waits (up to `deadline`) for the child to end, without waiting for
    /// a fork server to report its status: whether it ended.
    pub(crate) fn wait_gone(&self, deadline: Instant) -> bool {
        let Watch::Server {
            status,
            pidfd: Some(pidfd),
        } = &self.watch
        else {
            return !matches!(self.wait_end(Some(deadline)), End::Running);
        };
        loop {
            if !matches!(self.poll_end(), End::Running) {
                return true;
            }
            // The pidfd is readable once the child has ended; the status
            // pipe once the server reaped it (or died).
            let mut p = [sys::pollin(pidfd.as_fd()), sys::pollin(status.as_fd())];
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = sys::poll(&mut p, Some(left));
            if sys::ready(&p[0]) {
                return true;
            }
            if left.is_zero() {
                return !matches!(self.poll_end(), End::Running);
            }
        }
    }

    /// Waits (up to `deadline`) for the child to end.
    pub(crate) fn wait_end(&self, deadline: Option<Instant>) -> End {
        if let (Watch::Direct { .. }, None) = (&self.watch, deadline) {
            // Straight to the blocking wait (it returns at once for a child
            // that already ended); the loop below then reaps.
            let _ = sys::wait_exited_nowait(self.pid);
        }
        loop {
            let end = self.poll_end();
            if !matches!(end, End::Running) {
                return end;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return End::Running;
            }
            if let (Watch::Direct { .. }, None) = (&self.watch, deadline) {
                // One blocking call, one wake-up; the reaping stays in
                // `poll_end` (WNOWAIT), so a concurrent `active_children`
                // cannot lose the status.
                if sys::wait_exited_nowait(self.pid).is_err() {
                    // Reaped elsewhere: `poll_end` reports it.
                    let _ = self.poll_end();
                }
                continue;
            }
            match self.watch.fd(self.pid) {
                Some(fd) => {
                    let mut p = [sys::pollin(fd)];
                    let _ = sys::poll(&mut p, left);
                }
                None => {
                    std::thread::sleep(left.unwrap_or(Duration::MAX).min(Duration::from_millis(1)))
                }
            }
        }
    }

    pub(crate) fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        // Hold the lock while signalling: our own child cannot be reaped (and
        // its pid recycled) between the check and the kill.
        let mut end = lock(&self.end);
        match (self.update(&mut end), &self.watch) {
            // The fork server died, but its pidfd still names the child.
            (End::Lost, Watch::Server { pidfd: Some(_), .. }) => {}
            (End::Running, _) => {}
            // Signalling a finished process is a silent no-op, as in CPython.
            _ => return Ok(()),
        }
        let r = match &self.watch {
            Watch::Server {
                pidfd: Some(fd), ..
            } => sys::pidfd_send_signal(fd.as_fd(), sig),
            _ => sys::kill(self.pid, sig),
        };
        match r {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            r => r,
        }
    }
}
