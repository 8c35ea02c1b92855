//! `Listener` and `Client`: connections over Unix-domain and TCP sockets,
//! optionally authenticated with CPython's authkey handshake.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::auth::{AuthOptions, Digest, answer_challenge, deliver_challenge};
use crate::connection::Connection;
use crate::error::ConnectError;
use crate::frame::Wire;

/// The default limit on one authkey handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a [`Listener`] listens and a [`Client`] connects.
///
/// Unix-domain addresses are filesystem paths; Linux abstract names are not
/// supported (anyone on the host could connect to them without the
/// filesystem's permission check).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix-domain socket at this path (Python's `str` address).
    Unix(PathBuf),
    /// A TCP socket (Python's `(host, port)` address).
    Tcp(SocketAddr),
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Self::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Self {
        Self::Unix(p)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Self {
        Self::Unix(p.to_owned())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => write!(f, "{a}"),
        }
    }
}

/// Settings shared by [`Listener`] and [`Client`].
#[derive(Clone, Default)]
struct Settings {
    authkey: Option<Vec<u8>>,
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

/// A socket that accepts connections (Python's
/// `multiprocessing.connection.Listener`).
///
/// With an authkey, [`Listener::accept`] runs CPython's handshake (challenge
/// the client, then answer its challenge) before returning the connection,
/// and nothing the client sends after its handshake messages is read until
/// both directions have succeeded.
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
    /// A private directory we created for an automatic address; removed on drop.
    temp_dir: Option<PathBuf>,
    unlink_on_drop: bool,
}

/// Configures and binds a [`Listener`].
#[derive(Debug)]
#[must_use]
pub struct ListenerBuilder {
    address: Option<Address>,
    backlog: u32,
    settings: Settings,
}

