//! Codecs: how values become the bytes mproc carries, and back. One set for
//! every crate, so a program picks its format once: connections
//! (`mproc_pipe::Connection<C>`) and queues (`mproc_queue::Queue<T, C>`)
//! take the same codec types.
//!
//! - [`Postcard`], the default: any serde type, compact and fast.
//! - [`Pod`]: plain-data types (`bytemuck::Pod`), copied as they are.
//! - [`Bytes`]: byte vectors, carried as they are.
//!
//! A codec is a type with no values; [`Encode<T>`] says it can write a `T`,
//! [`Codec<T>`] that it can also read one back. The two are separate so that
//! a borrowed or unsized value (`&(&a, &b)`, a `str`) can be sent wherever
//! its owned form can be received.
//!
//! ```
//! use mproc_shm::codec::{Codec, Encode, Pod, Postcard};
//!
//! let mut buf = Vec::new();
//! Postcard::encode(&(1u8, "two"), &mut buf)?;
//! let (a, b): (u8, String) = Postcard::decode(&buf)?;
//! assert_eq!((a, b.as_str()), (1, "two"));
//!
//! buf.clear();
//! Pod::encode(&[1.5f64, 2.5], &mut buf)?;
//! assert_eq!(buf.len(), 16);
//! assert_eq!(<Pod as Codec<[f64; 2]>>::decode(&buf)?, [1.5, 2.5]);
//! # Ok::<(), mproc_shm::codec::CodecError>(())
//! ```
//!
//! # Handles
//!
//! mproc handles (segments, connections, queues) serialize their descriptors
//! into the side table of [`collect_fds`](crate::handle::collect_fds). A
//! connection encodes inside one, so any serde codec can send handles over
//! it. Where no side table is open (a queue: shared memory cannot carry
//! descriptors), encoding a handle fails with a [`CodecError`] whose
//! [`is_handle`](CodecError::is_handle) is true.

use std::cell::RefCell;
use std::error::Error;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec_error::PostcardError;

/// A codec that can encode a `T`.
pub trait Encode<T: ?Sized>: 'static {
    /// A short stable name of the format, mixed into fingerprints (a queue
    /// segment records it, so both ends must use the same codec).
    const TAG: &'static str;

    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    /// The format's error if `value` cannot be encoded.
    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Encodes `value` and hands the bytes to `f`. The default encodes into
    /// a reused per-thread buffer ([`with_scratch`]); codecs whose values
    /// already are bytes override it to skip that copy.
    ///
    /// # Errors
    /// The format's error if `value` cannot be encoded.
    #[inline]
    fn encode_with<R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> Result<R, CodecError> {
        with_scratch(|buf| {
            Self::encode(value, buf)?;
            Ok(f(buf))
        })
    }

    /// Appends `value` as one item of a stream: values written one after
    /// another, each found again by [`Codec::decode_item`] (process
    /// arguments, a pool's batch of items, a manager's list of values).
    ///
    /// The default writes the encoding's length (8 bytes, little-endian)
    /// before it. Formats that find their own end ([`Postcard`]) or whose
    /// values have one size ([`Pod`]) write the value alone. On an error,
    /// `out` is as it was.
    ///
    /// # Errors
    /// The format's error if `value` cannot be encoded.
    fn encode_item(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let at = out.len();
        out.extend_from_slice(&[0; ITEM_LEN]);
        if let Err(e) = Self::encode(value, out) {
            out.truncate(at);
            return Err(e);
        }
        let len = (out.len() - at - ITEM_LEN) as u64;
        out[at..at + ITEM_LEN].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }
}

/// Bytes of the length the default [`Encode::encode_item`] writes.
const ITEM_LEN: usize = 8;

/// A codec that can encode a `T` and decode it again.
pub trait Codec<T>: Encode<T> {
    /// Decodes a value from exactly `bytes`. The bytes may come from another
    /// process: treat them as untrusted (never panic, never allocate more
    /// than they justify).
    ///
    /// # Errors
    /// The format's error if `bytes` is not an encoding of a `T`.
    fn decode(bytes: &[u8]) -> Result<T, CodecError>;

