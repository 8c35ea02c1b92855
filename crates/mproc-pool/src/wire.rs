//! What travels between the pool and its workers, over each worker's own
//! [`Connection`].
//!
//! Each batch (and each batch's results) is a postcard-encoded [`Msg`]
//! holding a header ([`ToWorker`] or [`FromWorker`]) and the file
//! descriptors (mproc handles) its values carry. Small payloads (at most
//! [`PACK_MAX`] bytes in all) are packed into the header, so a batch of
//! many tiny tasks is one write; larger ones follow as one raw message per
//! task with payload bytes, sent from where they lie and received into
//! their own buffer, so they are copied only by the connection (through
//! shared memory above its threshold). Both sides are the same executable,
//! but the parser is still total: malformed bytes are an error, never a
//! panic.

use std::fmt;
use std::os::fd::OwnedFd;

use mproc_pipe::Connection;
use mproc_shm::handle::HandleFd;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// How a task's items are encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    /// Concatenated postcard encodings, one per item.
    Seq,
    /// The items' bytes (plain numbers).
    Pod,
    /// An integer range: postcard `(start: i128)`; the count is the task's.
    Range,
}

/// One task of a batch: `count` items for the function at `entry`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct TaskDesc {
    pub(crate) entry: i64,
    pub(crate) kind: Kind,
    pub(crate) count: u64,
    /// Bytes of payload, which follow the header in order.
    pub(crate) len: u64,
    /// Descriptors of this task, taken in order from the message's.
    pub(crate) nfds: u32,
    /// A time budget in nanoseconds (0: none): the worker may stop a range
    /// task once it ran this long, and says where ([`TaskOut::cut`]). This
    /// is how the first chunk of an unmeasured function sizes itself.
    pub(crate) budget: u64,
    /// Run a range task item by item with exact progress (a re-run of
    /// items among which a worker died, see [`crate::worker::BLOCK`]).
    pub(crate) careful: bool,
}

/// Parent → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run these tasks in order and reply with one [`FromWorker::Results`].
    /// `packed`: the tasks' payloads, concatenated (small batches travel
    /// in one message); `None`: each follows as a message of its own.
    Batch {
        seq: u64,
        tasks: Vec<TaskDesc>,
        packed: Option<Bytes>,
    },
    /// Finish: exit with code 0.
    Exit,
    /// The first message a worker gets: its one descriptor is the pool's
    /// progress segment ([`crate::worker::Progress`]). It is not among the
    /// worker's start arguments so that creating it need not delay the
    /// start request.
    Setup,
}

/// The outcome of one task in a worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct TaskOut {
    /// The whole task failed before running (its arguments did not decode).
    pub(crate) error: Option<String>,
    /// Items (index within the task) whose call panicked, with the panic.
    pub(crate) failures: Vec<(u64, Panic)>,
    /// How long the task took in the worker.
    pub(crate) nanos: u64,
    /// Payload bytes (the values; plain numbers for failed items are zero,
    /// other failed items are left out).
    pub(crate) len: u64,
    pub(crate) nfds: u32,
    /// Values that failed to encode (index within the task, message).
    pub(crate) encode_failures: Vec<(u64, String)>,
    /// The worker stopped after this many items (its time budget ran
    /// out); the parent runs the rest elsewhere. `None`: all ran.
    pub(crate) cut: Option<u64>,
}

/// A panic of a task's call, as it travels.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Panic {
    /// The payload, when it is a string.
    pub(crate) message: String,
    /// [`PANIC_STR`], [`PANIC_STRING`], or another type.
    pub(crate) payload: u8,
    pub(crate) location: Option<String>,
    pub(crate) backtrace: Option<String>,
}

/// [`Panic::payload`]: a `&'static str`.
pub(crate) const PANIC_STR: u8 = 0;
/// [`Panic::payload`]: a `String`.
pub(crate) const PANIC_STRING: u8 = 1;
/// [`Panic::payload`]: another type.
pub(crate) const PANIC_OTHER: u8 = 2;

/// Worker → parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The initializer ran.
    Ready,
    /// The initializer panicked (the worker exits next).
    InitFailed(String),
    /// The outcomes of batch `seq`, in order, with their payloads packed
    /// (as in [`ToWorker::Batch`]) or following one message each.
    Results {
        seq: u64,
        tasks: Vec<TaskOut>,
        packed: Option<Bytes>,
    },
    /// Answering a split request: the worker stops the last task of batch
    /// `seq` at its item `at`; the items from there on are the parent's to
    /// give to another worker.
    Split { seq: u64, at: u64 },
}

