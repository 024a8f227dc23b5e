//! Typed reads of TOP answers: [`parse_envelope_as`] finds the response object as
//! [`parse_envelope`] does and reads it as the adapter's own struct, and [`TopList`] reads a list
//! field in every shape [`unwrap_list`](crate::unwrap_list) takes.
//!
//! The fast path reads a wrapped answer in one pass without building a `serde_json::Value`: the
//! `*_response` object is read as `T` while the envelope is scanned. Whenever that path meets
//! something it does not decide alone (an `error_response`, a key given twice, two response
//! objects, a key with escapes, a response without its own `request_id`, anything that is not
//! an object), the answer goes through [`parse_envelope`] and `T` is read from its `Value`, so
//! both paths mean the same by every answer.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use adapter_kit::json::{Field, Obj, from_value};
use serde::de::value::{
    BoolDeserializer, BorrowedStrDeserializer, F64Deserializer, I64Deserializer,
    MapAccessDeserializer, StrDeserializer, U64Deserializer,
};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::envelope::bad_response;
use crate::{TopError, as_text, parse_envelope, request_id};

/// A TOP response object as an adapter reads it: a `Deserialize` struct that keeps the
/// response's own `request_id` (a [`Field`] named so), and reads any object without failing:
/// [`Field`]s, [`Obj`]s, [`TopList`]s, unknown fields ignored.
pub trait TopResponse<'a>: Deserialize<'a> {
    /// The response's own `request_id`, when it has a non-blank one.
    fn request_id(&self) -> Option<String>;
}

/// Implements [`TopResponse`] for response structs (each with a lifetime `'a`) whose
/// `request_id: Field<'a>` is the response's own: `top_common::top_response!(SendResponse);`
#[macro_export]
macro_rules! top_response {
    ($($name:ident),* $(,)?) => {
        $(
            impl<'a> $crate::TopResponse<'a> for $name<'a> {
                fn request_id(&self) -> ::core::option::Option<::std::string::String> {
                    $crate::non_blank(&self.request_id)
                }
            }
        )*
    };
}

/// A response whose answer proper is one `result` object (Tmall nrt's query, ALSC's APIs).
#[derive(Debug, Default, serde::Deserialize)]
pub struct ResultResponse<'a, T> {
    /// The answer proper; `None` when the response has no `result` object.
    #[serde(default = "Obj::default")]
    pub result: Obj<T>,
    /// The TOP request id.
    #[serde(borrow, default)]
    pub request_id: Field<'a>,
}

impl<'a, T: Deserialize<'a>> TopResponse<'a> for ResultResponse<'a, T> {
    fn request_id(&self) -> Option<String> {
        non_blank(&self.request_id)
    }
}

/// The untyped response of [`parse_envelope`].
impl TopResponse<'_> for Value {
    fn request_id(&self) -> Option<String> {
        self.get("request_id").and_then(non_blank)
    }
}

/// A `request_id` field as text, when it is not blank.
pub fn non_blank<'a>(field: impl Into<Field<'a>>) -> Option<String> {
    as_text(field).filter(|id| !id.trim().is_empty())
}

/// [`parse_envelope`], with the response object read as `T`, and the answer's TOP `request_id`
/// (as [`request_id`] finds it in the response).
///
/// A `T` that fails on the response anyway makes the answer a `transient` `bad-response`.
///
/// ```
/// use serde::Deserialize;
/// use top_common::{Field, TopResponse, as_bool, non_blank, parse_envelope_as};
///
/// #[derive(Deserialize)]
/// struct Sent<'a> {
///     #[serde(borrow, default)]
///     is_success: Field<'a>,
///     #[serde(borrow, default)]
///     request_id: Field<'a>,
/// }
///
/// impl<'a> TopResponse<'a> for Sent<'a> {
///     fn request_id(&self) -> Option<String> {
///         non_blank(&self.request_id)
///     }
/// }
///
/// let body = br#"{"x_send_response":{"is_success":"true","request_id":"r1"}}"#;
/// let (sent, request_id) = parse_envelope_as::<Sent>(body).unwrap();
/// assert_eq!(as_bool(&sent.is_success), Some(true));
/// assert_eq!(request_id.as_deref(), Some("r1"));
/// ```
pub fn parse_envelope_as<'a, T: TopResponse<'a>>(
    body: &'a [u8],
) -> Result<(T, Option<String>), TopError> {
    let trimmed = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if let Some(read) = fast(trimmed) {
        return Ok(read);
    }
    let response = parse_envelope(body)?;
    let id = request_id(&response);
    match from_value::<T>(response) {
        Ok(typed) => Ok((typed, id)),
        Err(error) => Err(TopError {
            request_id: id,
            ..bad_response(
                &format!("the response does not have the expected shape ({error})"),
                body,
            )
        }),
    }
}

