//! `Process` (the builder), `ProcessHandle` (a started child) and their
//! vocabulary: start methods, exit statuses, pids.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::authkey::AuthKey;
use crate::child;
use crate::error::{
    JoinError, JoinTimeoutError, StartError, StartMethodError, TryJoinError, UnknownStartMethod,
};
use crate::state::{self, lock};
use crate::sys::{self, RawPid};
use crate::wire::{self, Request, ResultReader, Tag};
use crate::{server, start};

/// How a child process is created. See the crate docs for the trade-offs.
///
/// `StartMethod::default()` is the built-in default, the fork server; the
/// process-wide default that builders follow is [`get_start_method`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum StartMethod {
    /// A single-threaded server process, started by exec of this binary on
    /// first use, forks each child. Safe from threaded parents; fast.
    #[default]
    #[serde(rename = "forkserver")]
    ForkServer,
    /// Re-execute this binary for each child. Safe from threaded parents.
    #[serde(rename = "spawn")]
    Spawn,
    /// Fork the calling process. Fastest; refused when the caller has more
    /// than one thread.
    #[serde(rename = "fork")]
    Fork,
}

impl StartMethod {
    /// The name Python uses: `"forkserver"`, `"spawn"` or `"fork"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ForkServer => "forkserver",
            Self::Spawn => "spawn",
            Self::Fork => "fork",
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::ForkServer),
            1 => Some(Self::Spawn),
            2 => Some(Self::Fork),
            _ => None,
        }
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::ForkServer => 0,
            Self::Spawn => 1,
            Self::Fork => 2,
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = UnknownStartMethod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "forkserver" => Ok(Self::ForkServer),
            "spawn" => Ok(Self::Spawn),
            "fork" => Ok(Self::Fork),
            other => Err(UnknownStartMethod(other.to_owned())),
        }
    }
}

/// The environment variable that chooses the process-wide default start
/// method (`forkserver`, `spawn` or `fork`) without code changes; see
/// [`get_start_method`].
pub const START_METHOD_ENV: &str = "MPROC_START_METHOD";

/// Fixes the start method of everything started without an explicit one
/// (Python's `set_start_method`): [`Process`], and the pools and managers
/// built on it.
///
/// # Errors
/// [`StartMethodError::AlreadySet`] if the default was fixed already, by an
/// earlier call or by its first use (as CPython's `"context has already
/// been set"`); [`set_start_method_force`] changes it anyway.
///
/// # Examples
///
/// ```
/// use mproc_process::{get_start_method, set_start_method, StartMethod, StartMethodError};
///
/// set_start_method(StartMethod::Spawn)?;
/// assert_eq!(get_start_method()?, StartMethod::Spawn);
/// assert_eq!(
///     set_start_method(StartMethod::Fork),
///     Err(StartMethodError::AlreadySet { current: StartMethod::Spawn })
/// );
/// # Ok::<(), StartMethodError>(())
/// ```
pub fn set_start_method(method: StartMethod) -> Result<(), StartMethodError> {
    state::set_default_method(method, false)
}

/// [`set_start_method`] even if the default was fixed already (Python's
/// `set_start_method(m, force=True)`).
pub fn set_start_method_force(method: StartMethod) {
    let _ = state::set_default_method(method, true);
}

/// The process-wide default start method (Python's `get_start_method()`),
/// which this call fixes if nothing did before, as CPython's does.
///
/// In order of precedence: the method given to [`set_start_method`]; in a
/// child mproc started, its parent's default; the environment variable
/// [`START_METHOD_ENV`] (read once; unset or empty means the built-in
/// default); the fork server. A builder's explicit
/// [`start_method`](Process::start_method), or a [`Context`], overrides all
/// of these for what it starts.
///
/// # Errors
/// [`StartMethodError::BadEnvironment`] if the environment variable names
/// no start method. There is deliberately no fallback: a deployment that
/// asked for a start method and misspelt it learns so at the first start
/// (which fails with [`StartError::StartMethod`]), not by running with
/// another. An explicit choice in code (`set_start_method`, a builder's or
/// a context's) does not read the variable and is unaffected.
pub fn get_start_method() -> Result<StartMethod, StartMethodError> {
    state::default_method()
}

