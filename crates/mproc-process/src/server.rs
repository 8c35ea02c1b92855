//! The fork server: a single-threaded copy of this executable, started by
//! exec on first use, that forks children on request.
//!
//! Protocol on the control socket (a Unix stream socketpair; the server's end
//! is inherited through exec):
//!
//! * request: a start-request frame (`wire`) whose descriptors are the
//!   child's socket, the write end of the child's status pipe, then the
//!   argument descriptors;
//! * reply: 8 bytes, little-endian `i64`: the child's pid, or a negative
//!   error (`-1` malformed request, `-2` different executable, `-3 - errno`
//!   fork failed);
//! * when the child ends, the server reaps it and writes its raw wait status
//!   (4 bytes, little-endian) to the child's status pipe, then closes it. If
//!   the server dies first, the pipe reaches end of file: status unknown.
//!
//! The server exits when the control socket reaches end of file, that is when
//! the parent process has died (every copy of the parent's end is
//! close-on-exec, and forked children close theirs). Its daemon children
//! follow through `PR_SET_PDEATHSIG`, because the server is their parent.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, Once};

use crate::child;
use crate::error::StartError;
use crate::method::StartMethod;
use crate::start::{self, Started};
use crate::state;
use crate::sys::{self, RawPid};
use crate::watch::Watch;
use crate::wire::{self, Request};
use mproc_shm::handle::recv_with_fds;
use mproc_shm::local::lock;

/// The parent's connection to its fork server.
///
/// Requests may be pipelined: several are sent before their replies are
/// read (see [`send`] and [`finish`]). Replies come back in request order,
/// so each request gets a ticket (its number on this connection), and a
/// reply read by a thread waiting for a later one is kept for its owner.
///
/// The lock on this is never held while waiting for a reply (that would
/// stop other threads from sending requests meanwhile): a thread waiting
/// for a reply holds [`READER`] instead, and reads from its own reference
/// to the socket.
struct Client {
    ctrl: Arc<OwnedFd>,
    pid: RawPid,
    /// Requests sent on this connection.
    sent: u64,
    /// Replies read from it.
    read: u64,
    /// Replies read but not yet claimed, by ticket.
    replies: HashMap<u64, Reply>,
    /// Tickets whose owner gave up (their replies are dropped when read).
    abandoned: Vec<u64>,
}

/// A reply: the pid (or a negative error code), and the child's pidfd.
type Reply = (i64, Option<OwnedFd>);

static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

/// The pid of the last server [`discard`]ed and not yet replaced (0: none),
/// for the event that reports its replacement.
static DISCARDED: AtomicI32 = AtomicI32::new(0);

/// Held by the one thread reading replies (taken before [`CLIENT`], never
/// while holding it).
static READER: Mutex<()> = Mutex::new(());

/// Reply codes.
const BAD_REQUEST: i64 = -1;
const WRONG_EXE: i64 = -2;
const FORK_FAILED: i64 = -3;

/// Called in a new child: the parent's server is not ours. Closing our copy
/// of the control socket lets the server see end of file when the parent dies.
pub(crate) fn forget_client() {
    // Relaxed: this process's own bookkeeping.
    DISCARDED.store(0, Ordering::Relaxed);
    let mut g = lock(&CLIENT);
    if g.is_some() {
        let old = g.take();
        drop(g);
        drop(old);
    }
}

/// The fork server's pid, if this process has started one that is running.
pub(crate) fn server_pid() -> Option<i32> {
    lock(&CLIENT).as_ref().map(|c| c.pid)
}

fn launch() -> io::Result<Client> {
    let (ours, theirs) = sys::socketpair()?;
    let env = start::child_env(child::SERVER_ENV, theirs.as_raw_fd());
    let pid = sys::spawn_self(&sys::SpawnSelf {
        keep: theirs.as_fd(),
        env: &env,
    })?;
    Ok(Client {
        ctrl: Arc::new(ours),
        pid,
        sent: 0,
        read: 0,
        replies: HashMap::new(),
        abandoned: Vec::new(),
    })
}

