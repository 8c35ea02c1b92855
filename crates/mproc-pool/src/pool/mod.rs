//! [`Pool`]: building it, its lifecycle (close, cancel, terminate, join,
//! drop), and, by file, submitting work: [`apply`] (and the `*_async`
//! forms) and [`map`] (and `starmap`, `imap`, `try_imap`).

mod apply;
mod map;

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mproc_shm::codec::Postcard;

use crate::builder::PoolBuilder;
use crate::engine::{Engine, Run};
use crate::error::{BuildError, PoolError};
use crate::sys;

impl<C> PoolBuilder<C> {
    /// Starts the workers.
    ///
    /// Without an initializer this returns once the workers are asked for,
    /// before they exist: the fork server creates them while the caller goes
    /// on. The first operation on the pool sends its work (which waits in
    /// the workers' sockets) and then waits until the workers exist. A
    /// worker that then cannot be started is handled like one that died:
    /// its work runs in the others, and it is replaced (a few times at
    /// most); if no worker can be started at all, the work fails with
    /// [`TaskError::WorkerStart`](crate::TaskError::WorkerStart). With an initializer, this waits until
    /// every worker ran it.
    ///
    /// # Errors
    /// [`BuildError::NoProcesses`], [`BuildError::ZeroMaxTasks`],
    /// [`BuildError::Start`] if a worker cannot be asked for (the fork
    /// server cannot be started or reached; those already asked for are
    /// killed), or, with an initializer, cannot be started;
    /// [`BuildError::Initializer`] with the panic message if the
    /// initializer panicked in a worker, [`BuildError::WorkerLost`] if a
    /// worker ended while running it.
    pub fn build(self) -> Result<Pool<C>, BuildError> {
        let (cfg, cancel_on_ctrl_c, drop_timeout) = self.into_config()?;
        let engine = Engine::new(cfg, cancel_on_ctrl_c)?;
        engine.start()?;
        let sigint_slot = if cancel_on_ctrl_c {
            sys::register_sigint(engine.wake_fd())
        } else {
            None
        };
        Ok(Pool {
            engine,
            sigint_slot,
            drop_timeout,
            codec: PhantomData,
        })
    }
}

/// A pool of worker processes (Python's `multiprocessing.Pool`).
///
/// Tasks are `fn` items or non-capturing closures; arguments and results
/// travel in the codec `C`: by default [`Postcard`], for serde values (mproc
/// handles inside them travel as descriptors); another one is chosen with
/// [`PoolBuilder::codec`]. Methods take `&self`, and a pool may be shared
/// between threads.
///
/// # Failures
///
/// * A task that panics fails that item ([`TaskError::Panicked`](crate::TaskError::Panicked) with the
///   message); the worker lives on.
/// * A worker that dies (killed, aborted, out of memory) fails only the
///   item it was running, with [`TaskError::WorkerLost`](crate::TaskError::WorkerLost) and its exit
///   status; the other items it held are re-run elsewhere (so items before
///   it in the same chunk may run twice), it is replaced at once, and the
///   pool stays usable. Detection takes milliseconds: the parent watches
///   every worker's socket and process. Tiny items of an integer range run
///   in blocks of a few microseconds that are tracked as a whole: a worker
///   that dies in one has the block run again item by item, so an item
///   that kills its worker again fails, and the others succeed.
/// * [`Pool::cancel`](crate::Pool::cancel) (or Ctrl-C with
///   [`PoolBuilder::cancel_on_ctrl_c`]) resolves everything outstanding to
///   [`TaskError::Cancelled`](crate::TaskError::Cancelled).
///
/// # Shutting down
///
/// [`close`](Pool::close) then [`join`](Pool::join) finishes the queued work
/// and lets the workers exit; [`terminate`](Pool::terminate) stops them at
/// once (SIGTERM, then SIGKILL after a grace period) and resolves pending
/// results to `Cancelled`. **Dropping a pool** closes it and joins with a
/// deadline ([`PoolBuilder::drop_timeout`], 10 s by default), then
/// terminates: unlike CPython's `with Pool()`, leaving a scope does not kill
/// work in progress, and never hangs.
// `repr(C)`: the codec is a zero-sized marker, so `Pool<C>` has one layout
// for every `C` (`as_codec` relies on it).
#[repr(C)]
pub struct Pool<C = Postcard> {
    engine: Arc<Engine>,
    sigint_slot: Option<usize>,
    drop_timeout: Duration,
    codec: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.engine.processes())
            .field("state", &self.engine.run())
            .field("codec", &std::any::type_name::<C>())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A builder with the defaults.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// A pool of `processes` workers with the default options.
    ///
    /// # Errors
    /// As [`PoolBuilder::build`].
    pub fn new(processes: usize) -> Result<Self, BuildError> {
        Self::builder().processes(processes).build()
    }
}

