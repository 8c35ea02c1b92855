//! Readiness: one [`wait`] over connections, listeners, processes, queues,
//! events, pool results and raw descriptors (Python's
//! `multiprocessing.connection.wait`, widened to every mproc object).
//!
//! Every [`Waitable`] exposes a descriptor to poll. For connections,
//! listeners and process sentinels that descriptor *is* the readiness. Objects
//! that live in shared memory (queues, events) have no descriptor of their
//! own; they carry a [`Doorbell`], an eventfd that their producers ring only
//! while somebody waits:
//!
//! * a waiter *registers* (a count in the object's shared header, which its
//!   producers read anyway on their wake-up path), *re-checks* the object,
//!   polls the doorbell, and withdraws afterwards;
//! * a producer that finds the count zero does nothing more than before, so
//!   puts and sets cost no system call while nobody waits;
//! * a waiter that the doorbell woke but that finds the object not ready
//!   (another process took the item) *re-arms* it: it drains the doorbell
//!   and rings it again if the object turned ready meanwhile, so that no
//!   other waiter misses a wake-up.
//!
//! Readiness is level-triggered: [`Waitable::ready_now`] says whether the
//! object is ready now (an item in a queue, an event set), and [`wait`]
//! reports an object as long as that holds.
//!
//! With the `tokio` feature, `ready` awaits one object's readiness
//! through `tokio::io::unix::AsyncFd`, the building block of the `_async`
//! methods of the other crates.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};

use crate::handle::HandleFd;
use crate::sys;

/// An eventfd that an object's producers ring to wake the processes that
/// wait on it with [`wait`] or `ready` (see the [module docs](self)).
///
/// It travels to other processes like every mproc handle (serialize it
/// inside [`collect_fds`](crate::handle::collect_fds)); a received
/// descriptor that is not an eventfd is an error.
#[derive(Serialize)]
#[serde(transparent)]
pub struct Doorbell {
    fd: HandleFd,
}

impl Doorbell {
    /// A new doorbell, not rung.
    ///
    /// # Errors
    /// The OS error if no eventfd can be made (out of descriptors).
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            fd: HandleFd::new(sys::eventfd()?),
        })
    }

    /// Rings: the descriptor turns readable until [`drain`](Self::drain).
    pub fn ring(&self) {
        sys::eventfd_add(self.fd.as_fd());
    }

    /// Clears the doorbell; returns whether it had been rung.
    pub fn drain(&self) -> bool {
        sys::eventfd_take(self.fd.as_fd())
    }

    /// Another handle to the same doorbell.
    ///
    /// # Errors
    /// The OS error if the process is out of descriptors.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            fd: self.fd.try_clone()?,
        })
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Doorbell")
            .field(&self.fd.as_raw_fd())
            .finish()
    }
}

// The other half of the derived `Serialize`: the descriptor must be an
// eventfd.
impl<'de> Deserialize<'de> for Doorbell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let fd = HandleFd::deserialize(d)?;
        if !sys::is_eventfd(fd.as_fd()) {
            return Err(D::Error::custom("a doorbell descriptor is not an eventfd"));
        }
        sys::set_nonblocking(fd.as_fd(), true).map_err(D::Error::custom)?;
        Ok(Self { fd })
    }
}

/// Something [`wait`] can wait on.
///
/// Implemented here for descriptors ([`BorrowedFd`], so any [`AsFd`] type
/// through `&x.as_fd()`, [`OwnedFd`]) and the standard library's sockets,
/// files and child pipes; by mproc-pipe for `Connection` and `Listener`, by
/// mproc-process for process handles, by mproc-queue for the queues, by
/// mproc-sync for `Event` and by mproc-pool for `AsyncResult`.
///
/// A type whose descriptor is a [`Doorbell`] says so with
/// [`is_doorbell`](Self::is_doorbell) and implements the registration
/// methods; the others only need [`wait_fd`](Self::wait_fd).
pub trait Waitable {
    /// The descriptor to poll for readability.
    fn wait_fd(&self) -> BorrowedFd<'_>;

