//! `trace_event!`: the one macro through which every mproc crate emits
//! [`tracing`](https://docs.rs/tracing) events, chosen here once by this
//! crate's `tracing` feature (the other crates' `tracing` features turn it
//! on).
//!
//! `trace_event!(level, field = value, field = %display, field = ?debug, "message")`
//! is `tracing::level!(…)` with the feature. Without it, it expands to an
//! `if false` block that only borrows the values: nothing is evaluated or
//! emitted, and values computed only for the event still count as used.

/// Emits a `tracing` event at `level` (`error`, `warn`, `info`, `debug`,
/// `trace`) with the given fields and message, as `tracing`'s macros of
/// that name do.
#[cfg(feature = "tracing")]
#[doc(hidden)]
#[macro_export]
macro_rules! trace_event {
    ($level:ident, $($rest:tt)+) => {
        $crate::__private::tracing::$level!($($rest)+)
    };
}

/// Emits nothing: the `tracing` feature is off (see the module docs).
#[cfg(not(feature = "tracing"))]
#[doc(hidden)]
#[macro_export]
macro_rules! trace_event {
    (@use) => {};
    (@use $msg:literal $(,)?) => {};
    (@use $name:ident = % $v:expr $(, $($rest:tt)*)?) => {
        let _ = &$v;
        $crate::trace_event!(@use $($($rest)*)?);
    };
    (@use $name:ident = ? $v:expr $(, $($rest:tt)*)?) => {
        let _ = &$v;
        $crate::trace_event!(@use $($($rest)*)?);
    };
    (@use $name:ident = $v:expr $(, $($rest:tt)*)?) => {
        let _ = &$v;
        $crate::trace_event!(@use $($($rest)*)?);
    };
    ($level:ident, $($rest:tt)+) => {
        if false {
            $crate::trace_event!(@use $($rest)+);
        }
    };
}

#[cfg(test)]
mod tests {
    /// Both forms accept the same syntax, and without the feature nothing
    /// is evaluated.
    #[test]
    fn takes_every_field_form() {
        let pid = 7;
        let name = String::from("w");
        let mut evaluated = false;
        let mut probe = || {
            evaluated = true;
            1
        };
        crate::trace_event!(info, pid = pid, name = %name, how = ?name, "an event");
        crate::trace_event!(warn, n = probe(), "counted",);
        crate::trace_event!(debug, "no fields");
        // (With the feature, `tracing` evaluates them only for a subscriber
        // that wants the event.)
        if !cfg!(feature = "tracing") {
            assert!(!evaluated);
        }
    }
}
