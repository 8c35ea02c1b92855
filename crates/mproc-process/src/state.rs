//! Process-global state: who this process is, and the children it started.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::authkey::{self, AuthKey};
use crate::error::StartMethodError;
use crate::method::{START_METHOD_ENV, StartMethod};
use crate::sys::{self, RawPid};
use crate::watch::Inner;
use crate::wire::{self, Parent, Request};
use mproc_shm::local::lock;

/// Who this process is, in mproc's terms.
#[derive(Clone, Debug)]
pub(crate) struct Me {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    /// How this process was started (`None` in a process mproc did not start).
    pub(crate) method: Option<StartMethod>,
    pub(crate) parent: Option<Parent>,
}

impl Me {
    fn main() -> Self {
        Self {
            name: "MainProcess".to_owned(),
            identity: Vec::new(),
            daemon: false,
            method: None,
            parent: None,
        }
    }
}

static ME: Mutex<Option<Me>> = Mutex::new(None);
/// Numbers this process's children: `Process-<identity>:<n>`.
// Relaxed: only uniqueness matters, no other memory is published through it.
static NEXT_CHILD: AtomicU32 = AtomicU32::new(1);
static CHILDREN: Mutex<Vec<Arc<Inner>>> = Mutex::new(Vec::new());

/// A copy of who this process is.
pub(crate) fn me() -> Me {
    lock(&ME).clone().unwrap_or_else(Me::main)
}

/// The next child identity and its default name.
pub(crate) fn next_identity() -> Vec<u32> {
    let mut id = lock(&ME)
        .as_ref()
        .map(|m| m.identity.clone())
        .unwrap_or_default();
    id.push(NEXT_CHILD.fetch_add(1, Ordering::Relaxed));
    id
}

/// Records a started child.
pub(crate) fn register(child: Arc<Inner>) {
    lock(&CHILDREN).push(child);
}

/// Reaps children that have ended.
pub(crate) fn reap_finished() {
    let mut kids = lock(&CHILDREN);
    if !kids.is_empty() {
        kids.retain(|c| c.poll_status().map(|s| s.is_none()).unwrap_or(false));
    }
}

/// The name of this process, if mproc started it (for the panic hook:
/// never blocks, so a panic while the lock is held cannot deadlock).
pub(crate) fn my_name() -> Option<String> {
    ME.try_lock()
        .ok()
        .and_then(|m| m.as_ref().map(|m| m.name.clone()))
}

/// Reaps children that have ended and returns those still running.
pub(crate) fn live_children() -> Vec<Arc<Inner>> {
    let mut kids = lock(&CHILDREN);
    kids.retain(|c| c.poll_status().map(|s| s.is_none()).unwrap_or(false));
    kids.clone()
}

/// What a new child forgets besides the state here, registered by the
/// modules that own it ([`forget_in_child`]): the fork server's client and
/// the spawner thread. Read without a lock, as a forked child must.
static FORGET_IN_CHILD: [OnceLock<fn()>; 4] = [const { OnceLock::new() }; 4];

/// Registers `forget` to run in every child this process starts from now
/// on, before user code: it drops parent state that is not the child's.
/// Each caller registers once (behind its own `Once`).
pub(crate) fn forget_in_child(forget: fn()) {
    let free = FORGET_IN_CHILD.iter().any(|slot| slot.set(forget).is_ok());
    debug_assert!(free, "more forget_in_child registrations than slots");
}