    /// Decodes the first item of a stream that [`Encode::encode_item`]
    /// wrote, and returns it with the bytes after it. The bytes may come
    /// from another process: a length that runs past them is an error.
    ///
    /// # Errors
    /// The format's error if the item is not an encoding of a `T`, or the
    /// bytes end inside it.
    fn decode_item(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
        let Some((len, rest)) = bytes.split_first_chunk::<ITEM_LEN>() else {
            return Err(CodecError::new("the stream ends inside an item's length"));
        };
        let len = u64::from_le_bytes(*len);
        match usize::try_from(len) {
            Ok(len) if len <= rest.len() => {
                let (item, rest) = rest.split_at(len);
                Ok((Self::decode(item)?, rest))
            }
            _ => Err(CodecError::new(
                "an item's length runs past the end of the stream",
            )),
        }
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's reusable scratch buffer, emptied (or with a
/// fresh one if the thread's is in use already, as in a nested call).
#[inline]
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    buf.clear();
    let r = f(&mut buf);
    // Keep small buffers only: one large message must not pin its memory.
    if buf.capacity() <= 1 << 16 {
        SCRATCH.with(|s| *s.borrow_mut() = buf);
    }
    r
}

/// The default codec: [postcard](https://docs.rs/postcard), for any serde
/// type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Postcard;

impl<T: Serialize + ?Sized> Encode<T> for Postcard {
    const TAG: &'static str = "postcard";

    #[inline]
    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let at = out.len();
        match postcard::to_io(value, &mut *out) {
            Ok(_) => Ok(()),
            Err(e) => {
                // Whatever came before `value` stays; its partial bytes go.
                out.truncate(at);
                Err(CodecError::postcard_encode(value, e))
            }
        }
    }

    #[inline]
    fn encode_item(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        // Postcard finds the end of each value itself: no length.
        Self::encode(value, out)
    }
}

impl<T: Serialize + DeserializeOwned> Codec<T> for Postcard {
    #[inline]
    fn decode(bytes: &[u8]) -> Result<T, CodecError> {
        match Self::decode_item(bytes) {
            Ok((v, [])) => Ok(v),
            Ok(_) => Err(CodecError::new("trailing bytes after the value")),
            Err(e) => Err(e),
        }
    }

    #[inline]
    fn decode_item(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
        postcard::take_from_bytes(bytes).map_err(|e| CodecError::new(PostcardError::decode(e)))
    }
}

/// The plain-data codec: a value's bytes are copied as they are, with no
/// encoding (`T: bytemuck::Pod`: integers, floats, arrays of them and
/// `#[repr(C)]` structs of them). Both ends must agree on the layout, which
/// they do when they run the same program on the same machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pod;

impl<T: bytemuck::Pod> Encode<T> for Pod {
    const TAG: &'static str = "pod";

    #[inline]
    fn encode(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(bytemuck::bytes_of(value));
        Ok(())
    }

    #[inline]
    fn encode_with<R>(value: &T, f: impl FnOnce(&[u8]) -> R) -> Result<R, CodecError> {
        Ok(f(bytemuck::bytes_of(value)))
    }

    #[inline]
    fn encode_item(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        // Every `T` has one size: no length.
        Self::encode(value, out)
    }
}

impl<T: bytemuck::Pod> Codec<T> for Pod {
    #[inline]
    fn decode(bytes: &[u8]) -> Result<T, CodecError> {
        bytemuck::try_pod_read_unaligned(bytes).map_err(|e| CodecError::new(format!("{e:?}")))
    }

    #[inline]
    fn decode_item(bytes: &[u8]) -> Result<(T, &[u8]), CodecError> {
        if bytes.len() < size_of::<T>() {
            return Err(CodecError::new("the stream ends inside a plain value"));
        }
        let (item, rest) = bytes.split_at(size_of::<T>());
        Ok((Self::decode(item)?, rest))
    }
}

/// The byte codec: a `Vec<u8>` (or a `[u8]` to send) is carried as it is,
/// with no encoding (postcard would prefix a length and copy it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bytes;

impl Encode<[u8]> for Bytes {
    const TAG: &'static str = "bytes";

