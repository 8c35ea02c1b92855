//! [`__task_forms!`](crate::__task_forms): the public forms of a pool
//! (`map`, `map_chunked`, `imap`, `imap_unordered`, `apply_async`, ...)
//! differ in how they call one shared body; the bounds of their task
//! `F: Fn(A) -> R` (and how its values travel) are the same for a whole
//! family, and written once per family with this.

/// Writes methods that share a set of bounds: `bounds { ... }` once (or
/// `pool_task;`, the bounds of a pool's task), then each method as usual
/// but for a `where { ... }` holding only its own bounds, if any (they
/// follow the shared ones). Used by the pool's forms and by mproc-mpi's `MpiPool`
/// (through `__private`). Not a stable API.
///
/// ```text
/// impl<C> Pool<C> {
///     __task_forms! {
///         pool_task;
///
///         /// Docs of `map`.
///         pub fn map<F, A, R, I>(&self, f: F, iterable: I) -> Result<Vec<R>, PoolError>
///         where { I: IntoIterator<Item = A> }
///         {
///             self.map_inner(f, iterable, None)
///         }
///     }
/// }
/// ```
#[doc(hidden)]
#[macro_export]
macro_rules! __task_forms {
    // A pool's task: `F: Fn(A) -> R` run by reference in a worker, its
    // argument and value travelling in the pool's codec `C`.
    (pool_task; $($rest:tt)*) => {
        $crate::__task_forms! {
            bounds {
                F: Fn(A) -> R + Copy + Send + 'static,
                C: $crate::Codec<A> + $crate::Codec<R>,
                R: Send + 'static,
            }
            $($rest)*
        }
    };
    (bounds $bounds:tt) => {};
    (
        bounds { $($bound:tt)* }
        $(#[$attr:meta])*
        $vis:vis fn $name:ident<$($gen:tt),*>($($arg:tt)*) -> $ret:ty
        $(where { $($own:tt)* })?
        $body:block
        $($rest:tt)*
    ) => {
        $(#[$attr])*
        $vis fn $name<$($gen),*>($($arg)*) -> $ret
        where
            $($bound)*
            $($($own)*)?
        $body

        $crate::__task_forms! { bounds { $($bound)* } $($rest)* }
    };
}
