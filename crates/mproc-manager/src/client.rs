//! The client side: sessions (a server address, its authkey and a pool of
//! authenticated connections) and the untyped proxy handle.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use mproc_pipe::{Address, Client, ConnectError, Connection};
use mproc_shm::Segment;
use mproc_shm::codec::{Codec, CodecError, Encode};
use mproc_shm::codec_error::PostcardError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::link::{Link, LinkError};
use crate::proto::{self, Id, Kind, Op, Owner, RemoteError, Reply, Request, Val, WaitMs};
use crate::sys;

pub(crate) use mproc_shm::local::lock;

/// This process's client id (fresh after a fork).
pub(crate) fn client_id() -> u64 {
    static ID: Mutex<Option<(i32, u64)>> = Mutex::new(None);
    let pid = sys::pid();
    let mut g = lock(&ID);
    match *g {
        Some((p, id)) if p == pid => id,
        _ => {
            let mut b = [0u8; 8];
            let id = match sys::random(&mut b) {
                Ok(()) => u64::from_le_bytes(b),
                Err(_) => (pid as u64) << 32 ^ Instant::now().elapsed().as_nanos() as u64,
            };
            *g = Some((pid, id));
            id
        }
    }
}

/// The calling thread's number within this process.
pub(crate) fn thread_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static ME: Cell<u64> = const { Cell::new(0) });
    ME.with(|me| {
        if me.get() == 0 {
            // Relaxed: only uniqueness matters.
            me.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        me.get()
    })
}

/// The caller as a lock owner.
pub(crate) fn owner() -> Owner {
    Owner {
        client: client_id(),
        thread: thread_id(),
    }
}

/// A server address as it travels inside a proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum AddrWire {
    Unix(PathBuf),
    Tcp(SocketAddr),
    Abstract(Vec<u8>),
}

impl From<&Address> for AddrWire {
    fn from(a: &Address) -> Self {
        match a {
            Address::Unix(p) => Self::Unix(p.clone()),
            Address::Tcp(s) => Self::Tcp(*s),
            Address::Abstract(n) => Self::Abstract(n.clone()),
        }
    }
}

impl From<AddrWire> for Address {
    fn from(a: AddrWire) -> Self {
        match a {
            AddrWire::Unix(p) => Self::Unix(p),
            AddrWire::Tcp(s) => Self::Tcp(s),
            AddrWire::Abstract(n) => Self::Abstract(n),
        }
    }
}

