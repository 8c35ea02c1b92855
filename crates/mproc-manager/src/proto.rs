//! The wire protocol between proxies and the server.
//!
//! Every message is one mproc-pipe frame holding a postcard-encoded
//! [`Request`] (client to server) or [`Reply`] (server to client). Values,
//! keys and items are the user's types encoded with the proxy's codec
//! (postcard by default), opaque to the server: it compares keys by their
//! bytes (postcard, Pod and Bytes are deterministic for a given type) and
//! never decodes values, except inside a function the client named for a
//! server-side update or sort, monomorphized on the same codec (see
//! `code_ref`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Bumped whenever the messages below change incompatibly (2: reference
/// counts, [`Val`], transfers; 3: pages, slices, sorting, arrays,
/// namespace reprs).
pub(crate) const PROTOCOL: u32 = 3;

/// The largest request the server accepts (64 MiB): bigger frames close the
/// connection instead of being buffered.
pub(crate) const MAX_REQUEST: usize = 64 << 20;

/// A shared object's id, unique for the server's lifetime.
pub(crate) type Id = u64;

/// Encoded bytes of a user value.
pub(crate) type Bytes = Vec<u8>;

/// A user value as it is stored in the server: its encoding, and the objects
/// whose proxies it contains (each distinct one once).
///
/// While a value is stored, each of its `refs` holds a reference to that
/// object, so a proxy kept inside a dict, list, namespace, value or queue
/// keeps its object alive. In a reply, each of `refs` is a reference the
/// server has just granted to the reading client, which its proxies adopt
/// (see `client::Hold`); an object that no longer exists is left out.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Val {
    pub(crate) bytes: Bytes,
    pub(crate) refs: Vec<Id>,
}

impl Val {
    /// A value that contains no proxy.
    pub(crate) fn plain(bytes: Bytes) -> Self {
        Self {
            bytes,
            refs: Vec::new(),
        }
    }
}

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
    /// [`Array`](crate::Array): a list of fixed length.
    Array,
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
            Self::Array => "Array",
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
    Value(Val),
    Items(Vec<Val>),
    Pairs(Vec<(Bytes, Val)>),
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
    /// Frees an object whatever its references (it stays usable by nobody).
    Release { id: Id },
    /// Takes one more reference to an object for this client.
    Incref { id: Id },
    /// Gives back one of this client's references to an object; the object
    /// is freed with its last reference.
    Decref { id: Id },
    /// Takes a reference on behalf of a proxy about to travel to another
    /// process; the reply is the token the receiver adopts it with.
    Transfer { id: Id },
    /// Makes a transferred reference this client's (replies with the object).
    Adopt { token: u64 },
    /// One operation on one object.
    Call { id: Id, op: Op },
    /// Several operations, each on its object, in order, in one round trip.
    Batch(Vec<(Id, Op)>),
    /// Stops the server.
    Shutdown,
}

/// A Python slice (`start:stop:step`) on the wire; `step` is never 0 in a
/// valid request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SliceWire {
    pub(crate) start: Option<i64>,
    pub(crate) stop: Option<i64>,
    pub(crate) step: i64,
}

/// A waiting time on the wire: `None` waits without limit.
pub(crate) type WaitMs = Option<u64>;

/// An operation on an object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    // Dict.
    DictGet(Bytes),
    DictInsert(Bytes, Val),
    DictRemove(Bytes),
    DictContains(Bytes),
    DictPop(Bytes),
    DictSetDefault(Bytes, Val),
    DictKeys,
    DictValues,
    DictItems,
    DictUpdate(Vec<(Bytes, Val)>),
    DictGetMany(Vec<Bytes>),
    DictPopItem,
    /// Up to `max` entries from insertion slot `from` on (an iterator's
    /// page), with their values if `values`. `len`: the size the iterator
    /// saw first; another size is [`RemoteError::ChangedSize`].
    DictPage {
        from: u64,
        max: u32,
        len: Option<u64>,
        values: bool,
    },
    /// Server-side update of the value at a key; `default` is inserted first
    /// when the key is missing (else the key must exist).
    DictApply {
        key: Bytes,
        default: Option<Val>,
        func: i64,
        arg: Bytes,
    },
    // List.
    ListPush(Val),
    ListExtend(Vec<Val>),
    ListGet(i64),
    ListSet(i64, Val),
    ListInsert(i64, Val),
    ListPop(Option<i64>),
    ListRemove(Bytes),
    ListIndex(Bytes),
    ListCount(Bytes),
    ListSnapshot,
    /// Up to `max` items from index `from` on (an iterator's page).
    ListPage {
        from: u64,
        max: u32,
    },
    ListSlice(SliceWire),
    ListSetSlice(SliceWire, Vec<Val>),
    ListDelSlice(SliceWire),
    /// Sorts with the sort function at offset `func` (see `code_ref`).
    ListSort {
        func: i64,
        reverse: bool,
    },
    ListReverse,
    /// `l *= n`.
    ListRepeat(i64),
    ListApply {
        index: i64,
        func: i64,
        arg: Bytes,
    },
    // Namespace.
    NsGet(String),
    /// Sets a field: its value and its repr (for `str(ns)`).
    NsSet(String, Val, String),
    NsDel(String),
    NsNames,
    /// `name=repr` of every field, sorted by name.
    NsRepr,
    NsApply {
        name: String,
        func: i64,
        arg: Bytes,
    },
    // Value.
    ValueGet,
    ValueSet(Val),
    ValueSwap(Val),
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
    Put(Val, WaitMs),
    Get(WaitMs),
    QSize,
    QFull,
    TaskDone,
    Join(WaitMs),
}