/// The fast path: `None` whenever the answer must go the reference way.
fn fast<'a, T: TopResponse<'a>>(body: &'a [u8]) -> Option<(T, Option<String>)> {
    let root: Root<T> = serde_json::from_slice(body).ok()?;
    match root.response {
        Some(typed) => {
            // Without its own id, the reference reader looks deeper, into `*_response` objects
            // inside the response.
            let id = typed.request_id()?;
            Some((typed, Some(id)))
        }
        None => {
            // A simplified answer: the root is the response. It holds no `*_response` object, so
            // its own `request_id` is the answer's.
            let typed = serde_json::from_slice::<T>(body).ok()?;
            let id = typed.request_id();
            Some((typed, id))
        }
    }
}

/// Marks an answer the fast path leaves to the reference path.
fn decline<E: de::Error>() -> E {
    E::custom("left to the reference reader")
}

/// The envelope: the one `*_response` object, read as `T`, if there is one.
struct Root<T> {
    response: Option<T>,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Root<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RootVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for RootVisitor<T> {
            type Value = Root<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a TOP answer object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Root<T>, A::Error> {
                let mut root = Root { response: None };
                let mut response_keys: Vec<&'de str> = Vec::new();
                // Keys with escapes are not borrowable: the reference path reads those.
                while let Some(key) = map.next_key::<&'de str>()? {
                    if key == "error_response" {
                        return Err(decline());
                    } else if key.ends_with("_response") {
                        if response_keys.contains(&key) {
                            return Err(decline());
                        }
                        response_keys.push(key);
                        if let Obj(Some(response)) = map.next_value::<Obj<T>>()? {
                            // Two response objects: the reference reader picks by key order.
                            if root.response.is_some() {
                                return Err(decline());
                            }
                            root.response = Some(response);
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(root)
            }
        }

        deserializer.deserialize_map(RootVisitor(PhantomData))
    }
}

/// The wrapper key of a TOP list field (`coupon_result` in `{"coupon_result": [...]}`), for
/// [`TopList`].
pub trait ListKey {
    /// The wrapper's name.
    const WRAPPER: &'static str;
}

/// Declares [`ListKey`] marker types: `top_common::list_keys!(CouponResult = "coupon_result");`
#[macro_export]
macro_rules! list_keys {
    ($($name:ident = $key:literal),* $(,)?) => {
        $(
            #[doc = concat!("The `", $key, "` wrapper of a TOP list field.")]
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $name;

            impl $crate::ListKey for $name {
                const WRAPPER: &'static str = $key;
            }
        )*
    };
}

/// A TOP list field read as `T`s, in every shape [`unwrap_list`](crate::unwrap_list) takes: a plain array, the
/// array under the wrapper key `K` (or under another name when it is the object's only value),
/// one object where a list was expected (under the wrapper or bare), `null`, missing or empty:
/// no items. `null` items are dropped; use `TopList<Obj<X>, K>` to skip items that are not
/// objects.
#[derive(Debug, Clone, PartialEq)]
pub struct TopList<T, K> {
    /// The items, in order.
    pub items: Vec<T>,
    key: PhantomData<K>,
}

impl<T, K> Default for TopList<T, K> {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl<T, K> TopList<T, K> {
    fn new(items: Vec<T>) -> Self {
        Self {
            items,
            key: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>, K: ListKey> Deserialize<'de> for TopList<T, K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = deserializer.deserialize_any(ListVisitor {
            wrapper: Some(K::WRAPPER),
            items: PhantomData,
        })?;
        Ok(Self::new(items))
    }
}

/// The value under a list's wrapper key: an array, one item, or `null`.
struct Wrapped<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Wrapped<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ListVisitor {
                wrapper: None,
                items: PhantomData,
            })
            .map(Wrapped)
    }
}

