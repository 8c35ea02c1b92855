//! The messages between rank 0 and the worker ranks: fixed little-endian
//! headers, then payloads of items and results in the pool's codec (see
//! `decode`). Every parser checks lengths and returns an error for bad
//! input; none panics.

use std::borrow::Borrow;

use mproc_shm::codec::Encode;

/// Rank 0 → worker: a chunk to run.
pub(crate) const TAG_TASK: i32 = 1;
/// Worker → rank 0: a chunk's results.
pub(crate) const TAG_RESULT: i32 = 2;
/// Rank 0 → worker: no more work, finalize and exit.
pub(crate) const TAG_STOP: i32 = 3;
/// Worker → rank 0, once: who it is.
pub(crate) const TAG_HELLO: i32 = 4;
/// Rank 0 ↔ worker: the raw 8-byte ping-pong that measures MPI's own round
/// trip (the first message carries the number of rounds).
pub(crate) const TAG_ECHO: i32 = 5;
/// Rank 0 → worker: a chunk to run, in a message of at most
/// [`posted::SMALL`](crate::posted::SMALL) bytes (taken by a posted receive).
pub(crate) const TAG_TASK_SMALL: i32 = 6;
/// Worker → rank 0: a chunk's results, in a message of at most
/// [`posted::SMALL`](crate::posted::SMALL) bytes (taken by a posted receive).
pub(crate) const TAG_RESULT_SMALL: i32 = 7;

const TASK_HEADER: usize = 17;
pub(crate) const RESULT_HEADER: usize = 25;
const KIND_ITEMS: u8 = 0;
const KIND_RANGE: u8 = 1;
const KIND_PLAIN: u8 = 2;

/// A chunk's input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input<'a> {
    /// The number of items (postcard's length of a sequence), then each
    /// item in the pool's codec (`postcard` of a `Vec<A>` with
    /// [`Postcard`](mproc_shm::codec::Postcard)).
    Items(&'a [u8]),
    /// `len` integers from `start`.
    Range { start: i128, len: u64 },
    /// Plain numbers as their bytes (see `mproc_pool`'s `is_plain`).
    Plain(&'a [u8]),
}

/// A task message's header with id 0 (the MPI thread writes the real id
/// with [`set_id`] when it sends it), with room for `body` more bytes.
fn task_header(entry: i64, kind: u8, body: usize) -> Vec<u8> {
    let mut m = crate::buf::with_capacity(TASK_HEADER + body);
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&entry.to_le_bytes());
    m.push(kind);
    m
}

/// A task message with already encoded items.
#[cfg(test)]
fn task_items(entry: i64, items: &[u8]) -> Vec<u8> {
    let mut m = task_header(entry, KIND_ITEMS, items.len());
    m.extend_from_slice(items);
    m
}

/// A task message carrying `items` in the codec `C`, encoded straight
/// after the header (no second copy of a large chunk).
pub(crate) fn task_items_from<C: Encode<T>, T>(entry: i64, items: &[T]) -> Result<Vec<u8>, String> {
    task_items_iter::<C, T>(entry, items.len(), items.iter()).0
}

/// A task message carrying the next `n` items of `items` in the codec `C`,
/// each encoded straight into the message (no `Vec` of the items first):
/// the same bytes as `task_items_from` of those items. Returns the message
/// and how many items it holds (fewer than `n` if the iterator ran out
/// early).
pub(crate) fn task_items_iter<C: Encode<T>, T>(
    entry: i64,
    n: usize,
    items: impl Iterator<Item: Borrow<T>>,
) -> (Result<Vec<u8>, String>, usize) {
    let mut count = 0usize;
    let encode = |count: &mut usize| {
        let mut m = task_header(entry, KIND_ITEMS, n * size_of::<T>().max(1));
        m = postcard::to_extend(&n, m).map_err(|e| e.to_string())?;
        for item in items.take(n) {
            C::encode_item(item.borrow(), &mut m).map_err(|e| e.to_string())?;
            *count += 1;
        }
        if *count != n {
            // The iterator promised more than it had: write the real length.
            let promised = postcard::to_allocvec(&n).map_err(|e| e.to_string())?;
            let real = postcard::to_allocvec(&*count).map_err(|e| e.to_string())?;
            m.splice(TASK_HEADER..TASK_HEADER + promised.len(), real);
        }
        Ok::<_, String>(m)
    };
    let msg = encode(&mut count);
    (msg, count)
}

