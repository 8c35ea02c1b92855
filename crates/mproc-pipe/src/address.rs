//! [`Address`]: where a listener listens and a client connects (a Unix
//! path, a Linux abstract name, or TCP), its string forms and its serde
//! form.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a [`Listener`](crate::Listener) listens and a [`Client`](crate::Client) connects.
///
/// Made from a string (`From<&str>`, or [`str::parse`]): `@name` (or
/// `\0name`, Python's spelling) is an abstract Unix name, a numeric
/// `ip:port` is TCP, and anything else a filesystem path. Every string is
/// some address, so the conversion is `From` rather than `TryFrom`: a
/// mistyped TCP address (`"localhost:80"`: names are not resolved) becomes
/// a path, and connecting to it fails with `NotFound`.
/// [`Display`](fmt::Display) writes the same forms, abstract names with `@`.
///
/// An address is `Serialize + Deserialize`, so it can be passed to a child
/// process as an argument; paths and abstract names travel as bytes, so
/// names that are not UTF-8 survive.
///
/// # Examples
///
/// ```
/// use mproc_pipe::{Address, Client, Listener};
///
/// let l = Listener::bind("127.0.0.1:0")?;
/// let c = Client::new(l.address().clone()).connect()?;
/// let s = l.accept()?;
/// c.send_bytes(b"hi")?;
/// assert_eq!(s.recv_bytes()?, b"hi");
///
/// assert_eq!("@srv".parse::<Address>()?, Address::Abstract(b"srv".to_vec()));
/// assert_eq!("\0srv".parse::<Address>()?, Address::Abstract(b"srv".to_vec()));
/// assert!(matches!("127.0.0.1:80".parse::<Address>()?, Address::Tcp(_)));
/// assert_eq!("/tmp/s".parse::<Address>()?, Address::Unix("/tmp/s".into()));
/// assert_eq!(Address::Abstract(b"srv".to_vec()).to_string(), "@srv");
/// assert_eq!(Address::from("@srv"), Address::Abstract(b"srv".to_vec()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A Unix-domain socket at this path (Python's `str` address). A path
    /// that starts with a NUL byte (Python's spelling of an abstract name)
    /// is taken as [`Address::Abstract`].
    Unix(PathBuf),
    /// A TCP socket (Python's `(host, port)` address).
    Tcp(SocketAddr),
    /// A Linux abstract Unix-domain socket name (Python's `"\0name"`),
    /// without the leading NUL. It exists while the listener's socket is
    /// open and leaves nothing behind, even when its process is killed.
    /// There is no filesystem permission check: any process in the same
    /// network namespace can connect, so use an authkey (the automatic
    /// private address of [`Listener::builder_auto`](crate::Listener::builder_auto) also checks that
    /// clients run as the same user). Other systems: `Unsupported`.
    Abstract(Vec<u8>),
}

impl Address {
    /// The same address, with a NUL-prefixed Unix path as an abstract name.
    pub(crate) fn normalized(self) -> Self {
        match self {
            Self::Unix(p) => match p.as_os_str().as_bytes().split_first() {
                Some((0, name)) => Self::Abstract(name.to_vec()),
                _ => Self::Unix(p),
            },
            a => a,
        }
    }
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Self::Tcp(a)
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Self {
        Self::Unix(p).normalized()
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Self {
        Self::Unix(p.to_owned()).normalized()
    }
}

impl FromStr for Address {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Self, Infallible> {
        if let Some(name) = s.strip_prefix('@') {
            return Ok(Self::Abstract(name.as_bytes().to_vec()));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(Self::Tcp(a));
        }
        Ok(Self::from(Path::new(s)))
    }
}

impl From<&str> for Address {
    fn from(s: &str) -> Self {
        match s.parse() {
            Ok(a) => a,
            Err(e) => match e {},
        }
    }
}

impl From<String> for Address {
    fn from(s: String) -> Self {
        Self::from(s.as_str())
    }
}

impl From<&String> for Address {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

/// How an [`Address`] is serialized: paths and names as raw bytes.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Address")]
enum AddressForm {
    Unix(Vec<u8>),
    Tcp(SocketAddr),
    Abstract(Vec<u8>),
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Unix(p) => AddressForm::Unix(p.as_os_str().as_bytes().to_vec()),
            Self::Tcp(a) => AddressForm::Tcp(*a),
            Self::Abstract(name) => AddressForm::Abstract(name.clone()),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match AddressForm::deserialize(d)? {
            AddressForm::Unix(p) => Self::from(PathBuf::from(std::ffi::OsString::from_vec(p))),
            AddressForm::Tcp(a) => Self::Tcp(a),
            AddressForm::Abstract(name) => Self::Abstract(name),
        })
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => write!(f, "{a}"),
            Self::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}