/// Reads one reply (8 bytes, and the pidfd that may ride along).
fn read_reply(ctrl: BorrowedFd<'_>) -> io::Result<Reply> {
    let mut reply = [0u8; 8];
    let mut got = 0;
    let mut pidfds = Vec::new();
    while got < reply.len() {
        let n = recv_with_fds(ctrl, &mut reply[got..], &mut pidfds)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the fork server exited",
            ));
        }
        got += n;
    }
    Ok((i64::from_le_bytes(reply), pidfds.into_iter().next()))
}

/// Forgets a server that died or broke the protocol (`why`), after
/// reaping it.
fn discard(g: &mut Option<Client>, why: &io::Error) {
    if let Some(old) = g.take() {
        let _ = sys::kill(old.pid, libc::SIGKILL);
        let status = sys::waitpid(old.pid, true).ok().flatten();
        let status = status.map(crate::status::ExitStatus::from_raw);
        // Relaxed: under CLIENT's lock, as is its reader in `send`.
        DISCARDED.store(old.pid, Ordering::Relaxed);
        mproc_shm::trace_event!(
            warn,
            server_pid = old.pid,
            error = %why,
            status = ?status,
            "fork server lost"
        );
    }
}

/// A start request sent to the fork server whose reply was not read yet.
pub(crate) struct Pending {
    /// The server it was sent to.
    server: RawPid,
    ticket: u64,
    status_r: Option<OwnedFd>,
    parent_end: Option<OwnedFd>,
    child_end: Option<OwnedFd>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.status_r.is_none() {
            return; // finished
        }
        // Given up: its reply must not stay in the map for ever.
        let mut g = lock(&CLIENT);
        if let Some(c) = g.as_mut().filter(|c| c.pid == self.server) {
            if c.replies.remove(&self.ticket).is_none() && self.ticket >= c.read {
                c.abandoned.push(self.ticket);
            }
        }
    }
}

/// Sends a start request to the fork server (starting or restarting the
/// server if needed) without waiting for its reply: [`finish`] reads it.
pub(crate) fn send(req: &Request, fds: &[OwnedFd]) -> Result<Pending, StartError> {
    let (parent_end, child_end) = start::result_channel().map_err(StartError::Os)?;
    let (status_r, status_w) = sys::pipe().map_err(StartError::Os)?;
    let frame = wire::encode_request(req).map_err(StartError::Os)?;
    let mut send: Vec<BorrowedFd<'_>> = vec![child_end.as_fd(), status_w.as_fd()];
    send.extend(fds.iter().map(|f| f.as_fd()));

    let (server, ticket) = {
        let mut g = lock(&CLIENT);
        let mut attempt = 0;
        loop {
            if g.is_none() {
                static FORGET: Once = Once::new();
                FORGET.call_once(|| state::forget_in_child(forget_client));
                let c = launch().map_err(StartError::ForkServer)?;
                // Relaxed: under CLIENT's lock, as in `discard`.
                let old = DISCARDED.swap(0, Ordering::Relaxed);
                if old != 0 {
                    mproc_shm::trace_event!(
                        warn,
                        old_pid = old,
                        new_pid = c.pid,
                        "fork server restarted"
                    );
                }
                *g = Some(c);
            }
            let c = g.as_mut().expect("just set");
            match wire::send_all(c.ctrl.as_fd(), &frame, &send) {
                Ok(()) => {
                    c.sent += 1;
                    break (c.pid, c.sent - 1);
                }
                Err(e) => {
                    // The server died (or the protocol broke): reap it and
                    // start a fresh one, once. Requests still waiting for
                    // their replies from it fail in `finish`.
                    discard(&mut g, &e);
                    attempt += 1;
                    if attempt > 1 {
                        return Err(StartError::ForkServer(e));
                    }
                }
            }
        }
    };
    // The server holds its own copy now (in flight or received).
    drop(status_w);
    Ok(Pending {
        server,
        ticket,
        status_r: Some(status_r),
        parent_end: Some(parent_end),
        child_end: Some(child_end),
    })
}

/// A request whose server is gone before it answered.
fn gone() -> StartError {
    StartError::ForkServer(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the fork server exited before it answered",
    ))
}

/// The reply for `p`, if another waiter read it already; an error if it
/// can never come.
fn claim(g: &mut Option<Client>, p: &Pending) -> Result<Option<Reply>, StartError> {
    let Some(c) = g.as_mut().filter(|c| c.pid == p.server) else {
        return Err(gone());
    };
    match c.replies.remove(&p.ticket) {
        Some(r) => Ok(Some(r)),
        None if p.ticket < c.read => Err(gone()),
        None => Ok(None),
    }
}

