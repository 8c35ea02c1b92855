//! Message codecs: how typed values become message bytes.

use std::error::Error;
use std::fmt;

use mproc_shm::codec_error::PostcardError;
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
            Err(e) => Err(CodecError::new(PostcardError::encode(value, e))),
        }
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        postcard::from_bytes(bytes).map_err(|e| CodecError::new(PostcardError::decode(e)))
    }
}

/// A value could not be encoded or a message could not be decoded.
///
/// It shows the format's reason: for [`Postcard`], the message a `Serialize`
/// impl gave to `serde::ser::Error::custom`, or postcard's description.
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

/// The format's error, as it is (this type only carries it).
impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for CodecError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}
