//! `Manager`: starting, connecting to and shutting down a server, and making
//! shared objects.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mproc_pipe::{Address, Connection, Listener};
use mproc_process::{ExitStatus, Pid, Process, ProcessHandle, StartMethod};
use mproc_shm::Segment;
use mproc_shm::codec::{Encode, Postcard};
use serde::{Deserialize, Serialize};

use crate::array::Array;
use crate::client::{AddrWire, RawProxy, Session, key_segment};
use crate::dict::Dict;
use crate::error::{ConnectError, Error};
use crate::list::List;
use crate::proto::ExeWire;
use crate::proto::{Init, Kind, Reply, Request, Val};
use crate::proxy::{Proxy, unexpected, unit};
use crate::queue::{JoinableQueue, Queue};
use crate::server::ExitCleanup;
use crate::sync::{Barrier, Condition, Event, Lock, RLock, Semaphore};
use crate::value::{Namespace, Value};
use crate::{code_ref, server, sys};

/// The default limit on how long a call waits for a server that does not
/// answer.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The default time the server gets to exit after a shutdown request
/// (CPython's `shutdown_timeout`).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Configures a manager: where its server listens, the authkey, timeouts,
/// and the codec of its proxies' values (`C`, see [`ManagerBuilder::codec`]).
#[must_use]
pub struct ManagerBuilder<C = Postcard> {
    address: Option<Address>,
    authkey: Option<Vec<u8>>,
    call_timeout: Duration,
    shutdown_timeout: Duration,
    /// `None`: the process-wide default, resolved by `start`.
    start_method: Option<StartMethod>,
    codec: PhantomData<fn() -> C>,
}

impl<C> Clone for ManagerBuilder<C> {
    fn clone(&self) -> Self {
        Self {
            address: self.address.clone(),
            authkey: self.authkey.clone(),
            codec: PhantomData,
            ..*self
        }
    }
}

impl<C> fmt::Debug for ManagerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagerBuilder")
            .field("address", &self.address)
            .field("authkey", &self.authkey.as_ref().map(|_| "<secret>"))
            .field("call_timeout", &self.call_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("start_method", &self.start_method)
            .finish()
    }
}

impl Default for ManagerBuilder {
    fn default() -> Self {
        Self {
            address: None,
            authkey: None,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            start_method: None,
            codec: PhantomData,
        }
    }
}