/// Waits for the reply to `p`: taken from another waiter, or read from the
/// socket (keeping the replies read on the way for their owners).
fn await_reply(p: &Pending) -> Result<Reply, StartError> {
    if let Some(r) = claim(&mut lock(&CLIENT), p)? {
        return Ok(r);
    }
    let _reader = lock(&READER);
    let ctrl = {
        let mut g = lock(&CLIENT);
        if let Some(r) = claim(&mut g, p)? {
            return Ok(r);
        }
        g.as_ref().map(|c| c.ctrl.clone()).ok_or_else(gone)?
    };
    // Only the holder of READER reads, so the replies arrive here in order;
    // others may send requests meanwhile.
    loop {
        let r = read_reply(ctrl.as_fd());
        let mut g = lock(&CLIENT);
        let Some(c) = g.as_mut().filter(|c| c.pid == p.server) else {
            return Err(gone());
        };
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                discard(&mut g, &e);
                return Err(StartError::ForkServer(e));
            }
        };
        let t = c.read;
        c.read += 1;
        if t == p.ticket {
            return Ok(r);
        }
        if let Some(i) = c.abandoned.iter().position(|&a| a == t) {
            c.abandoned.swap_remove(i);
        } else {
            c.replies.insert(t, r);
        }
    }
}

/// Waits for the reply to a request sent by [`send`].
pub(crate) fn finish(mut p: Pending) -> Result<Started, StartError> {
    let reply = await_reply(&p)?;
    let (reply, pidfd) = reply;
    let status_r = p.status_r.take().expect("taken only here");
    let parent_end = p.parent_end.take().expect("taken only here");
    let child_end = p.child_end.take();
    match reply {
        BAD_REQUEST => Err(StartError::Rejected("malformed start request")),
        WRONG_EXE => Err(StartError::Rejected(
            "the fork server runs a different executable",
        )),
        r if r <= FORK_FAILED => {
            let errno = i32::try_from(FORK_FAILED - r).unwrap_or(libc::EIO);
            Err(StartError::Os(io::Error::from_raw_os_error(errno)))
        }
        pid => {
            let pid = RawPid::try_from(pid).map_err(|_| StartError::Rejected("malformed reply"))?;
            Ok(Started {
                pid,
                watch: Watch::server(status_r, pidfd),
                chan: parent_end,
                theirs: child_end,
            })
        }
    }
}

/// Starts a child through the fork server, starting (or restarting) the
/// server if needed, and waits for its pid.
pub(crate) fn start(req: &Request, fds: &[OwnedFd]) -> Result<Started, StartError> {
    match finish(send(req, fds)?) {
        // The server died between the request and the reply: a fresh one
        // gets one more try (as a request that could not be sent does).
        Err(StartError::ForkServer(_)) => finish(send(req, fds)?),
        r => r,
    }
}

