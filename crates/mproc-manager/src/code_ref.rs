//! Functions by reference, for server-side updates.
//!
//! The client sends the offset of a [`Desc`] (a constant of the executable
//! describing one monomorphized update function) from the anchor of
//! [`mproc_fnref`], and the server calls it only if
//!
//! * both sides run the same executable file (checked once per connection,
//!   [`exe_token`]: device, inode, size and modification time), and
//! * [`Desc::resolve`] recognises the offset as a descriptor of an
//!   [`ApplyFn`] inside this executable's loaded image.
//!
//! A request with any other offset gets an error reply. Descriptors are
//! constants in the image: a client cannot plant one (requests land on the
//! heap, outside every segment checked).

use std::marker::PhantomData;

use mproc_fnref::Desc;
use mproc_shm::codec::{Codec, Encode};

use crate::proto::ExeWire;
use crate::repr::NamespaceCodec;

/// What a server-side update function does: given the encoded value and the
/// encoded argument, update the value in place and return the encoded result.
pub(crate) type ApplyFn = fn(&mut Vec<u8>, &[u8]) -> Result<Vec<u8>, String>;

/// One monomorphized update: `F` updating a `V` with an `A` and returning
/// an `R`, all three encoded with the codec `C`. Its descriptors are what a
/// client sends; its functions are what the server runs.
pub(crate) struct Update<F, C, V, A, R>(PhantomData<fn(F, V, A) -> R>, PhantomData<C>);

/// A namespace field's update: as [`ApplyFn`], also returning the updated
/// value's repr (see `repr`), which the server keeps for `str(ns)`.
pub(crate) type ReprApplyFn = fn(&mut Vec<u8>, &[u8]) -> Result<(Vec<u8>, String), String>;

impl<F, C, V, A, R> Update<F, C, V, A, R>
where
    F: Fn(&mut V, A) -> R + Copy + Send + 'static,
    C: Codec<V> + Codec<A> + Encode<R>,
{
    const DESC: Desc<ApplyFn> = Desc::new(Self::apply);

    /// The offset of the descriptor of `F` updating a `V` with an `A`.
    pub(crate) fn offset(_f: F) -> i64 {
        let d: &'static Desc<ApplyFn> = &Self::DESC;
        d.offset()
    }

    /// Runs `F` on the decoded value and argument (in the server); the
    /// updated value replaces `value`'s bytes.
    fn apply(value: &mut Vec<u8>, arg: &[u8]) -> Result<Vec<u8>, String> {
        Self::apply_then(value, arg, |_, _| ()).map(|(out, ())| out)
    }

    /// [`Update::apply`], also handing the updated value and its encoding
    /// to `then`.
    fn apply_then<T>(
        value: &mut Vec<u8>,
        arg: &[u8],
        then: impl FnOnce(&V, &[u8]) -> T,
    ) -> Result<(Vec<u8>, T), String> {
        mproc_fnref::assert_zst::<F>();
        let mut v: V = C::decode(value)
            .map_err(|e| format!("the stored value does not decode as the function's type: {e}"))?;
        let a: A = C::decode(arg).map_err(|e| format!("the argument does not decode: {e}"))?;
        // SAFETY: `F` is zero-sized (checked at compile time above), so it has no
        // bytes and its one value is what the client had; it is `Copy`, so making
        // a copy out of nothing duplicates nothing that could be owned.
        let f: F = unsafe { std::mem::zeroed() };
        let r = f(&mut v, a);
        let mut out = Vec::new();
        C::encode(&r, &mut out).map_err(|e| format!("the result does not encode: {e}"))?;
        let mut updated = Vec::new();
        C::encode(&v, &mut updated)
            .map_err(|e| format!("the updated value does not encode: {e}"))?;
        let t = then(&v, &updated);
        *value = updated;
        Ok((out, t))
    }
}

impl<F, C, V, A, R> Update<F, C, V, A, R>
where
    F: Fn(&mut V, A) -> R + Copy + Send + 'static,
    C: NamespaceCodec<V> + Codec<V> + Codec<A> + Encode<R>,
{
    /// The same update for a namespace field (see [`ReprApplyFn`]).
    const REPR_DESC: Desc<ReprApplyFn> = Desc::new(Self::apply_repr);

    /// The offset of the descriptor of `F` updating a namespace field `V`.
    pub(crate) fn repr_offset(_f: F) -> i64 {
        let d: &'static Desc<ReprApplyFn> = &Self::REPR_DESC;
        d.offset()
    }

    fn apply_repr(value: &mut Vec<u8>, arg: &[u8]) -> Result<(Vec<u8>, String), String> {
        Self::apply_then(value, arg, C::repr)
    }
}

/// The update function whose descriptor lies at `offset`, if it is one.
pub(crate) fn resolve(offset: i64) -> Option<ApplyFn> {
    Desc::<ApplyFn>::resolve(offset).ok()
}

