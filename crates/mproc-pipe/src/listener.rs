//! `Listener` and `Client`: connections over Unix-domain and TCP sockets,
//! optionally authenticated with CPython's authkey handshake.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::address::Address;
use crate::auth::{AuthOptions, Digest};
use crate::connection::Connection;
use crate::error::ConnectError;
use crate::frame::Wire;
use crate::handshake::{Handshake, Progress, Role};
use crate::sys;

/// The default limit on one authkey handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The default limit on handshakes a [`Listener`] runs at once.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 128;

/// The handshake setters of [`ListenerBuilder`] and [`Client`], each
/// written once here: an invocation lists `name: setting;` with the doc
/// text of its own side, and gets `pub fn name(mut self, …) -> Self`
/// setting that field of the builder's [`Settings`].
macro_rules! settings_setters {
    ($($(#[doc = $doc:literal])* $name:ident: $setting:ident;)*) => {$(
        settings_setters!(@setter [$($doc)*] $name $setting);
    )*};
    (@setter [$($doc:literal)*] $name:ident authkey) => {
        $(#[doc = $doc])*
        pub fn $name(mut self, key: &[u8]) -> Self {
            self.settings.authkey = Some(key.into());
            self
        }
    };
    (@setter [$($doc:literal)*] $name:ident legacy_md5) => {
        $(#[doc = $doc])*
        pub fn $name(mut self, allow: bool) -> Self {
            self.settings.auth.allow_legacy_md5 = allow;
            self
        }
    };
    (@setter [$($doc:literal)*] $name:ident digest) => {
        $(#[doc = $doc])*
        pub fn $name(mut self, digest: Digest) -> Self {
            self.settings.auth.digest = digest;
            self
        }
    };
    (@setter [$($doc:literal)*] $name:ident handshake_timeout) => {
        $(#[doc = $doc])*
        pub fn $name(mut self, timeout: Option<Duration>) -> Self {
            self.settings.handshake_timeout = timeout;
            self
        }
    };
    (@setter [$($doc:literal)*] $name:ident wire) => {
        $(#[doc = $doc])*
        pub fn $name(mut self, yes: bool) -> Self {
            self.settings.wire = if yes { Wire::Mproc } else { Wire::Cpython };
            self
        }
    };
}

/// Settings shared by [`Listener`] and [`Client`].
#[derive(Clone, Default)]
struct Settings {
    authkey: Option<Arc<[u8]>>,
    auth: AuthOptions,
    wire: Wire,
    handshake_timeout: Option<Duration>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("authkey", &self.authkey.as_ref().map(|_| "<secret>"))
            .field("auth", &self.auth)
            .field("wire", &self.wire)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

enum Sock {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Sock {
    /// Accepts a connection (without waiting if the socket is non-blocking).
    fn accept(&self) -> io::Result<(OwnedFd, Option<Address>)> {
        match self {
            Self::Unix(l) => {
                let (s, a) = l.accept()?;
                Ok((s.into(), unix_peer(&a)))
            }
            Self::Tcp(l) => {
                let (s, a) = l.accept()?;
                s.set_nodelay(true)?;
                Ok((s.into(), Some(Address::Tcp(a))))
            }
        }
    }
}

fn unix_peer(a: &std::os::unix::net::SocketAddr) -> Option<Address> {
    if let Some(p) = a.as_pathname() {
        return Some(Address::Unix(p.to_owned()));
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt;
        if let Some(name) = a.as_abstract_name() {
            return Some(Address::Abstract(name.to_vec()));
        }
    }
    None
}

/// A client whose handshake is under way.
struct Pending {
    stream: OwnedFd,
    peer: Option<Address>,
    handshake: Handshake,
    /// The `poll` events it waits for.
    wait: libc::c_short,
}

/// A socket that accepts connections (Python's
/// `multiprocessing.connection.Listener`).
///
/// With an authkey, [`Listener::accept`] runs CPython's handshake (challenge
/// the client, then answer its challenge) before returning the connection,
/// and nothing the client sends after its handshake messages is read until
/// both directions have succeeded. Handshakes run side by side: `accept`
/// takes every waiting client in, drives all their handshakes at once
/// (without threads) and returns the first client that completes, so a
/// slow or silent client delays nobody. Each handshake has its own deadline
/// ([`ListenerBuilder::handshake_timeout`]), and at most
/// [`ListenerBuilder::max_pending_handshakes`] run at once: a new client
/// then displaces the one that has waited longest. Unfinished handshakes
/// wait inside the listener between calls. ([`wait`](crate::wait) on a
/// listener reports new clients only: an `accept` that follows waits for
/// some handshake to end.)
///
/// # Examples
///
/// ```
/// use mproc_pipe::{Client, Listener};
///
/// let listener = Listener::builder_auto().authkey(b"secret").bind()?;
/// let addr = listener.address().clone();
/// let t = std::thread::spawn(move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     let c = Client::new(addr).authkey(b"secret").connect()?;
///     c.send_bytes(b"hello")?;
///     Ok(())
/// });
/// let conn = listener.accept()?;
/// assert_eq!(conn.recv_bytes()?, b"hello");
/// t.join().unwrap().unwrap();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Listener {
    sock: Sock,
    address: Address,
    settings: Settings,
    max_pending: usize,
    /// Only clients running as our user are accepted (automatic private
    /// addresses that the filesystem does not protect).
    same_user_only: bool,
    /// Handshakes under way, oldest first.
    pending: Mutex<VecDeque<Pending>>,
    /// A private directory we created for an automatic address; removed on drop.
    temp_dir: Option<PathBuf>,
}

/// Configures and binds a [`Listener`].
#[derive(Debug)]
#[must_use]
pub struct ListenerBuilder {
    address: Option<Address>,
    backlog: u32,
    max_pending: usize,
    settings: Settings,
}

impl ListenerBuilder {
    settings_setters! {
        /// Requires clients to prove they know `key` (CPython's `authkey`).
        authkey: authkey;
        /// Whether clients that only speak the legacy HMAC-MD5 handshake
        /// (CPython 3.11 and older) are accepted. On by default, as in CPython
        /// 3.12+; `false` refuses them with
        /// [`AuthError::LegacyMd5Disabled`](crate::AuthError::LegacyMd5Disabled).
        /// Our challenges ask for [`ListenerBuilder::digest`] either way.
        allow_legacy_md5: legacy_md5;
        /// The digest our challenges ask for (default SHA-256).
        digest: digest;
        /// Gives up on a client whose handshake takes longer than this
        /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None`: no limit, as CPython,
        /// though such clients still leave when the pending limit is reached).
        handshake_timeout: handshake_timeout;
        /// Declares that clients are mproc processes that also opted in, so
        /// accepted connections use [`Wire::Mproc`] (shared memory for large
        /// messages on Unix sockets). Python clients cannot read that.
        mproc_peers: wire;
    }

    mproc_shm::builder_setters! {
        /// How many handshakes may run at once (default
        /// [`DEFAULT_MAX_PENDING_HANDSHAKES`]; at least 1). When a client
        /// arrives with the limit reached, the client that has waited longest
        /// is disconnected: clients that complete their handshake promptly are
        /// served even while many others connect and stay silent.
        max_pending_handshakes(max: usize) => max_pending = max.max(1);
        /// The listen backlog (default 128; CPython's default is 1).
        backlog(backlog: u32) => backlog = backlog;
    }

    /// Binds the socket and starts listening.
    ///
    /// # Errors
    /// The OS error: for example `AddrInUse` when the address is taken.
    pub fn bind(self) -> io::Result<Listener> {
        let backlog = self.backlog.min(i32::MAX as u32) as libc::c_int;
        let mut temp_dir = None;
        let mut same_user_only = false;
        let (sock, address) = match self.address {
            Some(Address::Tcp(a)) => {
                let l = TcpListener::bind(a)?;
                listen(l.as_fd(), backlog)?;
                let addr = Address::Tcp(l.local_addr()?);
                (Sock::Tcp(l), addr)
            }
            Some(Address::Unix(p)) => (Sock::Unix(bind_unix(&p, backlog)?), Address::Unix(p)),
            Some(Address::Abstract(name)) => (
                Sock::Unix(bind_abstract(&name, backlog)?),
                Address::Abstract(name),
            ),
            None => {
                same_user_only = true;
                let (l, addr, dir) = bind_private(backlog)?;
                temp_dir = dir;
                (Sock::Unix(l), addr)
            }
        };
        if self.settings.authkey.is_some() {
            // `accept` polls, then takes every waiting client without blocking.
            match &sock {
                Sock::Unix(l) => l.set_nonblocking(true)?,
                Sock::Tcp(l) => l.set_nonblocking(true)?,
            }
        }
        Ok(Listener {
            sock,
            address,
            settings: self.settings,
            max_pending: self.max_pending,
            same_user_only,
            pending: Mutex::new(VecDeque::new()),
            temp_dir,
        })
    }
}

fn listen(fd: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: `fd` is a valid socket for the duration of the call.
    let r = unsafe { libc::listen(fd.as_raw_fd(), backlog) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn bind_unix(path: &Path, backlog: libc::c_int) -> io::Result<UnixListener> {
    if path.as_os_str().is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty Unix socket address",
        ));
    }
    let l = UnixListener::bind(path)?;
    listen(l.as_fd(), backlog)?;
    Ok(l)
}

#[cfg(target_os = "linux")]
fn bind_abstract(name: &[u8], backlog: libc::c_int) -> io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    let l = UnixListener::bind_addr(&addr)?;
    listen(l.as_fd(), backlog)?;
    Ok(l)
}

#[cfg(not(target_os = "linux"))]
fn bind_abstract(_name: &[u8], _backlog: libc::c_int) -> io::Result<UnixListener> {
    Err(abstract_unsupported())
}

#[cfg(target_os = "linux")]
fn connect_abstract(name: &[u8]) -> io::Result<UnixStream> {
    use std::os::linux::net::SocketAddrExt;
    UnixStream::connect_addr(&std::os::unix::net::SocketAddr::from_abstract_name(name)?)
}

#[cfg(not(target_os = "linux"))]
fn connect_abstract(_name: &[u8]) -> io::Result<UnixStream> {
    Err(abstract_unsupported())
}

#[cfg(not(target_os = "linux"))]
fn abstract_unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract Unix socket addresses exist only on Linux",
    )
}

/// A fresh random name, `mproc-` and 16 hex digits.
fn random_name() -> io::Result<String> {
    let mut r = [0u8; 8];
    sys::random(&mut r)?;
    Ok(r.iter().fold(String::from("mproc-"), |mut s, b| {
        s.push_str(&format!("{b:02x}"));
        s
    }))
}

/// Binds a private automatic address. On Linux, a fresh abstract name: no
/// file, so nothing is left behind even if the process is killed.
#[cfg(target_os = "linux")]
fn bind_private(backlog: libc::c_int) -> io::Result<(UnixListener, Address, Option<PathBuf>)> {
    for _ in 0..100 {
        let name = random_name()?.into_bytes();
        match bind_abstract(&name, backlog) {
            Ok(l) => return Ok((l, Address::Abstract(name), None)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no free abstract socket name",
    ))
}

/// Binds a private automatic address: a socket in a fresh private (0700)
/// temporary directory.
#[cfg(not(target_os = "linux"))]
fn bind_private(backlog: libc::c_int) -> io::Result<(UnixListener, Address, Option<PathBuf>)> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let dir = base.join(random_name()?);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        let path = dir.join("listener");
        let bound = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .and_then(|()| bind_unix(&path, backlog));
        return match bound {
            Ok(l) => Ok((l, Address::Unix(path), Some(dir))),
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                Err(e)
            }
        };
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary directory name",
    ))
}

use mproc_shm::local::lock;

#[cfg(all(feature = "tokio", target_os = "linux"))]
/// What `Listener::try_accept` found.
pub(crate) enum Attempt {
    /// A client, and its address.
    Done(Connection, Option<Address>),
    /// Nothing yet: wait for one of these, or until the deadline.
    Wait(Vec<libc::pollfd>, Option<Instant>),
}

impl Listener {
    /// A builder listening at `address`.
    pub fn builder(address: impl Into<Address>) -> ListenerBuilder {
        ListenerBuilder {
            address: Some(address.into().normalized()),
            backlog: 128,
            max_pending: DEFAULT_MAX_PENDING_HANDSHAKES,
            settings: Settings {
                handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
                ..Settings::default()
            },
        }
    }

    /// A builder listening on a fresh private Unix socket (Python's
    /// `Listener()` default). On Linux it is a random abstract name, which
    /// leaves nothing behind even if the process is killed, and only clients
    /// running as the same user (or root) are accepted, as the filesystem
    /// would ensure for a private directory. Elsewhere it is a socket in a
    /// fresh private (0700) temporary directory, removed on drop.
    pub fn builder_auto() -> ListenerBuilder {
        ListenerBuilder {
            address: None,
            ..Self::builder(PathBuf::new())
        }
    }

    /// Listens at `address` without authentication.
    ///
    /// # Errors
    /// As [`ListenerBuilder::bind`].
    pub fn bind(address: impl Into<Address>) -> io::Result<Self> {
        Self::builder(address).bind()
    }

    /// The address listened at (with the actual port for TCP port 0).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Accepts a client, running the authkey handshake if one is set.
    ///
    /// Blocks until a client connects, or with an authkey until a client
    /// completes its handshake or one fails (each client's failure is
    /// reported once, by one call); handshakes of other clients go on in
    /// later calls.
    ///
    /// # Errors
    /// [`ConnectError::Auth`] if a client fails the handshake (the
    /// connection is then closed), [`ConnectError::Timeout`] if a client's
    /// handshake ran out of time, [`ConnectError::Io`] on OS errors.
    pub fn accept(&self) -> Result<Connection, ConnectError> {
        self.accept_with_peer().map(|(c, _)| c)
    }

    /// Like [`Listener::accept`], also returning the client's address
    /// (Python's `last_accepted`; `None` for an unnamed Unix client).
    ///
    /// # Errors
    /// As [`Listener::accept`].
    pub fn accept_with_peer(&self) -> Result<(Connection, Option<Address>), ConnectError> {
        let (fd, peer) = match &self.settings.authkey {
            None => self.accept_plain()?,
            Some(key) => self.accept_authenticated(key)?,
        };
        Ok((self.adopt(fd)?, peer))
    }

    /// The connection of an accepted (and authenticated) client.
    fn adopt(&self, fd: OwnedFd) -> io::Result<Connection> {
        let mut conn = Connection::from_fd(fd)?;
        conn.set_wire(self.settings.wire);
        Ok(conn)
    }

    /// Whether a freshly accepted client may stay.
    fn admits(&self, fd: &OwnedFd) -> bool {
        !self.same_user_only || sys::peer_is_same_user(fd.as_fd()).unwrap_or(false)
    }

    fn accept_plain(&self) -> io::Result<(OwnedFd, Option<Address>)> {
        loop {
            let (fd, peer) = self.sock.accept()?;
            if self.admits(&fd) {
                return Ok((fd, peer));
            }
        }
    }

    /// Drives every pending handshake, taking new clients in, until one
    /// completes (returned) or fails or expires (its error returned).
    fn accept_authenticated(
        &self,
        key: &Arc<[u8]>,
    ) -> Result<(OwnedFd, Option<Address>), ConnectError> {
        let mut pending = lock(&self.pending);
        loop {
            if let Some(done) = self.handshake_pass(key, &mut pending, true)? {
                return Ok(done);
            }
        }
    }

    /// One round of [`Listener::accept_authenticated`]: polls the listener
    /// and the pending handshakes (until one is ready or a handshake's
    /// deadline with `block`, else without waiting), and advances those
    /// that are ready. `Some` when a handshake completed.
    fn handshake_pass(
        &self,
        key: &Arc<[u8]>,
        pending: &mut VecDeque<Pending>,
        block: bool,
    ) -> Result<Option<(OwnedFd, Option<Address>)>, ConnectError> {
        let now = Instant::now();
        let expired = pending
            .iter()
            .position(|p| p.handshake.deadline().is_some_and(|d| d <= now));
        if let Some(p) = expired.and_then(|i| pending.remove(i)) {
            return Err(p.handshake.timed_out());
        }
        let mut polls = self.handshake_polls(pending);
        let deadline = if block {
            pending.iter().filter_map(|p| p.handshake.deadline()).min()
        } else {
            Some(now)
        };
        sys::poll(&mut polls, deadline)?;
        for (i, ready) in polls[1..].iter().enumerate() {
            if ready.revents == 0 {
                continue;
            }
            let p = &mut pending[i];
            match p.handshake.advance(p.stream.as_fd()) {
                Ok(Progress::Wait(events)) => p.wait = events,
                Ok(Progress::Done) => {
                    if let Some(p) = pending.remove(i) {
                        return Ok(Some((p.stream, p.peer)));
                    }
                }
                Err(e) => {
                    pending.remove(i);
                    return Err(e);
                }
            }
        }
        if polls[0].revents != 0 {
            self.take_in(key, pending)?;
        }
        Ok(None)
    }

    /// What a handshake round waits for: the listener, then each pending
    /// client's socket with the events its handshake waits for.
    fn handshake_polls(&self, pending: &VecDeque<Pending>) -> Vec<libc::pollfd> {
        let mut polls = Vec::with_capacity(pending.len() + 1);
        polls.push(libc::pollfd {
            fd: self.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        polls.extend(pending.iter().map(|p| libc::pollfd {
            fd: p.stream.as_raw_fd(),
            events: p.wait,
            revents: 0,
        }));
        polls
    }

    /// One accept without waiting, for [`Listener::accept_async`]: a client
    /// whose handshake (if any) is done, or what to wait for before trying
    /// again (descriptors with their `poll` events, and the earliest
    /// handshake deadline).
    #[cfg(all(feature = "tokio", target_os = "linux"))]
    pub(crate) fn try_accept(&self) -> Result<Attempt, ConnectError> {
        match &self.settings.authkey {
            None => loop {
                let listener = self.handshake_polls(&VecDeque::new());
                if !sys::readable_now(self.borrow_fd()) {
                    return Ok(Attempt::Wait(listener, None));
                }
                let (fd, peer) = self.sock.accept()?;
                if self.admits(&fd) {
                    return Ok(Attempt::Done(self.adopt(fd)?, peer));
                }
            },
            Some(key) => {
                let mut pending = lock(&self.pending);
                if let Some((fd, peer)) = self.handshake_pass(key, &mut pending, false)? {
                    return Ok(Attempt::Done(self.adopt(fd)?, peer));
                }
                let deadline = pending.iter().filter_map(|p| p.handshake.deadline()).min();
                Ok(Attempt::Wait(self.handshake_polls(&pending), deadline))
            }
        }
    }

    /// Accepts the clients waiting in the backlog (at most one pending
    /// limit's worth), each with a handshake just started.
    fn take_in(&self, key: &Arc<[u8]>, pending: &mut VecDeque<Pending>) -> io::Result<()> {
        for _ in 0..self.max_pending {
            let (stream, peer) = match self.sock.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => return Err(e),
            };
            if !self.admits(&stream) {
                continue;
            }
            if pending.len() >= self.max_pending {
                pending.pop_front();
            }
            let deadline = self
                .settings
                .handshake_timeout
                .and_then(|t| Instant::now().checked_add(t));
            pending.push_back(Pending {
                stream,
                peer,
                handshake: Handshake::new(
                    Role::Listener,
                    key.clone(),
                    self.settings.auth,
                    deadline,
                ),
                wait: libc::POLLOUT,
            });
        }
        Ok(())
    }

    pub(crate) fn borrow_fd(&self) -> BorrowedFd<'_> {
        match &self.sock {
            Sock::Unix(l) => l.as_fd(),
            Sock::Tcp(l) => l.as_fd(),
        }
    }

    /// Closes the listener (dropping it does the same), removing its socket
    /// file if it created one.
    pub fn close(self) {}
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> RawFd {
        self.borrow_fd().as_raw_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Address::Unix(p) = &self.address {
            let _ = std::fs::remove_file(p);
        }
        if let Some(d) = &self.temp_dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener")
            .field("address", &self.address)
            .field("settings", &self.settings)
            .field("max_pending_handshakes", &self.max_pending)
            .finish_non_exhaustive()
    }
}

/// Connects to a [`Listener`] (Python's `multiprocessing.connection.Client`).
///
/// With an authkey it answers the listener's challenge, then challenges the
/// listener in turn, before returning the connection.
#[derive(Debug, Clone)]
#[must_use]
pub struct Client {
    address: Address,
    settings: Settings,
}

impl Client {
    /// A client of `address`, without authentication until
    /// [`Client::authkey`] is set.
    pub fn new(address: impl Into<Address>) -> Self {
        Self {
            address: address.into().normalized(),
            settings: Settings {
                handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
                ..Settings::default()
            },
        }
    }

    settings_setters! {
        /// Proves knowledge of `key` and requires the listener to prove it too.
        authkey: authkey;
        /// Whether the legacy HMAC-MD5 handshake is spoken with listeners that
        /// require it (CPython 3.11 and older). On by default, as in CPython
        /// 3.12+; `false` refuses them with
        /// [`AuthError::LegacyMd5Disabled`](crate::AuthError::LegacyMd5Disabled).
        allow_legacy_md5: legacy_md5;
        /// The digest our challenge asks for (default SHA-256).
        digest: digest;
        /// Gives up if the handshake takes longer than this
        /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None`: no limit).
        handshake_timeout: handshake_timeout;
        /// Declares that the listener is mproc and opted in too, so the
        /// connection uses [`Wire::Mproc`].
        mproc_peer: wire;
    }

    /// Connects (and authenticates).
    ///
    /// Without an authkey, nothing is read at connect (as in CPython), but
    /// if the listener's first message is a challenge, the first receive
    /// fails with [`RecvError::Protocol`](crate::RecvError::Protocol) saying
    /// that the listener requires an authkey, instead of returning the
    /// challenge as a message.
    ///
    /// # Errors
    /// [`ConnectError::Io`] if the connection fails, [`ConnectError::Auth`]
    /// if authentication fails, [`ConnectError::Timeout`] if the handshake
    /// times out (the text says what was awaited: a listener without an
    /// authkey never sends the challenge).
    pub fn connect(&self) -> Result<Connection, ConnectError> {
        let fd: OwnedFd = match &self.address {
            Address::Unix(p) => UnixStream::connect(p)?.into(),
            Address::Abstract(name) => connect_abstract(name)?.into(),
            Address::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                s.into()
            }
        };
        if let Some(key) = &self.settings.authkey {
            let deadline = self
                .settings
                .handshake_timeout
                .and_then(|t| Instant::now().checked_add(t));
            Handshake::new(Role::Client, key.clone(), self.settings.auth, deadline)
                .run(fd.as_fd())?;
        }
        let mut conn = Connection::from_fd(fd)?;
        if self.settings.authkey.is_none() {
            conn.refuse_challenge_first();
        }
        conn.set_wire(self.settings.wire);
        Ok(conn)
    }
}
