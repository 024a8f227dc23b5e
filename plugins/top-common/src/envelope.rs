//! The TOP JSON response envelope (PROTOCOLS.md §1.6) and tolerant field access.

use std::borrow::Cow;

use adapter_kit::json::Field;
use serde_json::{Map, Value};

use crate::classify::rule_for;
use crate::{ErrorClass, TopError, classify};

/// How many characters of an unreadable body an error message quotes.
const EXCERPT_CHARS: usize = 80;

/// Finds the response object in a TOP answer, or the error it reports.
///
/// * `{"error_response": {...}}` becomes a classified [`TopError`] (see [`classify`]); its code is
///   the `sub_code` when there is one, else the numeric `code`.
/// * Otherwise the first root value whose key ends in `_response` and that is an object is the
///   response (`promotion_coupon_sns_send_response`, ...); the exact name is not checked.
/// * With `simplify=true` TOP drops that wrapper, so when no such key exists the root itself is
///   the response.
/// * A body that is not a JSON object (HTML error page, truncated JSON, empty) is a
///   `transient` error with code `bad-response` and a short, printable excerpt of the body.
///
/// ```
/// let body = br#"{"qianniu_coupon_buyer_get_response":{"is_success":true,"request_id":"abc"}}"#;
/// let response = top_common::parse_envelope(body).unwrap();
/// assert_eq!(response["is_success"], true);
/// ```
pub fn parse_envelope(body: &[u8]) -> Result<Value, TopError> {
    let trimmed = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut root = match serde_json::from_slice::<Value>(trimmed) {
        Ok(Value::Object(root)) => root,
        Ok(_) => return Err(bad_response("the answer is JSON but not an object", body)),
        Err(error) => {
            return Err(bad_response(
                &format!("the answer is not JSON ({error})"),
                body,
            ));
        }
    };
    if let Some(error) = root.get("error_response") {
        return Err(match error {
            Value::Object(error) => error_from(error),
            _ => bad_response("error_response is not an object", body),
        });
    }
    // Moved out, not cloned: a deep copy of the answer was a fifth of an adapter's CPU in wasm.
    let wrapped = root
        .iter()
        .find(|(key, value)| key.ends_with("_response") && value.is_object())
        .map(|(key, _)| key.clone());
    Ok(match wrapped.and_then(|key| root.remove(&key)) {
        Some(response) => response,
        None => Value::Object(root),
    })
}

/// Builds the classified error of an `error_response` object.
fn error_from(error: &Map<String, Value>) -> TopError {
    let text = |key: &str| {
        error
            .get(key)
            .and_then(as_text)
            .filter(|s| !s.trim().is_empty())
    };
    let code = error.get("code").and_then(as_i64).unwrap_or(0);
    let (msg, sub_code, sub_msg) = (text("msg"), text("sub_code"), text("sub_msg"));
    let request_id = text("request_id");
    let (class, retry_after_ms) = classify(
        code,
        sub_code.as_deref(),
        msg.as_deref(),
        sub_msg.as_deref(),
    );
    let hint = rule_for(
        code,
        sub_code.as_deref(),
        msg.as_deref(),
        sub_msg.as_deref(),
    )
    .and_then(|rule| rule.hint);

    let mut message = match (&msg, &sub_msg) {
        (Some(msg), Some(sub_msg)) => format!("{msg}: {sub_msg}"),
        (Some(only), None) | (None, Some(only)) => only.clone(),
        (None, None) => "TOP returned an error without a message".to_owned(),
    };
    message.push_str(&format!(" (TOP code {code}"));
    if let Some(sub_code) = &sub_code {
        message.push_str(&format!(", sub_code {sub_code}"));
    }
    if let Some(request_id) = &request_id {
        message.push_str(&format!(", request_id {request_id}"));
    }
    message.push(')');
    if let Some(hint) = hint {
        message.push_str(&format!("; {hint}"));
    }
    TopError {
        class,
        code: sub_code.unwrap_or_else(|| code.to_string()),
        message,
        retry_after_ms,
        request_id,
    }
}

pub(crate) fn bad_response(what: &str, body: &[u8]) -> TopError {
    TopError::new(
        ErrorClass::Transient,
        "bad-response",
        format!("{what}; {} bytes starting {:?}", body.len(), excerpt(body)),
    )
}

