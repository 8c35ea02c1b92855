//! A connection: the hello, the request loop, and the accept loop that
//! gives each authenticated connection a thread.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mproc_pipe::{ConnectError, Connection, Listener};

use super::Server;
use super::objects::ObjectState;
use super::updates::panic_message;
use crate::client::lock;
use crate::link::Link;
use crate::proto::{self, Id, Op, RemoteError, Reply, Request, Val};
use crate::sys;

/// How long a client may take over the authkey handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many clients may be in the authkey handshake at once. The listener
/// runs their handshakes side by side in the accepting thread; one more
/// drops the client that has waited longest. A connection gets its own
/// thread only once authenticated, so silent or slow clients cost a socket
/// each, never a thread.
pub(crate) const MAX_PENDING_HANDSHAKES: usize = 64;

/// What a connection thread knows about its client.
pub(crate) struct Peer<'a> {
    pub(super) client: u64,
    pub(super) same_exe: bool,
    /// The socket, to notice a client that went away while we wait.
    pub(super) fd: Option<BorrowedFd<'a>>,
    /// Never wait (fuzzing).
    pub(super) no_wait: bool,
}

/// What to do after a reply.
#[derive(PartialEq, Eq)]
pub(crate) enum AfterReply {
    Continue,
    Shutdown,
}

impl Server {
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
            if then == AfterReply::Shutdown {
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
            if let ObjectState::Queue(q) = &mut *lock(&e.state) {
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
    pub(crate) fn handle_bytes(
        &self,
        peer: &Peer<'_>,
        bytes: &[u8],
    ) -> (Reply, AfterReply, Option<Id>) {
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
                        AfterReply::Continue,
                        None,
                    ),
                }
            }
            Err(e) => (
                Reply::Err(RemoteError::Malformed(e.to_string())),
                AfterReply::Continue,
                None,
            ),
        }
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
    // Serves a connection in a thread of its own; stops the server when the
    // connection asks for shutdown.
    let spawn = |mut c: Connection, name: &str| {
        c.set_max_message(proto::MAX_REQUEST);
        let server = server.clone();
        let stop = stop.clone();
        let _ = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if server.serve_connection(c) {
                    stop();
                }
            });
    };
    if let Some(c) = owner {
        spawn(c, "mproc-manager-owner");
    }
    loop {
        match listener.accept() {
            Ok(c) => {
                if server.stopping.load(Ordering::SeqCst) {
                    break;
                }
                spawn(c, "mproc-manager-conn");
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
