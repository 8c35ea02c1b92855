//! A chunk's items and results in the pool's codec: how a worker rank
//! writes its results ([`write_results`]), and the parsers of bytes another
//! process sent (no MPI needed, so they are fuzzed without it:
//! `__private::mpi_message`).

use mproc_pool::{PoolError, TaskError};
use mproc_shm::codec::{Codec, Encode};

use crate::wire::{self, Input};

/// A chunk's outcome as it travels: the values of the items that
/// succeeded, in order, and the failed items' positions and messages.
pub(crate) type Out<R> = (Vec<R>, Vec<(u64, String)>);

/// A chunk's results as they arrived: the result message and where its
/// payload (see [`write_results`]) starts.
pub(crate) struct Bytes {
    pub(crate) buf: Vec<u8>,
    pub(crate) start: usize,
}

/// A chunk's outcome.
pub(crate) type ChunkOut = Result<Bytes, TaskError>;

/// A chunk's items, decoded: each item's value or error, in order.
pub(crate) struct Decoded<R> {
    values: std::vec::IntoIter<R>,
    failures: std::collections::VecDeque<(u64, TaskError)>,
    pos: u64,
    len: u64,
}

impl<R> Iterator for Decoded<R> {
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.len {
            return None;
        }
        let k = self.pos;
        self.pos += 1;
        if self.failures.front().is_some_and(|(at, _)| *at == k) {
            return self.failures.pop_front().map(|(_, e)| Err(e));
        }
        self.values.next().map(Ok)
    }
}

impl<R> Decoded<R> {
    /// All the values, or the first failure and its position in the chunk.
    pub(crate) fn into_values(mut self) -> Result<Vec<R>, (usize, TaskError)> {
        match self.failures.pop_front() {
            None => Ok(self.values.collect()),
            Some((k, e)) => Err((k as usize, e)),
        }
    }
}

/// Whether `R` is `()`.
pub(crate) fn is_unit<R>() -> bool {
    typeid::of::<R>() == std::any::TypeId::of::<()>()
}

/// `k` unit values as a `Vec<R>`, without a loop.
pub(crate) fn units<R>(k: u64) -> Vec<R> {
    assert!(is_unit::<R>());
    // No bytes to write: the compiler turns this into setting the length.
    let v: Vec<()> = vec![(); k as usize];
    let v = std::mem::ManuallyDrop::new(v);
    // SAFETY: `R` is `()` (asserted; same TypeId, `()` has no lifetimes), so
    // this moves the Vec out as its own type; the original is not dropped.
    unsafe { std::mem::transmute_copy::<Vec<()>, Vec<R>>(&v) }
}

/// How a chunk's results are decoded: [`decode_chunk`] for the pool's codec
/// (an `Imap` is not generic in it: one indirect call per chunk).
pub(crate) type DecodeFn<R> = fn(ChunkOut, usize) -> Decoded<R>;

/// Decodes a chunk of `n` items, its values in the codec `C`.
pub(crate) fn decode_chunk<C: Codec<R>, R>(out: ChunkOut, n: usize) -> Decoded<R> {
    let all_failed = |e: TaskError| Decoded {
        values: Vec::new().into_iter(),
        failures: (0..n as u64).map(|k| (k, e.clone())).collect(),
        pos: 0,
        len: n as u64,
    };
    let bytes = match out {
        Ok(b) => b,
        Err(e) => return all_failed(e),
    };
    let parsed = parse_chunk::<C, R>(&bytes.buf[bytes.start..], n);
    crate::buf::recycle(bytes.buf);
    match parsed {
        Ok((values, failures))
            if values.len() + failures.len() == n
                && failures.windows(2).all(|w| w[0].0 < w[1].0)
                && failures.last().is_none_or(|f| f.0 < n as u64) =>
        {
            Decoded {
                values: values.into_iter(),
                failures: failures
                    .into_iter()
                    .map(|(k, message)| (k, TaskError::panicked(message)))
                    .collect(),
                pos: 0,
                len: n as u64,
            }
        }
        Ok((values, failures)) => all_failed(TaskError::Decode(format!(
            "a worker rank returned {} values and {} failures for a chunk of {n} items",
            values.len(),
            failures.len()
        ))),
        Err(e) => all_failed(TaskError::Decode(e)),
    }
}

