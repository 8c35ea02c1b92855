//! Turning a map's input into encoded chunks, lazily: integer ranges travel
//! as their first item, vectors of plain numbers as bytes, anything else in
//! the pool's codec (items one after another), one chunk at a time.
//!
//! An input iterator that panics ends the input there: the chunk before the
//! panic is still cut, and the panic is kept
//! ([`Producer::take_panic`]) for the caller to resume once the results
//! before it were delivered.

use std::any::Any;
use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use std::marker::PhantomData;
use std::sync::Arc;

use mproc_shm::codec::Encode;

use crate::fast_path::{self, ByteSource, is_pod, pod_bytes};
use crate::task::{Data, Payload};
use crate::wire::Kind;

/// One chunk, or one item that could not be encoded.
pub(crate) enum Produced {
    Chunk {
        kind: Kind,
        count: usize,
        payload: Payload,
    },
    EncodeFailed(String),
}

/// A source of chunks.
pub(crate) trait Producer {
    /// The next chunk of at most `max` items, `None` when the input is done.
    fn next_chunk(&mut self, max: usize) -> Option<Produced>;
    /// How many items are left, if known.
    fn remaining(&self) -> Option<usize>;
    /// Whether items cost nothing to ship, however many a chunk holds.
    fn free(&self) -> bool {
        false
    }
    /// The panic of the input iterator, which ended the input (once).
    fn take_panic(&mut self) -> Option<Box<dyn Any + Send>> {
        None
    }
}

/// Picks the fastest producer for `input`, whose items (unless plain
/// numbers or an integer range) are encoded with `C`.
pub(crate) fn producer<'a, C, A, I>(input: I) -> Box<dyn Producer + 'a>
where
    C: Encode<A>,
    A: 'a,
    I: IntoIterator<Item = A> + 'a,
{
    let input = match fast_path::as_int_range(input) {
        Ok(r) => {
            return Box::new(RangeProducer {
                start: r.start,
                left: r.len,
            });
        }
        Err(i) => i,
    };
    let input = match fast_path::as_pod_vec::<I, A>(input) {
        Ok((src, elem, len)) => {
            return Box::new(PodProducer {
                src,
                elem,
                len,
                pos: 0,
            });
        }
        Err(i) => i,
    };
    Box::new(IterProducer::<C, _> {
        it: input.into_iter(),
        pod: is_pod::<A>(),
        deferred: None,
        panicked: false,
        panic: None,
        codec: PhantomData,
    })
}

/// The `Ok` items of an input of `Result`s, up to its first `Err`, which
/// ends it and is kept in `error` (for [`TryImap`](crate::TryImap)).
pub(crate) struct UntilErr<I, E> {
    pub(crate) it: I,
    pub(crate) error: Rc<RefCell<Option<E>>>,
    pub(crate) failed: bool,
}

