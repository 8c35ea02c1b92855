//! [`ProcessInfo`]: a description of the current process, its parent or a
//! running child, and the functions that give them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::authkey::{self, AuthKey};
use crate::method::StartMethod;
use crate::state;
use crate::status::Pid;
use crate::sys;
use crate::watch::Inner;

/// A description of a process: the current one, its parent, or a running
/// child (see [`current_process`], [`parent_process`], [`active_children`]).
///
/// The parent and the children come with a *sentinel*, a descriptor that
/// becomes readable when the process ends, so [`is_alive`](Self::is_alive)
/// and [`join_timeout`](Self::join_timeout) tell the truth even after the
/// process died and its pid was reused (CPython's parent sentinel).
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    pid: Pid,
    name: String,
    daemon: bool,
    method: Option<StartMethod>,
    who: Who,
}

/// Which process a [`ProcessInfo`] describes, and how to watch it.
#[derive(Clone, Debug)]
enum Who {
    Current,
    /// The parent, with a pidfd of it that it sent us (`None` on kernels
    /// without pidfds).
    Parent(Option<Arc<OwnedFd>>),
    Child(Arc<Inner>),
}

impl PartialEq for ProcessInfo {
    fn eq(&self, other: &Self) -> bool {
        (self.pid, &self.name, self.daemon, self.method)
            == (other.pid, &other.name, other.daemon, other.method)
    }
}

impl Eq for ProcessInfo {}

impl ProcessInfo {
    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The name (`MainProcess`, `Process-1`, `Process-1:2`, or the one given).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it is a daemon (dies with its parent).
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// How the process was started: `None` for a process mproc did not
    /// start (the main process) and for the parent (which this process
    /// cannot know).
    pub fn start_method(&self) -> Option<StartMethod> {
        self.method
    }

    /// The authkey (CPython's `Process.authkey`): this process's own for the
    /// current process (see [`AuthKey`]), the one a child was started with
    /// for a child, `None` for the parent (as in CPython, whose parent
    /// object has none; the key a child inherited is its own).
    pub fn authkey(&self) -> Option<AuthKey> {
        match &self.who {
            Who::Current => Some(authkey::current()),
            Who::Child(inner) => Some(inner.profile.authkey.clone()),
            Who::Parent(_) => None,
        }
    }

    /// A descriptor that becomes readable when the process ends, for
    /// `mproc_pipe::wait` or `poll`: the parent's pidfd, or a child's
    /// sentinel. `None` for the current process, and on kernels without
    /// pidfds (before Linux 5.3).
    pub fn sentinel(&self) -> Option<BorrowedFd<'_>> {
        match &self.who {
            Who::Current => None,
            Who::Parent(fd) => fd.as_ref().map(|fd| fd.as_fd()),
            Who::Child(inner) => inner.watch.fd(inner.pid),
        }
    }

    /// Whether the process is still running. For the parent this is its
    /// sentinel: false as soon as it died, even while it is a zombie or
    /// after its pid was reused.
    pub fn is_alive(&self) -> bool {
        !self.join_deadline(Instant::now())
    }

    /// Waits until the process has ended (Python's `parent_process().join()`).
    /// Returns at once for the current process, which cannot wait for its
    /// own end.
    pub fn join(&self) {
        if matches!(self.who, Who::Current) {
            return;
        }
        while !self.join_timeout(Duration::from_secs(3600)) {}
    }

    /// Waits up to `timeout` for the process to end; returns whether it did.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        match Instant::now().checked_add(timeout) {
            Some(d) => self.join_deadline(d),
            None => {
                self.join();
                !matches!(self.who, Who::Current)
            }
        }
    }

    /// Waits until `deadline` for the process to end; returns whether it did.
    /// Always false for the current process, at once.
    pub fn join_deadline(&self, deadline: Instant) -> bool {
        match &self.who {
            Who::Current => false,
            Who::Child(inner) => inner.wait_gone(deadline),
            Who::Parent(Some(fd)) => loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut p = [sys::pollin(fd.as_fd())];
                match sys::poll(&mut p, Some(left)) {
                    Ok(_) if sys::ready(&p[0]) => return true,
                    _ if left.is_zero() => return false,
                    _ => {}
                }
            },
            Who::Parent(None) => loop {
                if !self.parent_signalable() {
                    return true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return false;
                }
                std::thread::sleep(left.min(Duration::from_millis(10)));
            },
        }
    }

    /// Without a pidfd: whether signal 0 reaches the parent and, for the
    /// start methods whose OS parent it is, it still is our parent (a
    /// recycled pid fails the second test, a zombie the first only if reaped).
    fn parent_signalable(&self) -> bool {
        let reachable = match sys::kill(self.pid.0, 0) {
            Ok(()) => true,
            Err(e) => e.raw_os_error() == Some(libc::EPERM),
        };
        let method = state::me().method;
        reachable && (method == Some(StartMethod::ForkServer) || sys::getppid() == self.pid.0)
    }
}

/// The process calling this: `MainProcess` unless mproc started it.
///
/// # Examples
///
/// ```
/// use mproc_process::{current_process, Process, StartMethod};
///
/// fn how(_: ()) -> (String, Option<StartMethod>) {
///     let me = current_process();
///     (me.name().to_owned(), me.start_method())
/// }
///
/// assert_eq!(current_process().start_method(), None);
/// let mut child = Process::new(how, ()).name("worker").start_method(StartMethod::Spawn).start()?;
/// assert_eq!(child.join()?, ("worker".to_owned(), Some(StartMethod::Spawn)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn current_process() -> ProcessInfo {
    let me = state::me();
    ProcessInfo {
        pid: Pid(sys::getpid()),
        name: me.name,
        daemon: me.daemon,
        method: me.method,
        who: Who::Current,
    }
}

/// The process that started this one (`None` in a process mproc did not
/// start). For fork-server children this is the process that asked for the
/// child, not the server.
///
/// Its [`is_alive`](ProcessInfo::is_alive) and
/// [`join_timeout`](ProcessInfo::join_timeout) watch a pidfd the parent sent
/// of itself with the start request (or left in the forked memory), so they
/// see the parent's death even when it was killed, is a zombie, or its pid
/// was reused.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use mproc_process::{parent_process, Process};
///
/// fn parent_alive(_: ()) -> bool {
///     let parent = parent_process().expect("started by mproc");
///     // The parent is busy joining us: it does not end within 10 ms.
///     !parent.join_timeout(Duration::from_millis(10)) && parent.is_alive()
/// }
///
/// assert!(parent_process().is_none());
/// assert!(Process::new(parent_alive, ()).start()?.join()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parent_process() -> Option<ProcessInfo> {
    state::me().parent.map(|parent| ProcessInfo {
        pid: Pid(parent.pid),
        name: parent.name,
        daemon: false,
        method: None,
        who: Who::Parent(state::parent_sentinel().map(Arc::new)),
    })
}

/// The children this process started that are still running. Like CPython's,
/// this reaps the children that ended, including those whose handles were
/// dropped.
pub fn active_children() -> Vec<ProcessInfo> {
    state::live_children()
        .into_iter()
        .map(|c| ProcessInfo {
            pid: Pid(c.pid),
            name: c.profile.name.clone(),
            daemon: c.profile.daemon,
            method: Some(c.profile.method),
            who: Who::Child(c),
        })
        .collect()
}
