//! The process authkey (CPython's `current_process().authkey`).

use std::fmt;
use std::sync::{Arc, Mutex};

use mproc_shm::local::lock;

/// A secret shared by a process and the children it starts (CPython's
/// `AuthenticationString`): the key a [`Manager`] and its clients prove
/// they know, and one to give `Listener`/`Client` so that only this
/// program's processes may connect.
///
/// The main process gets 32 random bytes on first use; every child mproc
/// starts inherits its parent's key, whatever the start method (it travels
/// in the start request, or in the forked memory). [`set_authkey`] replaces
/// it for this process and the children it starts afterwards.
///
/// The key is deliberately not `Serialize`, and its `Debug` hides the bytes,
/// so that it does not leave the process by accident (CPython refuses to
/// pickle it for the same reason).
///
/// [`Manager`]: https://docs.rs/mproc-manager
///
/// # Examples
///
/// ```
/// use mproc_process::{current_process, Process};
///
/// fn child_key(_: ()) -> Vec<u8> {
///     current_process().authkey().expect("the current process has one").as_bytes().to_vec()
/// }
///
/// let mine = current_process().authkey().unwrap();
/// assert_eq!(mine.as_bytes().len(), 32);
/// let mut child = Process::new(child_key, ()).start()?;
/// assert_eq!(child.join()?, mine.as_bytes());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey(Arc<[u8]>);

impl AuthKey {
    /// A key of these bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into().into())
    }

    /// 32 bytes from the OS random source (as CPython's `os.urandom(32)`).
    pub(crate) fn random() -> Self {
        let mut k = [0u8; 32];
        // The OS source does not fail on Linux once booted; should it, a key
        // derived from the clock and pid is still unique to this program.
        if crate::sys::random(&mut k).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let x = t ^ (u128::from(std::process::id()) << 64);
            for (i, b) in k.iter_mut().enumerate() {
                *b = (x >> ((i % 16) * 8)) as u8;
            }
        }
        Self::new(k.to_vec())
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for AuthKey {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey(<{} secret bytes>)", self.0.len())
    }
}

/// Replaces this process's authkey (CPython's
/// `current_process().authkey = key`). Children started afterwards inherit
/// the new key; those already running keep theirs.
///
/// # Examples
///
/// ```
/// use mproc_process::{current_process, set_authkey, AuthKey};
///
/// set_authkey(AuthKey::new(*b"a key the whole deployment shares"));
/// assert_eq!(current_process().authkey().unwrap().as_bytes(), b"a key the whole deployment shares");
/// ```
pub fn set_authkey(key: AuthKey) {
    *lock(&AUTHKEY) = Some(key);
}

/// This process's authkey (`None` until first used).
static AUTHKEY: Mutex<Option<AuthKey>> = Mutex::new(None);

/// This process's authkey: 32 random bytes unless inherited or set.
pub(crate) fn current() -> AuthKey {
    lock(&AUTHKEY).get_or_insert_with(AuthKey::random).clone()
}
