//! Choosing the start method: the process-wide default
//! ([`set_start_method`], [`get_start_method`]) and [`Context`].

use crate::error::StartMethodError;
use crate::method::StartMethod;
use crate::process::Process;
use crate::state;

/// Fixes the start method of everything started without an explicit one
/// (Python's `set_start_method`): [`Process`], and the pools and managers
/// built on it.
///
/// # Errors
/// [`StartMethodError::AlreadySet`] if the default was fixed already, by an
/// earlier call or by its first use (as CPython's `"context has already
/// been set"`); [`set_start_method_force`] changes it anyway.
///
/// # Examples
///
/// ```
/// use mproc_process::{get_start_method, set_start_method, StartMethod, StartMethodError};
///
/// set_start_method(StartMethod::Spawn)?;
/// assert_eq!(get_start_method()?, StartMethod::Spawn);
/// assert_eq!(
///     set_start_method(StartMethod::Fork),
///     Err(StartMethodError::AlreadySet { current: StartMethod::Spawn })
/// );
/// # Ok::<(), StartMethodError>(())
/// ```
pub fn set_start_method(method: StartMethod) -> Result<(), StartMethodError> {
    state::set_default_method(method, false)
}

/// [`set_start_method`] even if the default was fixed already (Python's
/// `set_start_method(m, force=True)`).
pub fn set_start_method_force(method: StartMethod) {
    let _ = state::set_default_method(method, true);
}

/// The process-wide default start method (Python's `get_start_method()`),
/// which this call fixes if nothing did before, as CPython's does.
///
/// In order of precedence: the method given to [`set_start_method`]; in a
/// child mproc started, its parent's default; the environment variable
/// [`START_METHOD_ENV`](crate::START_METHOD_ENV) (read once; unset or empty means the built-in
/// default); the fork server. A builder's explicit
/// [`start_method`](Process::start_method), or a [`Context`], overrides all
/// of these for what it starts.
///
/// # Errors
/// [`StartMethodError::BadEnvironment`] if the environment variable names
/// no start method. There is deliberately no fallback: a deployment that
/// asked for a start method and misspelt it learns so at the first start
/// (which fails with [`StartError::StartMethod`](crate::StartError::StartMethod)), not by running with
/// another. An explicit choice in code (`set_start_method`, a builder's or
/// a context's) does not read the variable and is unaffected.
pub fn get_start_method() -> Result<StartMethod, StartMethodError> {
    state::default_method()
}

/// Every start method this platform supports (Python's
/// `get_all_start_methods`), the default first.
pub fn all_start_methods() -> [StartMethod; 3] {
    [
        StartMethod::ForkServer,
        StartMethod::Spawn,
        StartMethod::Fork,
    ]
}

/// A context fixes the start method for everything made through it
/// (Python's `get_context`).
///
/// # Examples
///
/// ```
/// use mproc_process::{get_context, StartMethod};
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let ctx = get_context(StartMethod::Spawn);
/// let mut child = ctx.process(square, 7).start()?;
/// assert_eq!(child.join()?, 49);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Context {
    method: StartMethod,
}

/// The context of a start method.
pub fn get_context(method: StartMethod) -> Context {
    Context { method }
}

impl Context {
    /// The context of a start method.
    pub fn new(method: StartMethod) -> Self {
        Self { method }
    }

    /// Its start method.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// A process builder using this context's start method, with the
    /// [`Postcard`](crate::Postcard) codec ([`Process::codec`] chooses
    /// another).
    pub fn process<F, A, R>(&self, f: F, args: A) -> Process<F, A>
    where
        F: Fn(A) -> R + Copy + Send + 'static,
    {
        // Here too, so that a wrong function is reported at the caller's line.
        const { mproc_fnref::assert_zst::<F>() };
        Process::new(f, args).start_method(self.method)
    }
}
