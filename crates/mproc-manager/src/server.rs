//! The server: shared objects, the registry, and one thread per connection.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use mproc_pipe::{ConnectError, Connection, Listener};

use crate::client::lock;
use crate::code_ref;
use crate::link::Link;
use crate::proto::{
    self, Acquired, Bytes, ExeWire, Id, Init, Kind, Op, Owner, RemoteError, Reply, Request,
    SliceWire, Val, WaitMs,
};
use crate::sys;

/// How long a client may take over the authkey handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many clients may be in the authkey handshake at once. The listener
/// runs their handshakes side by side in the accepting thread; one more
/// drops the client that has waited longest. A connection gets its own
/// thread only once authenticated, so silent or slow clients cost a socket
/// each, never a thread.
pub(crate) const MAX_PENDING_HANDSHAKES: usize = 64;
/// How often a waiting server thread checks that its client is still there.
const WAIT_STEP: Duration = Duration::from_millis(50);

type RResult<T> = Result<T, RemoteError>;

/// A dict that keeps insertion order, keyed by encoded bytes.
#[derive(Default)]
struct OrderedMap {
    index: HashMap<Bytes, u64>,
    entries: BTreeMap<u64, (Bytes, Val)>,
    next: u64,
}

impl OrderedMap {
    fn get(&self, k: &[u8]) -> Option<&Val> {
        self.index
            .get(k)
            .and_then(|s| self.entries.get(s))
            .map(|(_, v)| v)
    }

    fn get_mut(&mut self, k: &[u8]) -> Option<&mut Val> {
        let s = self.index.get(k)?;
        self.entries.get_mut(s).map(|(_, v)| v)
    }

    fn insert(&mut self, k: Bytes, v: Val) -> Option<Val> {
        if let Some(s) = self.index.get(&k) {
            let slot = self.entries.get_mut(s).expect("index and entries agree");
            return Some(std::mem::replace(&mut slot.1, v));
        }
        let s = self.next;
        self.next += 1;
        self.index.insert(k.clone(), s);
        self.entries.insert(s, (k, v));
        None
    }

    fn remove(&mut self, k: &[u8]) -> Option<Val> {
        let s = self.index.remove(k)?;
        self.entries.remove(&s).map(|(_, v)| v)
    }

    fn pop_last(&mut self) -> Option<(Bytes, Val)> {
        let (_, (k, v)) = self.entries.pop_last()?;
        self.index.remove(&k);
        Some((k, v))
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Empties the map, returning its values.
    fn drain(&mut self) -> Vec<Val> {
        self.index.clear();
        std::mem::take(&mut self.entries)
            .into_values()
            .map(|(_, v)| v)
            .collect()
    }
}

#[derive(Default)]
struct LockState {
    owner: Option<Owner>,
    count: u64,
    /// The last holder disconnected while holding it.
    died: bool,
}

impl LockState {
    /// Takes the lock if free (or, when `reentrant`, already ours).
    fn try_take(&mut self, me: Owner, reentrant: bool) -> Option<Acquired> {
        match self.owner {
            None => {
                self.owner = Some(me);
                self.count = 1;
                Some(if std::mem::take(&mut self.died) {
                    Acquired::OwnerDied
                } else {
                    Acquired::Yes
                })
            }
            Some(o) if reentrant && o == me => {
                self.count += 1;
                Some(Acquired::Yes)
            }
            Some(_) => None,
        }
    }
}

#[derive(Default)]
struct CondState {
    lock: LockState,
    next_ticket: u64,
    waiting: VecDeque<u64>,
    woken: HashSet<u64>,
}

struct BarrierState {
    parties: u64,
    waiting: u64,
    generation: u64,
    broken: bool,
    broken_generations: HashSet<u64>,
}

struct QueueState {
    items: VecDeque<Val>,
    /// 0: unbounded.
    maxsize: u64,
    unfinished: u64,
}

enum Obj {
    Dict(OrderedMap),
    List(Vec<Val>),
    /// Each field's value and repr (see `repr`).
    Namespace(BTreeMap<String, (Val, String)>),
    Value(Val),
    Lock(LockState),
    Semaphore {
        value: u64,
        bound: Option<u64>,
    },
    Event(bool),
    Condition(CondState),
    Barrier(BarrierState),
    Queue(QueueState),
}

impl Obj {
    /// Takes out every stored value (the object is being freed).
    fn drain(&mut self) -> Vec<Val> {
        match self {
            Self::Dict(m) => m.drain(),
            Self::List(l) => std::mem::take(l),
            Self::Namespace(n) => std::mem::take(n).into_values().map(|(v, _)| v).collect(),
            Self::Value(v) => vec![std::mem::take(v)],
            Self::Queue(q) => std::mem::take(&mut q.items).into(),
            _ => Vec::new(),
        }
    }
}

struct Entry {
    id: Id,
    kind: Kind,
    state: Mutex<Obj>,
    cv: Condvar,
}

/// Who keeps each object alive (CPython's `id_to_refcount`).
///
/// An object's count is the sum of its references: one per reference a
/// client's proxies hold (granted by a create, a lookup, an adoption, an
/// incref or a reply carrying a stored proxy), one per registry name, one
/// per stored value that contains a proxy of it, and one per proxy in
/// flight (serialized for another process, not yet adopted). The object is
/// freed when its count reaches zero, and the references its own stored
/// values held go with it. Objects that refer to each other in a cycle keep
/// each other alive (as in CPython's manager, which has no cycle collector).
#[derive(Default)]
struct Refs {
    /// Every live object's count. An object missing here is freed (or being
    /// freed): nothing may take a reference to it any more.
    counts: HashMap<Id, u64>,
    /// Per client: how many references its proxies hold, by object. Given
    /// back when the client's last connection closes, so a killed process
    /// leaks nothing.
    clients: HashMap<u64, HashMap<Id, u64>>,
    /// Proxies in flight: token → object.
    transfers: HashMap<u64, Id>,
    next_token: u64,
}

impl Refs {
    /// One more reference to `id`, if it lives.
    fn incref(&mut self, id: Id) -> bool {
        match self.counts.get_mut(&id) {
            Some(n) => {
                *n += 1;
                true
            }
            None => false,
        }
    }

