//! Copies to and from memory that another thread or process may be writing
//! at the same time.
//!
//! A plain `memcpy` racing with a write is a data race, undefined behaviour
//! in Rust's memory model even where the hardware would only tear the data.
//! These copies use relaxed atomic loads and stores instead, which may race:
//! the result can mix old and new data, but it is never UB.
//!
//! Two granularities serve two kinds of memory:
//!
//! * [`load_bytes`] / [`store_bytes`] touch exactly the bytes asked for. Bytes
//!   at the ends that do not fill an aligned machine word are copied one
//!   atomic byte at a time, the aligned words between them one atomic word at
//!   a time. This is the copy for raw segments, whose neighbouring bytes may
//!   belong to someone else (a lock word, another process's slot). It is the
//!   "byte-wise atomic memcpy" of the C++ proposal P1478: each byte is read
//!   or written atomically, wider accesses are an optimisation.
//! * [`load_words`] / [`store_words`] access whole aligned machine words
//!   only: a word only partly inside the range is read whole and, on a store,
//!   updated with a compare-and-swap that leaves the other bytes as they are.
//!   Every access to a location is then of the same size, and an element no
//!   wider than a word is never torn. This is the copy for the elements of
//!   `RawArray` and `RawValue`, whose memory nobody touches any other way.
//!
//! # Memory-model note
//! Rust's model (that of C++20) gives no meaning to racing atomic accesses of
//! different sizes to the same bytes when one of them is a write (Miri
//! reports them). The word copies never mix sizes among themselves. The byte
//! copies do when two of them race on a word that one covers whole and the
//! other only in part; P1478 defines that case and every supported CPU
//! performs it as expected, but strictly it lies outside the model, so the
//! copies of `Segment` say so. Data that must never tear belongs under a
//! lock, where plain copies are allowed and fastest.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The width of the atomic words used.
const WORD: usize = std::mem::size_of::<usize>();

/// How many bytes before `addr` start the aligned word containing it.
fn misalignment(addr: *const u8) -> usize {
    addr.addr() % WORD
}

/// The atomic word at `p`.
///
/// # Safety
/// `p` is aligned for `usize` and valid for reads of a word; every racing
/// access to the word is atomic.
unsafe fn word_at<'a>(p: *const u8) -> &'a AtomicUsize {
    // SAFETY: alignment and validity are the caller's promise; `AtomicUsize`
    // has the size and alignment of `usize` and any bits are a valid value.
    unsafe { AtomicUsize::from_ptr(p.cast_mut().cast::<usize>()) }
}

/// The atomic byte at `p`.
///
/// # Safety
/// `p` is valid for reads (and writes, if stored to); racing accesses are atomic.
unsafe fn byte_at<'a>(p: *const u8) -> &'a AtomicU8 {
    // SAFETY: the caller's promise; a byte is always aligned.
    unsafe { AtomicU8::from_ptr(p.cast_mut()) }
}

/// Copies `dst.len()` bytes from `src` with relaxed atomic loads, touching
/// only those bytes.
///
/// # Safety
/// `src` is valid for reads of `dst.len()` bytes, and every access that may
/// race with this copy is atomic.
pub(crate) unsafe fn load_bytes(src: *const u8, dst: &mut [u8]) {
    let (_, head, body) = split(src, dst.len());
    for (i, d) in dst[..head].iter_mut().enumerate() {
        // Relaxed: a copy orders nothing; the caller synchronises if it must.
        // SAFETY: `i < head`, inside the range the caller vouched for.
        *d = unsafe { byte_at(src.add(i)) }.load(Ordering::Relaxed);
    }
    for (k, d) in dst[head..head + body].chunks_exact_mut(WORD).enumerate() {
        // SAFETY: `src + head` is word-aligned and the word ends inside the range.
        let w = unsafe { word_at(src.add(head + k * WORD)) }.load(Ordering::Relaxed);
        d.copy_from_slice(&w.to_ne_bytes());
    }
    for (i, d) in dst.iter_mut().enumerate().skip(head + body) {
        // SAFETY: `i < dst.len()`.
        *d = unsafe { byte_at(src.add(i)) }.load(Ordering::Relaxed);
    }
}

