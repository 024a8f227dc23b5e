//! Typed reads of platform answers that tolerate what platforms send: numbers as strings, nulls,
//! missing and unknown fields, a value of another type than documented.
//!
//! An adapter declares the fields it reads as a `#[derive(Deserialize)]` struct of [`Field`]s
//! (objects inside as [`Obj`], arrays as [`Items`]) and reads the answer with [`from_slice`].
//! Strings are borrowed from the answer where JSON allows it (no escapes), and nothing the
//! adapter does not read is kept: no `serde_json::Value` tree is built, which in wasm was most of
//! an adapter's CPU (an allocation per string and object, a byte-wise key compare per map
//! lookup).
//!
//! Nothing here fails on valid JSON of any shape: a field of an unexpected type is
//! [`Field::Nested`] or `None`, never an error. The one thing a typed read refuses that a
//! `Value` accepts is an object with a key given twice; [`from_slice`] then reads the answer
//! through a `Value`, which keeps the last, so both readers agree on every answer.
//!
//! ```
//! use adapter_kit::json::{Field, Obj, from_slice};
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Answer<'a> {
//!     #[serde(borrow, default)]
//!     coupon: Obj<Coupon<'a>>,
//! }
//!
//! #[derive(Deserialize)]
//! struct Coupon<'a> {
//!     #[serde(borrow, default)]
//!     id: Field<'a>,
//!     #[serde(borrow, default)]
//!     amount: Field<'a>,
//! }
//!
//! let answer: Answer = from_slice(br#"{"coupon":{"id":12,"amount":"100","x":[1]}}"#).unwrap();
//! let coupon = answer.coupon.0.unwrap();
//! assert_eq!(coupon.id.text().as_deref(), Some("12"));
//! assert_eq!(coupon.amount, Field::Text("100".into()));
//! ```

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// One scalar field of an answer, whatever JSON type it came as.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Field<'a> {
    /// `null`, or the field is missing: platforms use both for "no value".
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, exactly as `serde_json::Value` keeps it (so it prints the same).
    Number(Number),
    /// A string, borrowed from the answer unless it had escapes.
    Text(Cow<'a, str>),
    /// An array or an object where a scalar was expected; its content is skipped.
    Nested,
}

impl Field<'_> {
    /// A string as it is, or a number or boolean rendered as text; `None` for null, arrays and
    /// objects.
    pub fn text(&self) -> Option<Cow<'_, str>> {
        match self {
            Self::Text(text) => Some(Cow::Borrowed(text)),
            Self::Number(number) => Some(Cow::Owned(number_text(number))),
            Self::Bool(flag) => Some(Cow::Borrowed(if *flag { "true" } else { "false" })),
            Self::Null | Self::Nested => None,
        }
    }
}

/// A number as `serde_json` prints it. Integers (the usual case: ids, amounts) are written with
/// itoa into a string of their exact length; `to_string` grows the string as it writes, which in
/// wasm is a realloc each time.
fn number_text(number: &Number) -> String {
    let mut buffer = itoa::Buffer::new();
    if let Some(n) = number.as_u64() {
        buffer.format(n).to_owned()
    } else if let Some(n) = number.as_i64() {
        buffer.format(n).to_owned()
    } else {
        number.to_string()
    }
}

/// A `Value` seen as a field: arrays and objects are [`Field::Nested`].
impl<'a> From<&'a Value> for Field<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => Self::Null,
            Value::Bool(flag) => Self::Bool(*flag),
            Value::Number(number) => Self::Number(number.clone()),
            Value::String(text) => Self::Text(Cow::Borrowed(text)),
            Value::Array(_) | Value::Object(_) => Self::Nested,
        }
    }
}

/// A field seen again, borrowing from the first.
impl<'a> From<&'a Field<'_>> for Field<'a> {
    fn from(field: &'a Field<'_>) -> Self {
        match field {
            Field::Text(text) => Self::Text(Cow::Borrowed(text)),
            Field::Null => Self::Null,
            Field::Bool(flag) => Self::Bool(*flag),
            Field::Number(number) => Self::Number(number.clone()),
            Field::Nested => Self::Nested,
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldVisitor<'a>(PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
            type Value = Field<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Field::Bool(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Field::Number(v.into()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Field::Number(v.into()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // JSON has no non-finite numbers; serde_json refuses them before this.
                Ok(Number::from_f64(v).map_or(Field::Null, Field::Number))
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Field::Text(Cow::Owned(v)))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Field::Null)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Field::deserialize(d)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Nested)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Nested)
            }
        }

        deserializer.deserialize_any(FieldVisitor(PhantomData))
    }
}

/// An object read as `T`; `None` when the value is anything else (null, missing, a scalar, an
/// array). Read a derived struct through `Obj`: on its own, serde would also read it from an
/// array, field by field.
#[derive(Debug, Clone, PartialEq)]
pub struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| Obj(Some(t)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Obj(None))
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Obj::deserialize(d)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Obj(None))
            }
        }

        deserializer.deserialize_any(ObjVisitor(PhantomData))
    }
}

/// The items of an array, each read as `T`; no items when the value is not an array. Use
/// `Items<Obj<X>>` to skip items that are not objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Items<T>(pub Vec<T>);