    /// Whether the object is ready without looking at the descriptor (a
    /// connection with a buffered message, a queue holding an item).
    fn ready_now(&self) -> bool {
        false
    }

    /// Whether the object can no longer become ready, so that [`wait`]
    /// leaves it out: a connection that an oversized or malformed message
    /// made unreadable (its unread bytes would otherwise report it ready
    /// for ever).
    fn never_ready(&self) -> bool {
        false
    }

    /// Whether [`wait_fd`](Self::wait_fd) is a doorbell: readable means
    /// "look again", and only [`ready_now`](Self::ready_now) says whether
    /// the object is ready.
    fn is_doorbell(&self) -> bool {
        false
    }

    /// Announces a waiter: until the matching
    /// [`unregister`](Self::unregister), the object's producers ring its
    /// doorbell when it turns ready. The caller re-checks
    /// [`ready_now`](Self::ready_now) afterwards, before it polls.
    fn register(&self) {}

    /// Withdraws one [`register`](Self::register).
    fn unregister(&self) {}

    /// Called by a registered waiter that the doorbell woke but that found
    /// the object not ready: drains the doorbell, makes sure the next change
    /// rings it again, and rings it at once if the object turned ready
    /// meanwhile (for the other waiters).
    fn rearm(&self) {}
}

// Not a blanket impl over `AsFd`: some mproc types are `AsFd` and need
// more than their descriptor (a connection's buffered bytes).
macro_rules! waitable_fds {
    ($($t:ty),* $(,)?) => {$(
        impl Waitable for $t {
            fn wait_fd(&self) -> BorrowedFd<'_> {
                self.as_fd()
            }
        }
    )*};
}

waitable_fds!(
    BorrowedFd<'_>,
    OwnedFd,
    std::fs::File,
    std::net::TcpStream,
    std::net::TcpListener,
    std::net::UdpSocket,
    std::os::unix::net::UnixStream,
    std::os::unix::net::UnixListener,
    std::os::unix::net::UnixDatagram,
    std::io::Stdin,
    std::process::ChildStdout,
    std::process::ChildStderr,
);

impl<W: Waitable + ?Sized> Waitable for &W {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        (**self).wait_fd()
    }
    fn ready_now(&self) -> bool {
        (**self).ready_now()
    }
    fn never_ready(&self) -> bool {
        (**self).never_ready()
    }
    fn is_doorbell(&self) -> bool {
        (**self).is_doorbell()
    }
    fn register(&self) {
        (**self).register();
    }
    fn unregister(&self) {
        (**self).unregister();
    }
    fn rearm(&self) {
        (**self).rearm();
    }
}

/// A descriptor that never turns readable (a doorbell nobody rings), for
/// a [`Waitable`] that has nothing to poll: a process without a sentinel
/// (kernels before 5.3), or one that can never be ready.
///
/// # Panics
/// If the process cannot make one more eventfd on first use (out of
/// descriptors).
pub fn idle_fd() -> BorrowedFd<'static> {
    static IDLE: std::sync::OnceLock<Doorbell> = std::sync::OnceLock::new();
    IDLE.get_or_init(|| Doorbell::new().expect("an eventfd for mproc_shm::ready::idle_fd"))
        .as_fd()
}

/// A [`Waitable::register`] withdrawn on drop (also when a future holding
/// it is dropped mid-way).
struct Registration<'a, W: Waitable + ?Sized>(&'a W);

impl<'a, W: Waitable + ?Sized> Registration<'a, W> {
    fn new(w: &'a W) -> Self {
        w.register();
        Self(w)
    }
}

impl<W: Waitable + ?Sized> Drop for Registration<'_, W> {
    fn drop(&mut self) {
        self.0.unregister();
    }
}

/// An object's readiness descriptor for an event loop of your own (epoll,
/// mio, another runtime), from [`watch`].
///
/// While the `Watch` lives, the object's descriptor ([`AsFd`]) turns
/// readable when the object may have turned ready: for a queue or an event
/// that is a [`Doorbell`] its producers ring only because this watch is
/// registered (nobody pays for it otherwise). Readable means "look":
/// [`is_ready`](Self::is_ready) says whether the object is ready; when it
/// is not (another process took the item first), call
/// [`rearm`](Self::rearm) before polling again. Readiness is
/// level-triggered: a queue with items stays ready.
pub struct Watch<'a, W: Waitable + ?Sized> {
    reg: Registration<'a, W>,
}