    #[inline]
    fn encode(value: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(value);
        Ok(())
    }

    #[inline]
    fn encode_with<R>(value: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R, CodecError> {
        Ok(f(value))
    }
}

impl Encode<Vec<u8>> for Bytes {
    const TAG: &'static str = "bytes";

    #[inline]
    fn encode(value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), CodecError> {
        <Self as Encode<[u8]>>::encode(value, out)
    }

    #[inline]
    fn encode_with<R>(value: &Vec<u8>, f: impl FnOnce(&[u8]) -> R) -> Result<R, CodecError> {
        Ok(f(value))
    }
}

impl Codec<Vec<u8>> for Bytes {
    #[inline]
    fn decode(bytes: &[u8]) -> Result<Vec<u8>, CodecError> {
        Ok(bytes.to_vec())
    }
}

/// Encodes `value` with `C` into a message of its own, collecting the
/// descriptors of the mproc handles it holds (only a serde codec meets any;
/// see [Handles](self#handles)): the bytes and descriptors to send together,
/// as a process's arguments travel.
///
/// # Errors
/// The format's error if `value` cannot be encoded.
pub fn encode_with_fds<C: Encode<T>, T: ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<std::os::fd::OwnedFd>), CodecError> {
    let (bytes, fds) = crate::handle::collect_fds(|| {
        let mut bytes = Vec::new();
        C::encode(value, &mut bytes).map(|()| bytes)
    });
    Ok((bytes?, fds))
}

/// Decodes what [`encode_with_fds`] made with `decode` (a codec's
/// [`Codec::decode`]), giving the handles in it their descriptors back
/// (those it does not claim are closed).
///
/// # Errors
/// The format's error if the bytes do not decode, or name a descriptor that
/// `fds` does not hold.
pub fn decode_with_fds<T>(
    decode: fn(&[u8]) -> Result<T, CodecError>,
    bytes: &[u8],
    fds: Vec<std::os::fd::OwnedFd>,
) -> Result<T, CodecError> {
    crate::handle::provide_fds(fds, || decode(bytes))
}

/// A value could not be encoded or a message could not be decoded. Its
/// `Display` is the format's reason: for [`Postcard`], the message a
/// `Serialize` impl gave to `serde::ser::Error::custom`, or postcard's
/// description.
pub struct CodecError(Repr);

enum Repr {
    Handle,
    Format(Box<dyn Error + Send + Sync + 'static>),
}

impl CodecError {
    /// Wraps a format's own error (for codec implementations).
    pub fn new(e: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self(Repr::Format(e.into()))
    }

    /// Whether the value held an mproc handle and was encoded where no
    /// descriptor can travel (see [the module docs](self#handles)).
    pub fn is_handle(&self) -> bool {
        matches!(self.0, Repr::Handle)
    }

