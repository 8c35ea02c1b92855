//! Process-global state: who this process is, and the children it started.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::process::Inner;
use crate::wire::Request;

/// Who this process is, in mproc's terms.
#[derive(Clone, Debug)]
pub(crate) struct Me {
    pub(crate) name: String,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
    pub(crate) parent: Option<(i32, String)>,
}

impl Me {
    fn main() -> Self {
        Self {
            name: "MainProcess".to_owned(),
            identity: Vec::new(),
            daemon: false,
            parent: None,
        }
    }
}

static ME: Mutex<Option<Me>> = Mutex::new(None);
/// Numbers this process's children: `Process-<identity>:<n>`.
// Relaxed: only uniqueness matters, no other memory is published through it.
static NEXT_CHILD: AtomicU32 = AtomicU32::new(1);
static CHILDREN: Mutex<Vec<Arc<Inner>>> = Mutex::new(Vec::new());

/// Locks a mutex, ignoring poisoning (the data stays consistent: every
/// critical section here is a plain read or assignment).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

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

/// Called in a new child (after fork, or at the start of a spawned process)
/// before it runs user code: forget the parent's children, fork server and
/// helper thread, and take on the identity in `req`.
///
/// Written to touch little memory: after a fork every page this writes is
/// copied, and those page faults are most of the cost of a forked child.
pub(crate) fn become_child(req: &mut Request) {
    {
        let mut kids = lock(&CHILDREN);
        if !kids.is_empty() {
            // The parent's children are not ours. Leak rather than drop: the
            // inherited descriptors are close-on-exec and harmless, and
            // freeing would write (and copy) heap pages.
            std::mem::forget(std::mem::take(&mut *kids));
        }
    }
    crate::server::forget_client();
    crate::start::forget_spawner();
    NEXT_CHILD.store(1, Ordering::Relaxed);
    *lock(&ME) = Some(Me {
        name: std::mem::take(&mut req.name),
        identity: std::mem::take(&mut req.identity),
        daemon: req.daemon,
        parent: Some((req.parent_pid, std::mem::take(&mut req.parent_name))),
    });
}
