//! The spawn and fork start methods (the fork server lives in `server.rs`).

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::sync::{Mutex, Once};

use crate::child;
use crate::error::StartError;
use crate::method::StartMethod;
use crate::sys::{self, RawPid};
use crate::watch::Watch;
use crate::wire::{self, Request};
use mproc_shm::local::lock;

/// A started child, as seen by its parent.
pub(crate) struct Started {
    pub(crate) pid: RawPid,
    pub(crate) watch: Watch,
    /// The parent's end of the child's socket (non-blocking): the result
    /// frame arrives here.
    pub(crate) chan: OwnedFd,
    /// The parent's copy of the child's end, kept so that the pair can serve
    /// another child once this one is joined (see [`result_channel`]).
    pub(crate) theirs: Option<OwnedFd>,
}

/// Result channels of joined children, kept for the next children, with the
/// process they belong to.
static SPARE_CHANNELS: Mutex<(RawPid, Vec<(OwnedFd, OwnedFd)>)> = Mutex::new((0, Vec::new()));

/// At most this many spare channels are kept.
const MAX_SPARE_CHANNELS: usize = 4;

/// A result channel for a new child (our end, the child's end), both
/// non-blocking and close-on-exec.
///
/// Creating and releasing a Unix socket pair costs more than a quarter of a
/// fork start, so the parent keeps its copy of the child's end, and a pair
/// whose result was read whole with nothing left after it
/// ([`recycle_channel`]) serves the next child. Only the child itself writes
/// to its end (a process it forks inherits the descriptor but writes to its
/// own channel), so a recycled channel starts empty.
pub(crate) fn result_channel() -> io::Result<(OwnedFd, OwnedFd)> {
    // A busy lock (threads starting children at once) or a poisoned one
    // just means a new pair.
    if let Ok(mut spare) = SPARE_CHANNELS.try_lock() {
        let me = sys::getpid();
        if spare.0 != me {
            // Inherited through fork: our parent's channels are not ours.
            *spare = (me, Vec::new());
        }
        if let Some(pair) = spare.1.pop() {
            return Ok(pair);
        }
    }
    sys::socketpair_with(libc::SOCK_STREAM, true)
}

/// Keeps a joined child's channel for the next child if nothing is left in
/// it; otherwise closes it.
pub(crate) fn recycle_channel(ours: OwnedFd, theirs: OwnedFd) {
    if sys::pending_bytes(ours.as_fd()).ok() != Some(0) {
        return;
    }
    if let Ok(mut spare) = SPARE_CHANNELS.try_lock() {
        if spare.0 == sys::getpid() && spare.1.len() < MAX_SPARE_CHANNELS {
            spare.1.push((ours, theirs));
        }
    }
}

/// Builds a child's environment: ours, plus the variable naming its socket.
pub(crate) fn child_env(var: &str, fd: RawFd) -> Vec<CString> {
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != child::CHILD_ENV && k != child::SERVER_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.into_encoded_bytes();
            kv.push(b'=');
            kv.extend_from_slice(v.as_encoded_bytes());
            CString::new(kv).ok()
        })
        .collect();
    env.push(CString::new(format!("{var}={fd}")).expect("no NUL in an env var name or number"));
    env
}

/// Starts a child by re-executing this binary.
pub(crate) fn spawn(req: &Request, fds: &[OwnedFd]) -> Result<Started, StartError> {
    let (parent_end, child_end) = sys::socketpair().map_err(StartError::Os)?;
    let env = child_env(child::CHILD_ENV, child_end.as_raw_fd());
    let pid = if req.daemon && sys::gettid() != sys::getpid() {
        // A daemon dies with the thread that created it (PR_SET_PDEATHSIG
        // follows the parent *thread*), so a daemon asked for by any thread
        // but the main one (whose end is the process's end) is created by a
        // helper thread that lives as long as the process.
        spawn_via_helper(child_end.as_fd(), env)
    } else {
        sys::spawn_self(&sys::SpawnSelf {
            keep: child_end.as_fd(),
            env: &env,
        })
    }
    .map_err(StartError::Os)?;
    drop(child_end);
    let watch = Watch::direct();
    let sent = wire::encode_request(req).and_then(|frame| {
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        wire::send_all(parent_end.as_fd(), &frame, &borrowed)
    });
    if let Err(e) = sent.and_then(|()| sys::set_nonblocking(parent_end.as_fd(), true)) {
        // The child cannot run without its request: make sure it is gone and reaped.
        let _ = sys::kill(pid, libc::SIGKILL);
        let _ = sys::waitpid(pid, true);
        return Err(StartError::Os(e));
    }
    Ok(Started {
        pid,
        watch,
        chan: parent_end,
        theirs: None,
    })
}

