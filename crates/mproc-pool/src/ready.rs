//! [`AsyncResult`] as a [`Waitable`] and [`AsFd`] (ready once the result is
//! there) and, with the `tokio` feature, as a future ([`IntoFuture`]).
//!
//! The descriptor is a doorbell (an eventfd) made on the first `as_fd`, so
//! results nobody polls cost nothing; the pool's result thread rings it when
//! the result arrives, and nobody drains it (a result stays ready).
//!
//! [`IntoFuture`]: std::future::IntoFuture

use std::os::fd::{AsFd, BorrowedFd};

use mproc_shm::ready::{Doorbell, Waitable};

use crate::job::AsyncResult;

impl<T> AsFd for AsyncResult<T> {
    /// A descriptor that turns readable once the result is there (and
    /// stays so).
    ///
    /// # Panics
    /// If the process is out of descriptors on the first call.
    fn as_fd(&self) -> BorrowedFd<'_> {
        let slot = &self.slot;
        if let Some(b) = slot.bell.get() {
            return b.as_fd();
        }
        let bell = slot
            .bell
            .get_or_init(|| Doorbell::new().expect("an eventfd for AsyncResult::as_fd"));
        // A result set before the doorbell existed did not ring it.
        slot.ring_if_done(bell);
        bell.as_fd()
    }
}

/// Ready once the result is there.
impl<T> Waitable for AsyncResult<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn ready_now(&self) -> bool {
        self.ready()
    }
}

#[cfg(feature = "tokio")]
pub use self::future::AsyncResultFuture;
#[cfg(feature = "tokio")]
pub(crate) use self::future::{Awaiting, Resolving, awaitable};

#[cfg(feature = "tokio")]
mod future {
    use std::os::fd::OwnedFd;
    use std::task::{Context, Poll};

    use mproc_shm::ready::Waitable;
    use tokio::io::unix::AsyncFd;

    use crate::error::PoolError;
    use crate::job::AsyncResult;

    /// A result that resolves once and is then ready for good (its
    /// [`Waitable`] doorbell rings then): [`AsyncResult`] and the executor's
    /// `Future`, awaited the same way by [`Awaiting`].
    pub(crate) trait Resolving: Waitable {
        /// What awaiting it gives.
        type Output;
        /// The future's type name, for the panic of a poll after completion.
        const FUTURE: &'static str;
        /// Takes the outcome, blocking until it is there.
        fn take_blocking(self) -> Self::Output;
    }

    /// The body of the pool's futures: polls a [`Resolving`] result without
    /// blocking a thread (the tokio runtime's reactor watches its doorbell),
    /// or in the blocking way where there is no reactor.
    pub(crate) struct Awaiting<T> {
        pub(crate) value: Option<T>,
        fd: Option<AsyncFd<OwnedFd>>,
    }

    impl<T: Resolving> Awaiting<T> {
        pub(crate) fn new(value: T) -> Self {
            Self {
                value: Some(value),
                fd: None,
            }
        }

        fn finish(&mut self) -> Poll<T::Output> {
            Poll::Ready(self.value.take().expect("checked by poll").take_blocking())
        }

        pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<T::Output> {
            loop {
                let Some(value) = self.value.as_ref() else {
                    panic!("{} polled after completion", T::FUTURE);
                };
                if value.ready_now() {
                    return self.finish();
                }
                let fd = match &mut self.fd {
                    Some(fd) => fd,
                    slot => match mproc_shm::ready::reactor_fd(value.wait_fd()) {
                        Ok(fd) => slot.insert(fd),
                        // No reactor: wait the blocking way.
                        Err(_) => return self.finish(),
                    },
                };
                match fd.poll_read_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(mut guard)) => {
                        if !value.ready_now() {
                            guard.clear_ready();
                        }
                    }
                    Poll::Ready(Err(_)) => return self.finish(),
                }
            }
        }
    }

    impl<T> Resolving for AsyncResult<T> {
        type Output = Result<T, PoolError>;
        const FUTURE: &'static str = "AsyncResultFuture";

        fn take_blocking(self) -> Self::Output {
            self.get()
        }
    }

    /// The public future of a [`Resolving`] type, with its own doc texts:
    /// `$future<T>` holds an [`Awaiting`] of `$value<T>` (shown as `$field`
    /// by `Debug`), is what `$value<T>` turns into for `.await`, and gives
    /// `Result<T, $error>`. For [`AsyncResultFuture`] here and the
    /// executor's `FutureResult`.
    macro_rules! awaitable {
        (
            $(#[doc = $doc:literal])*
            pub struct $future:ident for $value:ident<$t:ident> -> Result<_, $error:ty>, $field:literal;
            $(#[doc = $into_doc:literal])*
            impl IntoFuture;
        ) => {
            $(#[doc = $doc])*
            #[must_use = "futures do nothing unless awaited"]
            pub struct $future<$t>(Awaiting<$value<$t>>);

            impl<$t> std::fmt::Debug for $future<$t> {
                fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.debug_struct(stringify!($future))
                        .field($field, &self.0.value)
                        .finish_non_exhaustive()
                }
            }

            $(#[doc = $into_doc])*
            impl<$t> std::future::IntoFuture for $value<$t> {
                type Output = Result<$t, $error>;
                type IntoFuture = $future<$t>;

                fn into_future(self) -> Self::IntoFuture {
                    $future(Awaiting::new(self))
                }
            }

            impl<$t> std::future::Future for $future<$t> {
                type Output = Result<$t, $error>;

                fn poll(
                    self: std::pin::Pin<&mut Self>,
                    cx: &mut std::task::Context<'_>,
                ) -> std::task::Poll<Self::Output> {
                    self.get_mut().0.poll(cx)
                }
            }
        };
    }
    pub(crate) use awaitable;

    awaitable! {
        /// The future of an [`AsyncResult`] (`result.await`): resolves to what
        /// [`AsyncResult::get`] returns, without blocking a thread (the tokio
        /// runtime's reactor watches the result's doorbell).
        ///
        /// Cancellation-safe in the sense that dropping it only drops the
        /// result (the task still runs in the pool).
        pub struct AsyncResultFuture for AsyncResult<T> -> Result<_, PoolError>, "result";
        /// `result.await` (needs a tokio runtime with I/O enabled; outside one,
        /// the future blocks its thread in [`AsyncResult::get`]).
        impl IntoFuture;
    }
}