/// A connection to one server: its address, the authkey, and idle
/// authenticated connections, shared by every proxy of that server in this
/// process.
pub(crate) struct Session {
    pub(crate) address: Address,
    key: Vec<u8>,
    pub(crate) timeout: Duration,
    pid: AtomicI32,
    pool: Mutex<Vec<Link>>,
    /// The last connection a call failed on, kept open (and never used
    /// again) so that this process always has a connection to the server
    /// while it lives: the server gives back a client's references when its
    /// last connection closes.
    retired: Mutex<Option<Link>>,
    /// A reference could not be given back because the server is gone: do
    /// not try again for every proxy dropped.
    refs_lost: AtomicBool,
    /// 0: not known yet, 1: the server runs our executable, 2: it does not.
    same_exe: AtomicU8,
    key_segment: OnceLock<Segment>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("address", &self.address)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Every live session of this process, so proxies of one server share
/// connections however they arrived.
static SESSIONS: Mutex<Vec<Weak<Session>>> = Mutex::new(Vec::new());

/// A value being encoded for, or decoded from, one server.
struct Current {
    session: Arc<Session>,
    /// Encoding: the ids of the proxies of this server met so far.
    embedded: Vec<Id>,
    /// Decoding: the references the server granted with the value, which
    /// the proxies decoded from it adopt.
    granted: Vec<Arc<Hold>>,
}

thread_local! {
    /// The value being encoded or decoded on this thread: proxies inside it
    /// travel as bare object ids.
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// Runs `f` with `cur` as the current value (see [`CURRENT`]), and returns
/// it back with `f`'s result.
fn within<R>(cur: Current, f: impl FnOnce() -> R) -> (R, Current) {
    let outer = CURRENT.with(|c| c.replace(Some(cur)));
    let r = f();
    let cur = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    (
        r,
        cur.expect("the current value is restored by `within` only"),
    )
}

/// Encodes a value for `session`'s server with the codec `C`, listing the
/// objects whose proxies it contains (see [`Val`]; only a serde codec can
/// meet a proxy).
pub(crate) fn encode<C: Encode<T>, T: ?Sized>(session: &Arc<Session>, v: &T) -> Result<Val, Error> {
    let cur = Current {
        session: session.clone(),
        embedded: Vec::new(),
        granted: Vec::new(),
    };
    // A `Serialize` impl's reason is recovered in the same context, so its
    // proxies take the same path the second time.
    let (bytes, cur) = within(cur, || {
        let mut out = Vec::new();
        C::encode(v, &mut out).map(|()| out)
    });
    let mut refs = cur.embedded;
    refs.sort_unstable();
    refs.dedup();
    Ok(Val {
        bytes: bytes.map_err(Error::Encode)?,
        refs,
    })
}

/// Decodes a value from `session`'s server with the codec `C`: its bytes,
/// and the references the server granted with it, which its proxies adopt
/// (those no proxy adopted, the value did not decode say, are given back).
pub(crate) fn decode<C: Codec<T>, T>(
    session: &Arc<Session>,
    bytes: &[u8],
    refs: &[Id],
) -> Result<T, Error> {
    let granted = refs
        .iter()
        .map(|&id| Arc::new(Hold::new(session.clone(), id)))
        .collect();
    let cur = Current {
        session: session.clone(),
        embedded: Vec::new(),
        granted,
    };
    within(cur, || C::decode(bytes)).0.map_err(Error::Decode)
}

/// One reference to an object, held in the server for this process's
/// proxies of it (CPython increfs when it makes a proxy and decrefs when
/// the proxy is finalized). Clones of a proxy share one; dropping the last
/// gives the reference back, and the server frees the object with its last
/// reference.
pub(crate) struct Hold {
    session: Arc<Session>,
    id: Id,
    /// The process the reference was granted to.
    client: u64,
}

impl Hold {
    /// Takes over a reference the server has just granted to this process.
    pub(crate) fn new(session: Arc<Session>, id: Id) -> Self {
        Self {
            session,
            id,
            client: client_id(),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // A copy inherited through fork: the reference is the parent's.
        if self.client == client_id() {
            self.session.decref(self.id);
        }
    }
}

impl Session {
    /// A session for `address`; reuses a live one with the same key.
    pub(crate) fn get(address: Address, key: &[u8], timeout: Duration) -> Arc<Self> {
        let mut all = lock(&SESSIONS);
        all.retain(|w| w.strong_count() > 0);
        for w in all.iter() {
            if let Some(s) = w.upgrade() {
                if s.address == address && s.key == key {
                    return s;
                }
            }
        }
        let s = Arc::new(Self::new(address, key, timeout));
        all.push(Arc::downgrade(&s));
        s
    }

    fn new(address: Address, key: &[u8], timeout: Duration) -> Self {
        Self {
            address,
            key: key.to_vec(),
            timeout,
            pid: AtomicI32::new(sys::getpid()),
            pool: Mutex::new(Vec::new()),
            retired: Mutex::new(None),
            refs_lost: AtomicBool::new(false),
            same_exe: AtomicU8::new(0),
            key_segment: OnceLock::new(),
        }
    }

    /// A fresh session whose first connection is `conn` (already trusted:
    /// the pipe to a server this process started).
    pub(crate) fn with_connection(
        address: Address,
        key: &[u8],
        timeout: Duration,
        conn: Connection,
        same_exe: bool,
    ) -> Result<Arc<Self>, Error> {
        let s = Arc::new(Self::new(address, key, timeout));
        // Relaxed: see `hello`. The server told us in its ready message, so
        // the hello is sent without waiting for its answer (which stays
        // unread in the socket: from now on messages use the rings).
        s.same_exe
            .store(if same_exe { 1 } else { 2 }, Ordering::Relaxed);
        let rings = conn.can_pass_handles();
        let mut link = send_hello(conn, rings)?;
        if rings {
            link.upgrade_client()
                .map_err(|e| Error::Disconnected(io::Error::other(e)))?;
        } else {
            let _ = link
                .recv::<Reply>(Some(Instant::now() + timeout))
                .map_err(link_error)?;
        }
        lock(&s.pool).push(link);
        lock(&SESSIONS).push(Arc::downgrade(&s));
        Ok(s)
    }

    /// Any live session of `address` (for proxies stored inside a manager).
    fn find(address: &Address) -> Option<Arc<Self>> {
        lock(&SESSIONS)
            .iter()
            .filter_map(Weak::upgrade)
            .find(|s| &s.address == address)
    }

    /// Introduces this client on a fresh connection and, on a Unix socket,
    /// moves it onto shared-memory rings.
    fn hello(&self, conn: Connection, local: bool) -> Result<Link, Error> {
        let rings = local && conn.can_pass_handles();
        let mut link = send_hello(conn, rings)?;
        match link.recv::<Reply>(Some(Instant::now() + self.timeout)) {
            Ok(Reply::Hello {
                protocol, same_exe, ..
            }) if protocol == proto::PROTOCOL => {
                // Relaxed: a cache of a fact that never changes.
                self.same_exe
                    .store(if same_exe { 1 } else { 2 }, Ordering::Relaxed);
            }
            Ok(Reply::Err(e)) => return Err(Error::from_remote(e)),
            Ok(_) => {
                return Err(Error::Remote(
                    "the server speaks another protocol version".into(),
                ));
            }
            Err(e) => return Err(link_error(e)),
        }
        if rings {
            link.upgrade_client()
                .map_err(|e| Error::Disconnected(io::Error::other(e)))?;
        }
        Ok(link)
    }

    fn connect(&self) -> Result<Link, Error> {
        let conn = Client::new(self.address.clone())
            .authkey(&self.key)
            .handshake_timeout(Some(self.timeout))
            .connect()
            .map_err(|e| match e {
                ConnectError::Auth(a) => Error::Auth(a),
                ConnectError::Io(e) => Error::Disconnected(e),
                other => Error::Disconnected(io::Error::other(other.to_string())),
            })?;
        let local = matches!(self.address, Address::Unix(_) | Address::Abstract(_));
        let link = self.hello(conn, local)?;
        if !local {
            sys::keepalive(link.fd());
        }
        Ok(link)
    }

    fn take(&self) -> Result<Link, Error> {
        let pid = sys::pid();
        {
            let mut pool = lock(&self.pool);
            // Relaxed: the pid is only compared with our own.
            if self.pid.swap(pid, Ordering::Relaxed) != pid {
                // Inherited through fork: those connections are the parent's.
                pool.clear();
                *lock(&self.retired) = None;
            }
            if let Some(c) = pool.pop() {
                return Ok(c);
            }
        }
        self.connect()
    }

    fn give_back(&self, conn: Link) {
        lock(&self.pool).push(conn);
    }

    /// Keeps a connection that failed open, but out of use (see `retired`);
    /// the one it replaces closes.
    fn retire(&self, conn: Link) {
        let old = lock(&self.retired).replace(conn);
        drop(old);
    }

    /// Gives one of this process's references to `id` back to the server.
    /// Errors are ignored: a server that cannot be reached has either gone
    /// (with every object) or will give the reference back when this
    /// process's connections close.
    fn decref(&self, id: Id) {
        // Relaxed: a hint that saves useless calls; a stale value only costs one.
        if self.refs_lost.load(Ordering::Relaxed) {
            return;
        }
        // Gone, not slow: a request that timed out was sent, and the server
        // acts on it all the same.
        if let Err(Error::Disconnected(e)) = self.call(&Request::Decref { id }) {
            if e.kind() != io::ErrorKind::TimedOut {
                self.refs_lost.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Whether the server runs this executable (connects to find out).
    pub(crate) fn same_exe(&self) -> Result<bool, Error> {
        // Relaxed: see `hello`.
        match self.same_exe.load(Ordering::Relaxed) {
            1 => Ok(true),
            2 => Ok(false),
            _ => {
                let c = self.take()?;
                self.give_back(c);
                Ok(self.same_exe.load(Ordering::Relaxed) == 1)
            }
        }
    }

    /// Sends `req` and returns the server's reply (a `Reply::Err` becomes an
    /// `Err`). Never waits longer than the call timeout for a server that
    /// does not answer, plus the operation's own waiting time.
    pub(crate) fn call(&self, req: &Request) -> Result<Reply, Error> {
        match self.exchange(req)? {
            Reply::Err(e) => Err(Error::from_remote(e)),
            r => Ok(r),
        }
    }

    /// Sends `req` and returns the server's reply as it is, a `Reply::Err`
    /// included (for operations with outcomes of their own).
    pub(crate) fn exchange(&self, req: &Request) -> Result<Reply, Error> {
        let wait: Option<WaitMs> = match req {
            Request::Call { op, .. } => op.wait(),
            _ => None,
        };
        let bytes = encode_request(req)?;
        let link = self.take()?;
        if let Err(e) = link.send_bytes(bytes) {
            self.retire(link);
            return Err(Error::Disconnected(io::Error::other(e)));
        }
        let reply = match wait {
            None => link.recv::<Reply>(Instant::now().checked_add(self.timeout)),
            Some(Some(ms)) => {
                let d = Instant::now()
                    .checked_add(Duration::from_millis(ms))
                    .and_then(|d| d.checked_add(self.timeout));
                match d {
                    Some(d) => link.recv::<Reply>(Some(d)),
                    None => self.recv_watching(&link),
                }
            }
            Some(None) => self.recv_watching(&link),
        };
        match reply {
            Ok(r) => {
                self.give_back(link);
                Ok(r)
            }
            Err(e) => {
                self.retire(link);
                Err(link_error(e))
            }
        }
    }

    /// Sends `req` without waiting for a reply. Returns the link used: keep
    /// it open until the server has acted (closing it could make the server
    /// drop the request with the connection).
    pub(crate) fn send_only(&self, req: &Request) -> Result<Link, Error> {
        let bytes = encode_request(req)?;
        let link = self.take()?;
        link.send_bytes(bytes)
            .map_err(|e| Error::Disconnected(io::Error::other(e)))?;
        Ok(link)
    }

    /// Waits without limit for the reply of a waiting operation, checking
    /// every call timeout that the server still answers on another
    /// connection.
    fn recv_watching(&self, link: &Link) -> Result<Reply, LinkError> {
        loop {
            match link.recv::<Reply>(Instant::now().checked_add(self.timeout)) {
                Err(LinkError::Timeout) => {
                    if let Err(e) = self.call(&Request::Ping) {
                        if e.is_disconnected() {
                            return Err(LinkError::Gone("the server stopped answering".into()));
                        }
                    }
                }
                other => return other,
            }
        }
    }

    /// The authkey as a sealed memfd segment, for proxies sent to children.
    fn key_segment(&self) -> Result<&Segment, Error> {
        if let Some(s) = self.key_segment.get() {
            return Ok(s);
        }
        let seg = key_segment(&self.key).map_err(Error::Io)?;
        Ok(self.key_segment.get_or_init(|| seg))
    }
}

/// A request's bytes (the protocol is postcard, whatever the values' codec).
fn encode_request(req: &Request) -> Result<Vec<u8>, Error> {
    postcard::to_stdvec(req)
        .map_err(|e| Error::Encode(CodecError::new(PostcardError::encode(req, e))))
}

/// The authkey in a sealed memfd segment (its length, then its bytes): it reaches
/// another process as a file descriptor, never as bytes in a message.
pub(crate) fn key_segment(key: &[u8]) -> io::Result<Segment> {
    let seg = Segment::anonymous(4 + key.len()).map_err(|e| io::Error::other(e.to_string()))?;
    seg.write(0, &(key.len() as u32).to_le_bytes())
        .map_err(|e| io::Error::other(e.to_string()))?;
    seg.write(4, key)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(seg)
}

/// Introduces this client on a fresh connection (`rings`: it will move onto
/// shared-memory rings next).
fn send_hello(conn: Connection, rings: bool) -> Result<Link, Error> {
    let req = Request::Hello {
        protocol: proto::PROTOCOL,
        client: client_id(),
        exe: crate::code_ref::exe_token(),
        rings,
    };
    conn.send_ref(&req)
        .map_err(|e| Error::Disconnected(io::Error::other(e.to_string())))?;
    Ok(Link::plain(conn))
}

fn link_error(e: LinkError) -> Error {
    match e {
        LinkError::Timeout => Error::Disconnected(io::Error::new(
            io::ErrorKind::TimedOut,
            "the server did not answer in time",
        )),
        LinkError::Gone(m) => Error::Disconnected(io::Error::new(io::ErrorKind::NotConnected, m)),
        LinkError::Decode(m) => Error::Remote(format!("the server's reply did not decode: {m}")),
    }
}

/// An untyped proxy: a shared object's id and kind, the session that
/// reaches its server, and the reference that keeps the object alive.
/// Typed proxies wrap one.
#[derive(Clone)]
pub struct RawProxy {
    pub(crate) session: Arc<Session>,
    pub(crate) id: Id,
    pub(crate) kind: Kind,
    /// `None` only for a proxy of an object that was already gone when it
    /// was decoded (its calls fail with [`Error::NoSuchObject`]). Never
    /// read: it is here for its `Drop`.
    #[allow(dead_code)]
    hold: Option<Arc<Hold>>,
}

impl fmt::Debug for RawProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawProxy")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("address", &self.session.address)
            .finish()
    }
}

impl RawProxy {
    /// A proxy that takes over the reference the server has just granted
    /// to this process (a create, lookup, incref or adoption).
    pub(crate) fn granted(session: Arc<Session>, id: Id, kind: Kind) -> Self {
        let hold = Some(Arc::new(Hold::new(session.clone(), id)));
        Self {
            session,
            id,
            kind,
            hold,
        }
    }

    /// The object's id within its server.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.session.address
    }

    pub(crate) fn call(&self, op: Op) -> Result<Reply, Error> {
        self.session.call(&Request::Call { id: self.id, op })
    }

    /// Runs an operation that may give up (a wait that timed out, a queue
    /// found empty or full): `Ok(None)` when the server answered `gave_up`.
    pub(crate) fn call_or_give_up(
        &self,
        op: Op,
        gave_up: RemoteError,
    ) -> Result<Option<Reply>, Error> {
        match self.session.exchange(&Request::Call { id: self.id, op })? {
            Reply::Err(e) if e == gave_up => Ok(None),
            Reply::Err(e) => Err(Error::from_remote(e)),
            r => Ok(Some(r)),
        }
    }

    /// Encodes a value to store with the codec `C` (see [`encode`]).
    pub(crate) fn enc<C: Encode<T>, T: ?Sized>(&self, v: &T) -> Result<Val, Error> {
        encode::<C, T>(&self.session, v)
    }

    /// Encodes bytes only: a dict key, a value to compare with, an update's
    /// argument. (A proxy inside a key does not keep its object alive.)
    pub(crate) fn enc_bytes<C: Encode<T>, T: ?Sized>(&self, v: &T) -> Result<Vec<u8>, Error> {
        Ok(self.enc::<C, T>(v)?.bytes)
    }

    /// Decodes a value the server sent with the codec `C` (see [`decode`]).
    pub(crate) fn dec<C: Codec<T>, T>(&self, v: &Val) -> Result<T, Error> {
        decode::<C, T>(&self.session, &v.bytes, &v.refs)
    }

    /// Decodes bytes sent without references (a dict key).
    pub(crate) fn dec_bytes<C: Codec<T>, T>(&self, b: &[u8]) -> Result<T, Error> {
        decode::<C, T>(&self.session, b, &[])
    }
}

/// How a proxy travels. (`Outer` is serialized by hand, in
/// `RawProxy::serialize`: keep the two in step.)
#[derive(Serialize, Deserialize)]
enum ProxyWire {
    /// Inside a value stored in (or read from) the manager: the id only.
    Inner {
        address: AddrWire,
        id: Id,
        kind: Kind,
    },
    /// To another process, as an mproc handle: with the authkey in a sealed
    /// memfd that only travels as a file descriptor, and the token of the
    /// reference the server keeps for it while it travels.
    Outer {
        address: AddrWire,
        id: Id,
        kind: Kind,
        timeout_ms: u64,
        key: Segment,
        token: u64,
    },
}

impl Serialize for RawProxy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeStructVariant as _};
        let inner = CURRENT.with(|c| match c.borrow_mut().as_mut() {
            Some(cur) => {
                // Only a proxy of the same server can keep its object alive there.
                if cur.session.address == self.session.address {
                    cur.embedded.push(self.id);
                }
                true
            }
            None => false,
        });
        let address = AddrWire::from(&self.session.address);
        if inner {
            return ProxyWire::Inner {
                address,
                id: self.id,
                kind: self.kind,
            }
            .serialize(s);
        }
        let key = self
            .session
            .key_segment()
            .map_err(S::Error::custom)?
            .try_clone()
            .map_err(S::Error::custom)?;
        let timeout_ms = self.session.timeout.as_millis().min(u64::MAX as u128) as u64;
        // `ProxyWire::Outer`, field by field as its derived form would be, so
        // that the key (which fails in anything but an mproc handle channel)
        // goes before the transfer reference is taken.
        let mut v = s.serialize_struct_variant("ProxyWire", 1, "Outer", 6)?;
        v.serialize_field("address", &address)?;
        v.serialize_field("id", &self.id)?;
        v.serialize_field("kind", &self.kind)?;
        v.serialize_field("timeout_ms", &timeout_ms)?;
        v.serialize_field("key", &key)?;
        // A reference for the receiver, so the object outlives this proxy
        // while the message travels.
        let token = match self.session.call(&Request::Transfer { id: self.id }) {
            Ok(Reply::Token(t)) => t,
            Ok(r) => return Err(S::Error::custom(crate::error::unexpected(r))),
            Err(e) => return Err(S::Error::custom(e)),
        };
        v.serialize_field("token", &token)?;
        v.end()
    }
}