/// The first characters of `body`, with control characters shown as spaces.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The TOP `request_id` of an answer: of the value itself (a response object, or a simplified
/// root), else of an `error_response` or `*_response` object inside it.
pub fn request_id(value: &Value) -> Option<String> {
    let own = |value: &Value| {
        value
            .get("request_id")
            .and_then(as_text)
            .filter(|id| !id.trim().is_empty())
    };
    own(value).or_else(|| {
        value
            .as_object()?
            .iter()
            .filter(|(key, _)| key.ends_with("_response"))
            .find_map(|(_, inner)| own(inner))
    })
}

/// The items of a TOP list field, whatever shape it came in.
///
/// `list` is the value of the list field (e.g. of `coupon_results`):
/// * simplified: `[...]`, the items;
/// * non-simplified: `{"coupon_result": [...]}`, keyed by `wrapper_key`;
/// * a single object where a list was expected (`{"coupon_result": {...}}` or the item itself);
/// * an object whose only value is an array, under another wrapper name;
/// * `null`, a missing field or an empty wrapper: no items.
///
/// ```
/// use serde_json::json;
/// use top_common::unwrap_list;
///
/// let wrapped = json!({"coupon_result": [{"coupon_number": 1}, {"coupon_number": 2}]});
/// assert_eq!(unwrap_list(&wrapped, "coupon_result").len(), 2);
/// assert_eq!(unwrap_list(&json!([{"coupon_number": 1}]), "coupon_result").len(), 1);
/// assert!(unwrap_list(&json!(null), "coupon_result").is_empty());
/// ```
pub fn unwrap_list<'a>(list: &'a Value, wrapper_key: &str) -> Vec<&'a Value> {
    match list {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().filter(|item| !item.is_null()).collect(),
        Value::Object(object) => {
            if let Some(inner) = object.get(wrapper_key) {
                return match inner {
                    Value::Array(items) => items.iter().filter(|item| !item.is_null()).collect(),
                    Value::Null => Vec::new(),
                    single => vec![single],
                };
            }
            let mut values = object.values();
            match (values.next(), values.next()) {
                (Some(Value::Array(items)), None) => {
                    items.iter().filter(|item| !item.is_null()).collect()
                }
                (None, _) => Vec::new(),
                _ => vec![list],
            }
        }
        scalar => vec![scalar],
    }
}

/// [`unwrap_list`] of `object[list_key]`; no items when the field is missing.
pub fn field_list<'a>(object: &'a Value, list_key: &str, wrapper_key: &str) -> Vec<&'a Value> {
    object
        .get(list_key)
        .map_or_else(Vec::new, |list| unwrap_list(list, wrapper_key))
}

/// A string field as text, or a number or boolean rendered as text; `None` for null, arrays and
/// objects. Takes a `Value` or a typed [`Field`].
pub fn as_text<'a>(value: impl Into<Field<'a>>) -> Option<String> {
    value.into().text().map(Cow::into_owned)
}

