//! [`Process`]: the builder that starts a child process.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;

use mproc_shm::codec::{Codec, Postcard};

use crate::error::StartError;
use crate::handle::{Pending, PendingStart, Prepared, ProcessHandle};
use crate::method::StartMethod;
use crate::state;
use crate::sys;
use crate::watch::Profile;
use crate::wire::{self, Parent, Request};
use crate::{authkey, child};
use crate::{server, start};

/// A process to start: a function, its arguments and options.
///
/// The function is a `fn` item or a non-capturing closure (a capturing one
/// is a compile error: its state could not reach another process). It runs in
/// a new process on [`Process::start`]; the arguments travel there by value
/// and the return value comes back on [`ProcessHandle::join`], both encoded
/// with the codec `C`: [`Postcard`] (any serde type; mproc handles such as
/// `mproc_shm::Segment` travel as file descriptors) unless
/// [`codec`](Process::codec) chose another.
///
/// # Examples
///
/// ```
/// use mproc_process::Process;
///
/// fn greet((name, n): (String, u32)) -> String {
///     format!("hello {name} #{n}")
/// }
///
/// let mut child = Process::new(greet, ("world".to_string(), 1)).name("greeter").start()?;
/// assert_eq!(child.join()?, "hello world #1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A closure that captures state does not compile (its state could not
/// reach a spawned child); pass the state as arguments instead:
///
/// ```compile_fail,E0080
/// use mproc_process::Process;
///
/// let offset = 5u64;
/// let _ = Process::new(move |x: u64| x + offset, 1u64).start();
/// ```
///
/// Neither does a fn pointer (it names no function at compile time):
///
/// ```compile_fail,E0080
/// use mproc_process::Process;
///
/// fn double(x: u64) -> u64 { x * 2 }
/// let f: fn(u64) -> u64 = double;
/// let _ = Process::new(f, 1u64).start();
/// ```
///
/// Pass `double` itself (a zero-sized `fn` item), not `f`.
///
/// The error (E0080, with [`mproc_fnref::assert_zst`]'s message) points at
/// the caller's `Process::new(..)` (or `Context::process(..)`) line:
///
/// ```text
/// note: the above error was encountered while instantiating `fn Process::<fn(u64) -> u64, u64>::new`
///  --> src/main.rs:7:13
///   |
/// 7 |     let _ = Process::new(f, 1u64).start();
/// ```
///
/// It comes from `cargo build`, not `cargo check`: stable Rust has no trait
/// bound that means "zero-sized" (a fn pointer and a capturing closure are
/// `Fn + Copy + Send + 'static` like a `fn` item, so
/// `#[diagnostic::on_unimplemented]` has nothing to hang on), and a size
/// check on a generic type is evaluated only when the function is
/// instantiated, which `cargo check` does not do.
#[must_use = "a Process does nothing until started"]
pub struct Process<F, A, C = Postcard> {
    f: F,
    args: A,
    name: Option<String>,
    daemon: Option<bool>,
    method: Option<StartMethod>,
    threaded_fork: bool,
    kill_on_drop: bool,
    codec: PhantomData<fn() -> C>,
}

