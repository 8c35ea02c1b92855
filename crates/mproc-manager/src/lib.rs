//! A manager server with typed proxies, local and remote, for mproc
//! (Python's `multiprocessing.Manager()` and `BaseManager`).
//!
//! A manager is a server process that owns shared objects: dicts, lists,
//! namespaces, values of any serde type, locks, semaphores, events,
//! conditions, barriers and queues. Other processes use them through
//! *proxies*, locally or over TCP, authenticated with an authkey.
//!
//! # Hello, world!
//!
//! ```
//! use mproc_manager::{Dict, Manager};
//! use mproc_process::Process;
//!
//! fn pick(d: Dict<String, u32>) -> usize {
//!     d.update_or_insert_with(&"apples".to_string(), &0, |v: &mut u32, n: u32| *v += n, 3).unwrap();
//!     d.len().unwrap()
//! }
//!
//! let m = Manager::start()?;
//! let fruit = m.dict::<String, u32>()?;
//! fruit.insert(&"pears".to_string(), &1)?;
//! let mut child = Process::new(pick, fruit.clone()).start()?;
//! assert_eq!(child.join()?, 2);
//! assert_eq!(fruit.get("apples")?, Some(3));
//! m.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Proxies are remote: results are copies
//!
//! Every proxy method is a round trip to the server, and what it returns is
//! a copy. CPython's classic trap, `d['plain'].append(2)` being silently
//! lost, reads in Rust as `d.get(k)?.unwrap().push(2)`: it changes the copy.
//! To change a value where it lives, use the server-side updates
//! ([`Dict::update_with`], [`Dict::update_or_insert_with`],
//! [`List::update_with`], [`Value::update_with`],
//! [`Namespace::update_with`]): the function runs inside the server,
//! atomically with respect to every other operation on the object, so
//! concurrent updates from many processes never lose one. The function is a
//! `fn` item or a non-capturing closure sent by reference (as mproc-process
//! sends child functions), which needs the client and the server to run the
//! same executable: true for a manager started by this program; a client
//! built from other code gets [`Error::ForeignExecutable`].
//!
//! Nested proxies work as in CPython 3.6+: a proxy stored as (part of) a
//! value, e.g. a `Dict<String, List<u32>>`, travels as an object id, keeps
//! its object alive while stored, and operations on the list you read back
//! reach the shared list.
//!
//! Several operations can share one round trip: [`Dict::update`],
//! [`Dict::get_many`], [`Dict::items`], [`List::extend`], [`List::snapshot`],
//! [`List::get_slice`], [`List::set_slice`], and the batches of the
//! iterators.
//!
//! # Codecs
//!
//! The values a proxy shares (dict keys and values, list and array items,
//! `Value`s, namespace fields, queue items, and the arguments and results
//! of server-side updates) are encoded by a codec from
//! [`mproc_shm::codec`], chosen once per manager handle:
//! [`Postcard`](mproc_shm::codec::Postcard) by default (any serde type,
//! and the only one whose values can hold proxies),
//! [`Pod`](mproc_shm::codec::Pod) for plain data copied as it is, and
//! [`Bytes`](mproc_shm::codec::Bytes) for byte vectors as they are.
//! [`ManagerBuilder::codec`] picks it; the manager's proxies are then typed
//! with it (`Dict<K, V, Pod>`), keep it when they travel to another
//! process, and a server-side update decodes and encodes with it. Each of
//! these codecs gives a value of one type one encoding, so keys compared
//! by bytes stay correct. Requests and replies themselves stay postcard.
//! A second handle with another codec on the same server is
//! `Manager::builder().address(..).authkey(..).codec::<C>().connect()`.
//!
//! # Errors and failures
//!
//! A failure inside the server comes back typed ([`Error::KeyMissing`],
//! [`Error::IndexOutOfRange`], [`Error::WrongKind`], …); operations with
//! outcomes of their own have their own errors ([`TryGetError::Empty`],
//! [`LockTimeoutError::Timeout`], …: the shape is described at [`Error`]),
//! and starting or connecting fails with a [`ConnectError`]. A dead or
//! unreachable server is [`Error::Disconnected`], returned within the call
//! timeout ([`ManagerBuilder::call_timeout`], 5 s by default); operations
//! that wait (locks, queue gets) add their own timeout, and without one they
//! check every call timeout that the server still answers. A malformed or
//! hostile request gets an error reply (or its connection is closed); it
//! never takes the server down. A client that dies, even mid-call or
//! holding a lock, does not affect the others: its locks are released and
//! the next holder is told ([`LockError::OwnerDied`]).
//!
//! # Remote managers and authkeys
//!
//! [`ManagerBuilder::address`] binds the server to a TCP address (or a Unix
//! socket path), [`Manager::register`] names objects, and an unrelated
//! process calls [`Manager::connect`] with the address and the authkey, then
//! [`Manager::lookup`]. Every connection first runs CPython's mutual HMAC
//! handshake (SHA-256), so a client with a wrong key is refused before it
//! can reach any object.
//!
//! Where the authkey travels: proxies passed to another process (as
//! process arguments, or over an mproc `Connection`) carry the authkey in a
//! sealed memfd that travels as a file descriptor, never as bytes; so a
//! proxy cannot be serialized anywhere else (JSON, a file, a shared-memory
//! queue): that fails with a clear error. A proxy stored inside the manager
//! itself carries only its object id. To reach a manager from another host,
//! pass the authkey yourself ([`Manager::authkey`]) and use
//! [`Manager::connect`].
//!
//! # Transport
//!
//! Every connection starts as a socket with the authkey handshake. On a
//! Unix socket (local managers) the client then moves the connection onto
//! two shared-memory rings (mproc-queue), so a call costs a few
//! microseconds and no system call when both sides are awake; the socket
//! stays open to tell each side when the other has gone. TCP connections
//! (remote clients) keep using the socket.
//!
//! # Differences from CPython
//!
//! * Proxies are typed, and any serde type can be shared (no `register` of
//!   classes: `Value<MyStruct>` or `Dict<K, MyStruct>` instead, with
//!   server-side updates for methods that change them).
//! * Results are copies everywhere. Iterators ([`Dict::iter`],
//!   [`Dict::iter_keys`], [`List::iter`]) fetch batches of copies and keep
//!   no state in the server (a cursor travels with each request); a dict's
//!   size is checked at every batch, so a change of size shows as
//!   [`Error::ChangedSize`] at the next batch rather than the next item
//!   (with a batch of 1, exactly as CPython). A list iterator goes by
//!   index and never fails, as in CPython.
//! * Functions that need the stored values' type run in the server by
//!   reference: updates, and sorting ([`List::sort`], [`List::sort_by_key`]).
//! * `str(ns)` ([`Namespace::repr`], `Display`) shows each field as Python's
//!   `repr` would show its serde form, made when the field was set (the
//!   server cannot decode it): `Namespace(age=42, name='Bob')`.
//! * [`Manager::array`] takes an item type instead of a typecode; its
//!   length is fixed, so a slice assignment must keep it.
//! * [`Manager::shutdown`] reports how the server ended ([`ShutdownStatus`]).
//! * The server runs the authkey handshakes of new connections side by
//!   side in its accepting thread, at most 64 at once (the longest waiting
//!   is dropped for a new one) and 10 s each: silent connections cost it a
//!   socket each, never a thread.
//! * References are counted per process, not per proxy: clones of a proxy
//!   share one reference, and the server gives back every reference of a
//!   process whose connections close (a killed child leaks nothing).
//! * A proxy sent to another process keeps its object alive until the
//!   receiver reads it, however late (CPython needs the sender's proxy to
//!   live that long); one that is never read keeps it until shutdown.
//! * Starting twice, or after shutdown, cannot be written: the builder and
//!   [`Manager::shutdown`] consume their receivers.
//! * A client that dies holding a lock does not leave it locked for ever.
//! * A namespace field is read with its type: `ns.get::<String>("name")`;
//!   `_`-prefixed names are refused rather than kept local.
//!
//! # Lifetimes
//!
//! A manager made by [`Manager::start`] owns its server process (a daemon:
//! it also dies if this process is killed). [`Manager::shutdown`], or
//! dropping the manager, stops it: a shutdown request, then SIGTERM and
//! SIGKILL after the shutdown timeout.
//!
//! A shared object lives while something refers to it, as in CPython: a
//! proxy in any process (clones share one reference, given back when the
//! last is dropped), a registry name ([`Manager::register`]), a value stored
//! in another shared object that contains a proxy of it, or a proxy on its
//! way to another process (serialized, not yet read; one that is never read
//! keeps its object until shutdown). The server frees it with its last
//! reference, and the objects only it referred to with it; the references
//! of a process whose connections close (it exited or was killed) go then.
//! Objects that refer to each other in a cycle keep each other alive until
//! the cycle is broken. [`Manager::release`] frees an object at once,
//! whatever refers to it. [`Manager::object_count`] says how many objects
//! the server holds.
//!
//! A proxy copied into a child by `fork` (other than through the child's
//! arguments, which carry their own references) uses the parent's
//! reference. A proxy of another manager stored in a value does not keep
//! its object alive, nor does one inside a dict key.

