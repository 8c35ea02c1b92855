//! A buffer lent to MPI for a request's `'static` scope (rsmpi's
//! `StaticScope`): a `Vec` taken apart into its raw parts while a request
//! may read or write it, and put together again once the request completed
//! (or was cancelled and waited for). Task sends (`sched::Sending`) and the
//! receives kept posted (`posted::Posted`) lend their buffers this way.

use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// A lent buffer. It has no `Drop`: one still lent when its owner goes
/// away is leaked, never freed under a request.
pub(crate) struct Lent {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

impl Lent {
    pub(crate) fn new(v: Vec<u8>) -> Self {
        let mut v = ManuallyDrop::new(v);
        Self {
            // A Vec's pointer is never null (dangling when it has no room).
            ptr: NonNull::new(v.as_mut_ptr()).expect("a Vec's pointer is not null"),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// The bytes, for a request to read (a send) or for the owner to read
    /// after a receive completed.
    ///
    /// # Safety
    /// While the slice is used, no request writes the buffer and no
    /// [`bytes_mut`](Self::bytes_mut) slice of it is alive; it is not used
    /// after [`take_back`](Self::take_back).
    pub(crate) unsafe fn bytes(&self) -> &'static [u8] {
        // SAFETY: the parts are a Vec's first `len` initialised bytes, still
        // allocated (not taken back: caller), and nothing writes them (caller).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, for a request to write (a receive).
    ///
    /// # Safety
    /// No other slice of the buffer is alive while the returned one is, and
    /// it is not used after [`take_back`](Self::take_back).
    pub(crate) unsafe fn bytes_mut(&mut self) -> &'static mut [u8] {
        // SAFETY: as in `bytes`, and the caller gives this slice sole access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The `Vec` again; the `Lent` is left empty (a second call gives an
    /// empty `Vec`).
    ///
    /// # Safety
    /// No request uses the buffer any more, and no slice of it is alive.
    pub(crate) unsafe fn take_back(&mut self) -> Vec<u8> {
        let empty = Self::new(Vec::new());
        let me = std::mem::replace(self, empty);
        // SAFETY: the parts are a Vec's, taken apart in `new` and put
        // together once (this `Lent` now holds an empty Vec's); the caller
        // says nothing uses them.
        unsafe { Vec::from_raw_parts(me.ptr.as_ptr(), me.len, me.cap) }
    }
}

// SAFETY: a `Lent` owns its bytes like the `Vec` it came from (which is
// `Send`); its owner moves it between threads only with its request.
unsafe impl Send for Lent {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lent_vec_comes_back_whole_once() {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"abc");
        let mut l = Lent::new(v);
        // SAFETY: nothing else uses the buffer in this test.
        unsafe { l.bytes_mut()[0] = b'x' };
        // SAFETY: as above.
        assert_eq!(unsafe { l.bytes() }, b"xbc");
        // SAFETY: as above.
        let back = unsafe { l.take_back() };
        assert_eq!((&back[..], back.capacity() >= 64), (&b"xbc"[..], true));
        // SAFETY: as above.
        assert!(unsafe { l.take_back() }.is_empty());
    }
}