    /// The error for `value`, which postcard failed to encode. A handle is
    /// told apart by walking `value` once more with a side table open: only
    /// a value that holds a handle puts a descriptor there.
    #[cold]
    fn postcard_encode<T: Serialize + ?Sized>(value: &T, e: postcard::Error) -> Self {
        if !crate::handle::collecting() {
            let (_, fds) = crate::handle::collect_fds(|| postcard::to_extend(value, Vec::new()));
            if !fds.is_empty() {
                return Self(Repr::Handle);
            }
        }
        Self::new(PostcardError::encode(value, e))
    }
}

impl fmt::Debug for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CodecError")
            .field(&self.to_string())
            .finish()
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Handle => f.write_str(
                "the value holds an mproc handle, whose descriptor cannot travel this way \
                 (send it as a process argument or over a Connection)",
            ),
            Repr::Format(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl Error for CodecError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match &self.0 {
            Repr::Handle => None,
            Repr::Format(e) => e.source(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::HandleFd;

    #[test]
    fn postcard_round_trips_and_rejects_trailing_bytes() {
        let mut buf = Vec::new();
        Postcard::encode(&vec![3u32, 4], &mut buf).unwrap();
        assert_eq!(<Postcard as Codec<Vec<u32>>>::decode(&buf).unwrap(), [3, 4]);
        buf.push(0);
        let e = <Postcard as Codec<Vec<u32>>>::decode(&buf).unwrap_err();
        assert_eq!(e.to_string(), "trailing bytes after the value");
    }

    #[test]
    fn a_handle_outside_a_side_table_is_a_handle_error() {
        let fd = std::fs::File::open("/dev/null").unwrap();
        let h = HandleFd::new(fd.into());
        let e = Postcard::encode(&(1u8, &h), &mut Vec::new()).unwrap_err();
        assert!(e.is_handle(), "{e}");
        // Inside a side table the same value encodes, its descriptor aside.
        let (r, fds) = crate::handle::collect_fds(|| Postcard::encode(&h, &mut Vec::new()));
        assert!(r.is_ok());
        assert_eq!(fds.len(), 1);
    }

    /// A value that refuses to encode, after writing part of itself.
    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::{Error as _, SerializeTuple};
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(&7u8)?;
            Err(S::Error::custom("no"))
        }
    }

    #[test]
    fn a_failed_encode_leaves_what_was_written_before_it() {
        let mut buf = vec![1, 2, 3];
        assert!(Postcard::encode(&Refuses, &mut buf).is_err());
        assert_eq!(buf, [1, 2, 3]);
        assert!(Bytes::encode_item(&vec![4], &mut buf).is_ok());
        assert!(<Postcard as Encode<Refuses>>::encode_item(&Refuses, &mut buf).is_err());
        assert_eq!(buf, [1, 2, 3, 1, 0, 0, 0, 0, 0, 0, 0, 4]);
    }

    #[test]
    fn streams_of_items_read_back_in_order_with_each_codec() {
        fn round_trip<C: Codec<T>, T: PartialEq + fmt::Debug>(items: &[T]) {
            let mut buf = Vec::new();
            for v in items {
                C::encode_item(v, &mut buf).unwrap();
            }
            let mut rest = &buf[..];
            for v in items {
                let (got, tail) = C::decode_item(rest).unwrap();
                assert_eq!(&got, v);
                rest = tail;
            }
            assert!(rest.is_empty());
            // A stream cut anywhere inside its last item is an error.
            if !buf.is_empty() {
                assert!(C::decode_item(&buf[buf.len() - 1..]).is_err());
            }
        }
        round_trip::<Postcard, _>(&["a".to_string(), String::new(), "ccc".into()]);
        round_trip::<Pod, _>(&[1.5f64, -2.0, 3.25]);
        round_trip::<Pod, _>(&[(), ()]);
        round_trip::<Bytes, _>(&[vec![1u8, 2], vec![], vec![3; 300]]);
        // Bytes carries a length per item: 8 bytes, then the bytes.
        let mut buf = Vec::new();
        Bytes::encode_item(&vec![9u8; 3], &mut buf).unwrap();
        assert_eq!(buf, [3, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9]);
    }

    #[test]
    fn a_stream_length_past_its_end_is_an_error_not_an_allocation() {
        let mut buf = u64::MAX.to_le_bytes().to_vec();
        buf.push(1);
        let e = <Bytes as Codec<Vec<u8>>>::decode_item(&buf).unwrap_err();
        assert_eq!(
            e.to_string(),
            "an item's length runs past the end of the stream"
        );
        let e = <Bytes as Codec<Vec<u8>>>::decode_item(&[1, 2]).unwrap_err();
        assert_eq!(e.to_string(), "the stream ends inside an item's length");
    }

    #[test]
    fn pod_and_bytes_copy_as_they_are() {
        let mut buf = Vec::new();
        Pod::encode(&0x0102_0304u32, &mut buf).unwrap();
        assert_eq!(buf, 0x0102_0304u32.to_ne_bytes());
        assert!(<Pod as Codec<u64>>::decode(&buf).is_err());
        let n = Bytes::encode_with(&vec![9u8; 5], <[u8]>::len).unwrap();
        assert_eq!(n, 5);
        assert_eq!(<Bytes as Codec<Vec<u8>>>::decode(&[1, 2]).unwrap(), [1, 2]);
    }
}