impl<C> ManagerBuilder<C> {
    /// The same builder, for a manager whose proxies encode the values they
    /// share with the codec `D` ([`Postcard`] by default; `Pod` for plain
    /// data, `Bytes` for byte vectors: see [`mproc_shm::codec`]). The
    /// manager's constructors then return proxies typed with `D`
    /// (`Dict<K, V, D>`, ...), which keep it when they travel to another
    /// process.
    ///
    /// ```
    /// use mproc_manager::{Dict, Manager};
    /// use mproc_shm::codec::Pod;
    ///
    /// let m = Manager::builder().codec::<Pod>().start()?;
    /// let d: Dict<u32, [f64; 2], Pod> = m.dict()?;
    /// d.insert(&7, &[1.5, 2.5])?;
    /// assert_eq!(d.get(&7)?, Some([1.5, 2.5]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn codec<D>(self) -> ManagerBuilder<D> {
        ManagerBuilder {
            address: self.address,
            authkey: self.authkey,
            call_timeout: self.call_timeout,
            shutdown_timeout: self.shutdown_timeout,
            start_method: self.start_method,
            codec: PhantomData,
        }
    }

    mproc_shm::builder_setters! {
        /// Listens at `address`: a TCP address (`127.0.0.1:0` picks a port) for
        /// remote clients, or a Unix socket path or abstract name. The default
        /// is a private Unix socket ([`Listener::builder_auto`]): on Linux a
        /// fresh abstract name that only processes of the same user may use,
        /// which leaves nothing behind even when the server is killed;
        /// elsewhere a socket in a fresh private (0700) directory, removed at
        /// shutdown.
        address(address: impl Into<Address>) => address = Some(address.into());
        /// The authkey clients must prove they know (CPython's handshake, HMAC
        /// SHA-256). The default is this process's authkey
        /// ([`AuthKey`](mproc_process::AuthKey), CPython's
        /// `current_process().authkey`), which the processes it starts inherit.
        authkey(key: &[u8]) => authkey = Some(key.to_vec());
        /// How long a call waits for a server that does not answer before it
        /// returns [`Error::Disconnected`] (default 5 s). Waiting operations
        /// (`lock`, `get`, …) add their own timeout to it, and without one they
        /// check every `timeout` that the server still answers.
        call_timeout(timeout: Duration) => call_timeout = timeout;
        /// How long shutdown waits for the server to exit before terminating it
        /// (default 1 s).
        shutdown_timeout(timeout: Duration) => shutdown_timeout = timeout;
        /// The start method of the server process (default: the process-wide
        /// [`get_start_method`](mproc_process::get_start_method)).
        start_method(method: StartMethod) => start_method = Some(method);
    }

    fn key(&self) -> Result<Vec<u8>, ConnectError> {
        match &self.authkey {
            Some(k) => Ok(k.clone()),
            None => Ok(mproc_process::current_process()
                .authkey()
                .map(|k| k.as_bytes().to_vec())
                .unwrap_or_default()),
        }
    }

    /// Starts the server process and returns the manager that owns it.
    ///
    /// # Errors
    /// [`ConnectError::Start`] if the process cannot start;
    /// [`ConnectError::Io`] if the server cannot bind its address (the
    /// message says why).
    pub fn start(self) -> Result<Manager<C>, ConnectError> {
        let key = self.key()?;
        let key_segment = key_segment(&key).map_err(ConnectError::Io)?;
        let (mine, theirs) = mproc_pipe::pipe(true).map_err(ConnectError::Io)?;
        let args = ServerArgs {
            address: self.address.as_ref().map(AddrWire::from),
            key: key_segment,
            ready: theirs,
        };
        let mut process = Process::new(server_main, args)
            .name("SyncManager")
            .daemon(true)
            .start_method(match self.start_method {
                Some(m) => m,
                None => {
                    mproc_process::get_start_method().map_err(|e| ConnectError::Start(e.into()))?
                }
            })
            .start()
            .map_err(ConnectError::Start)?;
        let ready = mine.recv_timeout::<Ready>(self.call_timeout.max(Duration::from_secs(10)));
        let (address, exe) = match ready {
            Ok(Ok((a, exe))) => (Address::from(a), exe),
            Ok(Err(msg)) => {
                let _ = process.join_timeout(self.shutdown_timeout);
                return Err(ConnectError::Io(io::Error::other(msg)));
            }
            Err(e) => {
                let _ = process.terminate_timeout(self.shutdown_timeout);
                let _ = process.join_timeout(Duration::ZERO);
                return Err(ConnectError::Io(io::Error::other(format!(
                    "the manager server did not start: {e}"
                ))));
            }
        };
        let same_exe = exe.is_some() && exe == code_ref::exe_token();
        let session =
            match Session::with_connection(address, &key, self.call_timeout, mine, same_exe) {
                Ok(s) => s,
                Err(e) => {
                    let _ = process.terminate_timeout(self.shutdown_timeout);
                    let _ = process.join_timeout(Duration::ZERO);
                    return Err(e.into());
                }
            };
        let auto_socket = match (&self.address, &session.address) {
            (None, Address::Unix(p)) => Some(p.clone()),
            _ => None,
        };
        Ok(Manager {
            session,
            key,
            process: Some(process),
            shutdown_timeout: self.shutdown_timeout,
            stopped: false,
            made_by: sys::getpid(),
            auto_socket,
            codec: PhantomData,
        })
    }

    /// Connects to a running server (CPython's `BaseManager.connect`). The
    /// returned manager does not own the server: dropping it leaves the
    /// server running. Without [`authkey`](Self::authkey) it proves the
    /// process authkey, so a child reaches a manager its parent started
    /// knowing only the address.
    ///
    /// # Errors
    /// [`ConnectError::Auth`] for a wrong authkey (before any object is
    /// reachable); [`ConnectError::Disconnected`] if nothing answers.
    pub fn connect(self) -> Result<Manager<C>, ConnectError> {
        let address = self
            .address
            .clone()
            .ok_or_else(|| ConnectError::Io(io::Error::other("connect needs an address")))?;
        // CPython's default too: the process authkey, which a child
        // inherited from the parent that started the server.
        let key = self.key()?;
        let session = Session::get(address, &key, self.call_timeout);
        // CPython's `connect` sends a `dummy` request: fail now, not later.
        unit(session.call(&Request::Ping)?)?;
        Ok(Manager {
            session,
            key,
            process: None,
            shutdown_timeout: self.shutdown_timeout,
            stopped: false,
            made_by: sys::getpid(),
            auto_socket: None,
            codec: PhantomData,
        })
    }

    /// Runs the server in this process, in the calling thread, until a
    /// client calls [`Manager::shutdown`] (CPython's
    /// `get_server().serve_forever()`). `ready` is called with the bound
    /// address once clients can connect.
    ///
    /// # Errors
    /// [`ConnectError::Io`] if the address cannot be bound.
    pub fn serve(self, ready: impl FnOnce(&Address)) -> Result<(), ConnectError> {
        let key = self.key()?;
        let listener = bind(self.address.as_ref(), &key).map_err(ConnectError::Io)?;
        ready(listener.address());
        server::serve(listener, None, None);
        Ok(())
    }
}