impl<'de> Deserialize<'de> for RawProxy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        match ProxyWire::deserialize(d)? {
            ProxyWire::Inner { address, id, kind } => {
                let address = Address::from(address);
                // The reference granted with the value, if this is its server.
                let current = CURRENT.with(|c| {
                    c.borrow()
                        .as_ref()
                        .filter(|cur| cur.session.address == address)
                        .map(|cur| {
                            let hold = cur.granted.iter().find(|h| h.id == id).cloned();
                            (cur.session.clone(), hold)
                        })
                });
                let (session, hold) = match current {
                    Some(found) => found,
                    None => (Session::find(&address).ok_or_else(|| {
                        D::Error::custom("a proxy stored in a manager can only be read through a proxy of that manager")
                    })?, None),
                };
                let hold = match hold {
                    Some(h) => Some(h),
                    // None granted (a key, another manager's proxy): ask for
                    // one; an object already gone gives a proxy whose calls
                    // fail with `NoSuchObject`.
                    None => match session.call(&Request::Incref { id }) {
                        Ok(Reply::Object(..)) => Some(Arc::new(Hold::new(session.clone(), id))),
                        _ => None,
                    },
                };
                Ok(Self {
                    session,
                    id,
                    kind,
                    hold,
                })
            }
            ProxyWire::Outer {
                address,
                id,
                kind,
                timeout_ms,
                key,
                token,
            } => {
                let mut len = [0u8; 4];
                key.read(0, &mut len).map_err(D::Error::custom)?;
                let len = u32::from_le_bytes(len) as usize;
                if len > key.len().saturating_sub(4) {
                    return Err(D::Error::custom("malformed authkey handle"));
                }
                let mut k = vec![0u8; len];
                key.read(4, &mut k).map_err(D::Error::custom)?;
                let session = Session::get(address.into(), &k, Duration::from_millis(timeout_ms));
                match session.call(&Request::Adopt { token }) {
                    Ok(Reply::Object(i, k)) if i == id && k == kind => {
                        Ok(Self::granted(session, id, kind))
                    }
                    Ok(Reply::Object(..)) => Err(D::Error::custom(
                        "the server adopted a proxy of another object",
                    )),
                    Ok(r) => Err(D::Error::custom(crate::error::unexpected(r))),
                    Err(e) => Err(D::Error::custom(e)),
                }
            }
        }
    }
}
