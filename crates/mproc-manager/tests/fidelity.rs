//! CPython fidelity of the manager (cpython-semantics.md §1.8): iterators,
//! arrays, list slices and sorting, namespace repr, shutdown outcomes,
//! encode errors, and the handshake bound.

mod common;

use common::watchdog;
use mproc_manager::{Error, Manager};
use serde::ser::{Error as _, Serialize, Serializer};

/// A value whose `Serialize` refuses with a reason.
struct Refuses;

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom("refused: 42 is not allowed here"))
    }
}

#[test]
fn an_encode_error_keeps_the_serialize_impls_reason() {
    watchdog(60, || {
        let m = Manager::start().unwrap();
        let ns = m.namespace().unwrap();
        let e = ns.set("x", &Refuses).unwrap_err();
        assert!(matches!(e, Error::Encode(_)), "{e:?}");
        assert!(
            e.to_string().contains("refused: 42 is not allowed here"),
            "{e}"
        );
        let e = m.value(Refuses).unwrap_err();
        assert!(e.to_string().contains("refused: 42"), "{e}");
        m.shutdown().unwrap();
    });
}