/// Registers a [`Watch`] on `obj`: its descriptor for a poll loop of your
/// own, kept accurate until the watch is dropped.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// use mproc_shm::ready::{Doorbell, watch, wait_timeout};
///
/// let bell = Doorbell::new()?;
/// let fd = bell.as_fd();
/// let w = watch(&fd);
/// bell.ring();
/// // Any poll loop works; here mproc's own `wait` on the bare descriptor.
/// assert_eq!(wait_timeout(&[&w.as_fd()], Duration::from_secs(5))?, [0]);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn watch<W: Waitable + ?Sized>(obj: &W) -> Watch<'_, W> {
    Watch {
        reg: Registration::new(obj),
    }
}

impl<W: Waitable + ?Sized> Watch<'_, W> {
    /// Whether the object is ready now (look after the descriptor turned
    /// readable).
    pub fn is_ready(&self) -> bool {
        let o = self.reg.0;
        !o.never_ready() && o.ready_now()
    }

    /// After a wake-up that found the object not ready: clears the
    /// descriptor and makes sure the next change makes it readable again
    /// (and makes it readable at once if the object turned ready
    /// meanwhile).
    pub fn rearm(&self) {
        if self.reg.0.is_doorbell() {
            self.reg.0.rearm();
        }
    }
}

impl<W: Waitable + ?Sized> AsFd for Watch<'_, W> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.reg.0.wait_fd()
    }
}

impl<W: Waitable + ?Sized> fmt::Debug for Watch<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("fd", &self.reg.0.wait_fd().as_raw_fd())
            .finish()
    }
}

/// Waits until at least one of `objects` is ready, and returns the indices
/// of all that are, in increasing order.
///
/// A connection is ready when a message or end of file can be received, a
/// listener when a client is waiting, a process (or its sentinel) when it
/// has exited, a queue when `get` would not block (an item, or closed), an
/// event when it is set, a pool result when it is there. A connection that
/// an oversized or malformed message made unreadable is never reported.
///
/// # Errors
/// The OS error from `poll(2)`; `EBADF` if a descriptor is not open (CPython
/// raises too).
pub fn wait(objects: &[&dyn Waitable]) -> io::Result<Vec<usize>> {
    wait_impl(objects, None)
}

/// Like [`wait`], giving up after `timeout` with an empty list.
///
/// # Errors
/// As [`wait`].
pub fn wait_timeout(objects: &[&dyn Waitable], timeout: Duration) -> io::Result<Vec<usize>> {
    wait_impl(objects, Instant::now().checked_add(timeout))
}

/// Like [`wait`], giving up at `deadline` with an empty list.
///
/// # Errors
/// As [`wait`].
pub fn wait_deadline(objects: &[&dyn Waitable], deadline: Instant) -> io::Result<Vec<usize>> {
    wait_impl(objects, Some(deadline))
}

