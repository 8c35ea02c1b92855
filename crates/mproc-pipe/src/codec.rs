//! Message codecs: how typed values become message bytes. They are the
//! codecs of [`mproc_shm::codec`], shared with queues: [`Postcard`] by
//! default, [`Pod`] and [`Bytes`] for values that are bytes already.
//!
//! A connection encodes inside [`mproc_shm::handle::collect_fds`] and decodes
//! inside [`provide_fds`](mproc_shm::handle::provide_fds), so any serde
//! codec can carry mproc handles (segments, connections): their descriptors
//! travel beside the bytes.

pub use mproc_shm::codec::{Bytes, Codec, CodecError, Encode, Pod, Postcard};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RecvError;

    #[test]
    fn a_connection_speaks_the_queues_codecs() {
        let (a, b) = crate::pipe(true).unwrap();
        let (a, b) = (a.with_codec::<Pod>(), b.with_codec::<Pod>());
        a.send([1.5f64, -2.0]).unwrap();
        assert_eq!(b.recv::<[f64; 2]>().unwrap(), [1.5, -2.0]);
        // Plain data goes as its bytes, with nothing added.
        a.send(7u32).unwrap();
        assert_eq!(b.recv_bytes().unwrap(), 7u32.to_ne_bytes());
        // A message of the wrong size is a decode error, not a panic.
        a.send(1u8).unwrap();
        assert!(matches!(b.recv::<u64>(), Err(RecvError::Decode(_))));

        let (a, b) = (a.with_codec::<Bytes>(), b.with_codec::<Bytes>());
        a.send_ref(&b"raw"[..]).unwrap();
        assert_eq!(b.recv::<Vec<u8>>().unwrap(), b"raw");
        let (a, b) = (a.with_codec::<Postcard>(), b.with_codec::<Postcard>());
        a.send(("back", 1u8)).unwrap();
        assert_eq!(b.recv::<(String, u8)>().unwrap(), ("back".to_string(), 1));
    }
}
