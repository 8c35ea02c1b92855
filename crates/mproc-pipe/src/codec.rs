//! Message codecs: how typed values become message bytes.

use std::error::Error;
use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Turns values into message bytes and back.
///
/// A codec runs inside [`mproc_shm::handle::collect_fds`] /
/// [`provide_fds`](mproc_shm::handle::provide_fds), so any serde format can
/// carry mproc handles (segments, connections): their descriptors travel
/// beside the bytes.
pub trait Codec {
    /// Appends the encoding of `value` to `out`.
    ///
    /// # Errors
    /// The format's error if `value` cannot be encoded.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes a whole message.
    ///
    /// # Errors
    /// The format's error if `bytes` is not an encoding of a `T`.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// The default codec: [postcard](https://docs.rs/postcard), compact and fast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Postcard;

impl Codec for Postcard {
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let v = std::mem::take(out);
        match postcard::to_extend(value, v) {
            Ok(v) => {
                *out = v;
                Ok(())
            }
            Err(e) => Err(CodecError::new(e)),
        }
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        postcard::from_bytes(bytes).map_err(CodecError::new)
    }
}

/// A value could not be encoded or a message could not be decoded.
pub struct CodecError(Box<dyn Error + Send + Sync + 'static>);

impl CodecError {
    /// Wraps a format's error.
    pub fn new(e: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self(e.into())
    }
}

impl fmt::Debug for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CodecError")
            .field(&self.0.to_string())
            .finish()
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("message codec failed")
    }
}

impl Error for CodecError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.0)
    }
}
