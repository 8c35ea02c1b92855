//! How items become bytes in the ring: postcard for serde types, a plain copy
//! for plain-data types.

use mproc_shm::codec_error::PostcardError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DecodeError, EncodeError};

thread_local! {
    /// Reused buffers for encoding and for copying records out of the ring.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer, emptied (or a fresh one if it
/// is in use already).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    buf.clear();
    let r = f(&mut buf);
    // Keep small buffers only: one large message must not pin its memory.
    if buf.capacity() <= 1 << 16 {
        SCRATCH.with(|s| *s.borrow_mut() = buf);
    }
    r
}

/// Turns items into the bytes a queue carries, and back.
///
/// The queue's type parameter `C` picks one: [`Postcard`] (the default) for
/// any `Serialize + DeserializeOwned` type, or [`Pod`] for plain-data types,
/// which skips encoding altogether. Both ends of a queue use the same codec
/// (it is part of the segment's fingerprint).
pub trait Codec<T>: 'static {
    /// A short stable name, mixed into the queue segment's fingerprint.
    const TAG: &'static str;

    /// Appends the encoding of `value` to `buf` (which is empty on entry).
    ///
    /// # Errors
    /// An [`EncodeError`] if `value` cannot be encoded.
    fn encode(value: &T, buf: &mut Vec<u8>) -> Result<(), EncodeError>;

    /// Encodes `value` and hands the bytes to `f`. The default encodes with
    /// [`Codec::encode`] into a reused per-thread buffer; codecs whose items
    /// already are bytes override it to skip that copy.
    ///
    /// # Errors
    /// An [`EncodeError`] if `value` cannot be encoded.
    fn encode_with<R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> Result<R, EncodeError> {
        crate::codec::with_scratch(|buf| {
            Self::encode(value, buf)?;
            Ok(f(buf))
        })
    }

    /// Decodes an item from exactly `bytes`. The bytes come from shared
    /// memory that another process wrote: treat them as untrusted.
    ///
    /// # Errors
    /// A [`DecodeError`] if the bytes do not encode a `T`.
    fn decode(bytes: &[u8]) -> Result<T, DecodeError>;
}

/// The default codec: [postcard](https://docs.rs/postcard), for any
/// `Serialize + DeserializeOwned` item.
///
/// Items that contain mproc handles (queues, locks, segments, connections)
/// fail to encode with an [`EncodeError`] whose
/// [`is_handle`](EncodeError::is_handle) is true: descriptors cannot travel
/// through shared memory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl<T: Serialize + DeserializeOwned> Codec<T> for Postcard {
    const TAG: &'static str = "postcard";

    fn encode(value: &T, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        // Serialize inside `collect_fds`: an mproc handle then serializes
        // successfully but leaves its descriptor in the side table, which is
        // how we recognise it and report it clearly.
        // The error is made inside too: it may serialize the value again.
        let (r, fds) = mproc_shm::handle::collect_fds(|| {
            postcard::to_extend(value, std::mem::take(buf))
                .map_err(|e| PostcardError::encode(value, e))
        });
        match r {
            Ok(v) => *buf = v,
            Err(e) => {
                return Err(if fds.is_empty() {
                    EncodeError::custom(e)
                } else {
                    EncodeError::handle()
                });
            }
        }
        if fds.is_empty() {
            Ok(())
        } else {
            Err(EncodeError::handle())
        }
    }

    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        let (v, rest) = postcard::take_from_bytes(bytes)
            .map_err(|e| DecodeError::custom(PostcardError::decode(e)))?;
        if rest.is_empty() {
            Ok(v)
        } else {
            Err(DecodeError::custom("trailing bytes after the item"))
        }
    }
}

/// The plain-data codec: the item's bytes are copied as they are, with no
/// encoding (`T: bytemuck::Pod`, for example integers, floats, arrays of them
/// and `#[repr(C)]` structs of them).
///
/// ```
/// use mproc_queue::{Pod, Queue};
///
/// let q: Queue<[f64; 4], Pod> = Queue::new(16)?;
/// q.put([1.0, 2.0, 3.0, 4.0])?;
/// assert_eq!(q.get()?, [1.0, 2.0, 3.0, 4.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Pod;

impl<T: bytemuck::Pod> Codec<T> for Pod {
    const TAG: &'static str = "pod";

    fn encode(value: &T, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.extend_from_slice(bytemuck::bytes_of(value));
        Ok(())
    }

    fn encode_with<R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> Result<R, EncodeError> {
        Ok(f(bytemuck::bytes_of(value)))
    }

    fn decode(bytes: &[u8]) -> Result<T, DecodeError> {
        bytemuck::try_pod_read_unaligned(bytes).map_err(|e| DecodeError::custom(format!("{e:?}")))
    }
}

/// The byte codec: a `Vec<u8>` item is carried as it is, with no encoding
/// (postcard would write its bytes one by one). Use it for byte payloads:
///
/// ```
/// use mproc_queue::{Bytes, Queue};
///
/// let q: Queue<Vec<u8>, Bytes> = Queue::new(0)?;
/// q.put(vec![7; 4096])?;
/// assert_eq!(q.get()?, vec![7; 4096]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Bytes;

impl Codec<Vec<u8>> for Bytes {
    const TAG: &'static str = "bytes";

    fn encode(value: &Vec<u8>, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
        buf.extend_from_slice(value);
        Ok(())
    }

    fn encode_with<R>(value: &Vec<u8>, f: impl FnOnce(&[u8]) -> R) -> Result<R, EncodeError> {
        Ok(f(value))
    }

    fn decode(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
        Ok(bytes.to_vec())
    }
}