impl<T> Default for Items<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for ItemsVisitor<T> {
            type Value = Items<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(item) = seq.next_element::<T>()? {
                    items.push(item);
                }
                Ok(Items(items))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Items(Vec::new()))
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                Items::deserialize(d)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Items(Vec::new()))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Items(Vec::new()))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Items(Vec::new()))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Items(Vec::new()))
            }

            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Items(Vec::new()))
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Items(Vec::new()))
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Items(Vec::new()))
            }
        }

        deserializer.deserialize_any(ItemsVisitor(PhantomData))
    }
}

/// Reads `T` from JSON text, borrowing from it.
///
/// The typed read refuses an object with a key given twice, where `serde_json::Value` keeps
/// the last value; the text is then read through a `Value`, so that `T` sees what a `Value`
/// would have held. Syntax errors are the `Value` reader's.
pub fn from_slice<'a, T: Deserialize<'a>>(text: &'a [u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(text).or_else(|_| from_value(serde_json::from_slice(text)?))
}

/// Reads `T` from a `Value` (which never has a key twice).
pub fn from_value<'a, T: Deserialize<'a>>(value: Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Coupon<'a> {
        #[serde(borrow, default)]
        id: Field<'a>,
        #[serde(borrow, default)]
        name: Field<'a>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Answer<'a> {
        #[serde(borrow, default)]
        coupon: Obj<Coupon<'a>>,
        #[serde(borrow, default)]
        list: Items<Obj<Coupon<'a>>>,
    }

    #[test]
    fn fields_take_any_type() {
        let read = |text: &str| {
            from_slice::<Field<'_>>(text.as_bytes())
                .unwrap()
                .text()
                .map(Cow::into_owned)
        };
        assert_eq!(read(r#""a""#).as_deref(), Some("a"));
        assert_eq!(read("12").as_deref(), Some("12"));
        assert_eq!(read("-12").as_deref(), Some("-12"));
        assert_eq!(read("1.5").as_deref(), Some("1.5"));
        assert_eq!(
            read("18446744073709551615").as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(read("true").as_deref(), Some("true"));
        assert_eq!(read("null"), None);
        assert_eq!(read("[1,{}]"), None);
        assert_eq!(read(r#"{"a":[1]}"#), None);
        assert_eq!(from_slice::<Field<'_>>(b"{}").unwrap(), Field::Nested);
    }

    #[test]
    fn numbers_print_as_a_value_prints_them() {
        for text in [
            "0",
            "-0",
            "1e300",
            "0.1",
            "123456789012345678",
            "-9223372036854775808",
            "2.50",
        ] {
            let field: Field<'_> = from_slice(text.as_bytes()).unwrap();
            let value: Value = serde_json::from_str(text).unwrap();
            assert_eq!(field.text(), Field::from(&value).text(), "{text}");
        }
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let field: Field<'_> = from_slice(br#""plain""#).unwrap();
        assert!(matches!(field, Field::Text(Cow::Borrowed("plain"))));
        let field: Field<'_> = from_slice(br#""a\"b""#).unwrap();
        assert!(matches!(&field, Field::Text(Cow::Owned(text)) if text == "a\"b"));
    }

    #[test]
    fn missing_null_and_unknown_fields_read_as_nothing() {
        let answer: Answer = from_slice(br#"{"coupon":null,"extra":{"x":1},"list":null}"#).unwrap();
        assert_eq!(answer.coupon, Obj(None));
        assert!(answer.list.0.is_empty());
        let answer: Answer = from_slice(b"{}").unwrap();
        assert_eq!(answer.coupon, Obj(None));
        let answer: Answer = from_slice(br#"{"coupon":"x","list":{"a":[1]}}"#).unwrap();
        assert_eq!(answer.coupon, Obj(None), "a scalar is not an object");
        assert!(answer.list.0.is_empty(), "an object is not a list");
    }

    #[test]
    fn list_items_that_are_not_objects_are_none() {
        let answer: Answer =
            from_slice(br#"{"list":[{"id":1},null,"x",[2],{"name":"n"}]}"#).unwrap();
        let ids: Vec<Option<String>> = answer
            .list
            .0
            .iter()
            .map(|item| {
                item.0
                    .as_ref()
                    .and_then(|c| c.id.text().map(Cow::into_owned))
            })
            .collect();
        assert_eq!(ids, [Some("1".to_owned()), None, None, None, None]);
    }

    #[test]
    fn a_key_given_twice_keeps_the_last_as_a_value_does() {
        let text = br#"{"coupon":{"id":1,"id":"second"},"coupon":{"id":"third"}}"#;
        let answer: Answer = from_slice(text).unwrap();
        let value: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(value, json!({"coupon": {"id": "third"}}));
        assert_eq!(answer.coupon.0.unwrap().id, Field::Text("third".into()));
        let answer: Answer = from_slice(br#"{"coupon":{"id":1,"id":"second"}}"#).unwrap();
        assert_eq!(answer.coupon.0.unwrap().id, Field::Text("second".into()));
    }

    #[test]
    fn syntax_errors_are_errors() {
        for text in ["", "{", r#"{"coupon":}"#, "<html>", "{} x"] {
            assert!(from_slice::<Answer>(text.as_bytes()).is_err(), "{text}");
        }
    }

    #[test]
    fn the_same_struct_reads_from_a_value() {
        let value = json!({"coupon": {"id": 7, "name": "n"}, "list": [{"id": "a"}]});
        let answer: Answer = from_value(value).unwrap();
        assert_eq!(answer.coupon.0.unwrap().id.text().as_deref(), Some("7"));
        assert_eq!(answer.list.0.len(), 1);
    }
}