/// Binds the server's listener, which runs the authkey handshakes.
fn bind(address: Option<&Address>, key: &[u8]) -> io::Result<Listener> {
    match address {
        Some(a) => Listener::builder(a.clone()),
        None => Listener::builder_auto(),
    }
    .backlog(512)
    .authkey(key)
    .handshake_timeout(Some(server::HANDSHAKE_TIMEOUT))
    .max_pending_handshakes(server::MAX_PENDING_HANDSHAKES)
    .bind()
}

fn read_key(seg: &Segment) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    seg.read(0, &mut len).ok()?;
    let len = u32::from_le_bytes(len) as usize;
    let mut k = vec![0u8; len];
    seg.read(4, &mut k).ok()?;
    Some(k)
}

#[derive(Serialize, Deserialize)]
struct ServerArgs {
    address: Option<AddrWire>,
    key: Segment,
    ready: Connection,
}

/// The manager server process.
fn server_main(args: ServerArgs) {
    sys::ignore_signal(libc::SIGINT);
    let Some(key) = read_key(&args.key) else {
        let _ = args
            .ready
            .send_ref(&Ready::Err("the authkey did not arrive".into()));
        return;
    };
    drop(args.key);
    let address = args.address.map(Address::from);
    let listener = match bind(address.as_ref(), &key) {
        Ok(l) => l,
        Err(e) => {
            let at = address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "a private socket".into());
            let _ = args.ready.send_ref(&Ready::Err(format!(
                "the manager server cannot listen at {at}: {e}"
            )));
            return;
        }
    };
    let cleanup = match (&address, listener.address()) {
        (None, Address::Unix(p)) => ExitCleanup {
            socket: Some(p.clone()),
            dir: p.parent().map(|d| d.to_owned()),
        },
        (Some(_), Address::Unix(p)) => ExitCleanup {
            socket: Some(p.clone()),
            dir: None,
        },
        _ => ExitCleanup::default(),
    };
    let ready: Ready = Ok((AddrWire::from(listener.address()), code_ref::exe_token()));
    if args.ready.send_ref(&ready).is_err() {
        return;
    }
    server::serve(listener, Some(args.ready), Some(cleanup));
}

/// What the server process reports once it listens: its address and
/// executable, or why it could not start.
type Ready = Result<(AddrWire, Option<ExeWire>), String>;

