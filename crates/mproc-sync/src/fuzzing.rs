//! Entry points for the fuzz targets in `fuzz/` (not a stable API).

use std::time::Duration;

use mproc_shm::Segment;

use crate::{Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore};

/// Treats `data` as the bytes of a segment received from another process
/// and opens it as every kind of primitive, then uses each one that opens
/// with non-blocking operations only. Must never panic, hang or touch
/// memory outside the segment, whatever `data` holds.
pub fn open_segment(data: &[u8]) {
    let Ok(seg) = Segment::anonymous(data.len().max(1)) else {
        return;
    };
    if seg.write(0, data).is_err() {
        return;
    }
    let clone = || seg.try_clone().ok();
    if let Some(l) = clone().and_then(|s| Lock::from_segment(s).ok()) {
        let _ = l.is_locked();
        let _ = l.owner_pid();
        drop(l.try_lock());
        drop(l.lock_timeout(Duration::ZERO));
        let _ = format!("{l:?}");
        if let Some(c) = clone().and_then(|s| Condition::from_parts(s, Ok(l.clone())).ok()) {
            let _ = c.waiting();
        }
    }
    if let Some(r) = clone().and_then(|s| RLock::from_segment(s).ok()) {
        drop(r.try_lock());
        let _ = r.release();
        let _ = format!("{r:?}");
    }
    if let Some(s) = clone().and_then(|s| Semaphore::from_segment(s).ok()) {
        drop(s.try_acquire());
        let _ = s.value();
    }
    if let Some(s) = clone().and_then(|s| BoundedSemaphore::from_segment(s).ok()) {
        drop(s.try_acquire());
        let _ = s.release();
    }
    if let Some(e) = clone().and_then(|s| Event::from_segment(s).ok()) {
        let _ = e.wait_timeout(Duration::ZERO);
        let _ = e.is_set();
    }
    if let Some(b) = clone().and_then(|s| Barrier::from_segment(s).ok()) {
        let _ = b.n_waiting();
        let _ = b.broken();
        let _ = b.parties();
    }
    if let (Some(s), Ok(r)) = (clone(), RLock::new()) {
        if let Ok(c) = Condition::from_parts(s, Err(r)) {
            let _ = c.waiting();
        }
    }
}