/// Batches whose payloads total at most this many bytes travel in one
/// message (one write and one wake-up instead of one per task).
pub(crate) const PACK_MAX: u64 = 64 * 1024;
/// A single payload travels packed up to this many bytes.
const PACK_ONE_MAX: u64 = 4 * 1024;

/// Whether payloads of these lengths should travel packed.
pub(crate) fn should_pack(lens: impl Iterator<Item = u64>) -> bool {
    let mut total = 0u64;
    let mut n = 0;
    for l in lens {
        total = total.saturating_add(l);
        n += usize::from(l > 0);
    }
    // One payload is packed only if small: a copy is cheaper than a second
    // write (and wake-up) then, but not for tens of KiB.
    total <= PACK_MAX && (n > 1 || (n == 1 && total <= PACK_ONE_MAX))
}

/// Splits packed payloads by their lengths; `None` if they do not add up.
pub(crate) fn unpack(packed: &[u8], lens: impl Iterator<Item = u64>) -> Option<Vec<&[u8]>> {
    let mut rest = packed;
    let mut out = Vec::new();
    for l in lens {
        let l = usize::try_from(l).ok()?;
        if l > rest.len() {
            return None;
        }
        let (a, b) = rest.split_at(l);
        out.push(a);
        rest = b;
    }
    rest.is_empty().then_some(out)
}

/// A byte buffer that postcard writes as one length-prefixed block (one
/// copy, not a loop over its bytes; the same bytes as a `Vec<u8>`).
#[derive(Debug)]
pub struct Bytes(
    /// The bytes.
    pub Vec<u8>,
);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A header message: the postcard header and the descriptors of the
/// payloads that follow it as raw messages, one per task with bytes.
#[derive(Serialize, Deserialize)]
pub(crate) struct Msg {
    pub(crate) body: Bytes,
    pub(crate) fds: Vec<HandleFd>,
}

/// Sends a header (and the descriptors of the payloads that follow it).
pub(crate) fn send_header<H: Serialize>(
    conn: &Connection,
    header: &H,
    fds: Vec<OwnedFd>,
) -> Result<(), mproc_pipe::SendBytesError> {
    let body = postcard::to_stdvec(header)
        .map_err(|e| mproc_pipe::SendBytesError::Io(std::io::Error::other(e)))?;
    let msg = Msg {
        body: Bytes(body),
        fds: fds.into_iter().map(HandleFd::new).collect(),
    };
    conn.send_ref(&msg)
}

/// A received header and the descriptors of the payloads that follow it.
pub(crate) struct Parsed<H> {
    pub(crate) header: H,
    fds: std::vec::IntoIter<OwnedFd>,
}

impl<H: de::DeserializeOwned> Parsed<H> {
    pub(crate) fn new(msg: Msg) -> Result<Self, String> {
        let header = postcard::from_bytes::<H>(&msg.body.0)
            .map_err(|e| format!("malformed pool message: {e}"))?;
        let fds: Vec<OwnedFd> = msg.fds.into_iter().map(HandleFd::into_inner).collect();
        Ok(Self {
            header,
            fds: fds.into_iter(),
        })
    }

    /// The next `nfds` descriptors.
    pub(crate) fn take_fds(&mut self, nfds: u32) -> Result<Vec<OwnedFd>, String> {
        let fds: Vec<OwnedFd> = self.fds.by_ref().take(nfds as usize).collect();
        if fds.len() != nfds as usize {
            return Err("message carries fewer descriptors than its tasks".into());
        }
        Ok(fds)
    }
}