/// Decodes the one item of an `apply`'s chunk: a plain value without
/// failure is read straight out of the message (no `Vec`, no iterator).
pub(crate) fn decode_one<C: Codec<R>, R>(out: ChunkOut) -> Result<R, TaskError> {
    if let Ok(b) = &out
        // An empty failure list is postcard's one byte 0, then the value.
        && let Some((0, value)) = b.buf.get(b.start..).and_then(<[u8]>::split_first)
        && let Some(v) = mproc_pool::__private::plain_one::<R>(value)
    {
        return Ok(v);
    }
    decode_chunk::<C, R>(out, 1)
        .next()
        .expect("a decoded chunk of one item yields one")
}

/// Appends a chunk of `n` items to `values` if all of them succeeded and
/// their values are plain numbers: one copy from the message straight into
/// `values` (a map of tiny items copies megabytes per chunk). Gives the
/// chunk back otherwise, and appends nothing.
pub(crate) fn append_plain<R>(out: ChunkOut, n: usize, values: &mut Vec<R>) -> Option<ChunkOut> {
    let Ok(bytes) = &out else { return Some(out) };
    if !mproc_pool::__private::is_plain::<R>() {
        return Some(out);
    }
    let payload = &bytes.buf[bytes.start..];
    match postcard::take_from_bytes::<Vec<(u64, String)>>(payload) {
        Ok((failures, rest)) if failures.is_empty() && rest.len() == n * size_of::<R>() => {
            let appended = mproc_pool::__private::plain_extend(values, rest);
            debug_assert!(appended);
            if let Ok(b) = out {
                crate::buf::recycle(b.buf);
            }
            None
        }
        // Failures, or bad bytes: the general path says which.
        _ => Some(out),
    }
}

/// Appends a chunk's outcome to `reply` (a result header), as
/// [`parse_chunk`] reads it: for plain numbers, the failures (postcard) then
/// the values' bytes; otherwise the number of values (postcard's length of
/// a sequence), the values (`write_values`: [`encode_values`], or what it
/// wrote elsewhere), then the failures. With [`Postcard`] this is
/// postcard's encoding of the `(values, failures)` pair.
///
/// [`Postcard`]: mproc_shm::codec::Postcard
pub(crate) fn write_results<R>(
    reply: Vec<u8>,
    values: usize,
    failures: &[(u64, String)],
    write_values: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    let not_encoded = |e: postcard::Error| format!("the chunk's results did not encode: {e}");
    if mproc_pool::__private::is_plain::<R>() {
        let mut m = postcard::to_extend(failures, reply).map_err(not_encoded)?;
        write_values(&mut m)?;
        Ok(m)
    } else {
        let mut m = postcard::to_extend(&values, reply).map_err(not_encoded)?;
        write_values(&mut m)?;
        postcard::to_extend(failures, m).map_err(not_encoded)
    }
}

/// Appends `values` as [`write_results`] lays them out: plain numbers as
/// their bytes, `()` as nothing (their count says it all), anything else
/// one after another in the codec `C`.
pub(crate) fn encode_values<C: Encode<R>, R>(
    values: &[R],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if let Some(bytes) = mproc_pool::__private::plain_bytes(values) {
        out.extend_from_slice(bytes);
    } else if !is_unit::<R>() {
        for v in values {
            C::encode_item(v, out)
                .map_err(|e| format!("the chunk's results did not encode: {e}"))?;
        }
    }
    Ok(())
}

