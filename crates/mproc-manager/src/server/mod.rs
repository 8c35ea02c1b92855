//! The server: shared objects, the registry, and one thread per connection.
//!
//! Its parts, by concern:
//! * [`objects`]: the state of each kind of shared object, and the pure
//!   rules on it (index and slice resolution, lock ownership);
//! * [`refs`]: who keeps each object alive, and the reference bookkeeping
//!   of one operation;
//! * this module: the [`Server`] (object table, registry, clients) and the
//!   handling of a [`Request`];
//! * [`dispatch`]: an operation on one object ([`Op`]), by kind, with
//!   [`collections`] for dict and list operations, [`updates`] for the
//!   user functions that run here, and [`waits`] for the operations that
//!   block;
//! * [`connection`]: the hello, the per-connection loop and the accept loop.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::client::lock;
use crate::code_ref;
use crate::proto::{self, ExeWire, Id, Init, Kind, RemoteError, Reply, Request, Val};

mod collections;
mod connection;
mod dispatch;
mod objects;
mod refs;
mod updates;
mod waits;

use connection::{AfterReply, Peer};
pub(crate) use connection::{ExitCleanup, HANDSHAKE_TIMEOUT, MAX_PENDING_HANDSHAKES, serve};
use objects::{BarrierState, CondState, Entry, LockState, ObjectState, OrderedMap, QueueState};
use refs::Refs;

type RemoteResult<T> = Result<T, RemoteError>;

/// The shared state of a server.
pub(crate) struct Server {
    objects: RwLock<HashMap<Id, Arc<Entry>>>,
    names: Mutex<BTreeMap<String, Id>>,
    next_id: AtomicU64,
    clients: Mutex<HashMap<u64, usize>>,
    refs: Mutex<Refs>,
    exe: Option<ExeWire>,
    stopping: AtomicBool,
}

impl Server {
    pub(crate) fn new() -> Self {
        Self {
            objects: RwLock::new(HashMap::new()),
            names: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            clients: Mutex::new(HashMap::new()),
            refs: Mutex::new(Refs::default()),
            exe: code_ref::exe_token(),
            stopping: AtomicBool::new(false),
        }
    }

    fn entry(&self, id: Id) -> RemoteResult<Arc<Entry>> {
        mproc_shm::local::read(&self.objects)
            .get(&id)
            .cloned()
            .ok_or(RemoteError::NoSuchObject(id))
    }