/// A manager: a server process holding shared objects, and the means to
/// make and reach them (CPython's `multiprocessing.Manager()` /
/// `SyncManager`).
///
/// A manager made by [`Manager::start`] owns its server: [`Manager::shutdown`]
/// or dropping the manager stops it (asking first, then SIGTERM and SIGKILL
/// after the shutdown timeout). One made by [`Manager::connect`] does not.
///
/// `C` is the codec the proxies it makes encode their values with
/// ([`Postcard`] by default; chosen with [`ManagerBuilder::codec`]).
pub struct Manager<C = Postcard> {
    session: Arc<Session>,
    key: Vec<u8>,
    process: Option<ProcessHandle<()>>,
    shutdown_timeout: Duration,
    stopped: bool,
    /// The process that made this manager (a forked copy must not stop the server).
    made_by: i32,
    /// The socket the server made in a private directory, to remove if the
    /// server dies without cleaning up.
    auto_socket: Option<std::path::PathBuf>,
    codec: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for Manager<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("address", &self.session.address)
            .field("pid", &self.pid())
            .field("owner", &self.process.is_some())
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Starts a manager with the defaults (a private Unix socket, a random
    /// authkey, the fork server).
    ///
    /// # Errors
    /// As for [`ManagerBuilder::start`].
    pub fn start() -> Result<Self, ConnectError> {
        ManagerBuilder::default().start()
    }

    /// A builder, to choose the address, authkey, timeouts and codec.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to the server at `address` with `authkey`.
    ///
    /// # Errors
    /// As for [`ManagerBuilder::connect`].
    pub fn connect(address: impl Into<Address>, authkey: &[u8]) -> Result<Self, ConnectError> {
        ManagerBuilder::default()
            .address(address)
            .authkey(authkey)
            .connect()
    }
}

impl<C> Manager<C> {
    /// The server's address.
    pub fn address(&self) -> &Address {
        &self.session.address
    }

    /// The authkey. Give it only to processes that may use every shared
    /// object of this manager.
    pub fn authkey(&self) -> &[u8] {
        &self.key
    }

    /// The server process's id, for a manager that started it.
    pub fn pid(&self) -> Option<Pid> {
        self.process.as_ref().map(ProcessHandle::pid)
    }

    fn create(&self, kind: Kind, init: Init) -> Result<RawProxy, Error> {
        match self.session.call(&Request::Create { kind, init })? {
            Reply::Object(id, kind) => Ok(RawProxy::granted(self.session.clone(), id, kind)),
            r => Err(unexpected(r)),
        }
    }

    fn enc<T>(&self, v: &T) -> Result<Val, Error>
    where
        C: Encode<T>,
    {
        crate::client::encode::<C, T>(&self.session, v)
    }

    /// The initial items of a list or an array, encoded.
    fn enc_items<T>(&self, items: impl IntoIterator<Item = T>) -> Result<Init, Error>
    where
        C: Encode<T>,
    {
        let v: Result<Vec<_>, Error> = items.into_iter().map(|i| self.enc(&i)).collect();
        Ok(Init::Items(v?))
    }

    /// A new, empty shared dict.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn dict<K, V>(&self) -> Result<Dict<K, V, C>, Error> {
        self.create(Kind::Dict, Init::Empty).map(Dict::wrap)
    }

