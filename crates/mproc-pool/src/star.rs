//! [`StarFn`]: functions that take a tuple's fields as separate arguments,
//! for [`Pool::starmap`](crate::Pool::starmap).

/// A function taking a tuple's fields as separate arguments, for
/// [`Pool::starmap`](crate::Pool::starmap). Implemented for `fn` items and non-capturing closures
/// of 1 to 6 arguments.
pub trait StarFn<Args>: Copy + Send + 'static {
    /// What the function returns: a value that comes back from a worker.
    type Output: Send + 'static;
    /// Calls the function with the tuple's fields.
    fn call(&self, args: Args) -> Self::Output;
}

/// Calls a [`StarFn`] with a tuple, for the tasks of [`Pool::starmap`](crate::Pool::starmap) and
/// [`Pool::starmap_async`](crate::Pool::starmap_async) (non-capturing closures calling this, which
/// unlike this function's type need not be `'static` in `Args`).
pub(crate) fn call_star<F: StarFn<Args>, Args>(args: Args) -> F::Output {
    mproc_fnref::assert_zst::<F>();
    // SAFETY: `F` is zero-sized (asserted just above) and `Copy`: its one
    // value has no bytes, so conjuring it is copying it.
    let f: F = unsafe { std::mem::zeroed() };
    f.call(args)
}

/// `f` in its tuple form: the task of every `starmap` ([`Pool::starmap`](crate::Pool::starmap),
/// [`Pool::starmap_async`](crate::Pool::starmap_async), mproc-mpi's `MpiPool::starmap`), which
/// then runs as a `map`. A non-capturing closure calling [`call_star`], so
/// it is zero-sized like `f` (checked here) and need not be `'static` in
/// `Args`.
#[inline]
pub(crate) fn star<F: StarFn<Args>, Args>(
    f: F,
) -> impl Fn(Args) -> F::Output + Copy + Send + 'static {
    mproc_fnref::assert_zst::<F>();
    let _ = f;
    |args: Args| call_star::<F, Args>(args)
}

macro_rules! star_fn {
    ($($a:ident),*) => {
        impl<Func, Ret, $($a),*> StarFn<($($a,)*)> for Func
        where
            Func: Fn($($a),*) -> Ret + Copy + Send + 'static,
            Ret: Send + 'static,
        {
            type Output = Ret;
            #[allow(non_snake_case)]
            fn call(&self, ($($a,)*): ($($a,)*)) -> Ret {
                self($($a),*)
            }
        }
    };
}
star_fn!(A1);
star_fn!(A1, A2);
star_fn!(A1, A2, A3);
star_fn!(A1, A2, A3, A4);
star_fn!(A1, A2, A3, A4, A5);
star_fn!(A1, A2, A3, A4, A5, A6);