impl Op {
    /// Whether this list operation leaves the length as it is (so it may
    /// run on an [`Kind::Array`]).
    pub(crate) fn keeps_length(&self) -> bool {
        !matches!(
            self,
            Self::ListPush(_)
                | Self::ListExtend(_)
                | Self::ListInsert(..)
                | Self::ListPop(_)
                | Self::ListRemove(_)
                | Self::ListDelSlice(_)
                | Self::ListRepeat(_)
        )
    }

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
    Bytes(Val),
    MaybeBytes(Option<Val>),
    List(Vec<Val>),
    MaybeList(Vec<Option<Val>>),
    Pairs(Vec<(Bytes, Val)>),
    /// A dict iterator's page: entries, the slot to go on from, the dict's size.
    Page {
        items: Vec<(Bytes, Val)>,
        next: u64,
        len: u64,
    },
    MaybePair(Option<(Bytes, Val)>),
    Names(Vec<String>),
    /// An object, with a reference to it granted to the client.
    Object(Id, Kind),
    /// A transfer token (see [`Request::Transfer`]).
    Token(u64),
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
    NoSuchTransfer(u64),
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
    ChangedSize,
    SizeMismatch { expected: u64, found: u64 },
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
            init: Init::Pairs(vec![(vec![1, b'a'], Val::plain(vec![3]))]),
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
            op: Op::DictInsert(vec![1, b'k'], Val::plain(vec![5])),
        },
        Request::Call {
            id: 1,
            op: Op::DictApply {
                key: vec![1, b'k'],
                default: Some(Val::plain(vec![0])),
                func: 4096,
                arg: vec![1],
            },
        },
        Request::Call {
            id: 2,
            op: Op::ListInsert(i64::MIN, Val::plain(vec![9])),
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
            op: Op::Put(Val::plain(vec![1, 2, 3]), Some(0)),
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
        Request::Call {
            id: 1,
            op: Op::DictPage {
                from: 0,
                max: 2,
                len: Some(1),
                values: true,
            },
        },
        Request::Call {
            id: 2,
            op: Op::ListSetSlice(
                SliceWire {
                    start: Some(-1),
                    stop: None,
                    step: -2,
                },
                vec![Val::plain(vec![5])],
            ),
        },
        Request::Call {
            id: 2,
            op: Op::ListDelSlice(SliceWire {
                start: None,
                stop: Some(i64::MAX),
                step: i64::MIN,
            }),
        },
        Request::Call {
            id: 2,
            op: Op::ListSort {
                func: 4096,
                reverse: true,
            },
        },
        Request::Call {
            id: 2,
            op: Op::ListRepeat(i64::MAX),
        },
        Request::Call {
            id: 3,
            op: Op::NsSet(
                "name".into(),
                Val::plain(vec![3, b'B', b'o', b'b']),
                "'Bob'".into(),
            ),
        },
        Request::Call {
            id: 3,
            op: Op::NsRepr,
        },
        Request::Release { id: 3 },
        // A list holding proxies of the dict (1) and of itself (2).
        Request::Call {
            id: 2,
            op: Op::ListPush(Val {
                bytes: vec![4],
                refs: vec![1, 2, 2],
            }),
        },
        Request::Incref { id: 1 },
        Request::Decref { id: 1 },
        Request::Decref { id: 99 },
        Request::Transfer { id: 2 },
        Request::Adopt { token: 1 },
        Request::Shutdown,
    ];
    reqs.iter()
        .filter_map(|r| postcard::to_stdvec(r).ok())
        .collect()
}