    /// Makes an object, with one reference to it for `client`.
    fn create(&self, client: u64, kind: Kind, init: Init) -> RemoteResult<Id> {
        let bad = || RemoteError::Malformed(format!("bad initial state for a {kind}"));
        let embedded: Vec<Id> = match &init {
            Init::Value(v) => v.refs.clone(),
            Init::Items(vs) => vs.iter().flat_map(|v| v.refs.iter().copied()).collect(),
            Init::Pairs(ps) => ps
                .iter()
                .flat_map(|(_, v)| v.refs.iter().copied())
                .collect(),
            Init::Empty | Init::Count(_) | Init::Queue { .. } => Vec::new(),
        };
        let obj = match (kind, init) {
            (Kind::Dict, Init::Empty) => ObjectState::Dict(OrderedMap::default()),
            (Kind::Dict, Init::Pairs(p)) => {
                let mut m = OrderedMap::default();
                for (k, v) in p {
                    m.insert(k, v);
                }
                ObjectState::Dict(m)
            }
            (Kind::List, Init::Empty) => ObjectState::List(Vec::new()),
            (Kind::List | Kind::Array, Init::Items(v)) => ObjectState::List(v),
            (Kind::Namespace, Init::Empty) => ObjectState::Namespace(BTreeMap::new()),
            (Kind::Value, Init::Value(v)) => ObjectState::Value(v),
            (Kind::Lock | Kind::RLock, Init::Empty) => ObjectState::Lock(LockState::default()),
            (Kind::Semaphore, Init::Count(n)) => ObjectState::Semaphore {
                value: n,
                bound: None,
            },
            (Kind::BoundedSemaphore, Init::Count(n)) => ObjectState::Semaphore {
                value: n,
                bound: Some(n),
            },
            (Kind::Event, Init::Empty) => ObjectState::Event(false),
            (Kind::Condition, Init::Empty) => ObjectState::Condition(CondState::default()),
            (Kind::Barrier, Init::Count(n)) if n > 0 => ObjectState::Barrier(BarrierState {
                parties: n,
                waiting: 0,
                generation: 0,
                broken: false,
                broken_generations: HashSet::new(),
            }),
            (Kind::Queue | Kind::JoinableQueue, Init::Queue { maxsize }) => {
                ObjectState::Queue(QueueState {
                    items: VecDeque::new(),
                    maxsize,
                    unfinished: 0,
                })
            }
            _ => return Err(bad()),
        };
        // Relaxed: only uniqueness matters.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut refs = lock(&self.refs);
            if let Some(&gone) = embedded.iter().find(|i| !refs.counts.contains_key(i)) {
                return Err(RemoteError::NoSuchObject(gone));
            }
            for &i in &embedded {
                refs.incref(i);
            }
            refs.counts.insert(id, 1);
            refs.credit(client, id);
        }
        let e = Arc::new(Entry {
            id,
            kind,
            state: Mutex::new(obj),
            cv: Condvar::new(),
        });
        mproc_shm::local::write(&self.objects).insert(id, e);
        Ok(id)
    }

    /// Handles one request. Never panics on any input (a panic in a user's
    /// update function is caught by the caller).
    pub(crate) fn handle(&self, peer: &Peer<'_>, req: Request) -> (Reply, AfterReply) {
        let mut freed = Vec::new();
        let r = match req {
            Request::Hello { .. } => Err(RemoteError::Malformed("hello sent twice".into())),
            Request::Ping => Ok(Reply::Unit),
            Request::Create { kind, init } => self
                .create(peer.client, kind, init)
                .map(|id| Reply::Object(id, kind)),
            Request::Register { name, id } => self.entry(id).and_then(|_| {
                let mut names = lock(&self.names);
                if names.contains_key(&name) {
                    return Err(RemoteError::NameTaken(name));
                }
                // A name holds a reference.
                if !lock(&self.refs).incref(id) {
                    return Err(RemoteError::NoSuchObject(id));
                }
                names.insert(name, id);
                Ok(Reply::Unit)
            }),
            Request::Lookup { name } => {
                let id = lock(&self.names).get(&name).copied();
                match id {
                    Some(id) => self.entry(id).and_then(|e| self.grant(peer, id, e.kind)),
                    None => Err(RemoteError::NoSuchName(name)),
                }
            }
            Request::Unregister { name } => match lock(&self.names).remove(&name) {
                Some(id) => {
                    lock(&self.refs).decref(id, &mut freed);
                    Ok(Reply::Unit)
                }
                None => Err(RemoteError::NoSuchName(name)),
            },
            Request::Incref { id } => self.entry(id).and_then(|e| self.grant(peer, id, e.kind)),
            Request::Decref { id } => {
                if lock(&self.refs).give_back(peer.client, id, &mut freed) {
                    Ok(Reply::Unit)
                } else {
                    Err(RemoteError::NotAllowed(format!(
                        "this client holds no reference to object {id}"
                    )))
                }
            }
            Request::Transfer { id } => {
                let mut refs = lock(&self.refs);
                if refs.incref(id) {
                    refs.next_token += 1;
                    let token = refs.next_token;
                    refs.transfers.insert(token, id);
                    Ok(Reply::Token(token))
                } else {
                    Err(RemoteError::NoSuchObject(id))
                }
            }
            Request::Adopt { token } => {
                let adopted = {
                    let mut refs = lock(&self.refs);
                    match refs.transfers.remove(&token) {
                        // The transfer's reference becomes the client's.
                        Some(id) if refs.counts.contains_key(&id) => {
                            refs.credit(peer.client, id);
                            Ok(id)
                        }
                        Some(id) => Err(RemoteError::NoSuchObject(id)),
                        None => Err(RemoteError::NoSuchTransfer(token)),
                    }
                };
                adopted.and_then(|id| self.entry(id).map(|e| Reply::Object(id, e.kind)))
            }
            Request::Names => Ok(Reply::Names(lock(&self.names).keys().cloned().collect())),
            Request::ObjectCount => Ok(Reply::Count(
                mproc_shm::local::read(&self.objects).len() as u64
            )),
            Request::Release { id } => {
                lock(&self.names).retain(|_, v| *v != id);
                if lock(&self.refs).counts.remove(&id).is_some() {
                    freed.push(id);
                    Ok(Reply::Unit)
                } else {
                    Err(RemoteError::NoSuchObject(id))
                }
            }
            Request::Call { id, op } => self
                .entry(id)
                .and_then(|e| self.op(peer, &e, op, &mut freed)),
            Request::Batch(ops) => {
                let mut out = Vec::with_capacity(ops.len().min(1024));
                for (id, op) in ops {
                    let r = if op.wait().is_some() {
                        Err(RemoteError::NotAllowed(
                            "waiting operations cannot be batched".into(),
                        ))
                    } else {
                        self.entry(id)
                            .and_then(|e| self.op(peer, &e, op, &mut freed))
                    };
                    out.push(r.unwrap_or_else(Reply::Err));
                }
                Ok(Reply::Batch(out))
            }
            Request::Shutdown => return (Reply::Unit, AfterReply::Shutdown),
        };
        self.reap(freed);
        (r.unwrap_or_else(Reply::Err), AfterReply::Continue)
    }

    /// A new reference to `id` for the client, as a reply.
    fn grant(&self, peer: &Peer<'_>, id: Id, kind: Kind) -> RemoteResult<Reply> {
        if lock(&self.refs).grant(peer.client, id) {
            Ok(Reply::Object(id, kind))
        } else {
            Err(RemoteError::NoSuchObject(id))
        }
    }

    /// Frees the objects in `freed` (their counts are gone already), and in
    /// turn those whose last reference was a value stored in one of them.
    /// Called with no object's lock held: a freed object's values are taken
    /// out under its own lock.
    fn reap(&self, mut freed: Vec<Id>) {
        while let Some(id) = freed.pop() {
            let gone = mproc_shm::local::write(&self.objects).remove(&id);
            let Some(e) = gone else { continue };
            let vals = lock(&e.state).drain();
            e.cv.notify_all();
            let mut refs = lock(&self.refs);
            for id in vals.into_iter().flat_map(|v| v.refs) {
                refs.decref(id, &mut freed);
            }
        }
    }

    /// Counts a new connection of `client`.
    fn client_joined(&self, client: u64) {
        *lock(&self.clients).entry(client).or_insert(0) += 1;
    }

    /// Uncounts a connection; when a client's last one closes, gives back
    /// the references its proxies held and releases the locks it held
    /// (marking them so the next holder learns of it).
    fn client_left(&self, client: u64) {
        let gone = {
            let mut c = lock(&self.clients);
            match c.get_mut(&client) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    c.remove(&client);
                    true
                }
            }
        };
        if !gone {
            return;
        }
        let mut freed = Vec::new();
        {
            let mut refs = lock(&self.refs);
            for (id, n) in refs.clients.remove(&client).unwrap_or_default() {
                for _ in 0..n {
                    refs.decref(id, &mut freed);
                }
            }
        }
        self.reap(freed);
        let objects: Vec<Arc<Entry>> = mproc_shm::local::read(&self.objects)
            .values()
            .cloned()
            .collect();
        for e in objects {
            let mut g = lock(&e.state);
            let l = match &mut *g {
                ObjectState::Lock(l) => l,
                ObjectState::Condition(c) => &mut c.lock,
                _ => continue,
            };
            if l.owner.is_some_and(|o| o.client == client) {
                l.owner = None;
                l.count = 0;
                l.died = true;
                drop(g);
                e.cv.notify_all();
            }
        }
    }
}

