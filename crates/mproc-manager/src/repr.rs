//! Python-like reprs of serde values, for `str(namespace)`.
//!
//! The server stores values as bytes it cannot decode, so a namespace
//! field's repr is made by the client that sets it (or by the server-side
//! update that changes it) and stored next to it. Rendering follows
//! Python's `repr` where serde's data model has a counterpart: strings in
//! single quotes (`'Bob'`), numbers plain, `True`/`False`, `None` for
//! `None` and `()`, lists `[1, 2]`, tuples `(1, 2)`, maps `{'a': 1}`;
//! structs read like a dataclass, `Point(x=1, y=2)`, and enum variants by
//! name (`Red`, `Move(x=1)`).

use std::fmt::{self, Write};

use mproc_shm::codec::{Bytes, Encode, Pod, Postcard};
use serde::ser::{self, Serialize, Serializer};

/// A codec a [`Namespace`](crate::Namespace) can use: it also says how a
/// field it encoded shows in `str(ns)` ([`Namespace::repr`](crate::Namespace::repr)).
///
/// [`Postcard`] shows the value as Python's `repr` would show its serde
/// form (`'Bob'`, `42`, `Point(x=1, y=2)`); [`Pod`] and [`Bytes`] show the
/// bytes they carry as a Python bytes literal (`b'\x01\x00'`).
pub trait NamespaceCodec<T: ?Sized>: Encode<T> {
    /// The repr of `value`, whose encoding is `encoded`.
    fn repr(value: &T, encoded: &[u8]) -> String;
}

impl<T: Serialize + ?Sized> NamespaceCodec<T> for Postcard {
    fn repr(value: &T, _: &[u8]) -> String {
        repr(value)
    }
}

impl<T: ?Sized> NamespaceCodec<T> for Pod
where
    Pod: Encode<T>,
{
    fn repr(_: &T, encoded: &[u8]) -> String {
        repr(&AsBytes(encoded))
    }
}

impl<T: ?Sized> NamespaceCodec<T> for Bytes
where
    Bytes: Encode<T>,
{
    fn repr(_: &T, encoded: &[u8]) -> String {
        repr(&AsBytes(encoded))
    }
}

/// Bytes that serialize as bytes (a Python bytes literal in a repr).
struct AsBytes<'a>(&'a [u8]);

impl Serialize for AsBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// The repr of `v`, or a note that it has none.
pub(crate) fn repr<T: Serialize + ?Sized>(v: &T) -> String {
    let mut r = Repr(String::new());
    match v.serialize(&mut r) {
        Ok(()) => r.0,
        Err(e) => format!("<unrepresentable: {}>", e.0),
    }
}

struct Repr(String);

#[derive(Debug)]
pub(crate) struct ReprError(String);

impl fmt::Display for ReprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReprError {}

impl ser::Error for ReprError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

type Done = Result<(), ReprError>;

/// Python's string repr: single quotes unless the text holds one and no
/// double quote.
fn quote(out: &mut String, s: &str, prefix: &str) {
    let q = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push_str(prefix);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(q);
}

fn float(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("nan");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "inf" } else { "-inf" });
    } else {
        let _ = write!(out, "{v:?}");
    }
}

/// A compound value being written: its items, separated by commas.
pub(crate) struct Compound<'a> {
    r: &'a mut Repr,
    count: usize,
    close: &'static str,
    /// A one-item tuple needs a trailing comma: `(1,)`.
    tuple: bool,
}

impl Compound<'_> {
    fn sep(&mut self) {
        if self.count > 0 {
            self.r.0.push_str(", ");
        }
        self.count += 1;
    }

    fn item<T: Serialize + ?Sized>(&mut self, v: &T) -> Done {
        self.sep();
        v.serialize(&mut *self.r)
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &str, v: &T) -> Done {
        self.sep();
        self.r.0.push_str(name);
        self.r.0.push('=');
        v.serialize(&mut *self.r)
    }

    fn end(self) -> Done {
        if self.tuple && self.count == 1 {
            self.r.0.push(',');
        }
        self.r.0.push_str(self.close);
        Ok(())
    }
}

impl<'a> Repr {
    fn open(&'a mut self, head: &str, close: &'static str, tuple: bool) -> Compound<'a> {
        self.0.push_str(head);
        Compound {
            r: self,
            count: 0,
            close,
            tuple,
        }
    }
}

macro_rules! plain {
    ($($name:ident: $t:ty),* $(,)?) => {$(
        fn $name(self, v: $t) -> Done {
            let _ = write!(self.0, "{v}");
            Ok(())
        }
    )*};
}

