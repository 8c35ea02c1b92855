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
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proto::ExeWire;

/// What a server-side update function does: given the encoded value and the
/// encoded argument, update the value in place and return the encoded result.
pub(crate) type ApplyFn = fn(&mut Vec<u8>, &[u8]) -> Result<Vec<u8>, String>;

/// One monomorphized update: `F` updating a `V` with an `A` and returning
/// an `R`. Its descriptors are what a client sends; its functions are what
/// the server runs.
pub(crate) struct Update<F, V, A, R>(PhantomData<fn(F, V, A) -> R>);

/// A namespace field's update: as [`ApplyFn`], also returning the updated
/// value's repr (see `repr`), which the server keeps for `str(ns)`.
pub(crate) type ReprApplyFn = fn(&mut Vec<u8>, &[u8]) -> Result<(Vec<u8>, String), String>;

impl<F, V, A, R> Update<F, V, A, R>
where
    F: Fn(&mut V, A) -> R + Copy + Send + 'static,
    V: Serialize + DeserializeOwned,
    A: DeserializeOwned,
    R: Serialize,
{
    const DESC: Desc<ApplyFn> = Desc::new(Self::apply);
    /// The same update for a namespace field (see [`ReprApplyFn`]).
    const REPR_DESC: Desc<ReprApplyFn> = Desc::new(Self::apply_repr);

    /// The offset of the descriptor of `F` updating a `V` with an `A`.
    pub(crate) fn offset(_f: F) -> i64 {
        let d: &'static Desc<ApplyFn> = &Self::DESC;
        d.offset()
    }

    /// The offset of the descriptor of `F` updating a namespace field `V`.
    pub(crate) fn repr_offset(_f: F) -> i64 {
        let d: &'static Desc<ReprApplyFn> = &Self::REPR_DESC;
        d.offset()
    }

    /// Runs `F` on the decoded value and argument (in the server).
    fn apply(value: &mut Vec<u8>, arg: &[u8]) -> Result<Vec<u8>, String> {
        mproc_fnref::assert_zst::<F>();
        let mut v: V = postcard::from_bytes(value)
            .map_err(|e| format!("the stored value does not decode as the function's type: {e}"))?;
        let a: A =
            postcard::from_bytes(arg).map_err(|e| format!("the argument does not decode: {e}"))?;
        // SAFETY: `F` is zero-sized (checked at compile time above), so it has no
        // bytes and its one value is what the client had; it is `Copy`, so making
        // a copy out of nothing duplicates nothing that could be owned.
        let f: F = unsafe { std::mem::zeroed() };
        let r = f(&mut v, a);
        let out =
            postcard::to_stdvec(&r).map_err(|e| format!("the result does not encode: {e}"))?;
        *value = postcard::to_stdvec(&v)
            .map_err(|e| format!("the updated value does not encode: {e}"))?;
        Ok(out)
    }

    fn apply_repr(value: &mut Vec<u8>, arg: &[u8]) -> Result<(Vec<u8>, String), String> {
        let out = Self::apply(value, arg)?;
        let v: V = postcard::from_bytes(value).map_err(|e| e.to_string())?;
        Ok((out, crate::repr::repr(&v)))
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

/// Sorts by `F`'s key (`F` is `()`-like for a plain sort, see [`sort_offset`]).
struct SortTramp<F, T, K>(PhantomData<fn(F, T) -> K>);

impl<F, T, K> SortTramp<F, T, K>
where
    F: Fn(&T) -> K + Copy + Send + 'static,
    T: DeserializeOwned,
    K: Ord,
{
    const DESC: Desc<SortFn> = Desc::new(sort_by_key::<F, T, K>);
}

fn sort_by_key<F, T, K>(items: &[&[u8]], reverse: bool) -> Result<Vec<usize>, String>
where
    F: Fn(&T) -> K + Copy + Send + 'static,
    T: DeserializeOwned,
    K: Ord,
{
    mproc_fnref::assert_zst::<F>();
    // SAFETY: as in `Update::apply`: `F` is zero-sized and `Copy`.
    let f: F = unsafe { std::mem::zeroed() };
    let keys = decode_all::<T>(items)?;
    Ok(order(&keys.iter().map(f).collect::<Vec<K>>(), reverse))
}

fn decode_all<T: DeserializeOwned>(items: &[&[u8]]) -> Result<Vec<T>, String> {
    items
        .iter()
        .map(|b| {
            postcard::from_bytes::<T>(b)
                .map_err(|e| format!("an item does not decode as the sort's type: {e}"))
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

/// Sorts `T`s by their own order.
struct PlainSortTramp<T>(PhantomData<fn() -> T>);

impl<T: DeserializeOwned + Ord> PlainSortTramp<T> {
    const DESC: Desc<SortFn> = Desc::new(sort_plain::<T>);
}

fn sort_plain<T: DeserializeOwned + Ord>(
    items: &[&[u8]],
    reverse: bool,
) -> Result<Vec<usize>, String> {
    Ok(order(&decode_all::<T>(items)?, reverse))
}

/// The offset of the descriptor of a plain sort of `T`s.
pub(crate) fn plain_sort_offset<T: DeserializeOwned + Ord>() -> i64 {
    let d: &'static Desc<SortFn> = &PlainSortTramp::<T>::DESC;
    d.offset()
}

/// The offset of the descriptor of a sort of `T`s by the key `F`.
pub(crate) fn sort_offset<F, T, K>(_f: F) -> i64
where
    F: Fn(&T) -> K + Copy + Send + 'static,
    T: DeserializeOwned,
    K: Ord,
{
    let d: &'static Desc<SortFn> = &SortTramp::<F, T, K>::DESC;
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

    #[test]
    fn offsets_resolve_and_garbage_does_not() {
        let off = Update::offset(|v: &mut u64, n: u64| {
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
