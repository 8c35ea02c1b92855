//! Functions by reference between processes that run the same executable.
//!
//! mproc sends a child the function to run, a pool its tasks, a manager its
//! server-side updates and a barrier its action *by reference*: a code
//! address travels as its distance from a fixed anchor function of this
//! crate, and a process running the same executable file adds the distance
//! to its own anchor. Under ASLR the whole image moves as one piece, so the
//! distance holds. This crate is the one home of that mechanism:
//!
//! * [`offset_of`] / [`address_at`]: the raw translation, for a protocol
//!   that already knows both sides run the same executable (a parent and the
//!   child it started);
//! * [`assert_zst`]: the compile-time check that a function has no captured
//!   state (only a zero-sized `fn` item or non-capturing closure can be named
//!   by reference);
//! * [`exe_id`] / [`ExeId`]: the identity of the running executable file;
//! * [`Desc`] and [`FnRef`]: a typed, serializable function reference whose
//!   resolution is *checked*: it is safe to resolve a reference that came
//!   from another process, however corrupt: the result is a function of the
//!   promised type or a [`FnRefError`].
//!
//! # Examples
//!
//! ```
//! use mproc_fnref::{Desc, FnRef};
//!
//! fn double(x: u32) -> u32 {
//!     x * 2
//! }
//!
//! // A descriptor is a constant of the executable; `&DOUBLE` is `'static`.
//! const DOUBLE: Desc<fn(u32) -> u32> = Desc::new(double);
//!
//! let r = FnRef::new(&DOUBLE)?;
//! // `r` is plain data (an offset and the executable's identity): it can be
//! // serialized, or stored in shared memory, and resolved in any process
//! // running this executable.
//! let f = r.resolve()?;
//! assert_eq!(f(21), 42);
//!
//! // A reference that names no descriptor is an error, never a jump.
//! let bogus = FnRef::<fn(u32) -> u32>::from_parts(r.offset() + 8, r.exe());
//! assert!(bogus.resolve().is_err());
//! # Ok::<(), mproc_fnref::FnRefError>(())
//! ```
//!
//! # Platform
//!
//! Linux. Elsewhere the crate builds, [`exe_id`] fails with
//! [`std::io::ErrorKind::Unsupported`] and [`FnRef::new`] with
//! [`FnRefError::Unsupported`].

#![doc(test(attr(deny(warnings))))]

mod desc;
mod error;
mod exe;
mod offset;
mod sys;

pub use crate::desc::{Desc, FnRef};
pub use crate::error::FnRefError;
pub use crate::exe::{ExeId, exe_id};
pub use crate::offset::{address_at, assert_zst, offset_of};