/// Reads a list field (`wrapper` is its wrapper key) or, without a wrapper, the value under the
/// wrapper key, where an object is one item.
struct ListVisitor<T> {
    wrapper: Option<&'static str>,
    items: PhantomData<T>,
}

impl<T> ListVisitor<T> {
    fn one<'de, E: de::Error>(
        self,
        deserializer: impl Deserializer<'de, Error = E>,
    ) -> Result<Vec<T>, E>
    where
        T: Deserialize<'de>,
    {
        T::deserialize(deserializer).map(|item| vec![item])
    }
}

/// A map key, borrowed from the answer unless it has escapes (or comes from a `Value`).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

/// Items from `Value`s (a list under another name, or an object that is the item itself).
fn from_values<'de, T: Deserialize<'de>, E: de::Error>(
    values: impl IntoIterator<Item = Value>,
) -> Result<Vec<T>, E> {
    values
        .into_iter()
        .filter(|value| !value.is_null())
        .map(|value| from_value(value).map_err(E::custom))
        .collect()
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for ListVisitor<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOP list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(128));
        while let Some(item) = seq.next_element::<Option<T>>()? {
            items.extend(item);
        }
        Ok(items)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<T>, A::Error> {
        let Some(wrapper) = self.wrapper else {
            return self.one(MapAccessDeserializer::new(map));
        };
        let mut wrapped: Option<Vec<T>> = None;
        // Entries under other names, kept only to decide what the object is once it has been
        // read: in the usual shapes the wrapper is the only key and this stays empty.
        let mut others = Map::new();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == wrapper {
                // A wrapper given twice: the last counts, as in a `Value`.
                wrapped = Some(map.next_value::<Wrapped<T>>()?.0);
            } else {
                others.insert(key.into_owned(), map.next_value::<Value>()?);
            }
        }
        if let Some(items) = wrapped {
            return Ok(items);
        }
        let mut values = others.values_mut();
        match (values.next(), values.next()) {
            (None, _) => Ok(Vec::new()),
            (Some(Value::Array(items)), None) => from_values(std::mem::take(items)),
            _ => from_values([Value::Object(others)]),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
        Ok(Vec::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<T>, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Vec<T>, E> {
        self.one(BoolDeserializer::new(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Vec<T>, E> {
        self.one(I64Deserializer::new(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Vec<T>, E> {
        self.one(U64Deserializer::new(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Vec<T>, E> {
        self.one(F64Deserializer::new(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Vec<T>, E> {
        self.one(BorrowedStrDeserializer::new(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<T>, E> {
        self.one(StrDeserializer::new(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unwrap_list;
    use serde::Deserialize;
    use serde_json::json;

    list_keys!(CouponResult = "coupon_result");

    #[derive(Debug, Deserialize)]
    struct Response<'a> {
        #[serde(borrow, default)]
        coupon_results: TopList<Obj<Item<'a>>, CouponResult>,
        #[serde(borrow, default)]
        is_success: Field<'a>,
        #[serde(borrow, default)]
        request_id: Field<'a>,
    }

    top_response!(Response);

    #[derive(Debug, Deserialize, PartialEq)]
    struct Item<'a> {
        #[serde(borrow, default)]
        coupon_number: Field<'a>,
    }

    fn numbers(response: &Response<'_>) -> Vec<Option<String>> {
        response
            .coupon_results
            .items
            .iter()
            .map(|item| {
                item.0
                    .as_ref()
                    .and_then(|item| item.coupon_number.text().map(Cow::into_owned))
            })
            .collect()
    }

    /// What the `Value` reader makes of the same list: the text of each item's number.
    fn value_numbers(list: &Value) -> Vec<Option<String>> {
        unwrap_list(list, "coupon_result")
            .into_iter()
            .map(|item| {
                item.get("coupon_number")
                    .and_then(crate::as_text)
                    .filter(|_| item.is_object())
            })
            .collect()
    }

    #[test]
    fn lists_read_every_shape_the_value_reader_reads() {
        let item = json!({"coupon_number": 1});
        let shapes = [
            json!({"coupon_result": [item.clone(), null, "x", {"coupon_number": "2"}]}),
            json!([item.clone(), null]),
            json!({"coupon_result": item.clone()}),
            json!({"coupon_result": null}),
            json!({"coupon_result": []}),
            json!({"other_wrapper": [item.clone()]}),
            json!({"coupon_result": [item.clone()], "other": [1]}),
            json!({"other": [item.clone()], "more": 1}),
            item.clone(),
            json!({}),
            json!([]),
            json!(null),
            json!("text"),
            json!(7),
        ];
        for shape in shapes {
            let body = json!({"a_response": {"coupon_results": shape, "request_id": "r"}});
            let body = serde_json::to_vec(&body).unwrap();
            let (response, _) = parse_envelope_as::<Response<'_>>(&body).unwrap();
            assert_eq!(numbers(&response), value_numbers(&shape), "{shape}");
        }
    }

    #[test]
    fn a_missing_list_is_empty() {
        let (response, _) = parse_envelope_as::<Response<'_>>(br#"{"is_success":false}"#).unwrap();
        assert!(response.coupon_results.items.is_empty());
        assert_eq!(response.is_success, Field::Bool(false));
    }

    /// Every answer reads as the `Value` reader reads it: the same response and request id, or
    /// the same error.
    #[test]
    fn envelopes_read_as_the_value_reader_reads_them() {
        let bodies: &[&[u8]] = &[
            br#"{"b_response":{"request_id":"rb"},"a_response":{"is_success":true,"request_id":"ra"}}"#,
            br#"{"a_response":5,"b_response":{"x":1},"request_id":"root"}"#,
            br#"{"is_success":true,"request_id":"simple"}"#,
            br#"{"is_success":true,"request_id":"  "}"#,
            br#"{"is_success":true,"request_id":12}"#,
            br#"{"x_response":{"y_response":{"request_id":"inner"},"a_response":{"request_id":" "}}}"#,
            br#"{"x_response":{"request_id":"first","request_id":"second"}}"#,
            br#"{"x_response":{"a":1},"x_response":{"b":2}}"#,
            br#"{"x_response":{"a":1},"x_response":"scalar"}"#,
            br#"{"request_id":"one","request_id":"two","ok":true}"#,
            br#"{"x\u005fresponse":{"a":1}}"#,
            br#"{"x_response":{"a":"\u4e2d"},"error_response":{"code":7,"msg":"App Call Limited"}}"#,
            b"\xEF\xBB\xBF{\"a_response\":{\"request_id\":\"bom\"}}",
            br#"{"a_response":{"a":1}} trailing"#,
            b"[1]",
            b"",
            b"<html>",
        ];
        for body in bodies {
            let typed = parse_envelope_as::<Value>(body);
            let reference = parse_envelope(body).map(|value| {
                let id = request_id(&value);
                (value, id)
            });
            assert_eq!(typed, reference, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn a_response_no_struct_can_read_is_a_bad_response() {
        #[derive(Deserialize)]
        struct Strict {
            _needed: u32,
        }
        impl TopResponse<'_> for Strict {
            fn request_id(&self) -> Option<String> {
                None
            }
        }
        let Err(error) = parse_envelope_as::<Strict>(br#"{"a_response":{"request_id":"r9"}}"#)
        else {
            panic!("a response without the field was read");
        };
        assert_eq!(
            (
                error.class,
                error.code.as_str(),
                error.request_id.as_deref()
            ),
            (crate::ErrorClass::Transient, "bad-response", Some("r9"))
        );
    }
}