/// A task message carrying plain numbers as their bytes.
/// A task message carrying the next `max` (at most) items of `items` as
/// their bytes, written straight into the message, and how many it holds;
/// `None` unless the items are plain numbers.
pub(crate) fn task_plain_iter<T>(
    entry: i64,
    max: usize,
    items: &mut impl Iterator<Item = T>,
) -> Option<(Vec<u8>, usize)> {
    if !mproc_pool::__private::is_plain::<T>() {
        return None;
    }
    let mut m = task_header(
        entry,
        KIND_PLAIN,
        max.min(items.size_hint().0) * size_of::<T>(),
    );
    let n = mproc_pool::__private::plain_write(&mut m, items, max)?;
    Some((m, n))
}

/// A task message for `len` integers from `start`.
pub(crate) fn task_range(entry: i64, start: i128, len: u64) -> Vec<u8> {
    let mut m = task_header(entry, KIND_RANGE, 24);
    m.extend_from_slice(&start.to_le_bytes());
    m.extend_from_slice(&len.to_le_bytes());
    m
}

/// Writes the chunk id into a message made by `task_*`.
pub(crate) fn set_id(msg: &mut [u8], id: u64) {
    msg[..8].copy_from_slice(&id.to_le_bytes());
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses a task message: `(id, entry, input)`.
pub(crate) fn parse_task(m: &[u8]) -> Result<(u64, i64, Input<'_>), String> {
    if m.len() < TASK_HEADER {
        return Err(format!("a task message of {} bytes is too short", m.len()));
    }
    let id = u64_at(m, 0);
    let entry = u64_at(m, 8) as i64;
    let input = match m[16] {
        KIND_ITEMS => Input::Items(&m[TASK_HEADER..]),
        KIND_PLAIN => Input::Plain(&m[TASK_HEADER..]),
        KIND_RANGE if m.len() == TASK_HEADER + 24 => {
            let mut s = [0u8; 16];
            s.copy_from_slice(&m[TASK_HEADER..TASK_HEADER + 16]);
            Input::Range {
                start: i128::from_le_bytes(s),
                len: u64_at(m, TASK_HEADER + 16),
            }
        }
        k => {
            return Err(format!(
                "a task message has an unknown kind {k} or a bad length"
            ));
        }
    };
    Ok((id, entry, input))
}

/// A chunk's outcome as a worker reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ChunkReply<'a> {
    pub(crate) id: u64,
    /// Wall time the worker rank spent on the chunk.
    pub(crate) ns: u64,
    pub(crate) items: u64,
    /// The chunk's values and failures (see `decode::write_results`), or
    /// why the whole chunk failed.
    pub(crate) out: Result<&'a [u8], String>,
}

/// A result message.
pub(crate) fn result(id: u64, ns: u64, items: u64, out: Result<&[u8], &str>) -> Vec<u8> {
    let body = match out {
        Ok(b) => b,
        Err(e) => e.as_bytes(),
    };
    let mut m = result_header(id, items, out.is_err(), body.len());
    set_result_ns(&mut m, ns);
    m.extend_from_slice(body);
    m
}

/// A result message's header (time 0), with room for `body` more bytes:
/// a worker encodes a chunk's results straight after it.
pub(crate) fn result_header(id: u64, items: u64, failed: bool, body: usize) -> Vec<u8> {
    let mut m = crate::buf::with_capacity(RESULT_HEADER + body);
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&0u64.to_le_bytes());
    m.extend_from_slice(&items.to_le_bytes());
    m.push(u8::from(failed));
    m
}

/// Writes the worker's time into a result message.
pub(crate) fn set_result_ns(m: &mut [u8], ns: u64) {
    m[8..16].copy_from_slice(&ns.to_le_bytes());
}

/// Parses a result message.
pub(crate) fn parse_result(m: &[u8]) -> Result<ChunkReply<'_>, String> {
    if m.len() < RESULT_HEADER {
        return Err(format!(
            "a result message of {} bytes is too short",
            m.len()
        ));
    }
    let body = &m[RESULT_HEADER..];
    let out = match m[24] {
        0 => Ok(body),
        1 => Err(String::from_utf8_lossy(body).into_owned()),
        s => return Err(format!("a result message has an unknown status {s}")),
    };
    Ok(ChunkReply {
        id: u64_at(m, 0),
        ns: u64_at(m, 8),
        items: u64_at(m, 16),
        out,
    })
}

/// What a worker says about itself once, before any result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hello {
    /// Its offset of `task::probe_fn` (the same executable has the same).
    pub(crate) probe: i64,
    /// Processes it runs chunks on (1: the rank itself).
    pub(crate) local: u32,
    pub(crate) pid: u32,
    pub(crate) host: String,
}

/// A hello message.
pub(crate) fn hello(h: &Hello) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + h.host.len());
    m.extend_from_slice(&h.probe.to_le_bytes());
    m.extend_from_slice(&h.local.to_le_bytes());
    m.extend_from_slice(&h.pid.to_le_bytes());
    m.extend_from_slice(h.host.as_bytes());
    m
}

