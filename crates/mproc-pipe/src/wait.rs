//! `wait`: block until any of several connections, sentinels or descriptors
//! is ready (Python's `multiprocessing.connection.wait`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::listener::Listener;
use crate::sys;

/// Something [`wait`] can wait on: a descriptor that becomes readable (or
/// hung up), plus, for a [`Connection`], bytes it has already buffered.
///
/// It is implemented for [`Connection`] and [`Listener`], for
/// [`BorrowedFd`] (so the process sentinels of mproc-process, and any
/// [`AsFd`] type through `&x.as_fd()`) and [`OwnedFd`], and for the
/// standard library's sockets, files and child pipes.
pub trait Waitable {
    /// The descriptor to poll for readability.
    fn wait_fd(&self) -> BorrowedFd<'_>;

    /// Whether the object is ready without looking at the descriptor
    /// (a connection with a buffered message).
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

    /// Whether the object is really ready once its descriptor polled
    /// readable: `false` when the wake-up was for something already
    /// consumed (a [`pipe`](crate::pipe) end's doorbell for a message that
    /// was received in the meantime); [`wait`] then waits on.
    fn woken(&self) -> bool {
        true
    }
}

// Not a blanket impl over `AsFd`: `Connection` is `AsFd` too, and waiting
// on it must also look at the bytes it has already read.
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

impl<C> Waitable for Connection<C> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn ready_now(&self) -> bool {
        // A pipe end asks its senders to ring the doorbell on the socket
        // that `wait` is about to poll.
        !self.is_unreadable() && self.ready_to_receive(true)
    }

    fn woken(&self) -> bool {
        self.ready_to_receive(false)
    }

    fn never_ready(&self) -> bool {
        self.is_unreadable()
    }
}

impl Waitable for Listener {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.borrow_fd()
    }
}

/// Waits until at least one of `objects` is ready, and returns the indices
/// of all that are, in increasing order.
///
/// A connection is ready when a message or end of file can be received, a
/// listener when a client is waiting, a process sentinel when the process
/// has exited. A connection that an oversized or malformed message made
/// unreadable is never reported.
///
/// # Errors
/// The OS error from `poll(2)`; `EBADF` if a descriptor is not open (CPython
/// raises too).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let (a, b) = mproc_pipe::pipe(true)?;
/// let (c, d) = mproc_pipe::pipe(true)?;
/// c.send_bytes(b"x")?;
/// let ready = mproc_pipe::wait_timeout(&[&b, &d], Duration::from_secs(5))?;
/// assert_eq!(ready, [1]);
/// # drop((a, c));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn wait(objects: &[&dyn Waitable]) -> io::Result<Vec<usize>> {
    wait_impl(objects, None)
}

/// Like [`wait`], giving up after `timeout` with an empty list.
///
/// # Errors
/// As [`wait`].
pub fn wait_timeout(objects: &[&dyn Waitable], timeout: Duration) -> io::Result<Vec<usize>> {
    wait_impl(objects, sys::deadline_after(timeout))
}

/// Like [`wait`], giving up at `deadline` with an empty list.
///
/// # Errors
/// As [`wait`].
pub fn wait_deadline(objects: &[&dyn Waitable], deadline: Instant) -> io::Result<Vec<usize>> {
    wait_impl(objects, Some(deadline))
}

fn wait_impl(objects: &[&dyn Waitable], deadline: Option<Instant>) -> io::Result<Vec<usize>> {
    loop {
        let ready = wait_once(objects, deadline)?;
        let passed = deadline.is_some_and(|d| Instant::now() >= d);
        if !ready.is_empty() || passed {
            return Ok(ready);
        }
    }
}

/// One `poll` over `objects`: those ready (possibly none, after a wake-up
/// that [`Waitable::woken`] found empty).
fn wait_once(objects: &[&dyn Waitable], deadline: Option<Instant>) -> io::Result<Vec<usize>> {
    let buffered: Vec<bool> = objects.iter().map(|o| o.ready_now()).collect();
    // With something ready already, only look (do not sleep) at the rest.
    let deadline = if buffered.contains(&true) {
        Some(Instant::now())
    } else {
        deadline
    };
    let mut fds: Vec<libc::pollfd> = objects
        .iter()
        .map(|o| libc::pollfd {
            // poll(2) skips negative descriptors.
            fd: if o.never_ready() {
                -1
            } else {
                o.wait_fd().as_raw_fd()
            },
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    sys::poll(&mut fds, deadline)?;
    Ok((0..objects.len())
        .filter(|&i| buffered[i] || (fds[i].revents != 0 && objects[i].woken()))
        .collect())
}
