//! Message codecs: how typed values become message bytes. They are the
//! codecs of [`mproc_shm::codec`], shared with queues: [`Postcard`] by
//! default, [`Pod`] and [`Bytes`] for values that are bytes already.
//!
//! A connection encodes inside [`mproc_shm::handle::collect_fds`] and decodes
//! inside [`provide_fds`](mproc_shm::handle::provide_fds), so any serde
//! codec can carry mproc handles (segments, connections): their descriptors
//! travel beside the bytes.

pub use mproc_shm::codec::{Bytes, Codec, CodecError, Encode, Pod, Postcard};
