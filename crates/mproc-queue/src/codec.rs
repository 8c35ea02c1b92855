//! How items become bytes in the ring: the codecs of
//! [`mproc_shm::codec`], shared with connections. [`Postcard`] (the default)
//! for serde types, [`Pod`] for plain-data types (a plain copy), [`Bytes`]
//! for byte vectors.

pub(crate) use mproc_shm::codec::with_scratch;
pub use mproc_shm::codec::{Bytes, Codec, CodecError, Encode, Pod, Postcard};
