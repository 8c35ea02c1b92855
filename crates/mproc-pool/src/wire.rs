//! What travels between the pool and its workers, over each worker's own
//! [`Connection`].
//!
//! Every message is a postcard-encoded [`Msg`]: a body of bytes and the file
//! descriptors (mproc handles) its values carry. The body is a postcard
//! header ([`ToWorker`] or [`FromWorker`]) followed by the raw payloads the
//! header describes. Both sides are the same executable, but the parser is
//! still total: malformed bytes are an error, never a panic.

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
}

/// Parent → worker.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ToWorker {
    /// Run these tasks in order and reply with one [`FromWorker::Results`].
    Batch { seq: u64, tasks: Vec<TaskDesc> },
    /// Finish: exit with code 0.
    Exit,
}

/// The outcome of one task in a worker.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct TaskOut {
    /// The whole task failed before running (its arguments did not decode).
    pub(crate) error: Option<String>,
    /// Items (index within the task) whose call panicked, with the message.
    pub(crate) failures: Vec<(u64, String)>,
    /// How long the task took in the worker.
    pub(crate) nanos: u64,
    /// Payload bytes (the values; plain numbers for failed items are zero,
    /// other failed items are left out).
    pub(crate) len: u64,
    pub(crate) nfds: u32,
    /// Values that failed to encode (index within the task, message).
    pub(crate) encode_failures: Vec<(u64, String)>,
}

/// Worker → parent.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum FromWorker {
    /// The initializer ran.
    Ready,
    /// The initializer panicked (the worker exits next).
    InitFailed(String),
    /// The outcomes of batch `seq`, in order, followed by their payloads.
    Results { seq: u64, tasks: Vec<TaskOut> },
}

/// A byte buffer that postcard writes as one length-prefixed block.
pub(crate) struct Bytes(pub(crate) Vec<u8>);

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

/// A whole message: body and descriptors.
#[derive(Serialize, Deserialize)]
pub(crate) struct Msg {
    pub(crate) body: Bytes,
    pub(crate) fds: Vec<HandleFd>,
}

/// Builds a message body: a header, then payloads appended by the caller.
pub(crate) struct BodyBuilder {
    /// Room for the `Msg` length prefix, then the body.
    buf: Vec<u8>,
}

/// Room kept in front of a body for its varint length (at most 10 bytes).
const PREFIX: usize = 10;

impl BodyBuilder {
    pub(crate) fn new<H: Serialize>(
        header: &H,
        payload_hint: usize,
    ) -> Result<Self, postcard::Error> {
        let mut buf = Vec::with_capacity(PREFIX + 64 + payload_hint + 1);
        buf.resize(PREFIX, 0);
        let buf = postcard::to_extend(header, buf)?;
        Ok(Self { buf })
    }

    pub(crate) fn push(&mut self, payload: &[u8]) {
        self.buf.extend_from_slice(payload);
    }

    /// Sends the message on `conn`, with `fds` if there are any.
    pub(crate) fn send(
        mut self,
        conn: &Connection,
        fds: Vec<OwnedFd>,
    ) -> Result<(), mproc_pipe::SendBytesError> {
        if fds.is_empty() {
            // The postcard form of `Msg { body, fds: [] }`, built in place:
            // varint(body length), body, varint(0).
            let body_len = self.buf.len() - PREFIX;
            let mut v = [0u8; PREFIX];
            let n = varint(body_len as u64, &mut v);
            let start = PREFIX - n;
            self.buf[start..PREFIX].copy_from_slice(&v[..n]);
            self.buf.push(0);
            conn.send_bytes(&self.buf[start..])
        } else {
            let body = self.buf.split_off(PREFIX);
            let msg = Msg {
                body: Bytes(body),
                fds: fds.into_iter().map(HandleFd::new).collect(),
            };
            conn.send_ref(&msg)
        }
    }
}

fn varint(mut x: u64, out: &mut [u8; PREFIX]) -> usize {
    let mut i = 0;
    loop {
        let b = (x & 0x7f) as u8;
        x >>= 7;
        if x == 0 {
            out[i] = b;
            return i + 1;
        }
        out[i] = b | 0x80;
        i += 1;
    }
}

/// A received message split into its header, payload cursor and descriptors.
pub(crate) struct Parsed<H> {
    pub(crate) header: H,
    body: Vec<u8>,
    pos: usize,
    fds: std::vec::IntoIter<OwnedFd>,
}

impl<H: de::DeserializeOwned> Parsed<H> {
    pub(crate) fn new(msg: Msg) -> Result<Self, String> {
        let body = msg.body.0;
        let (header, rest) = postcard::take_from_bytes::<H>(&body)
            .map_err(|e| format!("malformed pool message: {e}"))?;
        let pos = body.len() - rest.len();
        let fds: Vec<OwnedFd> = msg.fds.into_iter().map(HandleFd::into_inner).collect();
        Ok(Self {
            header,
            body,
            pos,
            fds: fds.into_iter(),
        })
    }

    /// The next `len` payload bytes and `nfds` descriptors.
    pub(crate) fn take(&mut self, len: u64, nfds: u32) -> Result<(&[u8], Vec<OwnedFd>), String> {
        let len = usize::try_from(len).map_err(|_| "payload length does not fit".to_owned())?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.body.len())
            .ok_or("payload runs past the message")?;
        let fds: Vec<OwnedFd> = self.fds.by_ref().take(nfds as usize).collect();
        if fds.len() != nfds as usize {
            return Err("message carries fewer descriptors than its tasks".into());
        }
        let p = &self.body[self.pos..end];
        self.pos = end;
        Ok((p, fds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_built_frame_decodes_as_msg() {
        let (a, b) = mproc_pipe::pipe(true).unwrap();
        for size in [0usize, 5, 200, 70_000, 300_000] {
            let mut bb = BodyBuilder::new(
                &ToWorker::Batch {
                    seq: 7,
                    tasks: Vec::new(),
                },
                size,
            )
            .unwrap();
            bb.push(&vec![0xab; size]);
            bb.send(&a, Vec::new()).unwrap();
            let msg: Msg = b.recv().unwrap();
            let mut p = Parsed::<ToWorker>::new(msg).unwrap();
            assert!(matches!(p.header, ToWorker::Batch { seq: 7, .. }));
            let (bytes, fds) = p.take(size as u64, 0).unwrap();
            assert_eq!(bytes.len(), size);
            assert!(bytes.iter().all(|&x| x == 0xab) && fds.is_empty());
            assert!(p.take(1, 0).is_err());
        }
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