/// Copies `src` to `dst` with relaxed atomic stores, touching only those bytes.
///
/// # Safety
/// `dst` is valid for writes of `src.len()` bytes, and every access that may
/// race with this copy is atomic.
pub(crate) unsafe fn store_bytes(dst: *mut u8, src: &[u8]) {
    let (_, head, body) = split(dst, src.len());
    for (i, &s) in src[..head].iter().enumerate() {
        // SAFETY: `i < head`, inside the range the caller vouched for.
        unsafe { byte_at(dst.add(i)) }.store(s, Ordering::Relaxed);
    }
    for (k, s) in src[head..head + body].chunks_exact(WORD).enumerate() {
        let w = usize::from_ne_bytes(s.try_into().unwrap_or([0; WORD]));
        // SAFETY: `dst + head` is word-aligned and the word ends inside the range.
        unsafe { word_at(dst.add(head + k * WORD)) }.store(w, Ordering::Relaxed);
    }
    for (i, &s) in src.iter().enumerate().skip(head + body) {
        // SAFETY: `i < src.len()`.
        unsafe { byte_at(dst.add(i)) }.store(s, Ordering::Relaxed);
    }
}

/// Splits a copy of `n` bytes at `p` into the part of a word before the
/// first aligned word (`head` bytes, starting `lead` bytes into its word),
/// the whole aligned words (`body` bytes) and what is left (`n - head - body`
/// bytes, at the start of the last word).
fn split(p: *const u8, n: usize) -> (usize, usize, usize) {
    let lead = misalignment(p);
    let head = if lead == 0 { 0 } else { (WORD - lead).min(n) };
    (lead, head, (n - head) / WORD * WORD)
}

/// Copies `dst.len()` bytes from `src` with relaxed loads of whole aligned
/// words (reading the bytes that share a word with the ends too).
///
/// # Safety
/// Every aligned word that overlaps `[src, src + dst.len())` is valid for
/// reads, and is only ever accessed by word-sized atomics while this copy
/// may race with another access.
pub(crate) unsafe fn load_words(src: *const u8, dst: &mut [u8]) {
    let n = dst.len();
    let (lead, head, body) = split(src, n);
    if head > 0 {
        // Relaxed: a copy orders nothing; the caller synchronises if it must.
        // SAFETY: the aligned word holding the first byte (the caller's promise).
        let w = unsafe { word_at(src.wrapping_sub(lead)) }.load(Ordering::Relaxed);
        dst[..head].copy_from_slice(&w.to_ne_bytes()[lead..lead + head]);
    }
    for (k, d) in dst[head..head + body].chunks_exact_mut(WORD).enumerate() {
        // SAFETY: `src + head` is word-aligned and the word ends inside the range.
        let w = unsafe { word_at(src.add(head + k * WORD)) }.load(Ordering::Relaxed);
        d.copy_from_slice(&w.to_ne_bytes());
    }
    let tail = n - head - body;
    if tail > 0 {
        // SAFETY: the aligned word holding the last bytes (the caller's promise).
        let w = unsafe { word_at(src.add(head + body)) }.load(Ordering::Relaxed);
        dst[head + body..].copy_from_slice(&w.to_ne_bytes()[..tail]);
    }
}

/// Stores `part` into `word` from byte `from` on, keeping the other bytes,
/// with a compare-and-swap loop.
fn merge_into(word: &AtomicUsize, from: usize, part: &[u8]) {
    // Relaxed: a copy orders nothing; the exchange only keeps the other bytes.
    let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        let mut b = old.to_ne_bytes();
        b[from..from + part.len()].copy_from_slice(part);
        Some(usize::from_ne_bytes(b))
    });
}

/// Copies `src` to `dst` with relaxed word-sized atomics: stores for whole
/// words, a compare-and-swap that keeps the other bytes for a word the range
/// only partly covers.
///
/// # Safety
/// As for [`load_words`], for reads and writes.
pub(crate) unsafe fn store_words(dst: *mut u8, src: &[u8]) {
    let n = src.len();
    let (lead, head, body) = split(dst, n);
    if head > 0 {
        // SAFETY: the aligned word holding the first byte (the caller's promise).
        merge_into(
            unsafe { word_at(dst.wrapping_sub(lead)) },
            lead,
            &src[..head],
        );
    }
    for (k, s) in src[head..head + body].chunks_exact(WORD).enumerate() {
        let w = usize::from_ne_bytes(s.try_into().unwrap_or([0; WORD]));
        // Relaxed: a copy orders nothing; the caller synchronises if it must.
        // SAFETY: `dst + head` is word-aligned and the word ends inside the range.
        unsafe { word_at(dst.add(head + k * WORD)) }.store(w, Ordering::Relaxed);
    }
    if head + body < n {
        // SAFETY: the aligned word holding the last bytes (the caller's promise).
        merge_into(
            unsafe { word_at(dst.add(head + body)) },
            0,
            &src[head + body..],
        );
    }
}

#[cfg(test)]
mod tests;