/// Fuzzing entry: header parsing of both directions.
pub(crate) fn fuzz_headers(data: &[u8]) {
    let msg = || Msg {
        body: Bytes(data.to_vec()),
        fds: Vec::new(),
    };
    if let Ok(mut p) = Parsed::<FromWorker>::new(msg()) {
        if let FromWorker::Results { tasks, packed, .. } = &p.header {
            let n: u32 = tasks.iter().map(|t| t.nfds).fold(0, u32::saturating_add);
            if let Some(b) = packed {
                let _ = unpack(&b.0, tasks.iter().map(|t| t.len));
            }
            let _ = p.take_fds(n);
        }
    }
    let _ = Parsed::<ToWorker>::new(msg());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Headers as the pool sends them now, named as in the fuzz corpus.
    fn current_headers() -> Vec<(&'static str, Vec<u8>)> {
        let task = |kind, count, len, budget, careful| TaskDesc {
            entry: -4096,
            kind,
            count,
            len,
            nfds: 0,
            budget,
            careful,
        };
        let enc = |h: &dyn erased::Enc| h.enc();
        let out = TaskOut {
            nanos: 123_456,
            len: 16,
            cut: Some(1000),
            failures: vec![(
                3,
                Panic {
                    message: "boom".into(),
                    payload: PANIC_STR,
                    location: Some("src/main.rs:3:5".into()),
                    backtrace: None,
                },
            )],
            ..TaskOut::default()
        };
        vec![
            (
                "wire_batch_range",
                enc(&ToWorker::Batch {
                    seq: 9,
                    tasks: vec![task(Kind::Range, 20_000_000, 1, 2_000_000, false)],
                    packed: Some(Bytes(vec![0])),
                }),
            ),
            (
                "wire_batch_pod_careful",
                enc(&ToWorker::Batch {
                    seq: 10,
                    tasks: vec![
                        task(Kind::Pod, 2, 16, 0, true),
                        task(Kind::Seq, 1, 3, 0, false),
                    ],
                    packed: Some(Bytes(vec![
                        1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 7, 8, 9,
                    ])),
                }),
            ),
            ("wire_exit", enc(&ToWorker::Exit)),
            ("wire_setup", enc(&ToWorker::Setup)),
            (
                "wire_results_cut",
                enc(&FromWorker::Results {
                    seq: 9,
                    tasks: vec![out],
                    packed: Some(Bytes(vec![5; 16])),
                }),
            ),
            (
                "wire_split",
                enc(&FromWorker::Split {
                    seq: 9,
                    at: 123_456,
                }),
            ),
            ("wire_ready", enc(&FromWorker::Ready)),
        ]
    }

    mod erased {
        pub(super) trait Enc {
            fn enc(&self) -> Vec<u8>;
        }
        impl<T: serde::Serialize> Enc for T {
            fn enc(&self) -> Vec<u8> {
                postcard::to_stdvec(self).expect("encodes")
            }
        }
    }

    /// The fuzz corpus holds the headers the pool sends now, so that the
    /// fuzzer starts from real messages. After a wire change, rerun with
    /// `MPROC_WRITE_CORPUS=1` to refresh them.
    #[test]
    fn fuzz_corpus_holds_current_headers() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/pool_message");
        for (name, bytes) in current_headers() {
            // Each parses back, and the fuzz entry takes it.
            fuzz_headers(&bytes);
            let path = dir.join(name);
            if std::env::var_os("MPROC_WRITE_CORPUS").is_some() {
                std::fs::write(&path, &bytes).expect("corpus is writable");
            }
            let stored = std::fs::read(&path).unwrap_or_default();
            assert_eq!(
                stored, bytes,
                "fuzz/corpus/pool_message/{name} is not the current encoding; \
                 rerun with MPROC_WRITE_CORPUS=1"
            );
        }
    }

    #[test]
    fn header_round_trip() {
        let (a, b) = mproc_pipe::pipe(true).unwrap();
        let tasks = vec![TaskDesc {
            entry: -5,
            kind: Kind::Pod,
            count: 3,
            len: 24,
            nfds: 0,
            budget: 0,
            careful: false,
        }];
        let packed = Some(Bytes(vec![1; 24]));
        send_header(
            &a,
            &ToWorker::Batch {
                seq: 7,
                tasks,
                packed,
            },
            Vec::new(),
        )
        .unwrap();
        let msg: Msg = b.recv().unwrap();
        let mut p = Parsed::<ToWorker>::new(msg).unwrap();
        match &p.header {
            ToWorker::Batch {
                seq: 7,
                tasks,
                packed: Some(b),
            } => {
                assert_eq!(tasks[0].count, 3);
                assert_eq!(
                    unpack(&b.0, tasks.iter().map(|t| t.len)).unwrap()[0],
                    [1; 24]
                );
            }
            _ => panic!("wrong header"),
        }
        assert!(p.take_fds(0).unwrap().is_empty());
        assert!(p.take_fds(1).is_err());
    }

    #[test]
    fn unpack_checks_lengths() {
        let b = [1u8, 2, 3, 4, 5];
        assert_eq!(
            unpack(&b, [2, 0, 3].into_iter()).unwrap(),
            [&b[..2], &[], &b[2..]]
        );
        assert!(unpack(&b, [2, 2].into_iter()).is_none());
        assert!(unpack(&b, [2, 4].into_iter()).is_none());
        assert!(unpack(&b, [u64::MAX].into_iter()).is_none());
        assert!(should_pack([3, 4].into_iter()));
        assert!(should_pack([3].into_iter()));
        assert!(!should_pack([PACK_ONE_MAX + 1].into_iter()));
        assert!(!should_pack([0, 0].into_iter()));
        assert!(!should_pack([PACK_MAX, 1].into_iter()));
    }

    #[test]
    fn garbage_is_an_error() {
        let msg = Msg {
            body: Bytes(vec![9, 9, 9, 9]),
            fds: Vec::new(),
        };
        assert!(Parsed::<FromWorker>::new(msg).is_err());
    }
}
