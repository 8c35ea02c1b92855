//! [`PoolBuilder`]: what a pool is built with ([`build`](PoolBuilder::build)
//! itself is next to [`Pool`](crate::Pool)).

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use mproc_process::{Context, StartMethod, cpu_count};
use mproc_shm::codec::Postcard;
use mproc_shm::codec_error::PostcardError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::Config;
use crate::error::BuildError;
use crate::worker::init_entry;

/// An initializer's entry, encoded arguments and their descriptors.
type InitTemplate = (i64, Vec<u8>, Vec<std::os::fd::OwnedFd>);

/// Builds a [`Pool`](crate::Pool) (Python's `Pool(processes, initializer, initargs,
/// maxtasksperchild, context)`).
///
/// # Examples
///
/// ```
/// use mproc_pool::Pool;
///
/// fn setup(tag: String) {
///     assert_eq!(tag, "ready");
/// }
///
/// let pool = Pool::builder().processes(2).initializer(setup, "ready".to_string()).max_tasks_per_child(100).build()?;
/// assert_eq!(pool.map(|x: u32| x + 1, vec![1, 2, 3])?, [2, 3, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The codec `C` is how items and results travel ([`Postcard`] unless
/// [`codec`](PoolBuilder::codec) picks another).
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder<C = Postcard> {
    processes: Option<usize>,
    /// `None`: the process-wide default, resolved by `build`.
    method: Option<StartMethod>,
    max_tasks: Option<u64>,
    init: Option<Result<InitTemplate, String>>,
    cancel_on_ctrl_c: bool,
    drop_timeout: Duration,
    codec: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for PoolBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("processes", &self.processes)
            .field("method", &self.method)
            .field("max_tasks_per_child", &self.max_tasks)
            .field("initializer", &self.init.is_some())
            .field("cancel_on_ctrl_c", &self.cancel_on_ctrl_c)
            .field("codec", &std::any::type_name::<C>())
            .finish_non_exhaustive()
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        Self {
            processes: None,
            method: None,
            max_tasks: None,
            init: None,
            cancel_on_ctrl_c: false,
            drop_timeout: Duration::from_secs(10),
            codec: PhantomData,
        }
    }
}

impl<C> PoolBuilder<C> {
    /// The same builder, for a pool whose items and results travel in the
    /// codec `C2` (see [`mproc_shm::codec`]): [`Postcard`] (the default)
    /// for any serde type, [`Pod`](mproc_shm::codec::Pod) for plain data
    /// copied as it is, [`Bytes`](mproc_shm::codec::Bytes) for byte
    /// vectors. Plain numbers (`u64`, `f64`, ...) and integer ranges travel
    /// as their bytes whatever the codec. mproc handles inside items travel
    /// with [`Postcard`] only (the other codecs cannot hold them).
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc_pool::{Bytes, Pool};
    ///
    /// fn shout(v: Vec<u8>) -> Vec<u8> {
    ///     v.to_ascii_uppercase()
    /// }
    ///
    /// let pool = Pool::builder().processes(2).codec::<Bytes>().build()?;
    /// let out = pool.map(shout, vec![b"ab".to_vec(), b"c".to_vec()])?;
    /// assert_eq!(out, [b"AB".to_vec(), b"C".to_vec()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn codec<C2>(self) -> PoolBuilder<C2> {
        PoolBuilder {
            processes: self.processes,
            method: self.method,
            max_tasks: self.max_tasks,
            init: self.init,
            cancel_on_ctrl_c: self.cancel_on_ctrl_c,
            drop_timeout: self.drop_timeout,
            codec: PhantomData,
        }
    }

    mproc_shm::builder_setters! {
        /// How many worker processes (default: [`cpu_count`], which honours the
        /// affinity mask, cgroup quotas and SLURM/PBS allocations).
        processes(n: usize) => processes = Some(n);
        /// How workers are started (default: the process-wide
        /// [`get_start_method`](mproc_process::get_start_method), read when the
        /// pool is built, as CPython's `Pool` takes its context).
        start_method(method: StartMethod) => method = Some(method);
    }

    /// Uses a context's start method (Python's `context=`).
    pub fn context(self, ctx: Context) -> Self {
        self.start_method(ctx.start_method())
    }

    mproc_shm::builder_setters! {
        /// Replaces each worker after it ran `n` items (Python's
        /// `maxtasksperchild`; here every item counts, whatever the chunking).
        max_tasks_per_child(n: u64) => max_tasks = Some(n);
    }

    /// Runs `f(args)` once in every worker before it takes tasks
    /// (Python's `initializer`/`initargs`). If it fails (panics, or ends
    /// the process) in any worker started by [`build`](Self::build),
    /// `build` fails; if it keeps failing in replacement workers, the pool
    /// stops and fails queued tasks with [`TaskError::InitializerFailed`](crate::TaskError::InitializerFailed)
    /// instead of respawning for ever. Its arguments are a serde value and
    /// travel with [`Postcard`], whatever the pool's [`codec`](Self::codec).
    pub fn initializer<F, A>(mut self, f: F, args: A) -> Self
    where
        F: Fn(A) + Copy + Send + 'static,
        A: Serialize + DeserializeOwned,
    {
        let _ = f;
        let entry = init_entry::<F, A>();
        self.init = Some(
            mproc_shm::handle::to_bytes_with_fds(&args)
                .map(|(b, fds)| (entry, b, fds))
                .map_err(|e| PostcardError::encode(&args, e).to_string()),
        );
        self
    }

    mproc_shm::builder_setters! {
        /// Makes Ctrl-C (SIGINT) in this process cancel the pool's work: every
        /// pending result resolves to [`TaskError::Cancelled`](crate::TaskError::Cancelled) and blocked calls
        /// return. The handler is process-wide; a second Ctrl-C ends the program
        /// as usual. Off by default (then Ctrl-C ends the program, and the
        /// workers, which are daemons, end with it). Workers always ignore
        /// SIGINT themselves.
        cancel_on_ctrl_c(on: bool) => cancel_on_ctrl_c = on;
        /// How long dropping the pool waits for queued work before it
        /// terminates the workers (default 10 s).
        drop_timeout(t: Duration) => drop_timeout = t;
    }

    /// The configuration to start with: whether Ctrl-C cancels, how long
    /// a drop waits, and the engine's [`Config`].
    pub(crate) fn into_config(self) -> Result<(Config, bool, Duration), BuildError> {
        let processes = self.processes.unwrap_or_else(cpu_count);
        if processes == 0 {
            return Err(BuildError::NoProcesses);
        }
        if self.max_tasks == Some(0) {
            return Err(BuildError::ZeroMaxTasks);
        }
        let init = match self.init {
            None => None,
            Some(Ok(i)) => Some(i),
            Some(Err(m)) => {
                return Err(BuildError::Initializer {
                    message: format!("its arguments did not serialize: {m}"),
                });
            }
        };
        let method = match self.method {
            Some(m) => m,
            None => mproc_process::get_start_method().map_err(|e| BuildError::Start(e.into()))?,
        };
        let cfg = Config {
            processes,
            method,
            max_items: self.max_tasks,
            init,
        };
        Ok((cfg, self.cancel_on_ctrl_c, self.drop_timeout))
    }
}