impl<C> Pool<C> {
    /// This pool as one whose items and results travel in the codec `C2`:
    /// the same workers, which run each task in the codec it names.
    pub(crate) fn as_codec<C2>(&self) -> &Pool<C2> {
        // `Pool` is `repr(C)` and `C` appears only in the last field, a
        // `PhantomData` (size 0, alignment 1, every value valid); no state
        // of the pool depends on `C` (only the forms' types do).
        // SAFETY: so `Pool<C>` and `Pool<C2>` have the same fields at the
        // same offsets, and the reference keeps `self`'s lifetime.
        unsafe { &*std::ptr::from_ref(self).cast::<Pool<C2>>() }
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.engine.processes()
    }

    /// The process ids of the current workers (they change when workers
    /// are replaced).
    pub fn pids(&self) -> Vec<i32> {
        self.engine.pids()
    }

    /// The engine (for the executor's hooks).
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn check_running(&self) -> Result<(), PoolError> {
        match self.engine.run() {
            Run::Running => Ok(()),
            _ => Err(PoolError::NotRunning),
        }
    }

    // ----- lifecycle -----

    /// Takes no new work; queued and running work finishes, then the
    /// workers exit (Python's `close`).
    pub fn close(&self) {
        self.engine.close();
        // The collector sees the workers go.
        self.engine.ensure_threads();
    }

    /// Resolves every queued and running task to [`TaskError::Cancelled`](crate::TaskError::Cancelled)
    /// at once, and stops `map`/`imap` calls in progress from submitting
    /// more. Workers that were running cancelled tasks are killed and
    /// replaced; the pool stays usable.
    pub fn cancel(&self) {
        self.engine.cancel();
        self.engine.ensure_threads();
    }

    /// Stops the workers now: SIGTERM, then SIGKILL to those still alive
    /// after 1 s (Python's `terminate`, which never escalates). Pending
    /// results resolve to [`TaskError::Cancelled`](crate::TaskError::Cancelled).
    pub fn terminate(&self) {
        self.terminate_timeout(Duration::from_secs(1));
    }

    /// [`terminate`](Pool::terminate) with a chosen grace period before SIGKILL.
    pub fn terminate_timeout(&self, grace: Duration) {
        self.engine.terminate(grace);
        self.engine.stop_threads();
    }

    /// Waits for the workers to exit after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) (Python's `join`).
    ///
    /// # Errors
    /// [`PoolError::StillRunning`] if the pool was neither closed nor
    /// terminated.
    pub fn join(&self) -> Result<(), PoolError> {
        self.join_inner(None).map(|_| ())
    }

    /// [`join`](Pool::join) for at most `timeout`; `Ok(false)` if workers
    /// were still running then.
    ///
    /// # Errors
    /// As [`join`](Pool::join).
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, PoolError> {
        self.join_inner(Instant::now().checked_add(timeout))
    }

    fn join_inner(&self, deadline: Option<Instant>) -> Result<bool, PoolError> {
        if self.engine.run() == Run::Running {
            return Err(PoolError::StillRunning);
        }
        self.engine.ensure_threads();
        self.engine.poke();
        if !self.engine.wait_workers(deadline) {
            return Ok(false);
        }
        self.engine.stop_threads();
        Ok(true)
    }
}

/// The chunk size of a `*_chunked` call as the engine takes it (`None` is
/// adaptive), or [`PoolError::ZeroChunksize`] for 0.
#[inline]
pub(crate) fn fixed_chunksize(chunksize: usize) -> Result<Option<usize>, PoolError> {
    match chunksize {
        0 => Err(PoolError::ZeroChunksize),
        c => Ok(Some(c)),
    }
}

impl<C> Drop for Pool<C> {
    fn drop(&mut self) {
        if let Some(slot) = self.sigint_slot {
            sys::unregister_sigint(slot);
        }
        let terminated = self.engine.run() == Run::Terminated;
        if !terminated {
            self.close();
            if !matches!(self.join_timeout(self.drop_timeout), Ok(true)) {
                self.terminate();
            }
        }
        self.engine.stop_threads();
    }
}