/// The server's main loop. Never returns.
pub(crate) fn serve(fd: RawFd) -> ! {
    // SAFETY: `fd` was checked to be open; the parent placed the control
    // socket there for us and nothing else in this fresh process owns it.
    let ctrl = unsafe { sys::adopt(fd) };
    let _ = sys::set_cloexec(ctrl.as_fd());
    // Ctrl-C in the terminal goes to the whole process group: the server
    // must outlive it so the parent can decide; its children restore SIGINT.
    sys::ignore_signal(libc::SIGINT);
    sys::ignore_signal(libc::SIGPIPE);
    if sys::block_sigchld(true).is_err() {
        sys::exit_now(child::BOOTSTRAP_EXIT);
    }
    let Ok(sigfd) = sys::signalfd_sigchld() else {
        sys::exit_now(child::BOOTSTRAP_EXIT)
    };
    let me = sys::getpid();
    let exe = mproc_fnref::exe_id().ok();
    // Every child decodes its arguments and encodes its result through
    // these thread-locals. Their first use registers a destructor, which
    // binds a dynamic symbol lazily (a symbol lookup and a dozen page
    // faults): done once here, children inherit it done.
    mproc_shm::handle::collect_fds(|| ());
    mproc_shm::handle::provide_fds(Vec::new(), || ());
    // Likewise for what every child does last: flushing stdout (whose
    // first use allocates its buffer) under a lock that wants the thread's
    // id (allocated on first use). The server writes nothing to stdout.
    {
        use std::io::Write as _;
        let _ = std::io::stdout().lock().flush();
    }
    // Set once here rather than in every child: the hook is the children's.
    child::install_panic_hook();
    let mut children: HashMap<RawPid, OwnedFd> = HashMap::new();

    loop {
        let mut pfd = [sys::pollin(ctrl.as_fd()), sys::pollin(sigfd.as_fd())];
        if sys::poll(&mut pfd, None).is_err() {
            sys::exit_now(child::BOOTSTRAP_EXIT);
        }
        if sys::ready(&pfd[1]) {
            sys::drain(sigfd.as_fd());
            while let Ok(Some((pid, status))) = sys::waitpid_any() {
                if let Some(w) = children.remove(&pid) {
                    let _ = sys::write_all(w.as_fd(), &status.to_le_bytes());
                }
            }
        }
        if !sys::ready(&pfd[0]) {
            continue;
        }
        let (mut req, mut fds) = match wire::read_request(ctrl.as_fd()) {
            // The parent is gone: so are we. Daemon children follow.
            Ok(None) => sys::exit_now(0),
            Ok(Some(r)) => r,
            // Framing is lost: nothing sensible can follow on this socket.
            Err(_) => {
                let _ = sys::write_all(ctrl.as_fd(), &BAD_REQUEST.to_le_bytes());
                sys::exit_now(child::BOOTSTRAP_EXIT)
            }
        };
        if fds.len() != req.fd_count() + 2 {
            let _ = sys::write_all(ctrl.as_fd(), &BAD_REQUEST.to_le_bytes());
            continue;
        }
        if exe != Some(req.exe) {
            let _ = sys::write_all(ctrl.as_fd(), &WRONG_EXE.to_le_bytes());
            continue;
        }
        let arg_fds = fds.split_off(2);
        let status_w = fds.pop().expect("two descriptors checked");
        let chan = fds.pop().expect("two descriptors checked");
        // SAFETY: the server is single-threaded (it runs before `main`, and
        // never starts a thread), so the child is a complete copy of it.
        match unsafe { sys::fork() } {
            Ok(sys::Forked::Child) => {
                drop(status_w);
                // The other children's status pipes are not ours. Closed
                // without freeing the map: freeing would write (and, in a
                // forked child, copy) heap pages.
                for w in children.values() {
                    // SAFETY: the map is forgotten next, so each descriptor
                    // is closed once, and nothing else uses them.
                    unsafe { sys::close_unowned(w.as_raw_fd()) };
                }
                std::mem::forget(children);
                // Not closed: saves a system call; the child never reads it.
                std::mem::forget(sigfd);
                drop(ctrl);
                let _ = sys::block_sigchld(false);
                child::run_child(&mut req, chan, arg_fds, me, StartMethod::ForkServer)
            }
            Ok(sys::Forked::Parent(pid)) => {
                children.insert(pid, status_w);
                // A pidfd lets the parent signal the child without racing
                // our reaping (and the pid's reuse).
                let pidfd = sys::pidfd_open(pid).ok();
                // Sent without allocating: a write to the heap right after
                // the fork copies a page the child still shares.
                let reply = i64::from(pid).to_le_bytes();
                let pidfd: Option<BorrowedFd<'_>> = pidfd.as_ref().map(|f| f.as_fd());
                let fds = pidfd.as_slice();
                match mproc_shm::handle::send_with_fds(ctrl.as_fd(), &reply, fds) {
                    Ok(n) if n < reply.len() => {
                        let _ = wire::send_all(ctrl.as_fd(), &reply[n..], &[]);
                    }
                    Ok(_) => {}
                    // Nothing was sent: the general path waits for room.
                    Err(_) => {
                        let _ = wire::send_all(ctrl.as_fd(), &reply, fds);
                    }
                }
            }
            Err(e) => {
                let code = FORK_FAILED - i64::from(e.raw_os_error().unwrap_or(libc::EIO));
                let _ = sys::write_all(ctrl.as_fd(), &code.to_le_bytes());
            }
        }
    }
}