impl<F, A, C> fmt::Debug for Process<F, A, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Process")
            .field("name", &self.name)
            .field("daemon", &self.daemon)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl<F, A, C> Process<F, A, C> {
    mproc_shm::builder_setters! {
        /// Names the process (default: `Process-N`, `Process-N:M` for a grandchild).
        name(name: impl Into<String>) => name = Some(name.into());
        /// Makes the child a daemon: it dies with its parent, even when the
        /// parent is killed with SIGKILL. The default is the current process's
        /// own daemon flag (false in the main process), as in CPython. Unlike
        /// CPython's, daemons may start children of their own.
        daemon(daemon: bool) => daemon = Some(daemon);
        /// Chooses the start method (default: the process-wide
        /// [`get_start_method`](crate::get_start_method), itself the fork server unless chosen otherwise).
        start_method(method: StartMethod) => method = Some(method);
        /// Sends SIGKILL to the child if its handle is dropped while it runs
        /// (default: off, the child runs on).
        kill_on_drop(on: bool) => kill_on_drop = on;
    }

    /// Lets [`StartMethod::Fork`] fork even when this process has more than
    /// one thread.
    ///
    /// # Safety
    /// After `fork` the child has only the calling thread; every lock another
    /// thread held at that instant (the allocator's arenas, stdout, the
    /// environment lock, any `Mutex` of yours, this crate's own state) stays
    /// locked in the child for ever. As nix's `fork` documents, such a child
    /// may only call async-signal-safe functions until it execs, and running
    /// a Rust function (which allocates, prints and unwinds) is not that. The
    /// caller must therefore guarantee that no other thread can hold any lock
    /// the child function (or mproc's child bootstrap: allocation, stdout,
    /// panic handling) will take. Prefer [`StartMethod::ForkServer`], which
    /// gives the same speed class without this hazard. A daemon forked this
    /// way dies when the *calling thread* exits (`PR_SET_PDEATHSIG` follows
    /// the parent thread).
    pub unsafe fn allow_fork_with_threads(mut self) -> Self {
        self.threaded_fork = true;
        self
    }

    /// The same process, its arguments and return value encoded with the
    /// codec `C2` instead ([`Postcard`] by default): [`Pod`] copies plain
    /// data as it is, [`Bytes`] carries a `Vec<u8>` as it is (see
    /// [`mproc_shm::codec`]). Only a [`Postcard`] value can hold mproc
    /// handles.
    ///
    /// The codec must encode and decode both the arguments and the return
    /// value (`C2: Codec<A> + Codec<R>`), which [`start`](Self::start)
    /// checks.
    ///
    /// [`Pod`]: crate::Pod
    /// [`Bytes`]: crate::Bytes
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc_process::{Bytes, Pod, Process};
    ///
    /// fn norm(v: [f64; 3]) -> f64 {
    ///     v.iter().map(|x| x * x).sum::<f64>().sqrt()
    /// }
    /// let mut child = Process::new(norm, [2.0, 3.0, 6.0]).codec::<Pod>().start()?;
    /// assert_eq!(child.join()?, 7.0);
    ///
    /// fn reverse(mut b: Vec<u8>) -> Vec<u8> {
    ///     b.reverse();
    ///     b
    /// }
    /// let mut child = Process::new(reverse, vec![1, 2, 3]).codec::<Bytes>().start()?;
    /// assert_eq!(child.join()?, [3, 2, 1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn codec<C2>(self) -> Process<F, A, C2> {
        Process {
            f: self.f,
            args: self.args,
            name: self.name,
            daemon: self.daemon,
            method: self.method,
            threaded_fork: self.threaded_fork,
            kill_on_drop: self.kill_on_drop,
            codec: PhantomData,
        }
    }
}

impl<F, A, R> Process<F, A>
where
    F: Fn(A) -> R + Copy + Send + 'static,
{
    /// A process that will run `f(args)`, with the [`Postcard`] codec
    /// ([`codec`](Self::codec) chooses another).
    ///
    /// `f` must be a `fn` item or a closure that captures nothing: anything
    /// else is a compile error at this call (see [`Process`]).
    pub fn new(f: F, args: A) -> Self {
        // In a const block of this function, rather than a call, so that the
        // error names the caller's line (the function instantiated there).
        const { mproc_fnref::assert_zst::<F>() };
        Self {
            f,
            args,
            name: None,
            daemon: None,
            method: None,
            threaded_fork: false,
            kill_on_drop: false,
            codec: PhantomData,
        }
    }
}

