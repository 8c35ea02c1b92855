//! What every typed proxy has in common.

use mproc_shm::codec::Codec;

use crate::client::RawProxy;
use crate::error::Error;
use crate::proto::{Kind, Op, Reply, Val};

/// A typed handle to a shared object in a manager.
///
/// Proxies are cheap to clone (clones share the connection pool) and can be
/// sent to other processes: as process arguments, or over an mproc
/// `Connection`, they travel as mproc handles (see the crate docs on
/// authkeys). Every method is a round trip to the server; results are
/// copies.
pub trait Proxy: Sized {
    /// Whether this proxy type can reach an object of `kind`.
    fn accepts(kind: Kind) -> bool;

    /// The untyped proxy underneath.
    fn raw(&self) -> &RawProxy;

    /// Wraps an untyped proxy.
    ///
    /// # Errors
    /// [`Error::WrongKind`] if this type cannot reach `raw`'s kind of object.
    fn from_raw(raw: RawProxy) -> Result<Self, Error>;
}

pub(crate) use crate::error::unexpected;

pub(crate) fn unit(r: Reply) -> Result<(), Error> {
    match r {
        Reply::Unit => Ok(()),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn count(r: Reply) -> Result<u64, Error> {
    match r {
        Reply::Count(n) => Ok(n),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn boolean(r: Reply) -> Result<bool, Error> {
    match r {
        Reply::Bool(b) => Ok(b),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn bytes(r: Reply) -> Result<Val, Error> {
    match r {
        Reply::Bytes(b) => Ok(b),
        r => Err(unexpected(r)),
    }
}

/// Runs a server-side update (a function sent by reference, at offset
/// `func`) with `arg`: the operation is made by `op` from the offset and
/// the encoded argument, and the function's result comes back. Refused
/// here, before any call, when the server runs another executable.
pub(crate) fn run_update<C: Codec<A> + Codec<R>, A, R>(
    raw: &RawProxy,
    func: i64,
    arg: &A,
    op: impl FnOnce(i64, Vec<u8>) -> Op,
) -> Result<R, Error> {
    if !raw.session.same_exe()? {
        return Err(Error::ForeignExecutable);
    }
    let b = bytes(raw.call(op(func, raw.enc_bytes::<C, A>(arg)?))?)?;
    raw.dec::<C, R>(&b)
}

/// Defines a typed proxy struct over `RawProxy` with its common impls.
/// `Dict<K, V; C>`: the user's types, then the codec of its values, if it
/// has any (a type parameter defaulting to [`Postcard`](mproc_shm::codec::Postcard)).
macro_rules! proxy_type {
    ($(#[$m:meta])* $name:ident<$($t:ident),* $(; $c:ident)?>, $kinds:pat, $expected:expr) => {
        $(#[$m])*
        pub struct $name<$($t,)* $($c = mproc_shm::codec::Postcard)?> {
            pub(crate) raw: $crate::client::RawProxy,
            _t: std::marker::PhantomData<fn() -> ($($t,)* $($c,)?)>,
        }

        impl<$($t,)* $($c)?> $name<$($t,)* $($c)?> {
            #[allow(dead_code)]
            pub(crate) fn wrap(raw: $crate::client::RawProxy) -> Self {
                Self { raw, _t: std::marker::PhantomData }
            }
        }

        impl<$($t,)* $($c)?> Clone for $name<$($t,)* $($c)?> {
            fn clone(&self) -> Self {
                Self::wrap(self.raw.clone())
            }
        }

        impl<$($t,)* $($c)?> std::fmt::Debug for $name<$($t,)* $($c)?> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("id", &self.raw.id)
                    .field("address", &self.raw.session.address)
                    .finish_non_exhaustive()
            }
        }

        impl<$($t,)* $($c)?> $crate::proxy::Proxy for $name<$($t,)* $($c)?> {
            fn accepts(kind: $crate::proto::Kind) -> bool {
                #[allow(unused_imports)]
                use $crate::proto::Kind::*;
                matches!(kind, $kinds)
            }

            fn raw(&self) -> &$crate::client::RawProxy {
                &self.raw
            }

            fn from_raw(raw: $crate::client::RawProxy) -> Result<Self, $crate::error::Error> {
                if <Self as $crate::proxy::Proxy>::accepts(raw.kind) {
                    Ok(Self::wrap(raw))
                } else {
                    Err($crate::error::Error::WrongKind { expected: $expected, found: raw.kind })
                }
            }
        }

        impl<$($t,)* $($c)?> serde::Serialize for $name<$($t,)* $($c)?> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.raw.serialize(s)
            }
        }

        impl<'de, $($t,)* $($c)?> serde::Deserialize<'de> for $name<$($t,)* $($c)?> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = $crate::client::RawProxy::deserialize(d)?;
                <Self as $crate::proxy::Proxy>::from_raw(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

pub(crate) use proxy_type;

/// `len`, `is_empty` and `clear` of a container proxy (dict, list):
/// `$what` names its contents in the docs ("entries", "items").
macro_rules! container_methods {
    ($what:literal) => {
        #[doc = concat!("The number of ", $what, ".")]
        ///
        /// # Errors
        /// [`Error::Disconnected`].
        pub fn len(&self) -> Result<usize, Error> {
            Ok($crate::proxy::count(self.raw.call(Op::Len)?)? as usize)
        }

        #[doc = concat!("Whether there are no ", $what, ".")]
        ///
        /// # Errors
        /// [`Error::Disconnected`].
        pub fn is_empty(&self) -> Result<bool, Error> {
            Ok(self.len()? == 0)
        }

        #[doc = concat!("Removes every one of the ", $what, ".")]
        ///
        /// # Errors
        /// [`Error::Disconnected`].
        pub fn clear(&self) -> Result<(), Error> {
            $crate::proxy::unit(self.raw.call(Op::Clear)?)
        }
    };
}

pub(crate) use container_methods;