struct SpawnJob {
    keep: RawFd,
    env: Vec<CString>,
    reply: mpsc::SyncSender<io::Result<RawPid>>,
}

static SPAWNER: Mutex<Option<mpsc::Sender<SpawnJob>>> = Mutex::new(None);

fn spawn_via_helper(keep: BorrowedFd<'_>, env: Vec<CString>) -> io::Result<RawPid> {
    let (reply, result) = mpsc::sync_channel(1);
    let job = SpawnJob {
        keep: keep.as_raw_fd(),
        env,
        reply,
    };
    {
        let mut g = lock(&SPAWNER);
        let tx = match &*g {
            Some(tx) => tx.clone(),
            None => {
                static FORGET: Once = Once::new();
                FORGET.call_once(|| crate::state::forget_in_child(forget_spawner));
                let (tx, rx) = mpsc::channel::<SpawnJob>();
                std::thread::Builder::new()
                    .name("mproc-spawner".into())
                    .spawn(move || spawner(rx))?;
                *g = Some(tx.clone());
                tx
            }
        };
        tx.send(job)
            .map_err(|_| io::Error::other("the mproc spawner thread is gone"))?;
    }
    // The helper replies before `keep` (borrowed by our caller) can close.
    result
        .recv()
        .map_err(|_| io::Error::other("the mproc spawner thread is gone"))?
}

fn spawner(rx: mpsc::Receiver<SpawnJob>) {
    for job in rx {
        // SAFETY: the requester keeps `job.keep` open until it receives our
        // reply, which is sent after this borrow ends.
        let keep = unsafe { BorrowedFd::borrow_raw(job.keep) };
        let r = sys::spawn_self(&sys::SpawnSelf {
            keep,
            env: &job.env,
        });
        let _ = job.reply.send(r);
    }
}

/// Called in a new child: the parent's spawner thread does not exist here.
pub(crate) fn forget_spawner() {
    let mut g = lock(&SPAWNER);
    if g.is_some() {
        *g = None;
    }
}

/// `/dev/null`, opened once (close-on-exec) for forked children's stdin.
fn devnull() -> Option<BorrowedFd<'static>> {
    static DEVNULL: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    DEVNULL
        .get_or_init(|| std::fs::File::open("/dev/null").ok().map(OwnedFd::from))
        .as_ref()
        .map(|f| f.as_fd())
}

/// Starts a child by forking this process.
///
/// With `threads_ok == false` this refuses when the process has more than
/// one thread; the caller of `threads_ok == true` has accepted the contract
/// of [`crate::Process::allow_fork_with_threads`].
pub(crate) fn fork(
    mut req: Request,
    fds: Vec<OwnedFd>,
    threads_ok: bool,
) -> Result<Started, StartError> {
    if !threads_ok && !sys::single_threaded().map_err(StartError::Os)? {
        let threads = sys::thread_count().map_err(StartError::Os)?;
        return Err(StartError::ThreadedFork { threads });
    }
    // Never let the child inherit (and print again) our buffered output.
    let _ = io::stdout().lock().flush();
    // Both ends non-blocking: the parent polls; the child only writes one
    // small frame (and waits for room if it must).
    let (parent_end, child_end) = result_channel().map_err(StartError::Os)?;
    let parent_pid = req.parent.pid;
    // Opened once, before the fork, so the child only needs a dup2.
    let devnull = devnull();
    // SAFETY: either the process has exactly one thread (checked above), so
    // the child is a complete copy of it, or the caller accepted the unsafe
    // contract of `allow_fork_with_threads`.
    match unsafe { sys::fork() }.map_err(StartError::Os)? {
        sys::Forked::Child => {
            // Not closed: the child exits soon, and this saves a system call
            // and a page fault on the start path.
            std::mem::forget(parent_end);
            match devnull {
                Some(fd) => {
                    let _ = sys::dup_onto(fd, 0);
                }
                None => {
                    let _ = sys::stdin_to_devnull();
                }
            }
            child::run_child(&mut req, child_end, fds, parent_pid, StartMethod::Fork)
        }
        sys::Forked::Parent(pid) => {
            drop(fds);
            Ok(Started {
                pid,
                watch: Watch::direct(),
                chan: parent_end,
                theirs: Some(child_end),
            })
        }
    }
}