impl ListenerBuilder {
    /// Requires clients to prove they know `key` (CPython's `authkey`).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.settings.authkey = Some(key.to_vec());
        self
    }

    /// Accepts clients that only speak the legacy HMAC-MD5 handshake
    /// (CPython 3.11 and older). Off by default.
    pub fn allow_legacy_md5(mut self, allow: bool) -> Self {
        self.settings.auth.allow_legacy_md5 = allow;
        self
    }

    /// The digest our challenges ask for (default SHA-256).
    pub fn digest(mut self, digest: Digest) -> Self {
        self.settings.auth.digest = digest;
        self
    }

    /// The listen backlog (default 128; CPython's default is 1).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.backlog = backlog;
        self
    }

    /// Gives up on a client whose handshake takes longer than this
    /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None`: wait for ever, as CPython).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// Declares that clients are mproc processes that also opted in, so
    /// accepted connections use [`Wire::Mproc`] (shared memory for large
    /// messages on Unix sockets). Python clients cannot read that.
    pub fn mproc_peers(mut self, yes: bool) -> Self {
        self.settings.wire = if yes { Wire::Mproc } else { Wire::Cpython };
        self
    }

    /// Binds the socket and starts listening.
    ///
    /// # Errors
    /// The OS error: for example `AddrInUse` when the address is taken.
    pub fn bind(self) -> io::Result<Listener> {
        let backlog = self.backlog.min(i32::MAX as u32) as libc::c_int;
        let (sock, address, temp_dir, unlink) = match self.address {
            Some(Address::Tcp(a)) => {
                let l = TcpListener::bind(a)?;
                listen(l.as_fd(), backlog)?;
                let addr = Address::Tcp(l.local_addr()?);
                (Sock::Tcp(l), addr, None, false)
            }
            Some(Address::Unix(p)) => (
                Sock::Unix(bind_unix(&p, backlog)?),
                Address::Unix(p),
                None,
                true,
            ),
            None => {
                let dir = private_dir()?;
                let path = dir.join("listener");
                match bind_unix(&path, backlog) {
                    Ok(l) => (Sock::Unix(l), Address::Unix(path), Some(dir), true),
                    Err(e) => {
                        let _ = std::fs::remove_dir(&dir);
                        return Err(e);
                    }
                }
            }
        };
        Ok(Listener {
            sock,
            address,
            settings: self.settings,
            temp_dir,
            unlink_on_drop: unlink,
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
    if path.as_os_str().is_empty() || path.as_os_str().as_encoded_bytes().first() == Some(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "abstract or empty Unix socket addresses are not supported",
        ));
    }
    let l = UnixListener::bind(path)?;
    listen(l.as_fd(), backlog)?;
    Ok(l)
}

/// A fresh private (0700) directory for an automatic socket address.
fn private_dir() -> io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for _ in 0..100 {
        let mut r = [0u8; 6];
        crate::sys::random(&mut r)?;
        let name: String = r.iter().map(|b| format!("{b:02x}")).collect();
        let dir = base.join(format!("mproc-{name}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary directory name",
    ))
}

impl Listener {
    /// A builder listening at `address`.
    pub fn builder(address: impl Into<Address>) -> ListenerBuilder {
        ListenerBuilder {
            address: Some(address.into()),
            backlog: 128,
            settings: Settings {
                handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
                ..Settings::default()
            },
        }
    }

    /// A builder listening on a Unix socket at a fresh path in a private
    /// temporary directory (Python's `Listener()` default), removed on drop.
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
    /// # Errors
    /// [`ConnectError::Auth`] if the client fails the handshake (the
    /// connection is then closed), [`ConnectError::Io`] on OS errors or a
    /// handshake timeout.
    pub fn accept(&self) -> Result<Connection, ConnectError> {
        self.accept_with_peer().map(|(c, _)| c)
    }

    /// Like [`Listener::accept`], also returning the client's address
    /// (Python's `last_accepted`; `None` for an unnamed Unix client).
    ///
    /// # Errors
    /// As [`Listener::accept`].
    pub fn accept_with_peer(&self) -> Result<(Connection, Option<Address>), ConnectError> {
        let (fd, peer): (OwnedFd, Option<Address>) = match &self.sock {
            Sock::Unix(l) => {
                let (s, a) = l.accept()?;
                (
                    s.into(),
                    a.as_pathname().map(|p| Address::Unix(p.to_owned())),
                )
            }
            Sock::Tcp(l) => {
                let (s, a) = l.accept()?;
                s.set_nodelay(true)?;
                (s.into(), Some(Address::Tcp(a)))
            }
        };
        let mut conn = Connection::from_fd(fd)?;
        if let Some(key) = &self.settings.authkey {
            let deadline = self
                .settings
                .handshake_timeout
                .and_then(|t| Instant::now().checked_add(t));
            deliver_challenge(&conn, key, &self.settings.auth, deadline)?;
            answer_challenge(&conn, key, &self.settings.auth, deadline)?;
        }
        conn.set_wire(self.settings.wire);
        Ok((conn, peer))
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
        if let (true, Address::Unix(p)) = (self.unlink_on_drop, &self.address) {
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
            .finish()
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
            address: address.into(),
            settings: Settings {
                handshake_timeout: Some(DEFAULT_HANDSHAKE_TIMEOUT),
                ..Settings::default()
            },
        }
    }

    /// Proves knowledge of `key` and requires the listener to prove it too.
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.settings.authkey = Some(key.to_vec());
        self
    }

    /// Speaks the legacy HMAC-MD5 handshake with listeners that require it
    /// (CPython 3.11 and older). Off by default.
    pub fn allow_legacy_md5(mut self, allow: bool) -> Self {
        self.settings.auth.allow_legacy_md5 = allow;
        self
    }

    /// The digest our challenge asks for (default SHA-256).
    pub fn digest(mut self, digest: Digest) -> Self {
        self.settings.auth.digest = digest;
        self
    }

    /// Gives up if the handshake takes longer than this
    /// (default [`DEFAULT_HANDSHAKE_TIMEOUT`]; `None`: no limit).
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.handshake_timeout = timeout;
        self
    }

    /// Declares that the listener is mproc and opted in too, so the
    /// connection uses [`Wire::Mproc`].
    pub fn mproc_peer(mut self, yes: bool) -> Self {
        self.settings.wire = if yes { Wire::Mproc } else { Wire::Cpython };
        self
    }

    /// Connects (and authenticates).
    ///
    /// # Errors
    /// [`ConnectError::Io`] if the connection fails or the handshake times
    /// out, [`ConnectError::Auth`] if authentication fails.
    pub fn connect(&self) -> Result<Connection, ConnectError> {
        let fd: OwnedFd = match &self.address {
            Address::Unix(p) => UnixStream::connect(p)?.into(),
            Address::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                s.into()
            }
        };
        let mut conn = Connection::from_fd(fd)?;
        if let Some(key) = &self.settings.authkey {
            let deadline = self
                .settings
                .handshake_timeout
                .and_then(|t| Instant::now().checked_add(t));
            answer_challenge(&conn, key, &self.settings.auth, deadline)?;
            deliver_challenge(&conn, key, &self.settings.auth, deadline)?;
        }
        conn.set_wire(self.settings.wire);
        Ok(conn)
    }
}
