//! Process handles as [`Waitable`]s (ready once the process has ended),
//! and, with the `tokio` feature, [`ProcessHandle::join_async`].

use std::os::fd::BorrowedFd;

use mproc_shm::ready::{Waitable, idle_fd};

use crate::handle::ProcessHandle;
use crate::info::ProcessInfo;

/// Waitable through the sentinel; without one (kernels before 5.3, the
/// current process) never reported.
macro_rules! waitable_by_sentinel {
    ($($(#[$doc:meta])* [$($g:ident)?] $t:ty;)*) => {$(
        $(#[$doc])*
        impl$(<$g>)? Waitable for $t {
            fn wait_fd(&self) -> BorrowedFd<'_> {
                match self.sentinel() {
                    Some(fd) => fd,
                    None => idle_fd(),
                }
            }

            fn never_ready(&self) -> bool {
                self.sentinel().is_none()
            }
        }

        $(#[$doc])*
        ///
        /// The descriptor is the sentinel; without one, a descriptor that
        /// never turns readable.
        impl$(<$g>)? std::os::fd::AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.wait_fd()
            }
        }
    )*};
}

waitable_by_sentinel! {
    /// Ready once the child has ended (its sentinel is readable).
    [R] ProcessHandle<R>;
    /// Ready once the process (the parent, from
    /// [`parent_process`](crate::parent_process), or a child from
    /// [`active_children`](crate::active_children)) has ended.
    [] ProcessInfo;
}

#[cfg(feature = "tokio")]
impl<R> ProcessHandle<R> {
    /// Awaits the child's end and returns its return value (the async
    /// [`join`](Self::join)), through its sentinel and the tokio runtime's
    /// reactor: no thread waits.
    ///
    /// Cancellation-safe: dropping the future before it completes leaves
    /// the handle as it was (the child is not reaped, a later join works).
    ///
    /// # Errors
    /// As [`join`](Self::join); [`JoinError::Io`](crate::JoinError::Io) if
    /// the sentinel cannot be watched (no tokio runtime, out of
    /// descriptors) or the kernel has no pidfds.
    pub async fn join_async(&mut self) -> Result<R, crate::JoinError> {
        use crate::{JoinError, TryJoinError};
        loop {
            match self.try_join() {
                Ok(v) => return Ok(v),
                Err(TryJoinError::Join(e)) => return Err(e),
                Err(TryJoinError::Running) => {}
            }
            if self.sentinel().is_none() {
                return Err(JoinError::Io(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "join_async needs pidfds (Linux 5.3 or later)",
                )));
            }
            mproc_shm::ready::ready(&*self)
                .await
                .map_err(JoinError::Io)?;
        }
    }
}