/// An integer given as a JSON integer, an integral float, or a decimal string (`"12"`, `" 12 "`).
/// Takes a `Value` or a typed [`Field`].
pub fn as_i64<'a>(value: impl Into<Field<'a>>) -> Option<i64> {
    match value.into() {
        Field::Number(number) => number.as_i64().or_else(|| {
            let float = number.as_f64()?;
            // Only integral floats in i64 range; `as` would saturate silently.
            (float.fract() == 0.0 && float.abs() < 9.0e18).then_some(float as i64)
        }),
        Field::Text(text) => text.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean given as `true`/`false`, the strings `"true"`/`"false"` (any case), or `1`/`0`.
/// Takes a `Value` or a typed [`Field`].
pub fn as_bool<'a>(value: impl Into<Field<'a>>) -> Option<bool> {
    match value.into() {
        Field::Bool(flag) => Some(flag),
        Field::Text(text) => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => None,
        },
        number @ Field::Number(_) => match as_i64(number)? {
            1 => Some(true),
            0 => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn takes_the_wrapped_response_object() {
        let body =
            br#"{"promotion_coupon_sns_send_response":{"is_success":true,"request_id":"r1"}}"#;
        let response = parse_envelope(body).unwrap();
        assert_eq!(response, json!({"is_success": true, "request_id": "r1"}));
    }

    #[test]
    fn does_not_depend_on_the_response_name() {
        let body = br#"{"request_id":"x","odd_name_response":{"a":1}}"#;
        assert_eq!(parse_envelope(body).unwrap(), json!({"a": 1}));
    }

    #[test]
    fn simplified_root_is_the_response() {
        let body =
            br#"{"is_success":true,"coupon_results":[{"coupon_number":1}],"request_id":"r2"}"#;
        let response = parse_envelope(body).unwrap();
        assert_eq!(response["coupon_results"][0]["coupon_number"], 1);
        assert_eq!(request_id(&response).as_deref(), Some("r2"));
    }

    #[test]
    fn simplified_root_with_an_object_field_is_still_the_root() {
        let body = br#"{"result":{"biz_success":true},"request_id":"r3"}"#;
        let response = parse_envelope(body).unwrap();
        assert_eq!(response["result"]["biz_success"], true);
    }

    #[test]
    fn a_response_key_with_a_scalar_value_is_not_the_wrapper() {
        let body = br#"{"raw_response":"text","is_success":true}"#;
        assert_eq!(parse_envelope(body).unwrap()["is_success"], true);
    }

    #[test]
    fn error_response_is_classified() {
        let body = r#"{"error_response":{"code":50,"msg":"Remote service error","sub_code":"isv.invalid-parameter","sub_msg":"非法参数","request_id":"q9"}}"#;
        let error = parse_envelope(body.as_bytes()).unwrap_err();
        assert_eq!(error.class, ErrorClass::InvalidRequest);
        assert_eq!(error.code, "isv.invalid-parameter");
        assert_eq!(
            error.message,
            "Remote service error: 非法参数 (TOP code 50, sub_code isv.invalid-parameter, request_id q9)"
        );
        assert_eq!(error.request_id.as_deref(), Some("q9"));
        assert_eq!(error.retry_after_ms, None);
    }

    #[test]
    fn error_response_wins_over_a_response_object() {
        let body = br#"{"x_response":{},"error_response":{"code":27,"msg":"Invalid session","sub_code":"invalid-sessionkey"}}"#;
        let error = parse_envelope(body).unwrap_err();
        assert_eq!(error.class, ErrorClass::AuthExpired);
        assert_eq!(error.code, "invalid-sessionkey");
    }

    #[test]
    fn error_without_sub_code_uses_the_numeric_code() {
        let body = br#"{"error_response":{"code":"31","msg":"Invalid Timestamp"}}"#;
        let error = parse_envelope(body).unwrap_err();
        assert_eq!(error.class, ErrorClass::InvalidRequest);
        assert_eq!(error.code, "31");
        assert!(
            error
                .message
                .starts_with("Invalid Timestamp (TOP code 31); the host clock may be off")
        );
    }

    #[test]
    fn rate_limited_error_carries_the_wait() {
        let body = br#"{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"isv.access-limited-by-app-access-count","sub_msg":"This ban will last 3 more seconds"}}"#;
        let error = parse_envelope(body).unwrap_err();
        assert_eq!(
            (error.class, error.retry_after_ms),
            (ErrorClass::RateLimited, Some(4000))
        );
    }

    #[test]
    fn error_without_anything_is_still_an_error() {
        let error = parse_envelope(br#"{"error_response":{}}"#).unwrap_err();
        assert_eq!(error.class, ErrorClass::InvalidRequest);
        assert_eq!(error.code, "0");
        let error = parse_envelope(br#"{"error_response":"boom"}"#).unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::Transient, "bad-response")
        );
    }

    #[test]
    fn unreadable_bodies_are_transient_bad_responses() {
        let html = b"<html><head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
        let cases: [&[u8]; 7] = [
            b"",
            b"   ",
            html,
            br#"{"promotion_coupon_sns_send_response":{"#,
            b"[1,2]",
            b"null",
            b"\xff\xfe\x00garbage",
        ];
        for body in cases {
            let error = parse_envelope(body).unwrap_err();
            assert_eq!(error.class, ErrorClass::Transient, "{body:?}");
            assert_eq!(error.code, "bad-response");
            assert!(error.message.chars().count() < 250, "{}", error.message);
            assert!(!error.message.contains('\r'));
        }
        let error = parse_envelope(html).unwrap_err();
        assert!(
            error.message.contains("<html><head><title>502 Bad Gateway"),
            "{}",
            error.message
        );
        assert!(error.message.contains('…'));
    }

    #[test]
    fn excerpt_cuts_on_character_boundaries() {
        let body = "优".repeat(200);
        assert_eq!(excerpt(body.as_bytes()).chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt("短".as_bytes()), "短");
    }

    #[test]
    fn accepts_a_byte_order_mark() {
        assert_eq!(
            parse_envelope(b"\xEF\xBB\xBF{\"a_response\":{}}").unwrap(),
            json!({})
        );
    }

    #[test]
    fn request_id_is_found_at_any_level() {
        assert_eq!(
            request_id(&json!({"request_id": "a"})).as_deref(),
            Some("a")
        );
        assert_eq!(
            request_id(&json!({"x_response": {"request_id": "b"}})).as_deref(),
            Some("b")
        );
        assert_eq!(
            request_id(&json!({"error_response": {"request_id": "c"}})).as_deref(),
            Some("c")
        );
        assert_eq!(
            request_id(&json!({"request_id": 12})).as_deref(),
            Some("12")
        );
        assert_eq!(request_id(&json!({"request_id": ""})), None);
        assert_eq!(request_id(&json!({"request_id": null})), None);
        assert_eq!(request_id(&json!([1])), None);
    }

    #[test]
    fn unwrap_list_reads_every_shape() {
        let item = json!({"coupon_number": 1});
        let shapes = [
            json!({"coupon_result": [item.clone()]}),
            json!([item.clone()]),
            json!({"coupon_result": item.clone()}),
            json!({"other_wrapper": [item.clone()]}),
            item.clone(),
        ];
        for shape in &shapes {
            assert_eq!(unwrap_list(shape, "coupon_result"), vec![&item], "{shape}");
        }
        for empty in [
            json!(null),
            json!({}),
            json!([]),
            json!({"coupon_result": null}),
            json!({"coupon_result": []}),
            json!([null]),
        ] {
            assert!(unwrap_list(&empty, "coupon_result").is_empty(), "{empty}");
        }
        assert_eq!(
            unwrap_list(&json!({"string": ["a", "b"]}), "string").len(),
            2
        );
        assert_eq!(unwrap_list(&json!("a"), "string"), vec![&json!("a")]);
    }

    #[test]
    fn field_list_reads_a_missing_field_as_empty() {
        let response = json!({"coupons": {"coupon_info_do": [{"id": "a"}, {"id": "b"}]}});
        assert_eq!(field_list(&response, "coupons", "coupon_info_do").len(), 2);
        assert!(field_list(&response, "failure_buyers", "error_message").is_empty());
        assert!(field_list(&json!(3), "coupons", "coupon_info_do").is_empty());
    }

    #[test]
    fn scalar_accessors_tolerate_wrong_types() {
        assert_eq!(as_text(&json!("a")).as_deref(), Some("a"));
        assert_eq!(as_text(&json!(122345456)).as_deref(), Some("122345456"));
        assert_eq!(
            as_text(&json!(18446744073709551615u64)).as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(as_text(&json!(true)).as_deref(), Some("true"));
        assert_eq!(as_text(&json!(null)), None);
        assert_eq!(as_text(&json!({})), None);

        assert_eq!(as_i64(&json!(1)), Some(1));
        assert_eq!(as_i64(&json!(" 1 ")), Some(1));
        assert_eq!(as_i64(&json!(2.0)), Some(2));
        assert_eq!(as_i64(&json!(2.5)), None);
        assert_eq!(as_i64(&json!(1e300)), None);
        assert_eq!(as_i64(&json!("x")), None);
        assert_eq!(as_i64(&json!(18446744073709551615u64)), None);

        assert_eq!(as_bool(&json!(true)), Some(true));
        assert_eq!(as_bool(&json!("FALSE")), Some(false));
        assert_eq!(as_bool(&json!(1)), Some(true));
        assert_eq!(as_bool(&json!(2)), None);
        assert_eq!(as_bool(&json!([])), None);
    }
}
