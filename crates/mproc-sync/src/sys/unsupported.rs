//! Stand-ins on platforms other than Linux: thread ids come from a counter.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(1);

thread_local! {
    static TID: Cell<u32> = const { Cell::new(0) };
}

/// A per-process unique id of the calling thread.
pub(crate) fn current_tid() -> u32 {
    TID.with(|c| match c.get() {
        0 => {
            // Relaxed: only uniqueness matters.
            let tid = NEXT.fetch_add(1, Ordering::Relaxed);
            c.set(tid);
            tid
        }
        tid => tid,
    })
}