/// Values of `A`, one after another in the codec `C`, after their count
/// (postcard's length of a sequence), and the bytes after them. The count
/// comes from another process: no more than `max` (if given) are read, and
/// the room reserved up front is bounded as serde bounds it for a `Vec`
/// (about 1 MiB), so that a count the bytes cannot back costs no memory.
fn decode_items<C: Codec<A>, A>(
    bytes: &[u8],
    max: Option<usize>,
) -> Result<(Vec<A>, &[u8]), String> {
    let (n, mut rest) = postcard::take_from_bytes::<usize>(bytes).map_err(|e| e.to_string())?;
    if let Some(max) = max
        && n > max
    {
        return Err(format!(
            "a worker rank returned {n} values for a chunk of {max} items"
        ));
    }
    let mut items = Vec::with_capacity(n.min(rest.len()).min((1 << 20) / size_of::<A>().max(1)));
    for _ in 0..n {
        let (a, tail) = C::decode_item(rest).map_err(|e| e.to_string())?;
        items.push(a);
        rest = tail;
    }
    Ok((items, rest))
}

/// A chunk's payload as its values and failures (not yet checked against
/// the chunk's size).
fn parse_chunk<C: Codec<R>, R>(payload: &[u8], n: usize) -> Result<Out<R>, String> {
    if is_unit::<R>() {
        // `()` values have no bytes: the list is its length (postcard writes a
        // sequence's length as the same varint as a u64), and decoding it item
        // by item would cost rank 0 a loop over every item of the chunk.
        postcard::from_bytes::<(u64, Vec<(u64, String)>)>(payload)
            .map(|(k, f)| (units::<R>(k.min(n as u64)), f))
            .map_err(|e| e.to_string())
    } else if mproc_pool::__private::is_plain::<R>() {
        // Plain numbers: the failures, then the values as their bytes.
        postcard::take_from_bytes::<Vec<(u64, String)>>(payload)
            .map_err(|e| e.to_string())
            .and_then(|(f, rest)| {
                mproc_pool::__private::plain_from_bytes::<R>(rest)
                    .map(|v| (v, f))
                    .ok_or_else(|| {
                        format!(
                            "a worker rank's {} bytes of results are not a whole number of values",
                            rest.len()
                        )
                    })
            })
    } else {
        let (values, rest) = decode_items::<C, R>(payload, Some(n))?;
        let failures = postcard::from_bytes(rest).map_err(|e| e.to_string())?;
        Ok((values, failures))
    }
}

/// Turns the decoded items of a whole map into its value, or the first
/// failure in input order.
pub(crate) fn collect_map<R>(
    items: impl Iterator<Item = Result<R, TaskError>>,
) -> Result<Vec<R>, PoolError> {
    let mut v = Vec::new();
    for (index, r) in items.enumerate() {
        match r {
            Ok(x) => v.push(x),
            Err(error) => return Err(PoolError::Task { index, error }),
        }
    }
    Ok(v)
}

/// The items of an items chunk, in the codec `C` or plain.
pub(crate) fn items_of<C: Codec<A>, A>(input: &Input<'_>) -> Result<Vec<A>, String> {
    match *input {
        Input::Items(bytes) => decode_items::<C, A>(bytes, None)
            .map(|(items, _)| items)
            .map_err(|e| format!("the chunk's items did not decode: {e}")),
        Input::Plain(bytes) => mproc_pool::__private::plain_from_bytes(bytes).ok_or_else(|| {
            "the chunk's items are not whole plain values of the task's argument type".to_string()
        }),
        Input::Range { .. } => Err("a range chunk where items were expected".to_string()),
    }
}

