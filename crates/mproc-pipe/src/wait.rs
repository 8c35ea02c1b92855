//! `wait`: block until any of several connections, sentinels or descriptors
//! is ready (Python's `multiprocessing.connection.wait`). The trait and the
//! function live in [`mproc_shm::ready`], so that every mproc crate can make
//! its objects waitable; this module adds connections and listeners.

use std::os::fd::{AsFd, BorrowedFd};

pub use mproc_shm::ready::{Waitable, Watch, wait, wait_deadline, wait_timeout, watch};

use crate::connection::Connection;
use crate::listener::Listener;

impl<C> Waitable for Connection<C> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn ready_now(&self) -> bool {
        !self.is_unreadable() && self.ready_to_receive(false)
    }

    fn never_ready(&self) -> bool {
        self.is_unreadable()
    }

    // A `pipe()` end's socket doubles as its ring's doorbell: readable may
    // mean a ring message that another receive has taken meanwhile.
    fn is_doorbell(&self) -> bool {
        self.has_ring()
    }

    // Registering asks the ring's senders to ring the socket; the sender
    // that rings clears the request, so a waiter woken for nothing asks
    // again.
    fn register(&self) {
        self.arm_doorbell();
    }

    fn rearm(&self) {
        self.arm_doorbell();
    }
}

/// The listening socket: readable when a client is waiting.
impl std::os::fd::AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.borrow_fd()
    }
}

impl Waitable for Listener {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.borrow_fd()
    }
}

#[cfg(test)]
mod tests {
    /// The example of `multiprocessing.connection.wait`, through mproc-pipe's
    /// re-export.
    #[test]
    fn wait_reports_the_connection_with_a_message() {
        use std::time::Duration;
        let (a, b) = crate::pipe(true).unwrap();
        let (c, d) = crate::pipe(true).unwrap();
        c.send_bytes(b"x").unwrap();
        let ready = crate::wait_timeout(&[&b, &d], Duration::from_secs(5)).unwrap();
        assert_eq!(ready, [1]);
        drop((a, c));
    }
}