    /// One reference fewer to `id`; when it was the last, `id` goes to
    /// `freed` (to be reaped once no object lock is held).
    fn decref(&mut self, id: Id, freed: &mut Vec<Id>) {
        if let Some(n) = self.counts.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&id);
                freed.push(id);
            }
        }
    }

    /// Records one of `id`'s references (already counted) as `client`'s.
    fn credit(&mut self, client: u64, id: Id) {
        *self
            .clients
            .entry(client)
            .or_default()
            .entry(id)
            .or_insert(0) += 1;
    }

    /// A new reference to `id` for `client`, if `id` lives.
    fn grant(&mut self, client: u64, id: Id) -> bool {
        let ok = self.incref(id);
        if ok {
            self.credit(client, id);
        }
        ok
    }

    /// `client` gives back one of its references to `id`; false if it held none.
    fn give_back(&mut self, client: u64, id: Id, freed: &mut Vec<Id>) -> bool {
        let Some(held) = self.clients.get_mut(&client) else {
            return false;
        };
        let Some(n) = held.get_mut(&id) else {
            return false;
        };
        *n -= 1;
        if *n == 0 {
            held.remove(&id);
            if held.is_empty() {
                self.clients.remove(&client);
            }
        }
        self.decref(id, freed);
        true
    }
}

/// The reference bookkeeping of one operation on one object (the
/// container): values stored into it, copied out of it, moved out of it.
/// Used while the container's lock is held; what the operation freed is
/// reaped after it (see [`Server::reap`]).
struct Store<'a> {
    refs: &'a Mutex<Refs>,
    client: u64,
    container: Id,
    freed: RefCell<Vec<Id>>,
}

impl Store<'_> {
    /// Takes the references `vals` hold once stored in the container: all
    /// or none. Fails if the container was freed meanwhile (its values would
    /// never be given back) or a referred object does not exist.
    fn keep<'v>(&self, vals: impl IntoIterator<Item = &'v Val> + Clone) -> RResult<()> {
        let mut refs = lock(self.refs);
        if !refs.counts.contains_key(&self.container) {
            return Err(RemoteError::NoSuchObject(self.container));
        }
        for v in vals.clone() {
            if let Some(&id) = v.refs.iter().find(|id| !refs.counts.contains_key(id)) {
                return Err(RemoteError::NoSuchObject(id));
            }
        }
        for v in vals {
            for &id in &v.refs {
                refs.incref(id);
            }
        }
        Ok(())
    }

    /// A copy of a stored value for the client: grants it a reference to
    /// each object the value refers to (leaving out any freed by force).
    fn lend(&self, mut v: Val) -> Val {
        if !v.refs.is_empty() {
            let mut refs = lock(self.refs);
            v.refs.retain(|&id| refs.grant(self.client, id));
        }
        v
    }

    /// A value moved out of the container to the client: its references
    /// become the client's.
    fn hand_over(&self, mut v: Val) -> Val {
        if !v.refs.is_empty() {
            let mut refs = lock(self.refs);
            v.refs.retain(|&id| {
                let live = refs.counts.contains_key(&id);
                if live {
                    refs.credit(self.client, id);
                }
                live
            });
        }
        v
    }

    /// A value removed from the container and thrown away.
    fn discard(&self, v: Val) {
        if !v.refs.is_empty() {
            let mut refs = lock(self.refs);
            let mut freed = self.freed.borrow_mut();
            for id in v.refs {
                refs.decref(id, &mut freed);
            }
        }
    }
}

/// What a connection thread knows about its client.
pub(crate) struct Peer<'a> {
    client: u64,
    same_exe: bool,
    /// The socket, to notice a client that went away while we wait.
    fd: Option<BorrowedFd<'a>>,
    /// Never wait (fuzzing).
    no_wait: bool,
}

/// What to do after a reply.
#[derive(PartialEq, Eq)]
pub(crate) enum Then {
    Continue,
    Shutdown,
}

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

fn wrong(expected: Kind, found: Kind) -> RemoteError {
    RemoteError::WrongKind { expected, found }
}

/// Python's index normalisation: negative counts from the end.
fn norm(index: i64, len: usize) -> RResult<usize> {
    let l = len as i64;
    let i = if index < 0 { index + l } else { index };
    if i < 0 || i >= l {
        Err(RemoteError::IndexOutOfRange {
            index,
            len: len as u64,
        })
    } else {
        Ok(i as usize)
    }
}

/// The most bytes a list may reach by repetition (`l *= n`).
const MAX_REPEAT_BYTES: usize = 256 << 20;

/// The most entries an iterator's page holds.
const MAX_PAGE: usize = 4096;

fn page_size(max: u32) -> usize {
    (max as usize).clamp(1, MAX_PAGE)
}

/// A Python slice resolved against a length (`slice.indices`).
#[derive(Debug, PartialEq, Eq)]
struct Slice {
    start: i64,
    step: i64,
    count: usize,
}

impl Slice {
    fn of(s: SliceWire, len: usize) -> RResult<Self> {
        if s.step == 0 {
            return Err(RemoteError::NotAllowed("slice step cannot be zero".into()));
        }
        let (len, step) = (len as i128, i128::from(s.step));
        let (lower, upper) = if step < 0 { (-1, len - 1) } else { (0, len) };
        let bound = |v: Option<i64>, default: i128| match v.map(i128::from) {
            None => default,
            Some(v) if v < 0 => (v + len).max(lower),
            Some(v) => v.min(upper),
        };
        let start = bound(s.start, if step < 0 { upper } else { lower });
        let stop = bound(s.stop, if step < 0 { lower } else { upper });
        let count = if step > 0 && stop > start {
            (stop - start - 1) / step + 1
        } else if step < 0 && start > stop {
            (start - stop - 1) / -step + 1
        } else {
            0
        };
        // In range: `start` lies within [-1, len] and `count` within [0, len].
        Ok(Self {
            start: start as i64,
            step: s.step,
            count: count as usize,
        })
    }

    /// The indices the slice selects, in order.
    fn indices(&self) -> impl Iterator<Item = usize> + use<> {
        let (start, step) = (i128::from(self.start), i128::from(self.step));
        (0..self.count as i128).map(move |k| (start + k * step) as usize)
    }
}

