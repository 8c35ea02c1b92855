//! Not public API: the bodies of the fuzz targets, shared with the tests
//! that replay their corpora on stable.

use crate::auth::{AuthOptions, CHALLENGE, make_challenge, respond_to_challenge, verify_response};
use crate::frame::{Frame, FrameDecoder, FrameError, INITIAL_ALLOC, Wire};

/// Decodes `stream` fed in `chunk`-byte pieces, checking the allocation bound.
fn decode_chunked(
    stream: &[u8],
    chunk: usize,
    max: usize,
    wire: Wire,
) -> (Vec<Frame>, Option<FrameError>) {
    let mut dec = FrameDecoder::with_wire(max, wire);
    let mut frames = Vec::new();
    let mut received = 0usize;
    for piece in stream.chunks(chunk.max(1)) {
        let mut piece = piece;
        while !piece.is_empty() {
            match dec.decode(piece) {
                Ok((n, f)) => {
                    assert!(n > 0 && n <= piece.len(), "decoder made no progress");
                    received += n;
                    piece = &piece[n..];
                    if let Some(f) = f {
                        if let Frame::Bytes(b) = &f {
                            assert!(b.len() <= max);
                        }
                        frames.push(f);
                    }
                }
                Err(e) => return (frames, Some(e)),
            }
            assert!(dec.allocated() <= max, "allocated past the maximum");
            assert!(
                dec.allocated() <= (2 * received).max(INITIAL_ALLOC),
                "allocated ahead of the data"
            );
        }
    }
    (frames, None)
}

/// Fuzz target `frame_decode`: the first byte picks the dialect and chunk
/// size, the next three the maximum message size; the rest is the stream.
/// Decoding never panics, never allocates past its bounds, and gives the same
/// frames and error whatever the chunking.
pub fn frame_decode(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let wire = if sel & 1 == 1 {
        Wire::Mproc
    } else {
        Wire::Cpython
    };
    let chunk = usize::from(sel >> 1) + 1;
    let (max, stream) = match rest {
        [a, b, c, stream @ ..] => (
            usize::from(*a) << 16 | usize::from(*b) << 8 | usize::from(*c),
            stream,
        ),
        _ => (0, rest),
    };
    let chunked = decode_chunked(stream, chunk, max, wire);
    let whole = decode_chunked(stream, stream.len(), max, wire);
    assert_eq!(chunked, whole, "chunking changed the result");
}

/// Fuzz target `auth_handshake`: the first byte picks options and the key
/// length; then the key; the rest is a peer's handshake message, parsed as a
/// challenge and as a response. Nothing panics, and any response we produce
/// verifies against the challenge it answers.
pub fn auth_handshake(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let opts = AuthOptions {
        allow_legacy_md5: sel & 1 == 1,
        ..AuthOptions::default()
    };
    let klen = usize::from(sel >> 1).min(rest.len());
    let (key, msg) = rest.split_at(klen);
    if let Ok(resp) = respond_to_challenge(key, msg, &opts) {
        assert!(resp.len() <= crate::auth::MAX_HANDSHAKE_MESSAGE);
        let body = &msg[CHALLENGE.len()..];
        assert_eq!(verify_response(key, body, &resp, &opts), Ok(()));
    }
    let _ = verify_response(key, msg.get(..40).unwrap_or(msg), msg, &opts);
    let _ = verify_response(key, msg, msg, &opts);
    if let Ok((challenge, body)) = make_challenge(opts.digest) {
        let _ = verify_response(key, &body, msg, &opts);
        assert!(respond_to_challenge(key, &challenge, &opts).is_ok());
    }
}
