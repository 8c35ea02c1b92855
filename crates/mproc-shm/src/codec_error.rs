//! Postcard errors that keep their reason.
//!
//! postcard turns `serde::ser::Error::custom("…")` into a bare
//! `SerdeSerCustom` ("Serde Serialization Error") and drops the message, so
//! a `Serialize` impl that explains why it failed (a handle that cannot be
//! sent, a value out of range) is not heard. [`PostcardError::encode`] gets
//! the message back: on that error, and only then, it serializes the value
//! once more into a serializer that writes nothing and keeps the message.
//! Every mproc codec built on postcard (queues, connections, and the crates
//! above them) reports its errors through this one type.
//!
//! ```
//! use mproc_shm::codec_error::PostcardError;
//! use serde::ser::{Error, Serialize, Serializer};
//!
//! struct Secret;
//! impl Serialize for Secret {
//!     fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
//!         Err(S::Error::custom("secrets stay in this process"))
//!     }
//! }
//!
//! let e = postcard::to_stdvec(&Secret).unwrap_err();
//! assert_eq!(e.to_string(), "Serde Serialization Error");
//! let e = PostcardError::encode(&Secret, e);
//! assert_eq!(e.to_string(), "secrets stay in this process");
//! ```

use std::error::Error;
use std::fmt;

use serde::ser::{self, Serialize};

/// A postcard encode or decode error, with the message a `Serialize` impl
/// gave to `serde::ser::Error::custom` when there was one. Its `Display` is
/// that message, or else postcard's own description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostcardError {
    error: postcard::Error,
    message: Option<String>,
}

impl PostcardError {
    /// The error postcard returned for encoding `value`. If it is a custom
    /// error, `value` is serialized once more, writing nothing, to recover
    /// the message (a `Serialize` impl that fails only the first time
    /// yields postcard's description instead).
    pub fn encode<T: Serialize + ?Sized>(value: &T, error: postcard::Error) -> Self {
        let message = match error {
            postcard::Error::SerdeSerCustom => value.serialize(Capture).err().map(|c| c.0),
            _ => None,
        };
        Self { error, message }
    }

    /// The error postcard returned for decoding. (postcard keeps no message
    /// for `serde::de::Error::custom` either, and a deserializer cannot be
    /// run again without its input, so a custom decode error reads "Serde
    /// Deserialization Error".)
    pub fn decode(error: postcard::Error) -> Self {
        Self {
            error,
            message: None,
        }
    }

    /// postcard's own error.
    pub fn postcard(&self) -> &postcard::Error {
        &self.error
    }
}

impl fmt::Display for PostcardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => f.write_str(m),
            None => fmt::Display::fmt(&self.error, f),
        }
    }
}

impl Error for PostcardError {}

/// The message of a custom serialization error.
#[derive(Debug)]
struct Captured(String);

impl fmt::Display for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Captured {}

impl ser::Error for Captured {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// A serializer that writes nothing: it only walks the value, so that a
/// failing `Serialize` impl reports its message. Like postcard, it is not
/// human-readable, so impls take the same path as they did under postcard.
struct Capture;

type Done = Result<(), Captured>;

/// The methods that walk nothing: `name(arguments…)` ignores the arguments.
macro_rules! ignore {
    ($($name:ident($($t:ty),*)),* $(,)?) => {$(
        fn $name(self, $(_: $t),*) -> Done {
            Ok(())
        }
    )*};
}

/// The methods of a value that wraps one inner value: the inner one is
/// walked.
macro_rules! walk_inner {
    ($($name:ident($($t:ty),*)),* $(,)?) => {$(
        fn $name<T: Serialize + ?Sized>(self, $(_: $t,)* v: &T) -> Done {
            v.serialize(self)
        }
    )*};
}

/// The methods that start a compound value: its elements are walked by
/// the impls of the `compound!` traits below.
macro_rules! open {
    ($($name:ident($($t:ty),*)),* $(,)?) => {$(
        fn $name(self, $(_: $t),*) -> Result<Self, Captured> {
            Ok(self)
        }
    )*};
}

impl ser::Serializer for Capture {
    type Ok = ();
    type Error = Captured;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    ignore!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    walk_inner!(
        serialize_some(),
        serialize_newtype_struct(&'static str),
        serialize_newtype_variant(&'static str, u32, &'static str),
    );

    open!(
        serialize_seq(Option<usize>),
        serialize_tuple(usize),
        serialize_tuple_struct(&'static str, usize),
        serialize_tuple_variant(&'static str, u32, &'static str, usize),
        serialize_map(Option<usize>),
        serialize_struct(&'static str, usize),
        serialize_struct_variant(&'static str, u32, &'static str, usize),
    );

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The compound serializers: each element is walked like the whole.
macro_rules! compound {
    ($($tr:ident :: $m:ident ($($key:ident: $kt:ty),*)),* $(,)?) => {$(
        impl ser::$tr for Capture {
            type Ok = ();
            type Error = Captured;

            fn $m<T: Serialize + ?Sized>(&mut self, $($key: $kt,)* v: &T) -> Done {
                $(let _ = $key;)*
                v.serialize(Capture)
            }

            fn end(self) -> Done {
                Ok(())
            }
        }
    )*};
}

compound!(
    SerializeSeq::serialize_element(),
    SerializeTuple::serialize_element(),
    SerializeTupleStruct::serialize_field(),
    SerializeTupleVariant::serialize_field(),
    SerializeStruct::serialize_field(key: &'static str),
    SerializeStructVariant::serialize_field(key: &'static str),
);

impl ser::SerializeMap for Capture {
    type Ok = ();
    type Error = Captured;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Done {
        k.serialize(Capture)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Done {
        v.serialize(Capture)
    }

    fn end(self) -> Done {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
