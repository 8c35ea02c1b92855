//! Locking the crate's mutexes.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning (the data stays consistent: every
/// critical section in this crate is a plain read or assignment).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