/// The namespace update function whose descriptor lies at `offset`.
pub(crate) fn resolve_repr(offset: i64) -> Option<ReprApplyFn> {
    Desc::<ReprApplyFn>::resolve(offset).ok()
}

/// A list sort: given the encoded items and `reverse`, the order to put
/// them in (a permutation of their indices; stable, as Python's sort).
pub(crate) type SortFn = fn(&[&[u8]], bool) -> Result<Vec<usize>, String>;

/// Sorts `T`s (encoded with `C`) by `F`'s key (`F` is `()`-like for a
/// plain sort, see [`sort_offset`]).
struct SortTramp<F, C, T, K>(PhantomData<fn(F, C, T) -> K>);

impl<F, C, T, K> SortTramp<F, C, T, K>
where
    F: Fn(&T) -> K + Copy + Send + 'static,
    C: Codec<T>,
    K: Ord,
{
    const DESC: Desc<SortFn> = Desc::new(sort_by_key::<F, C, T, K>);
}

fn sort_by_key<F, C, T, K>(items: &[&[u8]], reverse: bool) -> Result<Vec<usize>, String>
where
    F: Fn(&T) -> K + Copy + Send + 'static,
    C: Codec<T>,
    K: Ord,
{
    mproc_fnref::assert_zst::<F>();
    // SAFETY: as in `Update::apply`: `F` is zero-sized and `Copy`.
    let f: F = unsafe { std::mem::zeroed() };
    let keys = decode_all::<C, T>(items)?;
    Ok(order(&keys.iter().map(f).collect::<Vec<K>>(), reverse))
}

fn decode_all<C: Codec<T>, T>(items: &[&[u8]]) -> Result<Vec<T>, String> {
    items
        .iter()
        .map(|b| {
            C::decode(b).map_err(|e| format!("an item does not decode as the sort's type: {e}"))
        })
        .collect()
}

/// The stable order of `keys`, ascending or (with `reverse`) descending.
fn order<K: Ord>(keys: &[K], reverse: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    // Stable both ways: `reverse` keeps equal items in their order, as
    // Python's `sort(reverse=True)` does.
    if reverse {
        order.sort_by(|&a, &b| keys[b].cmp(&keys[a]));
    } else {
        order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    }
    order
}

/// Sorts `T`s (encoded with `C`) by their own order.
struct PlainSortTramp<C, T>(PhantomData<fn(C) -> T>);

impl<C: Codec<T>, T: Ord> PlainSortTramp<C, T> {
    const DESC: Desc<SortFn> = Desc::new(sort_plain::<C, T>);
}

fn sort_plain<C: Codec<T>, T: Ord>(items: &[&[u8]], reverse: bool) -> Result<Vec<usize>, String> {
    Ok(order(&decode_all::<C, T>(items)?, reverse))
}

/// The offset of the descriptor of a plain sort of `T`s.
pub(crate) fn plain_sort_offset<C: Codec<T>, T: Ord>() -> i64 {
    let d: &'static Desc<SortFn> = &PlainSortTramp::<C, T>::DESC;
    d.offset()
}

/// The offset of the descriptor of a sort of `T`s by the key `F`.
pub(crate) fn sort_offset<F, C, T, K>(_f: F) -> i64
where
    F: Fn(&T) -> K + Copy + Send + 'static,
    C: Codec<T>,
    K: Ord,
{
    let d: &'static Desc<SortFn> = &SortTramp::<F, C, T, K>::DESC;
    d.offset()
}

/// The sort function whose descriptor lies at `offset`, if it is one.
pub(crate) fn resolve_sort(offset: i64) -> Option<SortFn> {
    Desc::<SortFn>::resolve(offset).ok()
}

/// Identifies this process's executable file.
pub(crate) fn exe_token() -> Option<ExeWire> {
    mproc_fnref::exe_id().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mproc_shm::codec::Postcard;

    #[test]
    fn offsets_resolve_and_garbage_does_not() {
        let off = Update::<_, Postcard, _, _, _>::offset(|v: &mut u64, n: u64| {
            *v += n;
            *v
        });
        let f = resolve(off).expect("a genuine descriptor resolves");
        let mut v = postcard::to_stdvec(&40u64).unwrap();
        let r = f(&mut v, &postcard::to_stdvec(&2u64).unwrap()).unwrap();
        assert_eq!(postcard::from_bytes::<u64>(&r).unwrap(), 42);
        assert_eq!(postcard::from_bytes::<u64>(&v).unwrap(), 42);
        for bad in [
            0i64,
            1,
            8,
            -8,
            off + 8,
            off - 16,
            i64::MAX,
            i64::MIN,
            1 << 40,
        ] {
            assert!(resolve(bad).is_none(), "offset {bad} resolved");
        }
    }
}
