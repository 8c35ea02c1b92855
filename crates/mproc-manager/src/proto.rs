//! The wire protocol between proxies and the server.
//!
//! Every message is one mproc-pipe frame holding a postcard-encoded
//! [`Request`] (client to server) or [`Reply`] (server to client). Values,
//! keys and items are the postcard encoding of the user's types, opaque to
//! the server: it compares keys by their bytes (postcard is deterministic
//! for a given type) and never decodes values, except inside a function the
//! client named for a server-side update (see `code_ref`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bumped whenever the messages below change incompatibly.
pub(crate) const PROTOCOL: u32 = 1;

/// The largest request the server accepts (64 MiB): bigger frames close the
/// connection instead of being buffered.
pub(crate) const MAX_REQUEST: usize = 64 << 20;

/// A shared object's id, unique for the server's lifetime.
pub(crate) type Id = u64;

/// Encoded bytes of a user value.
pub(crate) type Bytes = Vec<u8>;

/// Identifies whoever holds a lock: a client process and one of its threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) client: u64,
    pub(crate) thread: u64,
}

/// Identifies an executable file (see `code_ref::exe_token`).
pub(crate) type ExeWire = mproc_fnref::ExeId;

/// The kinds of shared objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// [`Dict`](crate::Dict).
    Dict,
    /// [`List`](crate::List).
    List,
    /// [`Namespace`](crate::Namespace).
    Namespace,
    /// [`Value`](crate::Value).
    Value,
    /// [`Lock`](crate::Lock).
    Lock,
    /// [`RLock`](crate::RLock).
    RLock,
    /// [`Semaphore`](crate::Semaphore) (unbounded).
    Semaphore,
    /// [`Semaphore`](crate::Semaphore) created bounded.
    BoundedSemaphore,
    /// [`Event`](crate::Event).
    Event,
    /// [`Condition`](crate::Condition).
    Condition,
    /// [`Barrier`](crate::Barrier).
    Barrier,
    /// [`Queue`](crate::Queue).
    Queue,
    /// [`JoinableQueue`](crate::JoinableQueue).
    JoinableQueue,
}

impl Kind {
    /// The CPython proxy name this kind corresponds to.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dict => "dict",
            Self::List => "list",
            Self::Namespace => "Namespace",
            Self::Value => "Value",
            Self::Lock => "Lock",
            Self::RLock => "RLock",
            Self::Semaphore => "Semaphore",
            Self::BoundedSemaphore => "BoundedSemaphore",
            Self::Event => "Event",
            Self::Condition => "Condition",
            Self::Barrier => "Barrier",
            Self::Queue => "Queue",
            Self::JoinableQueue => "JoinableQueue",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a new object starts with.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Init {
    Empty,
    Value(Bytes),
    Items(Vec<Bytes>),
    Pairs(Vec<(Bytes, Bytes)>),
    Count(u64),
    Queue { maxsize: u64 },
}

/// A client-to-server message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// The first message on every connection.
    /// `rings`: the client will hand over shared-memory rings next.
    Hello {
        protocol: u32,
        client: u64,
        exe: Option<ExeWire>,
        rings: bool,
    },
    /// Liveness check (CPython's `dummy`).
    Ping,
    /// Makes a new object.
    Create { kind: Kind, init: Init },
    /// Names an object in the registry (replacing nothing: a taken name fails).
    Register { name: String, id: Id },
    /// Finds a named object.
    Lookup { name: String },
    /// Removes a name from the registry.
    Unregister { name: String },
    /// The names in the registry.
    Names,
    /// How many objects the server holds.
    ObjectCount,
    /// Forgets an object (it stays usable by nobody).
    Release { id: Id },
    /// One operation on one object.
    Call { id: Id, op: Op },
    /// Several operations, each on its object, in order, in one round trip.
    Batch(Vec<(Id, Op)>),
    /// Stops the server.
    Shutdown,
}

/// A waiting time on the wire: `None` waits without limit.
pub(crate) type WaitMs = Option<u64>;

/// An operation on an object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    // Dict.
    DictGet(Bytes),
    DictInsert(Bytes, Bytes),
    DictRemove(Bytes),
    DictContains(Bytes),
    DictPop(Bytes),
    DictSetDefault(Bytes, Bytes),
    DictKeys,
    DictValues,
    DictItems,
    DictUpdate(Vec<(Bytes, Bytes)>),
    DictGetMany(Vec<Bytes>),
    DictPopItem,
    /// Server-side update of the value at a key; `default` is inserted first
    /// when the key is missing (else the key must exist).
    DictApply {
        key: Bytes,
        default: Option<Bytes>,
        func: i64,
        arg: Bytes,
    },
    // List.
    ListPush(Bytes),
    ListExtend(Vec<Bytes>),
    ListGet(i64),
    ListSet(i64, Bytes),
    ListInsert(i64, Bytes),
    ListPop(Option<i64>),
    ListRemove(Bytes),
    ListIndex(Bytes),
    ListCount(Bytes),
    ListSnapshot,
    ListApply {
        index: i64,
        func: i64,
        arg: Bytes,
    },
    // Namespace.
    NsGet(String),
    NsSet(String, Bytes),
    NsDel(String),
    NsNames,
    NsApply {
        name: String,
        func: i64,
        arg: Bytes,
    },
    // Value.
    ValueGet,
    ValueSet(Bytes),
    ValueSwap(Bytes),
    ValueApply {
        func: i64,
        arg: Bytes,
    },
    // Shared by containers.
    Len,
    Clear,
    // Locks, semaphores and conditions.
    Acquire {
        owner: Owner,
        wait: WaitMs,
    },
    Release {
        owner: Owner,
    },
    LockState,
    CondWait {
        owner: Owner,
        wait: WaitMs,
    },
    CondNotify {
        owner: Owner,
        n: u64,
    },
    // Event.
    EventSet,
    EventClear,
    EventIsSet,
    EventWait(WaitMs),
    // Barrier.
    BarrierWait(WaitMs),
    BarrierReset,
    BarrierAbort,
    BarrierInfo,
    // Queues.
    Put(Bytes, WaitMs),
    Get(WaitMs),
    QSize,
    TaskDone,
    Join(WaitMs),
}