/// Called in a new child (after fork, or at the start of a spawned process)
/// before it runs user code: forget the parent's children, fork server and
/// helper thread, and take on the identity in `req`.
///
/// Written to touch little memory: after a fork every page this writes is
/// copied, and those page faults are most of the cost of a forked child.
pub(crate) fn become_child(req: &mut Request, sentinel: Option<OwnedFd>) {
    {
        let mut kids = lock(&CHILDREN);
        if !kids.is_empty() {
            // The parent's children are not ours. Leak rather than drop: the
            // inherited descriptors are close-on-exec and harmless, and
            // freeing would write (and copy) heap pages.
            std::mem::forget(std::mem::take(&mut *kids));
        }
    }
    for forget in &FORGET_IN_CHILD {
        if let Some(forget) = forget.get() {
            forget();
        }
    }
    NEXT_CHILD.store(1, Ordering::Relaxed);
    let method = StartMethod::from_u8(req.method);
    if method == Some(StartMethod::Fork) {
        // The parent's pidfd of itself is our parent sentinel (moved, so
        // nothing is allocated); its default and authkey are ours already.
        let mine = lock(&SELF_PIDFD).take();
        *lock(&PARENT_SENTINEL) = mine
            .filter(|(pid, _)| *pid == req.parent.pid)
            .map(|(_, fd)| fd);
    } else {
        *lock(&PARENT_SENTINEL) = sentinel;
        if let Some(m) = StartMethod::from_u8(req.default_method) {
            // Like CPython's spawn, which sets the parent's method, forced.
            *lock(&DEFAULT_METHOD) = Some(m);
        }
        authkey::set_authkey(AuthKey::new(std::mem::take(&mut req.authkey)));
    }
    *lock(&ME) = Some(Me {
        name: std::mem::take(&mut req.name),
        identity: std::mem::take(&mut req.identity),
        daemon: req.daemon,
        method,
        parent: Some(std::mem::take(&mut req.parent)),
    });
}

/// The process-wide default start method, once fixed (by
/// [`crate::set_start_method`], or by its first use).
static DEFAULT_METHOD: Mutex<Option<StartMethod>> = Mutex::new(None);

/// [`START_METHOD_ENV`], read once.
fn env_method() -> Result<StartMethod, StartMethodError> {
    static ENV: OnceLock<Result<StartMethod, String>> = OnceLock::new();
    let v = ENV.get_or_init(|| match std::env::var(START_METHOD_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(StartMethod::default()),
        Ok(v) if v.is_empty() => Ok(StartMethod::default()),
        Ok(v) => v.parse().map_err(|_| v),
        Err(std::env::VarError::NotUnicode(v)) => Err(v.to_string_lossy().into_owned()),
    });
    v.clone()
        .map_err(|value| StartMethodError::BadEnvironment { value })
}

/// The default start method, fixing it if it was not fixed yet.
pub(crate) fn default_method() -> Result<StartMethod, StartMethodError> {
    let mut g = lock(&DEFAULT_METHOD);
    match *g {
        Some(m) => Ok(m),
        None => {
            let m = env_method()?;
            *g = Some(m);
            Ok(m)
        }
    }
}

/// Fixes the default start method; without `force`, only if it was not
/// fixed yet.
pub(crate) fn set_default_method(m: StartMethod, force: bool) -> Result<(), StartMethodError> {
    let mut g = lock(&DEFAULT_METHOD);
    match *g {
        Some(current) if !force => Err(StartMethodError::AlreadySet { current }),
        _ => {
            *g = Some(m);
            Ok(())
        }
    }
}

/// The default a child inherits: ours if fixed or known, without fixing it.
pub(crate) fn default_for_child() -> u8 {
    let fixed = *lock(&DEFAULT_METHOD);
    match fixed.map(Ok).unwrap_or_else(env_method) {
        Ok(m) => m.to_u8(),
        Err(_) => wire::NO_DEFAULT,
    }
}

/// A pidfd of this process (with the pid it was opened in), sent to
/// children as their parent sentinel; a forked child finds it in memory.
static SELF_PIDFD: Mutex<Option<(RawPid, OwnedFd)>> = Mutex::new(None);

/// The parent's pidfd, in a child mproc started.
static PARENT_SENTINEL: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Runs `f` with this process's own pidfd (`None` on kernels without
/// pidfds), opening it on first use.
pub(crate) fn with_self_pidfd<T>(f: impl FnOnce(Option<&OwnedFd>) -> T) -> T {
    let mut g = lock(&SELF_PIDFD);
    let me = sys::getpid();
    if g.as_ref().is_none_or(|(pid, _)| *pid != me) {
        *g = sys::pidfd_open(me).ok().map(|fd| (me, fd));
    }
    f(g.as_ref().map(|(_, fd)| fd))
}

/// A new descriptor of the parent sentinel, if this process has one.
pub(crate) fn parent_sentinel() -> Option<OwnedFd> {
    lock(&PARENT_SENTINEL)
        .as_ref()
        .and_then(|fd| fd.try_clone().ok())
}