impl<F, A, R, C> Process<F, A, C>
where
    F: Fn(A) -> R + Copy + Send + 'static,
    C: Codec<A> + Codec<R>,
{
    /// Starts the child and returns its handle.
    ///
    /// Also reaps children that ended since the last start (CPython does the
    /// same), so dropped handles leave no zombies for long.
    ///
    /// # Errors
    /// [`StartError::Encode`] if the codec cannot encode the arguments,
    /// [`StartError::ThreadedFork`] for [`StartMethod::Fork`] in a threaded
    /// process, [`StartError::ForkServer`]/[`StartError::Os`] if the OS
    /// refuses.
    pub fn start(self) -> Result<ProcessHandle<R>, StartError> {
        let (p, req, fds) = self.prepare()?;
        let started = match p.profile.method {
            StartMethod::ForkServer => server::start(&req, &fds)?,
            StartMethod::Spawn => start::spawn(&req, &fds)?,
            StartMethod::Fork => start::fork(req, fds, p.threaded_fork)?,
        };
        // After the start, which need not wait for it.
        state::reap_finished();
        Ok(p.handle(started))
    }

    /// Asks for the child to be started and returns without waiting for it
    /// to exist: [`PendingStart::wait`] returns its handle.
    ///
    /// With [`StartMethod::ForkServer`] this sends the request to the fork
    /// server and returns at once, so that several children are created
    /// while the caller goes on (for example, writing to a pipe the child
    /// will read: the child finds the data there when it starts). Errors
    /// known when the request is sent are returned here; the others
    /// (the server could not fork, or died) by [`PendingStart::wait`]. The
    /// other start methods start the child here, as [`start`](Self::start)
    /// does, and `wait` returns its handle at once.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc_process::Process;
    ///
    /// fn square(x: u64) -> u64 { x * x }
    ///
    /// // Both requests leave before either child exists.
    /// let a = Process::new(square, 3).start_pending()?;
    /// let b = Process::new(square, 4).start_pending()?;
    /// let (mut a, mut b) = (a.wait()?, b.wait()?);
    /// assert_eq!(a.join()? + b.join()?, 25);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start_pending(self) -> Result<PendingStart<R>, StartError> {
        let (p, req, fds) = self.prepare()?;
        let state = match p.profile.method {
            StartMethod::ForkServer => {
                let sent = server::send(&req, &fds)?;
                Pending::Server(p, sent)
            }
            StartMethod::Spawn => Pending::Done(p.handle(start::spawn(&req, &fds)?)),
            StartMethod::Fork => {
                let threaded = p.threaded_fork;
                Pending::Done(p.handle(start::fork(req, fds, threaded)?))
            }
        };
        // After the request left, which need not wait for it.
        state::reap_finished();
        Ok(PendingStart { state })
    }

    /// Everything but the start itself: the request and its descriptors.
    fn prepare(self) -> Result<(Prepared<R>, Request, Vec<OwnedFd>), StartError> {
        crate::boot::keep_constructor();
        let _ = self.f;
        let (args, fds) =
            mproc_shm::codec::encode_with_fds::<C, A>(&self.args).map_err(StartError::Encode)?;
        drop(self.args);
        // Room for the fork server's two descriptors and the parent sentinel.
        if fds.len() > mproc_shm::handle::MAX_FDS_PER_MESSAGE - 3 {
            return Err(StartError::TooManyHandles { count: fds.len() });
        }
        let method = match self.method {
            Some(m) => m,
            None => state::default_method()?,
        };
        let exe = mproc_fnref::exe_id().map_err(|e| match e.kind() {
            io::ErrorKind::Unsupported => StartError::Unsupported,
            _ => StartError::Os(e),
        })?;
        let me = state::me();
        let identity = state::next_identity();
        let name = self.name.unwrap_or_else(|| {
            let mut n = String::from("Process-");
            for (i, id) in identity.iter().enumerate() {
                use std::fmt::Write as _;
                let _ = write!(n, "{}{id}", if i == 0 { "" } else { ":" });
            }
            n
        });
        let daemon = self.daemon.unwrap_or(me.daemon);
        let authkey = authkey::current();
        // The pidfd of this process, the child's parent sentinel: sent along
        // (a copy), or inherited by a forked child.
        let sentinel = state::with_self_pidfd(|fd| match method {
            StartMethod::Fork => None,
            _ => fd.and_then(|fd| fd.try_clone().ok()),
        });
        let mut fds = fds;
        let req = Request {
            protocol: wire::PROTOCOL,
            exe,
            entry: child::entry_offset(child::entry::<F, A, R, C>),
            name: name.clone(),
            identity,
            daemon,
            parent: Parent {
                pid: sys::getpid(),
                name: me.name,
            },
            method: method.to_u8(),
            default_method: state::default_for_child(),
            authkey: authkey.as_bytes().to_vec(),
            parent_sentinel: sentinel.is_some(),
            nfds: fds.len() as u32,
            args,
        };
        fds.extend(sentinel);
        let p = Prepared {
            profile: Profile {
                name,
                daemon,
                method,
                authkey,
            },
            threaded_fork: self.threaded_fork,
            kill_on_drop: self.kill_on_drop,
            decode: <C as Codec<R>>::decode,
        };
        Ok((p, req, fds))
    }
}