/// Parses `data` as each message a rank receives (hello, task, result)
/// and decodes what it carries as items and results of a few types, as
/// rank 0 and the workers do: never panics, and allocates no more than
/// the input's size allows. The fuzz entry (`__private::mpi_message`).
pub(crate) fn fuzz(data: &[u8]) {
    use mproc_shm::codec::{self, Pod, Postcard};
    let _ = wire::parse_hello(data);
    if let Ok((_, _, input)) = wire::parse_task(data) {
        let _ = items_of::<Postcard, u64>(&input);
        let _ = items_of::<Postcard, String>(&input);
        let _ = items_of::<Postcard, (u32, Vec<u8>)>(&input);
        let _ = items_of::<codec::Bytes, Vec<u8>>(&input);
        let _ = items_of::<Pod, [u32; 3]>(&input);
    }
    // A result's item count is rank 0's own (the chunk it sent), not the
    // message's: a few counts stand for it.
    if let Ok(wire::ChunkReply {
        out: Ok(payload), ..
    }) = wire::parse_result(data)
    {
        for n in [0, 1, 3, 64] {
            let chunk = || {
                Ok(Bytes {
                    buf: payload.to_vec(),
                    start: 0,
                })
            };
            let _ = decode_chunk::<Postcard, u64>(chunk(), n).count();
            let _ = decode_chunk::<Postcard, String>(chunk(), n).count();
            let _ = decode_chunk::<Postcard, ()>(chunk(), n).count();
            let _ = decode_chunk::<codec::Bytes, Vec<u8>>(chunk(), n).count();
            let _ = decode_chunk::<Pod, [u32; 3]>(chunk(), n).count();
            let _ = append_plain::<u32>(chunk(), n, &mut Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mproc_shm::codec::Postcard;

    fn chunk(payload: Vec<u8>) -> ChunkOut {
        Ok(Bytes {
            buf: payload,
            start: 0,
        })
    }

    #[test]
    fn plain_results_are_the_failures_then_the_values_bytes() {
        // Items 0 and 2 succeeded with 7 and 9; item 1 panicked.
        let mut payload = postcard::to_allocvec(&vec![(1u64, "boom".to_string())]).unwrap();
        payload.extend_from_slice(&7u64.to_ne_bytes());
        payload.extend_from_slice(&9u64.to_ne_bytes());
        let d = decode_chunk::<Postcard, u64>(chunk(payload.clone()), 3);
        let got: Vec<_> = d.map(|r| r.map_err(|e| e.to_string())).collect();
        assert_eq!(got[0], Ok(7));
        assert!(got[1].as_ref().unwrap_err().contains("boom"));
        assert_eq!(got[2], Ok(9));
        // A torn value is a decode error for the whole chunk, not a panic.
        payload.pop();
        let d = decode_chunk::<Postcard, u64>(chunk(payload), 3);
        assert!(d.into_iter().all(
            |r| matches!(r, Err(TaskError::Decode(m)) if m.contains("not a whole number of values"))
        ));
    }

    #[test]
    fn one_item_decodes_without_the_general_path_and_the_same_way() {
        // A plain value after an empty failure list.
        let mut ok = vec![0u8];
        ok.extend_from_slice(&42u64.to_ne_bytes());
        assert_eq!(decode_one::<Postcard, u64>(chunk(ok.clone())).unwrap(), 42);
        // A torn value: the general path's decode error, no panic.
        ok.pop();
        assert!(matches!(
            decode_one::<Postcard, u64>(chunk(ok)),
            Err(TaskError::Decode(_))
        ));
        // A failure: the panic's message.
        let failed = postcard::to_allocvec(&vec![(0u64, "boom".to_string())]).unwrap();
        match decode_one::<Postcard, u64>(chunk(failed)) {
            Err(TaskError::Panicked { message, .. }) => assert!(message.contains("boom")),
            other => panic!("{other:?}"),
        }
        // Not plain: postcard, as before.
        let s =
            postcard::to_allocvec(&(vec!["hi".to_string()], Vec::<(u64, String)>::new())).unwrap();
        assert_eq!(decode_one::<Postcard, String>(chunk(s)).unwrap(), "hi");
        // A whole chunk's error stays that error.
        assert!(matches!(
            decode_one::<Postcard, u64>(Err(TaskError::Cancelled)),
            Err(TaskError::Cancelled)
        ));
    }

    /// A chunk's results as a worker writes them (`write_results` after
    /// `encode_values`), with no header.
    fn results<C: Encode<R>, R>(values: &[R], failures: &[(u64, String)]) -> Vec<u8> {
        write_results::<R>(Vec::new(), values.len(), failures, |m| {
            encode_values::<C, R>(values, m)
        })
        .unwrap()
    }

    #[test]
    fn postcard_results_and_items_are_postcards_own_bytes() {
        let failures = vec![(1u64, "boom".to_string())];
        let values = vec!["a".to_string(), "bc".to_string()];
        assert_eq!(
            results::<Postcard, _>(&values, &failures),
            postcard::to_allocvec(&(&values, &failures)).unwrap()
        );
        let units = vec![(); 5];
        assert_eq!(
            results::<Postcard, _>(&units, &failures),
            postcard::to_allocvec(&(&units, &failures)).unwrap()
        );
        let items = postcard::to_allocvec(&values).unwrap();
        let got = items_of::<Postcard, String>(&Input::Items(&items)).unwrap();
        assert_eq!(got, values);
    }

    #[test]
    fn results_round_trip_in_every_codec() {
        use mproc_shm::codec::{self, Pod};
        let failures = vec![(1u64, "boom".to_string())];
        // Pod arrays: 24 bytes each, no length.
        let arrays = [[1u64, 2, 3], [4, 5, 6]];
        let payload = results::<Pod, _>(&arrays, &failures);
        assert_eq!(
            payload.len(),
            1 + 2 * 24 + postcard::to_allocvec(&failures).unwrap().len()
        );
        let got: Vec<_> = decode_chunk::<Pod, [u64; 3]>(chunk(payload), 3)
            .map(|r| r.map_err(|e| e.to_string()))
            .collect();
        assert_eq!(got[0], Ok([1, 2, 3]));
        assert!(got[1].as_ref().unwrap_err().contains("boom"));
        assert_eq!(got[2], Ok([4, 5, 6]));
        // Byte vectors, empty ones too: each after its 8-byte length.
        let vecs = vec![Vec::new(), vec![7u8; 1000], vec![1]];
        let payload = results::<codec::Bytes, _>(&vecs, &[]);
        let got = decode_chunk::<codec::Bytes, Vec<u8>>(chunk(payload), 3).into_values();
        assert_eq!(got.unwrap(), vecs);
    }

    #[test]
    fn a_bad_count_or_item_fails_the_chunk_without_reading_on() {
        use mproc_shm::codec::{self, Pod};
        // More values than the chunk has items: refused before decoding.
        let payload = results::<Pod, _>(&[[0u8; 4]; 5], &[]);
        let got = decode_chunk::<Pod, [u8; 4]>(chunk(payload), 3).into_values();
        match got {
            Err((0, TaskError::Decode(m))) => {
                assert_eq!(m, "a worker rank returned 5 values for a chunk of 3 items")
            }
            other => panic!("{other:?}"),
        }
        // A length that runs past the end; a count no bytes back.
        let mut payload = results::<codec::Bytes, _>(&[vec![1u8, 2]], &[]);
        payload.truncate(5);
        let got = decode_chunk::<codec::Bytes, Vec<u8>>(chunk(payload), 1).into_values();
        assert!(matches!(got, Err((0, TaskError::Decode(_)))), "{got:?}");
        let huge = postcard::to_allocvec(&u64::MAX).unwrap();
        let items = items_of::<codec::Bytes, Vec<u8>>(&Input::Items(&huge));
        assert!(
            items
                .unwrap_err()
                .starts_with("the chunk's items did not decode")
        );
    }
}