impl<'a> ser::Serializer for &'a mut Repr {
    type Ok = ();
    type Error = ReprError;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    plain!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128,
    );

    fn serialize_bool(self, v: bool) -> Done {
        self.0.push_str(if v { "True" } else { "False" });
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Done {
        float(&mut self.0, f64::from(v));
        Ok(())
    }
    fn serialize_f64(self, v: f64) -> Done {
        float(&mut self.0, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Done {
        quote(&mut self.0, v.encode_utf8(&mut [0; 4]), "");
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Done {
        quote(&mut self.0, v, "");
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Done {
        let q = if v.contains(&b'\'') && !v.contains(&b'"') {
            b'"'
        } else {
            b'\''
        };
        self.0.push('b');
        self.0.push(q as char);
        for &b in v {
            match b {
                b'\\' => self.0.push_str("\\\\"),
                b'\n' => self.0.push_str("\\n"),
                b'\r' => self.0.push_str("\\r"),
                b'\t' => self.0.push_str("\\t"),
                b if b == q => {
                    self.0.push('\\');
                    self.0.push(b as char);
                }
                0x20..=0x7e => self.0.push(b as char),
                _ => {
                    let _ = write!(self.0, "\\x{b:02x}");
                }
            }
        }
        self.0.push(q as char);
        Ok(())
    }
    fn serialize_none(self) -> Done {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Done {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Done {
        self.0.push_str("None");
        Ok(())
    }
    fn serialize_unit_struct(self, name: &'static str) -> Done {
        self.0.push_str(name);
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Done {
        self.0.push_str(variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Done {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Done {
        self.0.push_str(variant);
        let mut c = self.open("(", ")", false);
        c.item(v)?;
        c.end()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, ReprError> {
        Ok(self.open("[", "]", false))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, ReprError> {
        Ok(self.open("(", ")", true))
    }
    fn serialize_tuple_struct(
        self,
        name: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, ReprError> {
        self.0.push_str(name);
        Ok(self.open("(", ")", false))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, ReprError> {
        self.0.push_str(variant);
        Ok(self.open("(", ")", false))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, ReprError> {
        Ok(self.open("{", "}", false))
    }
    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Compound<'a>, ReprError> {
        // Fields add their names: `Point(x=1, y=2)`.
        self.serialize_tuple_struct(name, len)
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a>, ReprError> {
        self.serialize_tuple_variant(name, index, variant, len)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! items {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = ReprError;
            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Done {
                self.item(v)
            }
            fn end(self) -> Done {
                Compound::end(self)
            }
        }
    )*};
}

items!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = ReprError;
            fn serialize_field<T: Serialize + ?Sized>(&mut self, name: &'static str, v: &T) -> Done {
                self.field(name, v)
            }
            fn end(self) -> Done {
                Compound::end(self)
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = ReprError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Done {
        self.item(k)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Done {
        self.r.0.push_str(": ");
        v.serialize(&mut *self.r)
    }
    fn end(self) -> Done {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::repr;

    #[derive(Serialize)]
    struct Point {
        x: i32,
        y: f64,
    }

    #[derive(Serialize)]
    enum Shape {
        Dot,
        Circle(f32),
        Rect { w: u8, h: u8 },
    }

    #[test]
    fn values_read_as_python_reprs() {
        assert_eq!(repr("Bob"), "'Bob'");
        assert_eq!(repr("it's"), "\"it's\"");
        assert_eq!(repr("a'b\"c\n"), "'a\\'b\"c\\n'");
        assert_eq!(repr(&42u32), "42");
        assert_eq!(repr(&-1.5f64), "-1.5");
        assert_eq!(repr(&1.0f64), "1.0");
        assert_eq!(repr(&f64::NAN), "nan");
        assert_eq!(repr(&true), "True");
        assert_eq!(repr(&None::<u8>), "None");
        assert_eq!(repr(&Some("x")), "'x'");
        assert_eq!(repr(&vec![1, 2, 3]), "[1, 2, 3]");
        assert_eq!(repr(&(1, "a")), "(1, 'a')");
        assert_eq!(repr(&(7,)), "(7,)");
        assert_eq!(
            repr(&BTreeMap::from([("a", 1), ("b", 2)])),
            "{'a': 1, 'b': 2}"
        );
        assert_eq!(repr(&Point { x: 1, y: 2.5 }), "Point(x=1, y=2.5)");
        assert_eq!(repr(&Shape::Dot), "Dot");
        assert_eq!(repr(&Shape::Circle(1.5)), "Circle(1.5)");
        assert_eq!(repr(&Shape::Rect { w: 2, h: 3 }), "Rect(w=2, h=3)");
        // Python: repr(b"a\x00'") and repr(b"'\"\n").
        assert_eq!(repr(&Bytes(b"a\x00'")), "b\"a\\x00'\"");
        assert_eq!(repr(&Bytes(b"'\"\n")), "b'\\'\"\\n'");
    }

    struct Bytes<'a>(&'a [u8]);
    impl Serialize for Bytes<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }
}
