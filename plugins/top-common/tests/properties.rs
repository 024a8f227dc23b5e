//! Property tests of the TOP envelope parser: whatever a gateway (or anything pretending to be
//! one) answers, the parser does not panic and every failure is classified with a code.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};
use top_common::{
    ErrorClass, HttpResponse, Idempotence, parse_envelope, parse_envelope_as, read_answer,
    request_id,
};

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Keys a TOP answer uses, so that generated objects look like envelopes often enough.
const KEYS: &[&str] = &[
    "error_response",
    "promotion_coupon_sns_send_response",
    "x_response",
    "_response",
    "code",
    "msg",
    "sub_code",
    "sub_msg",
    "request_id",
    "is_success",
    "result",
    "results",
    "flag",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        select(
            &[
                "0",
                "7",
                "15",
                "25",
                "27",
                "isv.coupon-error",
                " ",
                "",
                "中文"
            ][..]
        )
        .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![select(KEYS).prop_map(String::from), "\\PC{0,8}"],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn arbitrary_bytes_never_panic_and_failures_are_classified(body in prop::collection::vec(any::<u8>(), 0..256)) {
        match parse_envelope(&body) {
            Ok(value) => prop_assert!(value.is_object()),
            Err(error) => {
                prop_assert!(!error.code.is_empty());
                prop_assert!(!error.message.is_empty());
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics_and_classifies(value in json()) {
        let body = serde_json::to_vec(&value).unwrap();
        let parsed = parse_envelope(&body);
        match (&value, &parsed) {
            (Value::Object(root), Ok(response)) => {
                prop_assert!(!root.contains_key("error_response"), "an error_response is never a success");
                prop_assert!(response.is_object());
            }
            (Value::Object(root), Err(error)) => {
                prop_assert!(root.contains_key("error_response"), "{error:?}");
                prop_assert!(!error.code.is_empty());
            }
            (_, Ok(_)) => prop_assert!(false, "a root that is not an object is not a response"),
            (_, Err(error)) => {
                prop_assert_eq!(error.class, ErrorClass::Transient);
                prop_assert_eq!(&error.code, "bad-response");
            }
        }
    }

    #[test]
    fn read_answer_classifies_every_status(value in json(), status in select(&[200u16, 200, 200, 302, 404, 500, 503][..])) {
        let body = serde_json::to_vec(&value).unwrap();
        let (_, answer) = read_answer(Ok(HttpResponse { status, body }), Idempotence::NotIdempotent);
        match answer {
            Ok(_) => prop_assert_eq!(status, 200),
            Err(error) => {
                prop_assert!(!error.code.is_empty());
                if status != 200 {
                    prop_assert_eq!(error.class, ErrorClass::Transient);
                    prop_assert_eq!(error.code, format!("http.{status}"));
                }
            }
        }
    }

    /// The typed reader's fast path means by every answer what the `Value` reader means: the same
    /// response, request id and error. Keys given twice are spliced in, which only the text shows.
    #[test]
    fn the_typed_reader_reads_as_the_value_reader(value in json(), twice in any::<bool>()) {
        let mut body = serde_json::to_string(&value).unwrap();
        if twice && body.starts_with("{\"") {
            body = body.replacen('{', r#"{"request_id":"dup","x_response":{"a":1},"#, 1);
        }
        let typed = parse_envelope_as::<Value>(body.as_bytes());
        let reference = parse_envelope(body.as_bytes()).map(|value| {
            let id = request_id(&value);
            (value, id)
        });
        prop_assert_eq!(typed, reference, "{}", body);
    }
}