impl<I, A, E> Iterator for UntilErr<I, E>
where
    I: Iterator<Item = Result<A, E>>,
{
    type Item = A;

    fn next(&mut self) -> Option<A> {
        if self.failed {
            return None;
        }
        match self.it.next()? {
            Ok(a) => Some(a),
            Err(e) => {
                self.failed = true;
                *self.error.borrow_mut() = Some(e);
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self.failed {
            true => (0, Some(0)),
            // Any item may be the error.
            false => (0, self.it.size_hint().1),
        }
    }
}

struct RangeProducer {
    start: i128,
    left: u128,
}

impl Producer for RangeProducer {
    fn next_chunk(&mut self, max: usize) -> Option<Produced> {
        if self.left == 0 {
            return None;
        }
        let n = (max as u128).min(self.left) as usize;
        let start = self.start;
        self.start = self.start.wrapping_add(n as i128);
        self.left -= n as u128;
        let bytes = postcard::to_stdvec(&start).unwrap_or_default();
        Some(Produced::Chunk {
            kind: Kind::Range,
            count: n,
            payload: Payload {
                bytes: Data::Owned(bytes),
                fds: Vec::new(),
                offsets: Vec::new(),
                elem: 0,
                start,
            },
        })
    }

    fn remaining(&self) -> Option<usize> {
        usize::try_from(self.left).ok()
    }

    fn free(&self) -> bool {
        true
    }
}

/// A `Vec` of plain numbers: chunks are ranges of its bytes, not copies.
struct PodProducer {
    src: Arc<dyn ByteSource>,
    elem: usize,
    len: usize,
    pos: usize,
}

impl Producer for PodProducer {
    fn next_chunk(&mut self, max: usize) -> Option<Produced> {
        if self.pos >= self.len {
            return None;
        }
        let end = self.pos.saturating_add(max).min(self.len);
        let count = end - self.pos;
        let bytes = Data::Shared {
            src: self.src.clone(),
            start: self.pos * self.elem,
            end: end * self.elem,
        };
        self.pos = end;
        Some(Produced::Chunk {
            kind: Kind::Pod,
            count,
            payload: Payload {
                bytes,
                fds: Vec::new(),
                offsets: Vec::new(),
                elem: self.elem,
                start: 0,
            },
        })
    }

    fn remaining(&self) -> Option<usize> {
        Some(self.len - self.pos)
    }
}

struct IterProducer<C, I> {
    it: I,
    pod: bool,
    /// An item that failed to encode after the chunk before it was cut.
    deferred: Option<String>,
    /// The iterator panicked: it is not asked again.
    panicked: bool,
    /// Its panic, until the caller takes it.
    panic: Option<Box<dyn Any + Send>>,
    /// How items are encoded.
    codec: PhantomData<fn() -> C>,
}

impl<C, I: Iterator> IterProducer<C, I> {
    /// The next item; `None` at the end, or once the iterator panicked (the
    /// panic is kept: it must not cross `collect_fds`, whose caller would
    /// miss it, nor lose the chunk before it).
    fn pull(&mut self) -> Option<I::Item> {
        if self.panicked {
            return None;
        }
        let it = &mut self.it;
        match catch_unwind(AssertUnwindSafe(|| it.next())) {
            Ok(item) => item,
            Err(p) => {
                self.panicked = true;
                self.panic = Some(p);
                None
            }
        }
    }
}

impl<C, I> Producer for IterProducer<C, I>
where
    I: Iterator,
    C: Encode<I::Item>,
{
    fn next_chunk(&mut self, max: usize) -> Option<Produced> {
        if let Some(m) = self.deferred.take() {
            return Some(Produced::EncodeFailed(m));
        }
        if self.pod {
            let mut items: Vec<I::Item> = Vec::with_capacity(max.min(1 << 16));
            items.extend(std::iter::from_fn(|| self.pull()).take(max));
            if items.is_empty() {
                return None;
            }
            // SAFETY: `pod` is set only when the item type is a plain number.
            let bytes = unsafe { pod_bytes(&items) }.to_vec();
            let count = items.len();
            return Some(Produced::Chunk {
                kind: Kind::Pod,
                count,
                payload: Payload {
                    bytes: Data::Owned(bytes),
                    fds: Vec::new(),
                    offsets: Vec::new(),
                    elem: size_of::<I::Item>(),
                    start: 0,
                },
            });
        }
        let mut bytes = Vec::new();
        let mut offsets = vec![0];
        let mut failed = None;
        let (_, fds): ((), Vec<OwnedFd>) = mproc_shm::handle::collect_fds(|| {
            while offsets.len() <= max {
                let Some(item) = self.pull() else { break };
                // On an error `bytes` is left as it was.
                if let Err(e) = C::encode_item(&item, &mut bytes) {
                    failed = Some(format!("the task's argument: {e}"));
                    break;
                }
                offsets.push(bytes.len());
            }
        });
        let count = offsets.len() - 1;
        if count == 0 {
            return failed.map(Produced::EncodeFailed);
        }
        // The chunk ends before a bad item, which is reported next call.
        // (Descriptors its partial encoding added stay in the chunk's table,
        // unused, and are closed with it.)
        self.deferred = failed;
        Some(Produced::Chunk {
            kind: Kind::Seq,
            count,
            payload: Payload {
                bytes: Data::Owned(bytes),
                fds,
                offsets,
                elem: 0,
                start: 0,
            },
        })
    }

    fn remaining(&self) -> Option<usize> {
        if self.panicked {
            return Some(0);
        }
        match self.it.size_hint() {
            (lo, Some(hi)) if lo == hi => Some(lo),
            _ => None,
        }
    }

    fn take_panic(&mut self) -> Option<Box<dyn Any + Send>> {
        self.panic.take()
    }
}

#[cfg(test)]
mod tests;