/// Fuzzing and tests: runs one encoded request against a fresh in-memory
/// server (without waiting), returning whether it decoded.
pub(crate) fn fuzz_request(data: &[u8]) -> bool {
    let server = Server::new();
    // A few objects of every kind, so ids 1.. exist.
    for (kind, init) in [
        (Kind::Dict, Init::Empty),
        (
            Kind::List,
            Init::Items(vec![Val::plain(vec![1]), Val::plain(vec![2])]),
        ),
        (Kind::Namespace, Init::Empty),
        (Kind::Value, Init::Value(Val::plain(vec![0]))),
        (Kind::Lock, Init::Empty),
        (Kind::RLock, Init::Empty),
        (Kind::BoundedSemaphore, Init::Count(1)),
        (Kind::Event, Init::Empty),
        (Kind::Condition, Init::Empty),
        (Kind::Barrier, Init::Count(2)),
        (Kind::JoinableQueue, Init::Queue { maxsize: 2 }),
    ] {
        let _ = server.create(1, kind, init);
    }
    let peer = Peer {
        client: 1,
        same_exe: true,
        fd: None,
        no_wait: true,
    };
    let decoded = proto::decode_request(data).is_ok();
    let _ = server.handle_bytes(&peer, data);
    // The client leaves: every reference it held goes (a stored value may
    // have made a cycle, which stays).
    server.client_joined(1);
    server.client_left(1);
    decoded
}

#[cfg(test)]
mod tests;