#![doc(test(attr(deny(warnings))))]

mod array;
mod client;
mod code_ref;
mod dict;
mod error;
mod link;
mod list;
mod manager;
mod proto;
mod proxy;
mod queue;
mod repr;
mod server;
mod sync;
mod sys;
mod value;

pub use crate::array::Array;
pub use crate::client::RawProxy;
pub use crate::dict::Dict;
pub use crate::dict::{DictIter, DictKeys};
pub use crate::error::{
    ConnectError, Error, GetTimeoutError, JoinTimeoutError, LockError, LockTimeoutError, PutError,
    PutTimeoutError, TryGetError, TryLockError, TryPutError,
};
pub use crate::list::{List, ListIter, Slice};
pub use crate::manager::{
    DEFAULT_CALL_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, Manager, ManagerBuilder, ShutdownStatus,
};
pub use crate::proto::Kind;
pub use crate::proxy::Proxy;
pub use crate::queue::{JoinableQueue, Queue};
pub use crate::repr::NamespaceCodec;
pub use crate::sync::{
    Barrier, Condition, Event, Lock, LockGuard, RLock, Semaphore, SemaphoreGuard,
};
pub use crate::value::{Namespace, Value};
pub use mproc_pipe::Address;
/// How a lock was acquired by a guard-less `acquire` (shared with mproc-sync).
pub use mproc_shm::Acquired;

/// Internals for fuzz targets and tests. Not a stable API.
#[doc(hidden)]
pub mod __private {
    /// Decodes `data` as a request and runs it against a fresh in-memory
    /// server (never waiting); returns whether it decoded. Must never panic.
    pub fn fuzz_request(data: &[u8]) -> bool {
        crate::server::fuzz_request(data)
    }

    /// Encodes a few valid requests, for seeding the fuzz corpus.
    pub fn sample_requests() -> Vec<Vec<u8>> {
        crate::proto::samples()
    }
}