    /// A new shared dict holding `pairs`.
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Encode`].
    pub fn dict_from<K, V>(
        &self,
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Dict<K, V, C>, Error>
    where
        C: Encode<K> + Encode<V>,
    {
        let p: Result<Vec<_>, Error> = pairs
            .into_iter()
            .map(|(k, v)| Ok((self.enc(&k)?.bytes, self.enc(&v)?)))
            .collect();
        self.create(Kind::Dict, Init::Pairs(p?)).map(Dict::wrap)
    }

    /// A new, empty shared list.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn list<T>(&self) -> Result<List<T, C>, Error> {
        self.create(Kind::List, Init::Empty).map(List::wrap)
    }

    /// A new shared list holding `items`.
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Encode`].
    pub fn list_from<T>(&self, items: impl IntoIterator<Item = T>) -> Result<List<T, C>, Error>
    where
        C: Encode<T>,
    {
        self.create(Kind::List, self.enc_items(items)?)
            .map(List::wrap)
    }

    /// A new shared array holding `items`, whose length then never changes
    /// (CPython's `m.Array(typecode, sequence)`).
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Encode`].
    pub fn array<T>(&self, items: impl IntoIterator<Item = T>) -> Result<Array<T, C>, Error>
    where
        C: Encode<T>,
    {
        self.create(Kind::Array, self.enc_items(items)?)
            .map(Array::wrap)
    }

    /// A new, empty namespace.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn namespace(&self) -> Result<Namespace<C>, Error> {
        self.create(Kind::Namespace, Init::Empty)
            .map(Namespace::wrap)
    }

    /// A new shared value.
    ///
    /// # Errors
    /// [`Error::Disconnected`]; [`Error::Encode`].
    pub fn value<T>(&self, value: T) -> Result<Value<T, C>, Error>
    where
        C: Encode<T>,
    {
        let b = self.enc(&value)?;
        self.create(Kind::Value, Init::Value(b)).map(Value::wrap)
    }

    /// A new lock.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn lock(&self) -> Result<Lock, Error> {
        self.create(Kind::Lock, Init::Empty).map(Lock::wrap)
    }

    /// A new re-entrant lock.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn rlock(&self) -> Result<RLock, Error> {
        self.create(Kind::RLock, Init::Empty).map(RLock::wrap)
    }

    /// A new semaphore with `value` units.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn semaphore(&self, value: usize) -> Result<Semaphore, Error> {
        self.create(Kind::Semaphore, Init::Count(value as u64))
            .map(Semaphore::wrap)
    }

    /// A new bounded semaphore: releasing above `value` is [`Error::OverRelease`].
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn bounded_semaphore(&self, value: usize) -> Result<Semaphore, Error> {
        self.create(Kind::BoundedSemaphore, Init::Count(value as u64))
            .map(Semaphore::wrap)
    }

    /// A new event, not set.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn event(&self) -> Result<Event, Error> {
        self.create(Kind::Event, Init::Empty).map(Event::wrap)
    }

    /// A new condition with its own re-entrant lock.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn condition(&self) -> Result<Condition, Error> {
        self.create(Kind::Condition, Init::Empty)
            .map(Condition::wrap)
    }

    /// A new barrier for `parties` (at least 1) waiters.
    ///
    /// # Errors
    /// [`Error::Remote`] for zero parties; [`Error::Disconnected`].
    pub fn barrier(&self, parties: usize) -> Result<Barrier, Error> {
        self.create(Kind::Barrier, Init::Count(parties as u64))
            .map(Barrier::wrap)
    }

    /// A new queue holding at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn queue<T>(&self, maxsize: usize) -> Result<Queue<T, C>, Error> {
        let maxsize = maxsize as u64;
        self.create(Kind::Queue, Init::Queue { maxsize })
            .map(Queue::wrap)
    }

    /// A new joinable queue holding at most `maxsize` items (0: unbounded).
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn joinable_queue<T>(&self, maxsize: usize) -> Result<JoinableQueue<T, C>, Error> {
        let maxsize = maxsize as u64;
        self.create(Kind::JoinableQueue, Init::Queue { maxsize })
            .map(JoinableQueue::wrap)
    }

    /// Names `proxy`'s object in the server's registry, so that processes
    /// that [`connect`](Manager::connect) can [`lookup`](Manager::lookup) it.
    /// The name keeps the object alive until [`unregister`](Manager::unregister).
    ///
    /// # Errors
    /// [`Error::NameTaken`] if the name is in use.
    pub fn register<P: Proxy>(&self, name: &str, proxy: &P) -> Result<(), Error> {
        unit(self.session.call(&Request::Register {
            name: name.to_owned(),
            id: proxy.raw().id,
        })?)
    }

    /// The object registered as `name`, as proxy type `P`.
    ///
    /// # Errors
    /// [`Error::NoSuchName`]; [`Error::WrongKind`] if `P` cannot reach it.
    pub fn lookup<P: Proxy>(&self, name: &str) -> Result<P, Error> {
        match self.session.call(&Request::Lookup {
            name: name.to_owned(),
        })? {
            Reply::Object(id, kind) => {
                P::from_raw(RawProxy::granted(self.session.clone(), id, kind))
            }
            r => Err(unexpected(r)),
        }
    }

    /// Removes `name` from the registry (the object stays while other
    /// references to it remain).
    ///
    /// # Errors
    /// [`Error::NoSuchName`].
    pub fn unregister(&self, name: &str) -> Result<(), Error> {
        unit(self.session.call(&Request::Unregister {
            name: name.to_owned(),
        })?)
    }

    /// The registered names, sorted.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn names(&self) -> Result<Vec<String>, Error> {
        match self.session.call(&Request::Names)? {
            Reply::Names(n) => Ok(n),
            r => Err(unexpected(r)),
        }
    }

    /// How many shared objects the server holds (CPython's
    /// `_number_of_objects`): those that a proxy, a registry name, a value
    /// stored in another object or a proxy in flight still refers to.
    ///
    /// # Errors
    /// [`Error::Disconnected`].
    pub fn object_count(&self) -> Result<usize, Error> {
        match self.session.call(&Request::ObjectCount)? {
            Reply::Count(n) => Ok(n as usize),
            r => Err(unexpected(r)),
        }
    }

    /// Frees `proxy`'s object in the server now, whatever still refers to it
    /// (and its registry names). Every proxy of it, in every process, then
    /// gets [`Error::NoSuchObject`]. Objects are otherwise freed when the
    /// last proxy, name or stored value referring to them goes.
    ///
    /// # Errors
    /// [`Error::NoSuchObject`] if it was already freed.
    pub fn release<P: Proxy>(&self, proxy: &P) -> Result<(), Error> {
        unit(
            self.session
                .call(&Request::Release { id: proxy.raw().id })?,
        )
    }

    /// Whether the server answers.
    pub fn is_alive(&self) -> bool {
        self.session.call(&Request::Ping).is_ok()
    }

    /// Stops the server: asks it to exit, waits up to the shutdown timeout,
    /// then terminates it (SIGTERM, then SIGKILL), as CPython's
    /// `shutdown()` does; returns how it ended. For a connected manager
    /// this asks the server to exit and returns [`ShutdownStatus::Requested`].
    /// Calls through proxies of this server then return
    /// [`Error::Disconnected`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc_manager::{Manager, ShutdownStatus};
    /// use mproc_process::ExitStatus;
    ///
    /// let m = Manager::start()?;
    /// assert_eq!(m.shutdown()?, ShutdownStatus::Exited(ExitStatus::Exited(0)));
    /// # Ok::<(), mproc_manager::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] if the server process could not be signalled (or
    /// survived SIGKILL); for a connected manager, [`Error::Disconnected`]
    /// if the server did not take the request.
    pub fn shutdown(mut self) -> Result<ShutdownStatus, Error> {
        self.stop()
    }

    fn stop(&mut self) -> Result<ShutdownStatus, Error> {
        if self.stopped {
            return Ok(ShutdownStatus::Requested);
        }
        self.stopped = true;
        let Some(mut p) = self.process.take() else {
            return unit(self.session.call(&Request::Shutdown)?)
                .map(|()| ShutdownStatus::Requested);
        };
        // The server ends with `Exited(0)` only on a shutdown request (this
        // one or another client's); any other end is a crash or a kill.
        let ended = |status: ExitStatus| {
            if status == ExitStatus::Exited(0) {
                ShutdownStatus::Exited(status)
            } else {
                ShutdownStatus::AlreadyGone(status)
            }
        };
        let r = match p.status() {
            Some(status) => Ok(ended(status)),
            None => {
                // The server exits as soon as it reads the request: wait
                // for that, not for a reply.
                let _ = self.session.send_only(&Request::Shutdown);
                let _ = p.join_deadline(Instant::now() + self.shutdown_timeout);
                match p.status() {
                    Some(status) => Ok(ended(status)),
                    None => p
                        .terminate_timeout(self.shutdown_timeout)
                        .map(ShutdownStatus::Terminated)
                        .map_err(Error::Io),
                }
            }
        };
        let _ = p.join_timeout(Duration::ZERO);
        // A server that was killed could not remove its socket.
        if let Some(path) = self.auto_socket.take() {
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
        r
    }
}

/// How a manager's server ended at [`Manager::shutdown`].
///
/// CPython's `shutdown()` returns nothing; the steps it takes (ask, wait
/// `shutdown_timeout`, terminate, kill) are the same, and this says which
/// one ended the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShutdownStatus {
    /// The server exited on a shutdown request within the shutdown timeout
    /// (`Exited(0)`, the only way it exits by itself): this one, or an
    /// earlier one from another client.
    Exited(ExitStatus),
    /// The server had ended otherwise before the shutdown: it crashed or
    /// was killed (the status says how).
    AlreadyGone(ExitStatus),
    /// The server did not exit within the shutdown timeout and was
    /// terminated: `Signaled(SIGTERM)`, or `Signaled(SIGKILL)` when
    /// SIGTERM did not end it within a second timeout either.
    Terminated(ExitStatus),
    /// A manager that does not own the server ([`Manager::connect`]): the
    /// server took the request; how it ends is its owner's to see.
    Requested,
}

impl<C> Drop for Manager<C> {
    fn drop(&mut self) {
        if self.process.is_some() && self.made_by == sys::getpid() {
            let _ = self.stop();
        }
    }
}