/// Parses a hello message.
pub(crate) fn parse_hello(m: &[u8]) -> Result<Hello, String> {
    if m.len() < 16 {
        return Err(format!("a hello message of {} bytes is too short", m.len()));
    }
    let word = |at: usize| u32::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
    Ok(Hello {
        probe: u64_at(m, 0) as i64,
        local: word(8),
        pid: word(12),
        host: String::from_utf8_lossy(&m[16..]).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mproc_shm::codec::Postcard;

    #[test]
    fn task_round_trips() {
        let mut m = task_items(-42, b"abc");
        set_id(&mut m, 7);
        assert_eq!(parse_task(&m).unwrap(), (7, -42, Input::Items(b"abc")));
        let items = [1u64, 300, u64::MAX];
        let m = task_items_from::<Postcard, _>(3, &items[..]).unwrap();
        assert_eq!(
            m,
            task_items(3, &postcard::to_allocvec(&items[..]).unwrap())
        );
        let (it, k) = task_items_iter::<Postcard, u64>(3, 3, items.iter().copied());
        assert_eq!((it.unwrap(), k), (m.clone(), 3));
        // An iterator shorter than promised: the length is the real one.
        let (it, k) = task_items_iter::<Postcard, u64>(3, 200, items.iter().copied());
        assert_eq!((it.unwrap(), k), (m, 3));
        // Plain items: their bytes, as many as there are (at most `max`).
        let (m, k) = task_plain_iter(4, 5, &mut [1u8, 2, 3].into_iter()).unwrap();
        assert_eq!(k, 3);
        assert_eq!(
            parse_task(&m).unwrap(),
            (0, 4, Input::Plain(&[1, 2, 3][..]))
        );
        let mut long = 0..10_000u32;
        let (m, k) = task_plain_iter(4, 5000, &mut long).unwrap();
        assert_eq!((k, long.next()), (5000, Some(5000)));
        let (_, _, input) = parse_task(&m).unwrap();
        let bytes: Vec<u8> = (0..5000u32).flat_map(u32::to_ne_bytes).collect();
        assert_eq!(input, Input::Plain(&bytes[..]));
        assert!(task_plain_iter(4, 5, &mut ["x"].into_iter()).is_none());
        let m = task_range(5, -3, 10);
        assert_eq!(
            parse_task(&m).unwrap(),
            (0, 5, Input::Range { start: -3, len: 10 })
        );
    }

    #[test]
    fn items_in_other_codecs_follow_their_count() {
        use mproc_shm::codec::{Bytes, Pod};
        let m = task_items_from::<Pod, [u16; 2]>(1, &[[1, 2], [3, 4]]).unwrap();
        let mut want = vec![2u8];
        for x in [1u16, 2, 3, 4] {
            want.extend_from_slice(&x.to_ne_bytes());
        }
        assert_eq!(m, task_items(1, &want));
        // Fewer items than promised: the real count, the items intact.
        let v = [vec![9u8; 200], Vec::new()];
        let (it, k) = task_items_iter::<Bytes, Vec<u8>>(1, 300, v.iter());
        let mut want = postcard::to_allocvec(&2usize).unwrap();
        for x in &v {
            want.extend_from_slice(&(x.len() as u64).to_le_bytes());
            want.extend_from_slice(x);
        }
        assert_eq!((it.unwrap(), k), (task_items(1, &want), 2));
    }

    #[test]
    fn result_and_hello_round_trip() {
        let m = result(3, 100, 2, Ok(b"xy"));
        assert_eq!(
            parse_result(&m).unwrap(),
            ChunkReply {
                id: 3,
                ns: 100,
                items: 2,
                out: Ok(&b"xy"[..])
            }
        );
        let m = result(3, 100, 2, Err("boom"));
        assert_eq!(parse_result(&m).unwrap().out, Err("boom".to_string()));
        let h = Hello {
            probe: -9,
            local: 4,
            pid: 1234,
            host: "node1".into(),
        };
        assert_eq!(parse_hello(&hello(&h)).unwrap(), h);
    }

    #[test]
    fn bad_input_is_an_error() {
        for n in 0..TASK_HEADER {
            assert!(parse_task(&vec![0u8; n]).is_err());
        }
        let mut m = task_range(1, 2, 3);
        m.pop();
        assert!(parse_task(&m).is_err());
        let mut m = task_items(1, b"");
        m[16] = 9;
        assert!(parse_task(&m).is_err());
        assert!(parse_result(&[0u8; 24]).is_err());
        let mut m = result(1, 1, 1, Ok(b""));
        m[24] = 7;
        assert!(parse_result(&m).is_err());
        assert!(parse_hello(&[0u8; 15]).is_err());
    }
}
