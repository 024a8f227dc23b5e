//! Property tests of the Douyin answer reader: whatever the open API (or anything pretending to
//! be it) answers, the reader does not panic, succeeds only on `err_no` 0, and classifies the rest.

use douyin::api::{ErrorClass, HttpResponse, as_i64, read_answer};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Keys the open API uses, so that generated objects look like answers often enough.
const KEYS: &[&str] = &[
    "err_no",
    "err_msg",
    "err_tips",
    "log_id",
    "data",
    "error_code",
    "description",
    "coupon_info",
];

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        select(&[0i64, 0, 28001003, 28001008, -1][..]).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        select(&["0", "28001003", " 0 ", "", "中文"][..]).prop_map(Value::from),
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

/// The code the answer reports, by the reader's own rule: `err_no`, else `data.error_code`.
fn reported_code(value: &Value) -> Option<i64> {
    value.get("err_no").and_then(as_i64).or_else(|| {
        value
            .get("data")
            .and_then(|data| data.get("error_code"))
            .and_then(as_i64)
    })
}

fn response(status: u16, body: Vec<u8>) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("X-Tt-Logid".to_owned(), "log-1".to_owned())],
        body,
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn arbitrary_bytes_never_panic_and_failures_are_classified(
        body in prop::collection::vec(any::<u8>(), 0..256),
        status in select(&[200u16, 200, 403, 500][..]),
    ) {
        let (log_ids, answer) = read_answer(Ok(response(status, body)));
        prop_assert!(log_ids.contains(&"log-1".to_owned()));
        if let Err(error) = answer {
            prop_assert!(!error.code.is_empty());
            prop_assert!(!error.message.is_empty());
        }
    }

    #[test]
    fn success_only_on_err_no_zero(value in json(), status in select(&[200u16, 200, 200, 302, 500][..])) {
        let body = serde_json::to_vec(&value).unwrap();
        let (_, answer) = read_answer(Ok(response(status, body)));
        match answer {
            Ok(_) => {
                prop_assert_eq!(status, 200);
                prop_assert_eq!(reported_code(&value), Some(0), "{}", value);
            }
            Err(error) => {
                prop_assert!(!error.code.is_empty());
                if status != 200 {
                    prop_assert_eq!(error.class, ErrorClass::Transient);
                } else if let Some(code) = reported_code(&value).filter(|c| *c != 0) {
                    prop_assert_eq!(error.code, code.to_string());
                }
            }
        }
    }
}
