use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{Error as _, Serializer};

use super::PostcardError;

/// Fails with a message, like a handle that refuses to travel.
struct Refuses(&'static str);

impl Serialize for Refuses {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(S::Error::custom(self.0))
    }
}

#[derive(Serialize)]
enum Shape {
    Poly(Vec<(i32, Refuses)>),
}

#[derive(Serialize)]
struct Deep {
    id: u64,
    tags: BTreeMap<String, Option<Shape>>,
}

fn encode<T: Serialize>(v: &T) -> PostcardError {
    let e = postcard::to_stdvec(v).unwrap_err();
    PostcardError::encode(v, e)
}

#[test]
fn the_custom_message_survives_at_any_depth() {
    assert_eq!(encode(&Refuses("top")).to_string(), "top");
    let deep = Deep {
        id: 1,
        tags: [(
            "k".to_string(),
            Some(Shape::Poly(vec![(3, Refuses("deep inside"))])),
        )]
        .into_iter()
        .collect(),
    };
    let e = encode(&deep);
    assert_eq!(e.to_string(), "deep inside");
    assert_eq!(e.postcard(), &postcard::Error::SerdeSerCustom);
    // As a map key too.
    let mut m = BTreeMap::new();
    m.insert(1u8, (Some(2u8), Refuses("in a map value")));
    assert_eq!(encode(&m).to_string(), "in a map value");
}

#[test]
fn other_errors_keep_postcards_description() {
    let e = postcard::from_bytes::<(u64, String)>(&[1]).unwrap_err();
    let e = PostcardError::decode(e);
    assert_eq!(
        e.to_string(),
        postcard::Error::DeserializeUnexpectedEnd.to_string()
    );
    assert_eq!(e.postcard(), &postcard::Error::DeserializeUnexpectedEnd);
    // Not a custom error: nothing to recover, postcard's text stays.
    let e = PostcardError::encode(&1u8, postcard::Error::SerializeBufferFull);
    assert_eq!(
        e.to_string(),
        postcard::Error::SerializeBufferFull.to_string()
    );
}
