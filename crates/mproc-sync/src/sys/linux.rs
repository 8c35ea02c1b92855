//! The Linux-only call of mproc-sync: the kernel thread id (`gettid`).

use std::cell::Cell;

thread_local! {
    /// (process id, thread id) as of the last call on this thread.
    static TID: Cell<(u32, u32)> = const { Cell::new((0, 0)) };
}

/// The calling thread's kernel id (`gettid`), cached per thread.
///
/// A thread id is unique among live threads of the system; together with the
/// process id it names the owner of an `RLock`. The cache is keyed by the
/// process id, so the child of a `fork` (which inherits the forking thread's
/// thread-locals) asks the kernel again.
#[inline]
pub(crate) fn current_tid() -> u32 {
    let pid = mproc_shm::mutex::current_pid();
    TID.with(|c| match c.get() {
        (p, tid) if p == pid && tid != 0 => tid,
        _ => {
            // SAFETY: gettid has no preconditions and cannot fail.
            let tid = unsafe { libc::gettid() } as u32;
            c.set((pid, tid));
            tid
        }
    })
}