impl Op {
    /// Whether this operation may wait (and so gets no fixed call timeout).
    pub(crate) fn wait(&self) -> Option<WaitMs> {
        match self {
            Self::Acquire { wait, .. }
            | Self::CondWait { wait, .. }
            | Self::EventWait(wait)
            | Self::BarrierWait(wait)
            | Self::Put(_, wait)
            | Self::Get(wait)
            | Self::Join(wait) => Some(*wait),
            _ => None,
        }
    }
}

/// How an acquisition went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Acquired {
    Yes,
    /// Acquired, but the previous holder's process disconnected while
    /// holding it: the protected state may be half-updated.
    OwnerDied,
    No,
}

/// A server-to-client message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Hello {
        protocol: u32,
        same_exe: bool,
        pid: i32,
    },
    Unit,
    Bool(bool),
    Count(u64),
    Bytes(Bytes),
    MaybeBytes(Option<Bytes>),
    List(Vec<Bytes>),
    MaybeList(Vec<Option<Bytes>>),
    Pairs(Vec<(Bytes, Bytes)>),
    MaybePair(Option<(Bytes, Bytes)>),
    Names(Vec<String>),
    Object(Id, Kind),
    Acquired(Acquired),
    /// The lock state: (held, recursion count).
    Held(bool, u64),
    /// Barrier: (parties, waiting, broken).
    Barrier(u64, u64, bool),
    Batch(Vec<Reply>),
    Err(RemoteError),
}

/// A failure inside the server, sent back to the client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum RemoteError {
    KeyMissing,
    IndexOutOfRange { index: i64, len: u64 },
    ValueMissing,
    WrongKind { expected: Kind, found: Kind },
    NoSuchObject(Id),
    NoSuchName(String),
    NameTaken(String),
    Empty,
    Full,
    Timeout,
    NotOwner,
    Unlocked,
    OverRelease,
    BrokenBarrier,
    TooManyTaskDone,
    ForeignExecutable,
    BadFunction,
    Decode(String),
    Panicked(String),
    Malformed(String),
    NotAllowed(String),
}

/// Decodes a request frame (the fuzz target's entry).
pub(crate) fn decode_request(bytes: &[u8]) -> Result<Request, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// A few valid requests, encoded (fuzz corpus seeds).
pub(crate) fn samples() -> Vec<Vec<u8>> {
    let owner = Owner {
        client: 7,
        thread: 1,
    };
    let reqs = vec![
        Request::Hello {
            protocol: PROTOCOL,
            client: 7,
            exe: None,
            rings: false,
        },
        Request::Ping,
        Request::Create {
            kind: Kind::Dict,
            init: Init::Pairs(vec![(vec![1, b'a'], vec![3])]),
        },
        Request::Create {
            kind: Kind::Barrier,
            init: Init::Count(0),
        },
        Request::Register {
            name: "shared".into(),
            id: 1,
        },
        Request::Lookup {
            name: "shared".into(),
        },
        Request::Call {
            id: 1,
            op: Op::DictInsert(vec![1, b'k'], vec![5]),
        },
        Request::Call {
            id: 1,
            op: Op::DictApply {
                key: vec![1, b'k'],
                default: Some(vec![0]),
                func: 4096,
                arg: vec![1],
            },
        },
        Request::Call {
            id: 2,
            op: Op::ListInsert(i64::MIN, vec![9]),
        },
        Request::Call {
            id: 2,
            op: Op::ListPop(Some(-3)),
        },
        Request::Call {
            id: 4,
            op: Op::ValueApply {
                func: -64,
                arg: vec![],
            },
        },
        Request::Call {
            id: 5,
            op: Op::Acquire {
                owner,
                wait: Some(0),
            },
        },
        Request::Call {
            id: 5,
            op: Op::Release { owner },
        },
        Request::Call {
            id: 9,
            op: Op::CondWait {
                owner,
                wait: Some(10),
            },
        },
        Request::Call {
            id: 10,
            op: Op::BarrierWait(Some(0)),
        },
        Request::Call {
            id: 11,
            op: Op::Put(vec![1, 2, 3], Some(0)),
        },
        Request::Call {
            id: 11,
            op: Op::TaskDone,
        },
        Request::Batch(vec![
            (1, Op::Len),
            (2, Op::ListSnapshot),
            (11, Op::Get(None)),
        ]),
        Request::Release { id: 3 },
        Request::Shutdown,
    ];
    reqs.iter()
        .filter_map(|r| postcard::to_stdvec(r).ok())
        .collect()
}