fn wait_impl(objects: &[&dyn Waitable], deadline: Option<Instant>) -> io::Result<Vec<usize>> {
    // Register first, then look: a change after the look rings.
    let _regs: Vec<_> = objects
        .iter()
        .filter(|o| o.is_doorbell())
        .map(|o| Registration::new(*o))
        .collect();
    loop {
        let never: Vec<bool> = objects.iter().map(|o| o.never_ready()).collect();
        let now: Vec<bool> = objects
            .iter()
            .zip(&never)
            .map(|(o, &n)| !n && o.ready_now())
            .collect();
        // With something ready already, only look (do not sleep) at the rest.
        let dl = if now.contains(&true) {
            Some(Instant::now())
        } else {
            deadline
        };
        let mut fds: Vec<libc::pollfd> = objects
            .iter()
            .zip(&never)
            .map(|(o, &n)| libc::pollfd {
                // poll(2) skips negative descriptors.
                fd: if n { -1 } else { o.wait_fd().as_raw_fd() },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        sys::poll(&mut fds, dl)?;
        let mut ready = Vec::new();
        let mut rang = false;
        for (i, o) in objects.iter().enumerate() {
            if now[i] {
                ready.push(i);
            } else if fds[i].revents != 0 {
                if !o.is_doorbell() || o.ready_now() {
                    ready.push(i);
                } else {
                    o.rearm();
                    rang = true;
                }
            }
        }
        // Nothing ready and no doorbell rang: the deadline passed.
        if !ready.is_empty() || !rang || deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(ready);
        }
    }
}

/// Waits (asynchronously) until `obj` is ready: at once if
/// [`ready_now`](Waitable::ready_now) says so, otherwise when its
/// descriptor turns readable (a doorbell: when it rings and the object is
/// then ready). Needs a tokio runtime with I/O enabled.
///
/// Cancellation-safe: dropping the future withdraws the registration and
/// takes nothing from the object. No thread waits and no timer polls: the
/// runtime's reactor watches a duplicate of the descriptor.
///
/// # Errors
/// The OS error if the descriptor cannot be duplicated or registered with
/// the reactor (no runtime, out of descriptors).
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub async fn ready<W: Waitable + ?Sized>(obj: &W) -> io::Result<()> {
    if !obj.never_ready() && obj.ready_now() {
        return Ok(());
    }
    let _reg = obj.is_doorbell().then(|| Registration::new(obj));
    let fd = reactor_fd(obj.wait_fd())?;
    loop {
        if !obj.never_ready() && obj.ready_now() {
            return Ok(());
        }
        let mut guard = fd.readable().await?;
        if !obj.is_doorbell() || obj.ready_now() {
            return Ok(());
        }
        guard.clear_ready();
        obj.rearm();
    }
}

/// Registers a duplicate of `fd` with the current tokio runtime's reactor,
/// for readability. A duplicate, because the reactor refuses a descriptor
/// registered twice and several tasks may wait on clones of one object.
///
/// # Errors
/// `Other` outside a tokio runtime; the OS error if the descriptor cannot
/// be duplicated or registered.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub fn reactor_fd(fd: BorrowedFd<'_>) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    // Registering outside a runtime panics: make it an error.
    tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let dup = fd.try_clone_to_owned()?;
    // SAFETY: `dup` is an open descriptor the AsyncFd owns: it stays open
    // and names the same file description until the AsyncFd is dropped.
    Ok(unsafe { AsyncFd::register_with_interest(dup, Interest::READABLE) }?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doorbell_rings_until_drained() {
        let b = Doorbell::new().unwrap();
        let fd = b.as_fd();
        assert_eq!(
            wait_timeout(&[&fd], Duration::ZERO).unwrap(),
            Vec::<usize>::new()
        );
        b.ring();
        b.ring();
        assert_eq!(wait_timeout(&[&fd], Duration::ZERO).unwrap(), [0]);
        assert!(b.drain());
        assert!(!b.drain());
        assert_eq!(
            wait_timeout(&[&fd], Duration::ZERO).unwrap(),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn a_doorbell_travels_as_a_handle_and_refuses_other_descriptors() {
        let b = Doorbell::new().unwrap();
        let (bytes, fds) = crate::handle::to_bytes_with_fds(&b).unwrap();
        let c: Doorbell = crate::handle::from_bytes_with_fds(&bytes, fds).unwrap();
        c.ring();
        assert!(b.drain());
        let file = std::fs::File::open("/dev/null").unwrap();
        let h = HandleFd::new(file.into());
        let (bytes, fds) = crate::handle::to_bytes_with_fds(&h).unwrap();
        assert!(crate::handle::from_bytes_with_fds::<Doorbell>(&bytes, fds).is_err());
    }

    #[test]
    fn wait_times_out_with_nothing_ready() {
        let b = Doorbell::new().unwrap();
        let t0 = Instant::now();
        let fd = b.as_fd();
        assert!(
            wait_timeout(&[&fd], Duration::from_millis(30))
                .unwrap()
                .is_empty()
        );
        assert!(t0.elapsed() >= Duration::from_millis(30));
    }
}
