//! Functions by reference, for server-side updates.
//!
//! mproc-process sends a child the function to run as the distance of a
//! monomorphized entry point from a fixed anchor; the child runs the same
//! executable, so the distance holds under ASLR. Server-side updates reuse
//! the idea, with one more safeguard, because here the offset arrives from a
//! socket: the client does not send the distance of a *function* but of a
//! static *descriptor* (`Desc`: two magic words, then the function pointer),
//! and the server calls it only if
//!
//! * both sides run the same executable file (checked once per connection,
//!   [`exe_token`]: device, inode, size and modification time),
//! * the descriptor lies wholly inside a loaded segment of this executable
//!   and is aligned (so reading it cannot fault),
//! * it starts with the magic words, and
//! * the function pointer it holds points into an executable segment of this
//!   executable.
//!
//! A request with any other offset gets an error reply. Descriptors are
//! constants in the image: a client cannot plant one (requests land on the
//! heap, outside every segment checked).

use std::marker::PhantomData;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::proto::ExeWire;
use crate::sys;

/// What a server-side update function does: given the encoded value and the
/// encoded argument, update the value in place and return the encoded result.
pub(crate) type ApplyFn = fn(&mut Vec<u8>, &[u8]) -> Result<Vec<u8>, String>;

const MAGIC: [u64; 2] = [0x6d70_726f_632d_6d67, 0x7570_6461_7465_2d31];

/// A descriptor of an update function, a constant in the executable.
#[repr(C)]
pub(crate) struct Desc {
    magic: [u64; 2],
    call: ApplyFn,
}

/// The byte offset of `Desc::call`.
const CALL_OFFSET: usize = std::mem::offset_of!(Desc, call);

/// Compile-time check that `F` has no bytes (nothing captured).
struct AssertZst<F>(PhantomData<F>);

impl<F> AssertZst<F> {
    const OK: () = assert!(
        size_of::<F>() == 0,
        "mproc-manager: a server-side update runs a `fn` item or a non-capturing closure; \
         pass data through the `arg` parameter instead of capturing it"
    );
}

/// Carries the descriptor of one monomorphized update.
struct Tramp<F, V, A, R>(PhantomData<fn(F, V, A) -> R>);

impl<F, V, A, R> Tramp<F, V, A, R>
where
    F: Fn(&mut V, A) -> R + Copy + Send + 'static,
    V: Serialize + DeserializeOwned,
    A: DeserializeOwned,
    R: Serialize,
{
    const DESC: Desc = Desc {
        magic: MAGIC,
        call: apply::<F, V, A, R>,
    };
}

/// Runs `F` on the decoded value and argument (in the server).
fn apply<F, V, A, R>(value: &mut Vec<u8>, arg: &[u8]) -> Result<Vec<u8>, String>
where
    F: Fn(&mut V, A) -> R + Copy + Send + 'static,
    V: Serialize + DeserializeOwned,
    A: DeserializeOwned,
    R: Serialize,
{
    let () = AssertZst::<F>::OK;
    let mut v: V = postcard::from_bytes(value)
        .map_err(|e| format!("the stored value does not decode as the function's type: {e}"))?;
    let a: A =
        postcard::from_bytes(arg).map_err(|e| format!("the argument does not decode: {e}"))?;
    // SAFETY: `F` is zero-sized (checked at compile time above), so it has no
    // bytes and its one value is what the client had; it is `Copy`, so making
    // a copy out of nothing duplicates nothing that could be owned.
    let f: F = unsafe { std::mem::zeroed() };
    let r = f(&mut v, a);
    let out = postcard::to_stdvec(&r).map_err(|e| format!("the result does not encode: {e}"))?;
    *value =
        postcard::to_stdvec(&v).map_err(|e| format!("the updated value does not encode: {e}"))?;
    Ok(out)
}

/// The fixed point offsets are measured from.
#[inline(never)]
fn anchor() -> u32 {
    // A distinctive body, so that no other function is folded into this one.
    std::hint::black_box(0x6d67_7231)
}

fn anchor_addr() -> usize {
    anchor as fn() -> u32 as usize
}

/// The offset of the descriptor of `F` updating a `V` with an `A`.
pub(crate) fn offset_of<F, V, A, R>(_f: F) -> i64
where
    F: Fn(&mut V, A) -> R + Copy + Send + 'static,
    V: Serialize + DeserializeOwned,
    A: DeserializeOwned,
    R: Serialize,
{
    let d: &'static Desc = &Tramp::<F, V, A, R>::DESC;
    (d as *const Desc as usize as i64).wrapping_sub(anchor_addr() as i64)
}

/// One loaded segment of this executable: `[start, end)`, executable or not.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Range {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) exec: bool,
}

fn image() -> &'static [Range] {
    static IMAGE: OnceLock<Vec<Range>> = OnceLock::new();
    IMAGE.get_or_init(|| sys::image_segments(anchor_addr()))
}

fn inside(addr: usize, len: usize, exec: bool) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    image()
        .iter()
        .any(|r| addr >= r.start && end <= r.end && (r.exec || !exec))
}

/// The update function whose descriptor lies at `offset`, if it is one.
pub(crate) fn resolve(offset: i64) -> Option<ApplyFn> {
    let addr = (anchor_addr() as i64).wrapping_add(offset) as usize;
    if addr % align_of::<Desc>() != 0 || !inside(addr, size_of::<Desc>(), false) {
        return None;
    }
    // SAFETY: `addr` is aligned and `[addr, addr + size_of::<Desc>())` lies
    // inside a loaded (mapped, readable, initialised) segment of this
    // executable, checked just above; plain integers have no invalid values.
    let magic = unsafe { std::ptr::read_volatile(addr as *const [u64; 2]) };
    if magic != MAGIC {
        return None;
    }
    // SAFETY: as above; the word at CALL_OFFSET is inside the same range and
    // read as a plain integer, which every bit pattern is.
    let call = unsafe { std::ptr::read_volatile((addr + CALL_OFFSET) as *const usize) };
    if !inside(call, 1, true) {
        return None;
    }
    // The descriptor carries the magic words and points into this executable's
    // code (same executable as the client, checked per connection).
    // SAFETY: so it is one of the `Tramp::DESC` constants, whose `call` field
    // is an `ApplyFn`.
    Some(unsafe { std::mem::transmute::<usize, ApplyFn>(call) })
}

/// Identifies this process's executable file.
pub(crate) fn exe_token() -> Option<ExeWire> {
    static EXE: OnceLock<Option<ExeWire>> = OnceLock::new();
    *EXE.get_or_init(|| sys::exe_id().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_resolve_and_garbage_does_not() {
        let off = offset_of(|v: &mut u64, n: u64| {
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
