//! Large message buffers, kept for reuse.
//!
//! A map of tiny items moves megabytes per chunk through rank 0: the task
//! messages it encodes and the result messages it receives. A fresh buffer
//! per message costs a page fault per 4 KiB page (the kernel clears each
//! one), and on rank 0 of a tiny map that was most of the time: the
//! allocator hands large blocks back to the kernel when they are freed,
//! all the more as they are allocated on one thread and freed on another.
//! So the messages' buffers come from here and go back here, and the pages
//! stay mapped.

use std::sync::Mutex;

use mproc_shm::local::lock;

/// Smaller buffers are not kept: the allocator serves them from memory it
/// keeps anyway.
const MIN: usize = 64 << 10;
/// At most this many spare buffers ...
const MAX_SPARES: usize = 16;
/// ... holding at most this many bytes in all (a window of chunks out, in
/// both directions, on a map of tiny items is a few MiB each).
const MAX_BYTES: usize = 64 << 20;

static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Takes the smallest spare of at least `cap` bytes of capacity.
fn spare(cap: usize) -> Option<Vec<u8>> {
    if cap < MIN {
        return None;
    }
    let mut s = lock(&SPARE);
    let i = (0..s.len())
        .filter(|&i| s[i].capacity() >= cap)
        .min_by_key(|&i| s[i].capacity())?;
    Some(s.swap_remove(i))
}

/// An empty buffer with room for `cap` bytes.
pub(crate) fn with_capacity(cap: usize) -> Vec<u8> {
    match spare(cap) {
        Some(mut b) => {
            b.clear();
            b
        }
        None => Vec::with_capacity(cap),
    }
}

/// A buffer of `len` bytes to receive into (what it holds beforehand is
/// unspecified).
pub(crate) fn with_len(len: usize) -> Vec<u8> {
    let mut b = spare(len).unwrap_or_default();
    // A spare keeps its length: only bytes past it are written here.
    if b.len() >= len {
        b.truncate(len);
    } else {
        b.resize(len, 0);
    }
    b
}

/// Gives a buffer back for reuse (or frees it, if it is small or enough
/// are kept).
pub(crate) fn recycle(b: Vec<u8>) {
    if b.capacity() < MIN {
        return;
    }
    let mut s = lock(&SPARE);
    let held: usize = s.iter().map(Vec::capacity).sum();
    if s.len() < MAX_SPARES && held + b.capacity() <= MAX_BYTES {
        s.push(b);
    }
}

/// Frees every spare (when the pool is done).
pub(crate) fn release() {
    let spares = std::mem::take(&mut *lock(&SPARE));
    drop(spares);
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the spares are process-wide.
    #[test]
    fn spares_are_reused_best_fit_and_bounded() {
        release();
        // Small buffers are not kept.
        recycle(Vec::with_capacity(MIN - 1));
        assert!(lock(&SPARE).is_empty());
        let mut a = with_capacity(MIN * 4);
        a.extend_from_slice(&[7; 100]);
        let pa = a.as_ptr();
        recycle(a);
        recycle(Vec::with_capacity(MIN * 2));
        // The smallest spare that fits, emptied.
        let b = with_capacity(MIN * 3);
        assert_eq!(b.as_ptr(), pa);
        assert!(b.is_empty());
        recycle(b);
        // A receive buffer has the length asked for, whatever the spare held.
        let r = with_len(MIN * 2 + 5);
        assert_eq!(r.len(), MIN * 2 + 5);
        assert!(r.capacity() >= MIN * 2 + 5);
        recycle(r);
        // Nothing fits: a new buffer.
        assert!(with_capacity(MIN * 8).capacity() >= MIN * 8);
        // Bounded in number and bytes.
        for _ in 0..2 * MAX_SPARES {
            recycle(Vec::with_capacity(MIN));
        }
        assert!(lock(&SPARE).len() <= MAX_SPARES);
        for _ in 0..4 {
            recycle(Vec::with_capacity(MAX_BYTES / 2));
        }
        assert!(lock(&SPARE).iter().map(Vec::capacity).sum::<usize>() <= MAX_BYTES);
        release();
        assert!(lock(&SPARE).is_empty());
    }
}