/// Every start method this platform supports (Python's
/// `get_all_start_methods`), the default first.
pub fn all_start_methods() -> [StartMethod; 3] {
    [
        StartMethod::ForkServer,
        StartMethod::Spawn,
        StartMethod::Fork,
    ]
}

/// A process id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(RawPid);

impl Pid {
    /// The raw OS id.
    pub fn as_raw(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// It exited with this code (0–255).
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl ExitStatus {
    /// Whether it exited with code 0.
    pub fn success(self) -> bool {
        self == Self::Exited(0)
    }

    /// The exit code, if it exited.
    pub fn code(self) -> Option<i32> {
        match self {
            Self::Exited(c) => Some(c),
            Self::Signaled(_) => None,
        }
    }

    /// The signal that killed it, if one did.
    pub fn signal(self) -> Option<i32> {
        match self {
            Self::Exited(_) => None,
            Self::Signaled(s) => Some(s),
        }
    }

    /// CPython's `exitcode`: the code, or `-N` for signal N.
    pub fn exitcode(self) -> i32 {
        match self {
            Self::Exited(c) => c,
            Self::Signaled(s) => -s,
        }
    }

    pub(crate) fn from_raw(status: libc::c_int) -> Self {
        match sys::decode_status(status) {
            (true, c) => Self::Exited(c),
            (false, s) => Self::Signaled(s),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(c) => write!(f, "exited with code {c}"),
            Self::Signaled(s) => write!(f, "was killed by signal {s}"),
        }
    }
}

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
    fn fd(&self, pid: RawPid) -> Option<BorrowedFd<'_>> {
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
enum End {
    Running,
    Ended(ExitStatus),
    /// The status cannot be known (fork server died, or reaped elsewhere).
    Lost,
}

/// A started child, shared by its handle and the registry of children.
#[derive(Debug)]
pub(crate) struct Inner {
    pid: RawPid,
    name: String,
    daemon: bool,
    method: StartMethod,
    authkey: AuthKey,
    watch: Watch,
    end: Mutex<End>,
}

impl Inner {
    /// Checks (without blocking) whether the child ended; reaps it if so.
    fn poll_end(&self) -> End {
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
    fn wait_gone(&self, deadline: Instant) -> bool {
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
    fn wait_end(&self, deadline: Option<Instant>) -> End {
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

    fn signal(&self, sig: libc::c_int) -> io::Result<()> {
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
            Who::Current => Some(state::authkey()),
            Who::Child(inner) => Some(inner.authkey.clone()),
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
    state::me().parent.map(|(pid, name)| ProcessInfo {
        pid: Pid(pid),
        name,
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
            name: c.name.clone(),
            daemon: c.daemon,
            method: Some(c.method),
            who: Who::Child(c),
        })
        .collect()
}

/// A context fixes the start method for everything made through it
/// (Python's `get_context`).
///
/// # Examples
///
/// ```
/// use mproc_process::{get_context, StartMethod};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let ctx = get_context(StartMethod::Spawn);
/// let mut child = ctx.process(square, 7).start()?;
/// assert_eq!(child.join()?, 49);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
}

/// The context of a start method.
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

impl Context {
    /// The context of a start method.
    pub fn new(method: StartMethod) -> Self {
        Self { method }
    }

    /// Its start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process builder using this context's start method.
    pub fn process<F, A, R>(&self, f: F, args: A) -> Process<F, A>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned,
    {
        // Here too, so that a wrong function is reported at the caller's line.
        const { mproc_fnref::assert_zst::<F>() };
        Process::new(f, args).start_method(self.method)
    }
}

/// A process to start: a function, its arguments and options.
///
/// The function is a `fn` item or a non-capturing closure (a capturing one
/// is a compile error: its state could not reach another process). It runs in
/// a new process on [`Process::start`]; the arguments travel there by value
/// (serde + postcard; mproc handles such as `mproc_shm::Segment` travel as
/// file descriptors) and the return value comes back on
/// [`ProcessHandle::join`].
///
/// # Examples
///
/// ```
/// use mproc_process::Process;
///
/// fn greet((name, n): (String, u32)) -> String {
///     format!("hello {name} #{n}")
/// }
///
/// let mut child = Process::new(greet, ("world".to_string(), 1)).name("greeter").start()?;
/// assert_eq!(child.join()?, "hello world #1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A closure that captures state does not compile (its state could not
/// reach a spawned child); pass the state as arguments instead:
///
/// ```compile_fail,E0080
/// use mproc_process::Process;
///
/// let offset = 5u64;
/// let _ = Process::new(move |x: u64| x + offset, 1u64).start();
/// ```
///
/// Neither does a fn pointer (it names no function at compile time):
///
/// ```compile_fail,E0080
/// use mproc_process::Process;
///
/// fn double(x: u64) -> u64 { x * 2 }
/// let f: fn(u64) -> u64 = double;
/// let _ = Process::new(f, 1u64).start();
/// ```
///
/// Pass `double` itself (a zero-sized `fn` item), not `f`.
///
/// The error (E0080, with [`mproc_fnref::assert_zst`]'s message) points at
/// the caller's `Process::new(..)` (or `Context::process(..)`) line:
///
/// ```text
/// note: the above error was encountered while instantiating `fn Process::<fn(u64) -> u64, u64>::new`
///  --> src/main.rs:7:13
///   |
/// 7 |     let _ = Process::new(f, 1u64).start();
/// ```
///
/// It comes from `cargo build`, not `cargo check`: stable Rust has no trait
/// bound that means "zero-sized" (a fn pointer and a capturing closure are
/// `Fn + Copy + Send + 'static` like a `fn` item, so
/// `#[diagnostic::on_unimplemented]` has nothing to hang on), and a size
/// check on a generic type is evaluated only when the function is
/// instantiated, which `cargo check` does not do.
#[must_use = "a Process does nothing until started"]
pub struct Process<F, A> {
    f: F,
    args: A,
    name: Option<String>,
    daemon: Option<bool>,
    method: Option<StartMethod>,
    threaded_fork: bool,
    kill_on_drop: bool,
}

impl<F, A> fmt::Debug for Process<F, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl<F, A> Process<F, A> {
    /// Names the process (default: `Process-N`, `Process-N:M` for a grandchild).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Makes the child a daemon: it dies with its parent, even when the
    /// parent is killed with SIGKILL. The default is the current process's
    /// own daemon flag (false in the main process), as in CPython. Unlike
    /// CPython's, daemons may start children of their own.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// Chooses the start method (default: the process-wide
    /// [`get_start_method`], itself the fork server unless chosen otherwise).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Sends SIGKILL to the child if its handle is dropped while it runs
    /// (default: off, the child runs on).
    pub fn kill_on_drop(mut self, on: bool) -> Self {
        self.kill_on_drop = on;
        self
    }

    /// Lets [`StartMethod::Fork`] fork even when this process has more than
    /// one thread.
    ///
    /// # Safety
    /// After `fork` the child has only the calling thread; every lock another
    /// thread held at that instant (the allocator's arenas, stdout, the
    /// environment lock, any `Mutex` of yours, this crate's own state) stays
    /// locked in the child for ever. As nix's `fork` documents, such a child
    /// may only call async-signal-safe functions until it execs, and running
    /// a Rust function (which allocates, prints and unwinds) is not that. The
    /// caller must therefore guarantee that no other thread can hold any lock
    /// the child function (or mproc's child bootstrap: allocation, stdout,
    /// panic handling) will take. Prefer [`StartMethod::ForkServer`], which
    /// gives the same speed class without this hazard. A daemon forked this
    /// way dies when the *calling thread* exits (`PR_SET_PDEATHSIG` follows
    /// the parent thread).
    pub unsafe fn allow_fork_with_threads(mut self) -> Self {
        self.threaded_fork = true;
        self
    }
}

impl<F, A, R> Process<F, A>
where
    F: Fn(A) -> R + Copy + Send + 'static,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// A process that will run `f(args)`.
    ///
    /// `f` must be a `fn` item or a closure that captures nothing: anything
    /// else is a compile error at this call (see [`Process`]).
    pub fn new(f: F, args: A) -> Self {
        // In a const block of this function, rather than a call, so that the
        // error names the caller's line (the function instantiated there).
        const { mproc_fnref::assert_zst::<F>() };
        Self {
            f,
            args,
            name: None,
            daemon: None,
            method: None,
            threaded_fork: false,
            kill_on_drop: false,
        }
    }

    /// Starts the child and returns its handle.
    ///
    /// Also reaps children that ended since the last start (CPython does the
    /// same), so dropped handles leave no zombies for long.
    ///
    /// # Errors
    /// [`StartError::Encode`] if the arguments do not serialize,
    /// [`StartError::ThreadedFork`] for [`StartMethod::Fork`] in a threaded
    /// process, [`StartError::ForkServer`]/[`StartError::Os`] if the OS
    /// refuses.
    pub fn start(self) -> Result<ProcessHandle<R>, StartError> {
        let (p, req, fds) = self.prepare()?;
        let started = match p.method {
            StartMethod::ForkServer => server::start(&req, &fds)?,
            StartMethod::Spawn => start::spawn(&req, &fds)?,
            StartMethod::Fork => start::fork(req, fds, p.threaded_fork)?,
        };
        // After the start, which need not wait for it.
        state::reap_finished();
        Ok(p.handle(started))
    }

    /// Asks for the child to be started and returns without waiting for it
    /// to exist: [`PendingStart::wait`] returns its handle.
    ///
    /// With [`StartMethod::ForkServer`] this sends the request to the fork
    /// server and returns at once, so that several children are created
    /// while the caller goes on (for example, writing to a pipe the child
    /// will read: the child finds the data there when it starts). Errors
    /// known when the request is sent are returned here; the others
    /// (the server could not fork, or died) by [`PendingStart::wait`]. The
    /// other start methods start the child here, as [`start`](Self::start)
    /// does, and `wait` returns its handle at once.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc_process::Process;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// // Both requests leave before either child exists.
    /// let a = Process::new(square, 3).start_pending()?;
    /// let b = Process::new(square, 4).start_pending()?;
    /// let (mut a, mut b) = (a.wait()?, b.wait()?);
    /// assert_eq!(a.join()? + b.join()?, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_pending(self) -> Result<PendingStart<R>, StartError> {
        let (p, req, fds) = self.prepare()?;
        let state = match p.method {
            StartMethod::ForkServer => {
                let sent = server::send(&req, &fds)?;
                Pending::Server(p, sent)
            }
            StartMethod::Spawn => Pending::Done(p.handle(start::spawn(&req, &fds)?)),
            StartMethod::Fork => {
                let threaded = p.threaded_fork;
                Pending::Done(p.handle(start::fork(req, fds, threaded)?))
            }
        };
        // After the request left, which need not wait for it.
        state::reap_finished();
        Ok(PendingStart { state })
    }

    /// Everything but the start itself: the request and its descriptors.
    fn prepare(self) -> Result<(Prepared, Request, Vec<OwnedFd>), StartError> {
        child::keep_constructor();
        let _ = self.f;
        let (args, fds) =
            mproc_shm::handle::to_bytes_with_fds(&self.args).map_err(StartError::Encode)?;
        drop(self.args);
        // Room for the fork server's two descriptors and the parent sentinel.
        if fds.len() > mproc_shm::handle::MAX_FDS_PER_MESSAGE - 3 {
            return Err(StartError::TooManyHandles { count: fds.len() });
        }
        let method = match self.method {
            Some(m) => m,
            None => state::default_method()?,
        };
        let exe = mproc_fnref::exe_id().map_err(|e| match e.kind() {
            io::ErrorKind::Unsupported => StartError::Unsupported,
            _ => StartError::Os(e),
        })?;
        let me = state::me();
        let identity = state::next_identity();
        let name = self.name.unwrap_or_else(|| {
            let mut n = String::from("Process-");
            for (i, id) in identity.iter().enumerate() {
                use std::fmt::Write as _;
                let _ = write!(n, "{}{id}", if i == 0 { "" } else { ":" });
            }
            n
        });
        let daemon = self.daemon.unwrap_or(me.daemon);
        let authkey = state::authkey();
        // The pidfd of this process, the child's parent sentinel: sent along
        // (a copy), or inherited by a forked child.
        let sentinel = state::with_self_pidfd(|fd| match method {
            StartMethod::Fork => None,
            _ => fd.and_then(|fd| fd.try_clone().ok()),
        });
        let mut fds = fds;
        let req = Request {
            protocol: wire::PROTOCOL,
            exe,
            entry: child::entry_offset(child::entry::<F, A, R>),
            name: name.clone(),
            identity,
            daemon,
            parent_pid: sys::getpid(),
            parent_name: me.name,
            method: method.to_u8(),
            default_method: state::default_for_child(),
            authkey: authkey.as_bytes().to_vec(),
            parent_sentinel: sentinel.is_some(),
            nfds: fds.len() as u32,
            args,
        };
        fds.extend(sentinel);
        let p = Prepared {
            name,
            daemon,
            authkey,
            method,
            threaded_fork: self.threaded_fork,
            kill_on_drop: self.kill_on_drop,
        };
        Ok((p, req, fds))
    }
}

/// What a handle needs from its builder.
struct Prepared {
    name: String,
    daemon: bool,
    authkey: AuthKey,
    method: StartMethod,
    threaded_fork: bool,
    kill_on_drop: bool,
}

impl Prepared {
    fn handle<R>(self, started: start::Started) -> ProcessHandle<R> {
        let inner = Arc::new(Inner {
            pid: started.pid,
            name: self.name,
            daemon: self.daemon,
            method: self.method,
            authkey: self.authkey,
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
            _result: PhantomData,
        }
    }
}

enum Pending<R> {
    /// Sent to the fork server; its reply is not read yet.
    Server(Prepared, server::Pending),
    /// Started already (spawn and fork are synchronous).
    Done(ProcessHandle<R>),
    /// Waited for.
    Taken,
}

/// A child whose start was asked for by [`Process::start_pending`], not yet
/// known to exist.
///
/// Dropping it without [`wait`](Self::wait) detaches the child (if it is
/// created), as dropping a [`ProcessHandle`] does; with
/// [`Process::kill_on_drop`], the drop waits for the fork server's answer
/// and kills the child.
#[must_use = "wait for the start to learn whether the child exists"]
pub struct PendingStart<R> {
    state: Pending<R>,
}

impl<R> fmt::Debug for PendingStart<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PendingStart");
        match &self.state {
            Pending::Server(p, _) => d.field("name", &p.name).field("answered", &false),
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
    /// [`StartMethod::ForkServer`].
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
/// [`Process::kill_on_drop`] was set). A child whose handle was dropped is
/// reaped by this process's next [`Process::start`] or [`active_children`]
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
    _result: PhantomData<fn() -> R>,
}

impl<R> fmt::Debug for ProcessHandle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.inner.pid)
            .field("name", &self.inner.name)
            .field("daemon", &self.inner.daemon)
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
        &self.inner.name
    }

    /// Whether the child is a daemon.
    pub fn daemon(&self) -> bool {
        self.inner.daemon
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
}

impl<R: DeserializeOwned> ProcessHandle<R> {
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
                mproc_shm::handle::from_bytes_with_fds(&f.payload, f.fds).map_err(|e| {
                    JoinError::InvalidResult(format!("the return value did not decode: {e}")).into()
                })
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