fn guard(m: &Mutex<Obj>) -> MutexGuard<'_, Obj> {
    lock(m)
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

    fn entry(&self, id: Id) -> RResult<Arc<Entry>> {
        self.objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
            .ok_or(RemoteError::NoSuchObject(id))
    }

    /// Makes an object, with one reference to it for `client`.
    fn create(&self, client: u64, kind: Kind, init: Init) -> RResult<Id> {
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
            (Kind::Dict, Init::Empty) => Obj::Dict(OrderedMap::default()),
            (Kind::Dict, Init::Pairs(p)) => {
                let mut m = OrderedMap::default();
                for (k, v) in p {
                    m.insert(k, v);
                }
                Obj::Dict(m)
            }
            (Kind::List, Init::Empty) => Obj::List(Vec::new()),
            (Kind::List | Kind::Array, Init::Items(v)) => Obj::List(v),
            (Kind::Namespace, Init::Empty) => Obj::Namespace(BTreeMap::new()),
            (Kind::Value, Init::Value(v)) => Obj::Value(v),
            (Kind::Lock | Kind::RLock, Init::Empty) => Obj::Lock(LockState::default()),
            (Kind::Semaphore, Init::Count(n)) => Obj::Semaphore {
                value: n,
                bound: None,
            },
            (Kind::BoundedSemaphore, Init::Count(n)) => Obj::Semaphore {
                value: n,
                bound: Some(n),
            },
            (Kind::Event, Init::Empty) => Obj::Event(false),
            (Kind::Condition, Init::Empty) => Obj::Condition(CondState::default()),
            (Kind::Barrier, Init::Count(n)) if n > 0 => Obj::Barrier(BarrierState {
                parties: n,
                waiting: 0,
                generation: 0,
                broken: false,
                broken_generations: HashSet::new(),
            }),
            (Kind::Queue | Kind::JoinableQueue, Init::Queue { maxsize }) => {
                Obj::Queue(QueueState {
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
        self.objects
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, e);
        Ok(id)
    }

    /// Handles one request. Never panics on any input (a panic in a user's
    /// update function is caught by the caller).
    pub(crate) fn handle(&self, peer: &Peer<'_>, req: Request) -> (Reply, Then) {
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
                self.objects.read().unwrap_or_else(|e| e.into_inner()).len() as u64,
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
            Request::Shutdown => return (Reply::Unit, Then::Shutdown),
        };
        self.reap(freed);
        (r.unwrap_or_else(Reply::Err), Then::Continue)
    }

    /// A new reference to `id` for the client, as a reply.
    fn grant(&self, peer: &Peer<'_>, id: Id, kind: Kind) -> RResult<Reply> {
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
            let gone = self
                .objects
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            let Some(e) = gone else { continue };
            let vals = guard(&e.state).drain();
            e.cv.notify_all();
            let mut refs = lock(&self.refs);
            for id in vals.into_iter().flat_map(|v| v.refs) {
                refs.decref(id, &mut freed);
            }
        }
    }

    fn deadline(peer: &Peer<'_>, wait: WaitMs) -> Option<Instant> {
        if peer.no_wait {
            return Some(Instant::now());
        }
        match wait {
            // An unrepresentable deadline is as good as none.
            Some(ms) => Instant::now().checked_add(Duration::from_millis(ms)),
            None => None,
        }
    }

    /// Waits on `e`'s condition variable until `f` yields a value (`Ok(Some)`),
    /// the deadline passes (`Ok(None)`), or the client goes away.
    fn wait_for<T>(
        peer: &Peer<'_>,
        e: &Entry,
        wait: WaitMs,
        mut f: impl FnMut(&mut Obj) -> RResult<Option<T>>,
    ) -> RResult<Option<T>> {
        let deadline = Self::deadline(peer, wait);
        let mut g = guard(&e.state);
        loop {
            if let Some(t) = f(&mut g)? {
                return Ok(Some(t));
            }
            let now = Instant::now();
            let step = match deadline {
                Some(d) if d <= now => return Ok(None),
                Some(d) => (d - now).min(WAIT_STEP),
                None => WAIT_STEP,
            };
            g =
                e.cv.wait_timeout(g, step)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            if peer.fd.is_some_and(sys::peer_gone) {
                return Err(RemoteError::NotAllowed("the client went away".into()));
            }
        }
    }

    /// Runs an update function on a stored value. Its references stay as
    /// they were: a proxy cannot be decoded inside the server, so the
    /// function cannot have added or removed one.
    fn apply(peer: &Peer<'_>, func: i64, value: &mut Val, arg: &[u8]) -> RResult<Reply> {
        if !peer.same_exe {
            return Err(RemoteError::ForeignExecutable);
        }
        let f = code_ref::resolve(func).ok_or(RemoteError::BadFunction)?;
        match panic::catch_unwind(AssertUnwindSafe(|| f(&mut value.bytes, arg))) {
            Ok(Ok(r)) => Ok(Reply::Bytes(Val::plain(r))),
            Ok(Err(m)) => Err(RemoteError::Decode(m)),
            Err(p) => Err(RemoteError::Panicked(panic_message(&*p))),
        }
    }

    /// Runs a namespace field's update function, which also remakes the
    /// field's repr.
    fn apply_repr(
        peer: &Peer<'_>,
        func: i64,
        value: &mut Val,
        repr: &mut String,
        arg: &[u8],
    ) -> RResult<Reply> {
        if !peer.same_exe {
            return Err(RemoteError::ForeignExecutable);
        }
        let f = code_ref::resolve_repr(func).ok_or(RemoteError::BadFunction)?;
        match panic::catch_unwind(AssertUnwindSafe(|| f(&mut value.bytes, arg))) {
            Ok(Ok((r, new_repr))) => {
                *repr = new_repr;
                Ok(Reply::Bytes(Val::plain(r)))
            }
            Ok(Err(m)) => Err(RemoteError::Decode(m)),
            Err(p) => Err(RemoteError::Panicked(panic_message(&*p))),
        }
    }

    /// Sorts a list with the sort function at `func`: the items move, with
    /// their references, in the order it returns.
    fn sort(peer: &Peer<'_>, l: &mut Vec<Val>, func: i64, reverse: bool) -> RResult<Reply> {
        if !peer.same_exe {
            return Err(RemoteError::ForeignExecutable);
        }
        let f = code_ref::resolve_sort(func).ok_or(RemoteError::BadFunction)?;
        let order = {
            let items: Vec<&[u8]> = l.iter().map(|v| &v.bytes[..]).collect();
            match panic::catch_unwind(AssertUnwindSafe(|| f(&items, reverse))) {
                Ok(Ok(order)) => order,
                Ok(Err(m)) => return Err(RemoteError::Decode(m)),
                Err(p) => return Err(RemoteError::Panicked(panic_message(&*p))),
            }
        };
        let n = l.len();
        let mut seen = vec![false; n];
        let permutation = order.len() == n
            && order
                .iter()
                .all(|&i| i < n && !std::mem::replace(&mut seen[i], true));
        if !permutation {
            return Err(RemoteError::Malformed(
                "the sort function returned no permutation".into(),
            ));
        }
        let mut taken: Vec<Option<Val>> = std::mem::take(l).into_iter().map(Some).collect();
        *l = order.iter().filter_map(|&i| taken[i].take()).collect();
        Ok(Reply::Unit)
    }

    /// Runs `op` on `e`; adds the objects it freed to `freed`.
    fn op(&self, peer: &Peer<'_>, e: &Entry, op: Op, freed: &mut Vec<Id>) -> RResult<Reply> {
        let st = Store {
            refs: &self.refs,
            client: peer.client,
            container: e.id,
            freed: RefCell::new(Vec::new()),
        };
        let r = self.op_in(peer, &st, e, op);
        freed.append(&mut st.freed.borrow_mut());
        r
    }

    fn op_in(&self, peer: &Peer<'_>, st: &Store<'_>, e: &Entry, op: Op) -> RResult<Reply> {
        let kind = e.kind;
        match op {
            Op::Len => match &*guard(&e.state) {
                Obj::Dict(m) => Ok(Reply::Count(m.len() as u64)),
                Obj::List(l) => Ok(Reply::Count(l.len() as u64)),
                Obj::Namespace(n) => Ok(Reply::Count(n.len() as u64)),
                Obj::Queue(q) => Ok(Reply::Count(q.items.len() as u64)),
                _ => Err(wrong(Kind::Dict, kind)),
            },
            Op::Clear if kind == Kind::Array => Err(wrong(Kind::List, kind)),
            Op::Clear => match &mut *guard(&e.state) {
                o @ (Obj::Dict(_) | Obj::List(_) | Obj::Namespace(_)) => {
                    o.drain().into_iter().for_each(|v| st.discard(v));
                    Ok(Reply::Unit)
                }
                _ => Err(wrong(Kind::Dict, kind)),
            },
            Op::DictGet(_)
            | Op::DictInsert(..)
            | Op::DictRemove(_)
            | Op::DictContains(_)
            | Op::DictPop(_)
            | Op::DictSetDefault(..)
            | Op::DictKeys
            | Op::DictValues
            | Op::DictItems
            | Op::DictUpdate(_)
            | Op::DictGetMany(_)
            | Op::DictPopItem
            | Op::DictPage { .. }
            | Op::DictApply { .. } => {
                let mut g = guard(&e.state);
                let Obj::Dict(m) = &mut *g else {
                    return Err(wrong(Kind::Dict, kind));
                };
                Self::dict_op(peer, st, m, op)
            }
            Op::ListPush(_)
            | Op::ListExtend(_)
            | Op::ListGet(_)
            | Op::ListSet(..)
            | Op::ListInsert(..)
            | Op::ListPop(_)
            | Op::ListRemove(_)
            | Op::ListIndex(_)
            | Op::ListCount(_)
            | Op::ListSnapshot
            | Op::ListPage { .. }
            | Op::ListSlice(_)
            | Op::ListSetSlice(..)
            | Op::ListDelSlice(_)
            | Op::ListSort { .. }
            | Op::ListReverse
            | Op::ListRepeat(_)
            | Op::ListApply { .. } => {
                let mut g = guard(&e.state);
                let Obj::List(l) = &mut *g else {
                    return Err(wrong(Kind::List, kind));
                };
                if kind == Kind::Array && !op.keeps_length() {
                    return Err(wrong(Kind::List, kind));
                }
                Self::list_op(peer, st, l, op, kind == Kind::Array)
            }
            Op::NsGet(_)
            | Op::NsSet(..)
            | Op::NsDel(_)
            | Op::NsNames
            | Op::NsRepr
            | Op::NsApply { .. } => {
                let mut g = guard(&e.state);
                let Obj::Namespace(n) = &mut *g else {
                    return Err(wrong(Kind::Namespace, kind));
                };
                match op {
                    Op::NsGet(k) => n
                        .get(&k)
                        .map(|(v, _)| Reply::Bytes(st.lend(v.clone())))
                        .ok_or(RemoteError::KeyMissing),
                    Op::NsSet(k, v, r) => {
                        st.keep([&v])?;
                        if let Some((old, _)) = n.insert(k, (v, r)) {
                            st.discard(old);
                        }
                        Ok(Reply::Unit)
                    }
                    Op::NsDel(k) => n
                        .remove(&k)
                        .map(|(old, _)| {
                            st.discard(old);
                            Reply::Unit
                        })
                        .ok_or(RemoteError::KeyMissing),
                    Op::NsNames => Ok(Reply::Names(n.keys().cloned().collect())),
                    Op::NsRepr => Ok(Reply::Names(
                        n.iter().map(|(k, (_, r))| format!("{k}={r}")).collect(),
                    )),
                    Op::NsApply { name, func, arg } => {
                        let (v, r) = n.get_mut(&name).ok_or(RemoteError::KeyMissing)?;
                        Self::apply_repr(peer, func, v, r, &arg)
                    }
                    _ => unreachable!("matched above"),
                }
            }
            Op::ValueGet | Op::ValueSet(_) | Op::ValueSwap(_) | Op::ValueApply { .. } => {
                let mut g = guard(&e.state);
                let Obj::Value(v) = &mut *g else {
                    return Err(wrong(Kind::Value, kind));
                };
                match op {
                    Op::ValueGet => Ok(Reply::Bytes(st.lend(v.clone()))),
                    Op::ValueSet(n) => {
                        st.keep([&n])?;
                        st.discard(std::mem::replace(v, n));
                        Ok(Reply::Unit)
                    }
                    Op::ValueSwap(n) => {
                        st.keep([&n])?;
                        Ok(Reply::Bytes(st.hand_over(std::mem::replace(v, n))))
                    }
                    Op::ValueApply { func, arg } => Self::apply(peer, func, v, &arg),
                    _ => unreachable!("matched above"),
                }
            }
            Op::Acquire { owner, wait } => self.acquire(peer, e, owner, wait),
            Op::Release { owner } => {
                let mut g = guard(&e.state);
                let r = match &mut *g {
                    Obj::Lock(l) if kind == Kind::Lock => match l.owner {
                        // threading.Lock: anyone may release it.
                        Some(_) => {
                            l.owner = None;
                            l.count = 0;
                            Ok(Reply::Unit)
                        }
                        None => Err(RemoteError::Unlocked),
                    },
                    Obj::Lock(l) => release_owned(l, owner),
                    Obj::Condition(c) => release_owned(&mut c.lock, owner),
                    Obj::Semaphore { value, bound } => {
                        if bound.is_some_and(|b| *value >= b) || *value == u64::MAX {
                            Err(RemoteError::OverRelease)
                        } else {
                            *value += 1;
                            Ok(Reply::Unit)
                        }
                    }
                    _ => Err(wrong(Kind::Lock, kind)),
                };
                drop(g);
                e.cv.notify_all();
                r
            }
            Op::LockState => match &*guard(&e.state) {
                Obj::Lock(l) => Ok(Reply::Held(l.owner.is_some(), l.count)),
                Obj::Condition(c) => Ok(Reply::Held(c.lock.owner.is_some(), c.lock.count)),
                Obj::Semaphore { value, .. } => Ok(Reply::Held(*value == 0, *value)),
                _ => Err(wrong(Kind::Lock, kind)),
            },
            Op::CondWait { owner, wait } => self.cond_wait(peer, e, owner, wait),
            Op::CondNotify { owner, n } => {
                let mut g = guard(&e.state);
                let Obj::Condition(c) = &mut *g else {
                    return Err(wrong(Kind::Condition, kind));
                };
                if c.lock.owner != Some(owner) {
                    return Err(RemoteError::NotOwner);
                }
                let mut woken = 0;
                while woken < n {
                    let Some(t) = c.waiting.pop_front() else {
                        break;
                    };
                    c.woken.insert(t);
                    woken += 1;
                }
                drop(g);
                e.cv.notify_all();
                Ok(Reply::Count(woken))
            }
            Op::EventSet | Op::EventClear | Op::EventIsSet => {
                let mut g = guard(&e.state);
                let Obj::Event(flag) = &mut *g else {
                    return Err(wrong(Kind::Event, kind));
                };
                let r = match op {
                    Op::EventSet => {
                        *flag = true;
                        Reply::Unit
                    }
                    Op::EventClear => {
                        *flag = false;
                        Reply::Unit
                    }
                    _ => Reply::Bool(*flag),
                };
                drop(g);
                e.cv.notify_all();
                Ok(r)
            }
            Op::EventWait(wait) => {
                let r = Self::wait_for(peer, e, wait, |o| match o {
                    Obj::Event(true) => Ok(Some(())),
                    Obj::Event(false) => Ok(None),
                    _ => Err(wrong(Kind::Event, kind)),
                })?;
                Ok(Reply::Bool(r.is_some()))
            }
            Op::BarrierWait(wait) => self.barrier_wait(peer, e, wait),
            Op::BarrierReset | Op::BarrierAbort | Op::BarrierInfo => {
                let mut g = guard(&e.state);
                let Obj::Barrier(b) = &mut *g else {
                    return Err(wrong(Kind::Barrier, kind));
                };
                let r = match op {
                    Op::BarrierReset => {
                        if b.waiting > 0 {
                            b.broken_generations.insert(b.generation);
                            b.generation += 1;
                            b.waiting = 0;
                        }
                        b.broken = false;
                        Reply::Unit
                    }
                    Op::BarrierAbort => {
                        b.broken = true;
                        Reply::Unit
                    }
                    _ => Reply::Barrier(b.parties, b.waiting, b.broken),
                };
                drop(g);
                e.cv.notify_all();
                Ok(r)
            }
            Op::Put(item, wait) => {
                let mut item = Some(item);
                let r = Self::wait_for(peer, e, wait, |o| match o {
                    Obj::Queue(q) if q.maxsize == 0 || (q.items.len() as u64) < q.maxsize => {
                        st.keep(item.as_ref())?;
                        q.items.extend(item.take());
                        q.unfinished += 1;
                        Ok(Some(()))
                    }
                    Obj::Queue(_) => Ok(None),
                    _ => Err(wrong(Kind::Queue, kind)),
                })?;
                e.cv.notify_all();
                r.map(|()| Reply::Unit).ok_or(RemoteError::Full)
            }
            Op::Get(wait) => {
                let r = Self::wait_for(peer, e, wait, |o| match o {
                    Obj::Queue(q) => Ok(q.items.pop_front().map(|v| st.hand_over(v))),
                    _ => Err(wrong(Kind::Queue, kind)),
                })?;
                e.cv.notify_all();
                r.map(Reply::Bytes).ok_or(RemoteError::Empty)
            }
            Op::QSize => match &*guard(&e.state) {
                Obj::Queue(q) => Ok(Reply::Count(q.items.len() as u64)),
                _ => Err(wrong(Kind::Queue, kind)),
            },
            Op::QFull => match &*guard(&e.state) {
                Obj::Queue(q) => Ok(Reply::Bool(
                    q.maxsize != 0 && q.items.len() as u64 >= q.maxsize,
                )),
                _ => Err(wrong(Kind::Queue, kind)),
            },
            Op::TaskDone => {
                let mut g = guard(&e.state);
                let Obj::Queue(q) = &mut *g else {
                    return Err(wrong(Kind::JoinableQueue, kind));
                };
                if kind != Kind::JoinableQueue {
                    return Err(wrong(Kind::JoinableQueue, kind));
                }
                if q.unfinished == 0 {
                    return Err(RemoteError::TooManyTaskDone);
                }
                q.unfinished -= 1;
                drop(g);
                e.cv.notify_all();
                Ok(Reply::Unit)
            }
            Op::Join(wait) => {
                if kind != Kind::JoinableQueue {
                    return Err(wrong(Kind::JoinableQueue, kind));
                }
                let r = Self::wait_for(peer, e, wait, |o| match o {
                    Obj::Queue(q) => Ok((q.unfinished == 0).then_some(())),
                    _ => Err(wrong(Kind::JoinableQueue, kind)),
                })?;
                r.map(|()| Reply::Unit).ok_or(RemoteError::Timeout)
            }
        }
    }

    fn dict_op(peer: &Peer<'_>, st: &Store<'_>, m: &mut OrderedMap, op: Op) -> RResult<Reply> {
        let lend = |v: Option<&Val>| v.map(|v| st.lend(v.clone()));
        Ok(match op {
            Op::DictGet(k) => Reply::MaybeBytes(lend(m.get(&k))),
            Op::DictInsert(k, v) => {
                st.keep([&v])?;
                Reply::MaybeBytes(m.insert(k, v).map(|old| st.hand_over(old)))
            }
            Op::DictRemove(k) => Reply::MaybeBytes(m.remove(&k).map(|old| st.hand_over(old))),
            Op::DictContains(k) => Reply::Bool(m.get(&k).is_some()),
            Op::DictPop(k) => {
                Reply::Bytes(st.hand_over(m.remove(&k).ok_or(RemoteError::KeyMissing)?))
            }
            Op::DictSetDefault(k, v) => match m.get(&k) {
                Some(old) => Reply::Bytes(st.lend(old.clone())),
                None => {
                    st.keep([&v])?;
                    m.insert(k, v.clone());
                    Reply::Bytes(st.lend(v))
                }
            },
            Op::DictKeys => Reply::List(
                m.entries
                    .values()
                    .map(|(k, _)| Val::plain(k.clone()))
                    .collect(),
            ),
            Op::DictValues => Reply::List(
                m.entries
                    .values()
                    .map(|(_, v)| st.lend(v.clone()))
                    .collect(),
            ),
            Op::DictItems => Reply::Pairs(
                m.entries
                    .values()
                    .map(|(k, v)| (k.clone(), st.lend(v.clone())))
                    .collect(),
            ),
            Op::DictUpdate(pairs) => {
                st.keep(pairs.iter().map(|(_, v)| v))?;
                for (k, v) in pairs {
                    if let Some(old) = m.insert(k, v) {
                        st.discard(old);
                    }
                }
                Reply::Unit
            }
            Op::DictGetMany(keys) => {
                Reply::MaybeList(keys.iter().map(|k| lend(m.get(k))).collect())
            }
            Op::DictPopItem => Reply::MaybePair(m.pop_last().map(|(k, v)| (k, st.hand_over(v)))),
            Op::DictPage {
                from,
                max,
                len,
                values,
            } => {
                // CPython checks the size at every step of an iterator.
                if len.is_some_and(|l| l != m.len() as u64) {
                    return Err(RemoteError::ChangedSize);
                }
                let mut next = from;
                let items = m
                    .entries
                    .range(from..)
                    .take(page_size(max))
                    .map(|(&slot, (k, v))| {
                        next = slot + 1;
                        let v = if values {
                            st.lend(v.clone())
                        } else {
                            Val::default()
                        };
                        (k.clone(), v)
                    })
                    .collect();
                Reply::Page {
                    items,
                    next,
                    len: m.len() as u64,
                }
            }
            Op::DictApply {
                key,
                default,
                func,
                arg,
            } => {
                if m.get(&key).is_none() {
                    match default {
                        Some(d) => {
                            // Check before inserting, so a refused update leaves no default behind.
                            if !peer.same_exe {
                                return Err(RemoteError::ForeignExecutable);
                            }
                            st.keep([&d])?;
                            m.insert(key.clone(), d);
                        }
                        None => return Err(RemoteError::KeyMissing),
                    }
                }
                let v = m.get_mut(&key).ok_or(RemoteError::KeyMissing)?;
                return Self::apply(peer, func, v, &arg);
            }
            _ => return Err(RemoteError::Malformed("not a dict operation".into())),
        })
    }

    /// A list operation; `fixed`: the list is an array, whose length never
    /// changes.
    fn list_op(
        peer: &Peer<'_>,
        st: &Store<'_>,
        l: &mut Vec<Val>,
        op: Op,
        fixed: bool,
    ) -> RResult<Reply> {
        Ok(match op {
            Op::ListPush(v) => {
                st.keep([&v])?;
                l.push(v);
                Reply::Unit
            }
            Op::ListExtend(vs) => {
                st.keep(&vs)?;
                l.extend(vs);
                Reply::Unit
            }
            Op::ListGet(i) => Reply::Bytes(st.lend(l[norm(i, l.len())?].clone())),
            Op::ListSet(i, v) => {
                let i = norm(i, l.len())?;
                st.keep([&v])?;
                st.discard(std::mem::replace(&mut l[i], v));
                Reply::Unit
            }
            Op::ListInsert(i, v) => {
                st.keep([&v])?;
                // Python clamps insert positions.
                let n = l.len() as i64;
                let i = if i < 0 { (i + n).max(0) } else { i.min(n) };
                l.insert(i as usize, v);
                Reply::Unit
            }
            Op::ListPop(i) => {
                let i = norm(i.unwrap_or(-1), l.len())?;
                Reply::Bytes(st.hand_over(l.remove(i)))
            }
            Op::ListRemove(v) => {
                let i = l
                    .iter()
                    .position(|x| x.bytes == v)
                    .ok_or(RemoteError::ValueMissing)?;
                st.discard(l.remove(i));
                Reply::Unit
            }
            Op::ListIndex(v) => Reply::Count(
                l.iter()
                    .position(|x| x.bytes == v)
                    .ok_or(RemoteError::ValueMissing)? as u64,
            ),
            Op::ListCount(v) => Reply::Count(l.iter().filter(|x| x.bytes == v).count() as u64),
            Op::ListSnapshot => Reply::List(l.iter().map(|v| st.lend(v.clone())).collect()),
            Op::ListPage { from, max } => Reply::List(
                l.iter()
                    .skip(usize::try_from(from).unwrap_or(usize::MAX))
                    .take(page_size(max))
                    .map(|v| st.lend(v.clone()))
                    .collect(),
            ),
            Op::ListSlice(s) => Reply::List(
                Slice::of(s, l.len())?
                    .indices()
                    .map(|i| st.lend(l[i].clone()))
                    .collect(),
            ),
            Op::ListSetSlice(s, items) => {
                let sl = Slice::of(s, l.len())?;
                if (fixed || sl.step != 1) && items.len() != sl.count {
                    return Err(RemoteError::SizeMismatch {
                        expected: sl.count as u64,
                        found: items.len() as u64,
                    });
                }
                st.keep(&items)?;
                if sl.step == 1 {
                    // Python: an empty or backwards range inserts at `start`.
                    let start = sl.start as usize;
                    let end = start + sl.count;
                    for old in l.splice(start..end, items) {
                        st.discard(old);
                    }
                } else {
                    for (i, v) in sl.indices().zip(items) {
                        st.discard(std::mem::replace(&mut l[i], v));
                    }
                }
                Reply::Unit
            }
            Op::ListDelSlice(s) => {
                let sl = Slice::of(s, l.len())?;
                let mut gone = vec![false; l.len()];
                for i in sl.indices() {
                    gone[i] = true;
                }
                for (v, gone) in std::mem::take(l).into_iter().zip(gone) {
                    if gone {
                        st.discard(v);
                    } else {
                        l.push(v);
                    }
                }
                Reply::Unit
            }
            Op::ListSort { func, reverse } => return Self::sort(peer, l, func, reverse),
            Op::ListReverse => {
                l.reverse();
                Reply::Unit
            }
            Op::ListRepeat(n) => {
                if n <= 0 {
                    std::mem::take(l).into_iter().for_each(|v| st.discard(v));
                    return Ok(Reply::Unit);
                }
                // Items are copied (not shared as in CPython): bound the bytes.
                let size: usize = l
                    .iter()
                    .map(|v| v.bytes.len() + std::mem::size_of::<Val>())
                    .sum();
                let total = usize::try_from(n)
                    .ok()
                    .filter(|&n| size.checked_mul(n).is_some_and(|b| b <= MAX_REPEAT_BYTES))
                    .map(|n| l.len() * n)
                    .ok_or_else(|| {
                        RemoteError::NotAllowed(format!(
                            "a repeated list of more than {MAX_REPEAT_BYTES} bytes (CPython's MemoryError)"
                        ))
                    })?;
                let one = l.len();
                while l.len() < total {
                    st.keep(&l[..one])?;
                    l.extend_from_within(..one);
                }
                Reply::Unit
            }
            Op::ListApply { index, func, arg } => {
                let i = norm(index, l.len())?;
                return Self::apply(peer, func, &mut l[i], &arg);
            }
            _ => return Err(RemoteError::Malformed("not a list operation".into())),
        })
    }

    fn acquire(&self, peer: &Peer<'_>, e: &Entry, owner: Owner, wait: WaitMs) -> RResult<Reply> {
        let kind = e.kind;
        let r = Self::wait_for(peer, e, wait, |o| match o {
            Obj::Lock(l) => Ok(l.try_take(owner, kind == Kind::RLock)),
            Obj::Condition(c) => Ok(c.lock.try_take(owner, true)),
            Obj::Semaphore { value, .. } => Ok((*value > 0).then(|| {
                *value -= 1;
                Acquired::Yes
            })),
            _ => Err(wrong(Kind::Lock, kind)),
        })?;
        Ok(Reply::Acquired(r.unwrap_or(Acquired::No)))
    }

    fn cond_wait(&self, peer: &Peer<'_>, e: &Entry, owner: Owner, wait: WaitMs) -> RResult<Reply> {
        let kind = e.kind;
        let (ticket, saved) = {
            let mut g = guard(&e.state);
            let Obj::Condition(c) = &mut *g else {
                return Err(wrong(Kind::Condition, kind));
            };
            if c.lock.owner != Some(owner) {
                return Err(RemoteError::NotOwner);
            }
            let saved = c.lock.count;
            c.lock.owner = None;
            c.lock.count = 0;
            let t = c.next_ticket;
            c.next_ticket += 1;
            c.waiting.push_back(t);
            (t, saved)
        };
        e.cv.notify_all();
        let notified = Self::wait_for(peer, e, wait, |o| match o {
            Obj::Condition(c) => Ok(c.woken.remove(&ticket).then_some(())),
            _ => Err(wrong(Kind::Condition, kind)),
        });
        // A notify that came between the timeout and this cleanup chose this
        // waiter (it counted it as woken): take it, or it is lost.
        let late = {
            let mut g = guard(&e.state);
            if let Obj::Condition(c) = &mut *g {
                c.waiting.retain(|t| *t != ticket);
                c.woken.remove(&ticket)
            } else {
                false
            }
        };
        let notified = notified?.is_some() || late;
        // Take the lock back, without limit (as CPython does).
        let _ = Self::wait_for(peer, e, None, |o| match o {
            Obj::Condition(c) if c.lock.owner.is_none() => {
                c.lock.owner = Some(owner);
                c.lock.count = saved;
                Ok(Some(()))
            }
            _ => Ok(None),
        })?;
        Ok(Reply::Bool(notified))
    }

    fn barrier_wait(&self, peer: &Peer<'_>, e: &Entry, wait: WaitMs) -> RResult<Reply> {
        let kind = e.kind;
        let (generation, index) = {
            let mut g = guard(&e.state);
            let Obj::Barrier(b) = &mut *g else {
                return Err(wrong(Kind::Barrier, kind));
            };
            if b.broken {
                return Err(RemoteError::BrokenBarrier);
            }
            let index = b.waiting;
            b.waiting += 1;
            if b.waiting >= b.parties {
                b.generation += 1;
                b.waiting = 0;
                drop(g);
                e.cv.notify_all();
                return Ok(Reply::Count(index));
            }
            (b.generation, index)
        };
        let r = Self::wait_for(peer, e, wait, |o| match o {
            Obj::Barrier(b) => {
                if b.broken_generations.contains(&generation)
                    || (b.broken && b.generation == generation)
                {
                    Err(RemoteError::BrokenBarrier)
                } else if b.generation != generation {
                    Ok(Some(()))
                } else {
                    Ok(None)
                }
            }
            _ => Err(wrong(Kind::Barrier, kind)),
        });
        match r {
            Ok(Some(())) => Ok(Reply::Count(index)),
            Ok(None) | Err(_) => {
                // A timeout (or a waiter that went away) breaks the barrier, as in CPython.
                let mut g = guard(&e.state);
                if let Obj::Barrier(b) = &mut *g {
                    if b.generation == generation {
                        b.broken = true;
                    }
                }
                drop(g);
                e.cv.notify_all();
                Err(RemoteError::BrokenBarrier)
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
        let objects: Vec<Arc<Entry>> = self
            .objects
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for e in objects {
            let mut g = guard(&e.state);
            let l = match &mut *g {
                Obj::Lock(l) => l,
                Obj::Condition(c) => &mut c.lock,
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

    /// Serves one connection until it closes or asks for shutdown.
    /// Returns whether shutdown was asked.
    pub(crate) fn serve_connection(&self, conn: Connection) -> bool {
        let Ok(first) = conn.recv_bytes() else {
            return false;
        };
        let (client, same_exe, rings) = match proto::decode_request(&first) {
            Ok(Request::Hello {
                protocol,
                client,
                exe,
                rings,
            }) if protocol == proto::PROTOCOL => {
                let same = exe.is_some() && exe == self.exe;
                let hello = Reply::Hello {
                    protocol: proto::PROTOCOL,
                    same_exe: same,
                    pid: sys::getpid(),
                };
                // A client that sends its rings at once may not read this
                // answer (the owner's first connection): a failure to send it
                // is not fatal when rings follow.
                if conn.send_ref(&hello).is_err() && !rings {
                    return false;
                }
                (client, same, rings)
            }
            _ => {
                let _ = conn.send_ref(&Reply::Err(RemoteError::Malformed(format!(
                    "expected a hello of protocol version {} first",
                    proto::PROTOCOL
                ))));
                return false;
            }
        };
        let mut link = Link::plain(conn);
        if rings
            && link
                .upgrade_server(Instant::now() + HANDSHAKE_TIMEOUT)
                .is_err()
        {
            return false;
        }
        self.client_joined(client);
        let peer = Peer {
            client,
            same_exe,
            fd: Some(link.fd()),
            no_wait: false,
        };
        let mut shutdown = false;
        while let Ok(bytes) = link.recv_bytes(None) {
            // SeqCst: see `serve`. After shutdown nothing more is served.
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            let (reply, then, took_from) = self.handle_bytes(&peer, &bytes);
            let taken = match reply {
                Reply::Bytes(_) => took_from,
                _ => None,
            };
            // A client that died before it could receive an item it took
            // gets nothing: the item goes back rather than being lost.
            let gone = taken.is_some() && sys::peer_gone(link.fd());
            let encoded = postcard::to_stdvec(&reply).unwrap_or_else(|e| {
                postcard::to_stdvec(&Reply::Err(RemoteError::Malformed(format!(
                    "unencodable reply: {e}"
                ))))
                .unwrap_or_default()
            });
            if gone || link.send_bytes(encoded).is_err() {
                if let (Some(id), Reply::Bytes(item)) = (taken, reply) {
                    self.requeue(id, item);
                }
                break;
            }
            if then == Then::Shutdown {
                shutdown = true;
                break;
            }
        }
        self.client_left(peer.client);
        shutdown
    }

    /// Puts an item taken by a client that vanished back at the queue's head
    /// (with its references: the client's, given back when it is counted
    /// out, still keep them alive here).
    fn requeue(&self, id: Id, item: Val) {
        if let Ok(e) = self.entry(id) {
            if let Obj::Queue(q) = &mut *guard(&e.state) {
                let mut refs = lock(&self.refs);
                for &r in &item.refs {
                    refs.incref(r);
                }
                drop(refs);
                q.items.push_front(item);
            }
            e.cv.notify_all();
        }
    }

    /// Decodes and handles one request; malformed bytes get an error reply.
    /// Also returns the queue a `get` took its item from.
    pub(crate) fn handle_bytes(&self, peer: &Peer<'_>, bytes: &[u8]) -> (Reply, Then, Option<Id>) {
        match proto::decode_request(bytes) {
            Ok(req) => {
                let queue = match &req {
                    Request::Call { id, op: Op::Get(_) } => Some(*id),
                    _ => None,
                };
                match panic::catch_unwind(AssertUnwindSafe(|| self.handle(peer, req))) {
                    Ok((reply, then)) => (reply, then, queue),
                    Err(p) => (
                        Reply::Err(RemoteError::Panicked(panic_message(&*p))),
                        Then::Continue,
                        None,
                    ),
                }
            }
            Err(e) => (
                Reply::Err(RemoteError::Malformed(e.to_string())),
                Then::Continue,
                None,
            ),
        }
    }
}

fn release_owned(l: &mut LockState, owner: Owner) -> RResult<Reply> {
    if l.owner != Some(owner) {
        return Err(RemoteError::NotOwner);
    }
    l.count -= 1;
    if l.count == 0 {
        l.owner = None;
    }
    Ok(Reply::Unit)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_owned()
    }
}

/// What a server process removes before it exits at a shutdown request.
#[derive(Debug, Default)]
pub(crate) struct ExitCleanup {
    pub(crate) socket: Option<std::path::PathBuf>,
    pub(crate) dir: Option<std::path::PathBuf>,
}

/// Serves `listener` (and the already-trusted `owner` connection, if any)
/// until a client asks for shutdown. The listener runs the authkey
/// handshakes (see [`MAX_PENDING_HANDSHAKES`]); each authenticated
/// connection gets a thread.
///
/// With `exit`, the thread that received the shutdown request removes the
/// socket and ends the process at once (a server process has nothing else
/// to save); without, this function returns.
pub(crate) fn serve(listener: Listener, owner: Option<Connection>, exit: Option<ExitCleanup>) {
    let server = Arc::new(Server::new());
    // Shared with the stoppers, so the descriptor they shut down stays open.
    let listener = Arc::new(listener);
    let exit = Arc::new(exit);
    let stop = {
        let server = server.clone();
        let listener = listener.clone();
        let exit = exit.clone();
        Arc::new(move || {
            if let Some(c) = &*exit {
                if let Some(p) = &c.socket {
                    let _ = std::fs::remove_file(p);
                }
                if let Some(d) = &c.dir {
                    let _ = std::fs::remove_dir(d);
                }
                sys::exit_now(0);
            }
            // SeqCst (as every access to `stopping`): set before the listener
            // is shut down, so the accept loop sees it once `accept` fails.
            server.stopping.store(true, Ordering::SeqCst);
            sys::shutdown_listener(borrow(&listener));
        })
    };
    if let Some(mut c) = owner {
        c.set_max_message(proto::MAX_REQUEST);
        let server = server.clone();
        let stop = stop.clone();
        let _ = std::thread::Builder::new()
            .name("mproc-manager-owner".into())
            .spawn(move || {
                if server.serve_connection(c) {
                    stop();
                }
            });
    }
    loop {
        match listener.accept() {
            Ok(mut c) => {
                if server.stopping.load(Ordering::SeqCst) {
                    break;
                }
                c.set_max_message(proto::MAX_REQUEST);
                let server = server.clone();
                let stop = stop.clone();
                let _ = std::thread::Builder::new()
                    .name("mproc-manager-conn".into())
                    .spawn(move || {
                        if server.serve_connection(c) {
                            stop();
                        }
                    });
            }
            Err(_) if server.stopping.load(Ordering::SeqCst) => break,
            // A client that failed or abandoned its handshake: go on.
            Err(ConnectError::Auth(_) | ConnectError::Timeout(_)) => {}
            // Out of descriptors or a client that vanished mid-accept: go on.
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn borrow(l: &Listener) -> BorrowedFd<'_> {
    // SAFETY: the descriptor belongs to `l`, which outlives the borrow.
    unsafe { BorrowedFd::borrow_raw(l.as_raw_fd()) }
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
