//! Native tests of the douyin mapping, with the seed page's examples (seed 004) as fixtures.

use adapter_kit::test_support::{Script, assert_every_recipient_once, pairs as options};
use serde_json::{Value, json};

use super::*;

const APP_ID: &str = "ttec789ac573xxxxxx01";
const ACTIVITY: &str = "721807xxxxxx5644204";
const KEY: &str = "ch-0123456789abcdef0123456789abcdef";
const SEED_OPEN_ID: &str = "ba253642-0590-40bc-xxx";
/// `hex(sha256(KEY + "\n" + SEED_OPEN_ID))[..32]`, computed independently (Python hashlib).
const SEED_MERCHANT_ID: &str = "6ea87a567cc39d6db54acc821177f801";

const SEND_SEED: &str = include_str!("../../fixtures/send_seed.json");
const SEND_ERROR_SEED: &str = include_str!("../../fixtures/send_error_seed.json");
const SEND_MESSY: &str = include_str!("../../fixtures/send_messy.json");
const SEND_TOKEN_INVALID: &str = include_str!("../../fixtures/send_token_invalid.json");
const SEND_ACTIVITY_ENDED: &str = include_str!("../../fixtures/send_activity_ended.json");
const SEND_USER_LIMIT: &str = include_str!("../../fixtures/send_user_limit.json");
const SEND_HTML: &str = include_str!("../../fixtures/send_html.html");
const QUERY_LIST: &str = include_str!("../../fixtures/query_list.json");
const QUERY_MESSY: &str = include_str!("../../fixtures/query_messy.json");

type Answer = Result<HttpResponse, HttpError>;

fn settings(key: &str) -> Option<String> {
    (key == "app_id").then(|| APP_ID.to_owned())
}

fn no_settings(_: &str) -> Option<String> {
    None
}

fn answer(status: u16, body: &str) -> Answer {
    Ok(HttpResponse {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    })
}

fn ok(body: &str) -> Answer {
    answer(200, body)
}

fn err_no(code: i64) -> Answer {
    ok(&json!({"err_no": code, "err_msg": "", "log_id": format!("log-{code}")}).to_string())
}

fn issued_body(coupon_id: &str) -> Answer {
    ok(
        &json!({"err_no": 0, "err_msg": "", "log_id": format!("log-{coupon_id}"),
        "data": {"coupon_info": {"coupon_id": coupon_id, "discount_amount": 1000}}})
        .to_string(),
    )
}

fn open_id(value: &str) -> Recipient {
    Recipient::OpenId(value.to_owned())
}

fn request(recipients: Vec<Recipient>) -> SendRequest {
    SendRequest {
        coupon: ACTIVITY.to_owned(),
        recipients,
        quantity: 1,
        idempotency_key: KEY.to_owned(),
        options: Vec::new(),
        account: "default".to_owned(),
    }
}

fn open_ids(ids: &[&str]) -> Vec<Recipient> {
    ids.iter().map(|id| open_id(id)).collect()
}

/// Runs a send against scripted answers; returns the result and the calls made.
fn send(
    request: &SendRequest,
    answers: Vec<Answer>,
) -> (Result<Outcome, AdapterError>, Vec<HttpRequest>) {
    let mut script = Script::new(answers);
    let result = send_coupon(request, &settings, |call: &HttpRequest| script.answer(call));
    if let Ok(outcome) = &result {
        assert_every_recipient_once_in_order(request, outcome);
    }
    (result, script.into_calls())
}

fn query(
    recipient: Recipient,
    answer: Answer,
) -> (Result<Vec<Coupon>, AdapterError>, Vec<HttpRequest>) {
    let mut script = Script::new([answer]);
    let result = query_coupons(&recipient, &[], &settings, |call: &HttpRequest| {
        script.answer(call)
    });
    (result, script.into_calls())
}

/// The contract's invariant: each recipient is issued or failed exactly once (a listed-twice
/// recipient twice); each list keeps the request's order.
fn assert_every_recipient_once_in_order(request: &SendRequest, outcome: &Outcome) {
    let issued: Vec<&Recipient> = outcome.issued.iter().map(|i| &i.recipient).collect();
    let failed: Vec<&Recipient> = outcome.failed.iter().map(|f| &f.recipient).collect();
    for list in [&issued, &failed] {
        let mut rest = request.recipients.iter();
        let in_order = list.iter().all(|r| rest.any(|x| x == *r));
        assert!(in_order, "request order: {outcome:?}");
    }
    assert_every_recipient_once(&request.recipients, issued, failed);
}

fn failure<'a>(outcome: &'a Outcome, recipient: &Recipient) -> &'a AdapterError {
    let found = outcome.failed.iter().find(|f| &f.recipient == recipient);
    &found
        .unwrap_or_else(|| panic!("{recipient:?} did not fail: {outcome:?}"))
        .error
}

fn body(call: &HttpRequest) -> Value {
    serde_json::from_slice(&call.body).expect("the body is JSON")
}

fn sent_ids(calls: &[HttpRequest]) -> Vec<(String, String)> {
    calls
        .iter()
        .map(|c| {
            let b = body(c);
            let text = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
            (text("open_id"), text("merchant_coupon_id"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// describe and settings

#[test]
fn describes_the_adapter() {
    assert_eq!(PLATFORM, "douyin");
    assert_eq!(VERSION, "0.1.0");
    assert_eq!(MAX_RECIPIENTS_PER_CALL, 20);
    const { assert!(IDEMPOTENT_SEND, "merchant_coupon_id makes resends safe") };
    assert_eq!(OPERATIONS, ["send-coupon", "query-coupons"]);
}

#[test]
fn config_needs_an_app_id() {
    for settings in [
        &no_settings as &dyn Fn(&str) -> Option<String>,
        &|_: &str| Some("  ".to_owned()),
    ] {
        let error = Config::resolve(&[], settings).unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::InvalidRequest, "config")
        );
        assert!(error.message.contains("app_id"), "{}", error.message);
    }
    // And a send without one makes no call.
    let mut calls = 0;
    let error = send_coupon(
        &request(open_ids(&["u1"])),
        &no_settings,
        |_: &HttpRequest| {
            calls += 1;
            ok(SEND_SEED)
        },
    )
    .unwrap_err();
    assert_eq!((error.code.as_str(), calls), ("config", 0));
}

#[test]
fn base_url_defaults_and_loses_its_trailing_slash() {
    let config = Config::resolve(&[], &settings).unwrap();
    assert_eq!(
        config,
        Config {
            base_url: "https://open.douyin.com".to_owned(),
            app_id: APP_ID.to_owned()
        }
    );
    let with_slash = |key: &str| match key {
        "base_url" => Some("http://127.0.0.1:9000/".to_owned()),
        other => settings(other),
    };
    let config = Config::resolve(&[], &with_slash).unwrap();
    assert_eq!(config.base_url, "http://127.0.0.1:9000");
    let request = build_query_request(&config, "u1");
    assert_eq!(
        request.url,
        "http://127.0.0.1:9000/api/promotion/v1/coupon/get_coupon_receive_info/"
    );
    let blank = |key: &str| match key {
        "base_url" => Some(" ".to_owned()),
        other => settings(other),
    };
    assert_eq!(
        Config::resolve(&[], &blank).unwrap().base_url,
        DEFAULT_BASE_URL
    );
    for bad in ["open.douyin.com", "ftp://x", "https://", "https:///"] {
        let bad_url = |key: &str| match key {
            "base_url" => Some(bad.to_owned()),
            other => settings(other),
        };
        let error = Config::resolve(&[], &bad_url).unwrap_err();
        assert_eq!(error.code, "config", "{bad}");
    }
}

#[test]
fn options_override_settings() {
    let opts = options(&[
        ("base_url", "http://sim.local:8080//"),
        ("app_id", "tt-first"),
        ("app_id", " tt-option "),
    ]);
    let config = Config::resolve(&opts, &settings).unwrap();
    assert_eq!(
        config,
        Config {
            base_url: "http://sim.local:8080".to_owned(),
            app_id: "tt-option".to_owned()
        }
    );
    let config = Config::resolve(&options(&[("app_id", "tt-only-option")]), &no_settings).unwrap();
    assert_eq!(config.app_id, "tt-only-option");
}

// ---------------------------------------------------------------------------------------------
// requests

#[test]
fn merchant_coupon_id_is_stable_and_distinct() {
    assert_eq!(merchant_coupon_id(KEY, SEED_OPEN_ID, 1), SEED_MERCHANT_ID);
    assert_eq!(
        merchant_coupon_id(KEY, SEED_OPEN_ID, 1),
        merchant_coupon_id(KEY, SEED_OPEN_ID, 1)
    );
    assert_eq!(
        merchant_coupon_id("k", "u1", 1),
        "caf960bfaf766d7225b29998eafb68cc"
    );
    assert_eq!(
        merchant_coupon_id("k", "u2", 1),
        "38e469aa9b1bd431b6ed6f91394d5332"
    );
    assert_ne!(
        merchant_coupon_id("k2", "u1", 1),
        merchant_coupon_id("k", "u1", 1)
    );
    // The separator matters: "k\nu1" must differ from "k\n" + "u1" splits elsewhere.
    assert_ne!(
        merchant_coupon_id("ab", "c", 1),
        merchant_coupon_id("a", "bc", 1)
    );
    let id = merchant_coupon_id(KEY, SEED_OPEN_ID, 1);
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
}

#[test]
fn extra_units_get_suffixed_ids() {
    assert_eq!(
        merchant_coupon_id(KEY, SEED_OPEN_ID, 2),
        format!("{SEED_MERCHANT_ID}-2")
    );
    assert_eq!(
        merchant_coupon_id(KEY, SEED_OPEN_ID, 10),
        format!("{SEED_MERCHANT_ID}-10")
    );
}

#[test]
fn send_request_is_exactly_the_documented_call() {
    let (result, calls) = send(&request(open_ids(&[SEED_OPEN_ID])), vec![ok(SEND_SEED)]);
    result.unwrap();
    let expected_body = format!(
        r#"{{"activity_id":"{ACTIVITY}","app_id":"{APP_ID}","open_id":"{SEED_OPEN_ID}","merchant_coupon_id":"{SEED_MERCHANT_ID}"}}"#
    );
    assert_eq!(
        calls,
        [HttpRequest {
            url: "https://open.douyin.com/api/promotion/v1/coupon/send_coupon_to_designated_user/"
                .to_owned(),
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: expected_body.into_bytes(),
        }]
    );
}

#[test]
fn requests_never_carry_host_owned_headers() {
    let config = Config::resolve(&[], &settings).unwrap();
    for call in [
        build_send_request(&config, ACTIVITY, "u1", "m"),
        build_query_request(&config, "u1"),
    ] {
        for (name, _) in &call.headers {
            let name = name.to_ascii_lowercase();
            assert!(
                !["access-token", "authorization", "host", "content-length"]
                    .contains(&name.as_str()),
                "{name}"
            );
        }
    }
}

#[test]
fn activity_id_is_trimmed_and_must_not_be_empty() {
    let mut req = request(open_ids(&["u1"]));
    req.coupon = format!(" {ACTIVITY} ");
    let (_, calls) = send(&req, vec![ok(SEND_SEED)]);
    assert_eq!(body(&calls[0])["activity_id"], ACTIVITY);
    req.coupon = "  ".to_owned();
    let (result, calls) = send(&req, vec![]);
    let error = result.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str(), calls.len()),
        (ErrorClass::InvalidRequest, "coupon", 0)
    );
}

#[test]
fn an_empty_idempotency_key_is_refused() {
    let mut req = request(open_ids(&["u1"]));
    req.idempotency_key = " ".to_owned();
    let (result, calls) = send(&req, vec![]);
    assert_eq!(result.unwrap_err().code, "idempotency-key");
    assert!(calls.is_empty());
}

// ---------------------------------------------------------------------------------------------
// send answers

#[test]
fn seed_success_issues_the_coupon_info() {
    let (result, _) = send(&request(open_ids(&[SEED_OPEN_ID])), vec![ok(SEND_SEED)]);
    let outcome = result.unwrap();
    assert_eq!(
        outcome,
        Outcome {
            issued: vec![Issued {
                recipient: open_id(SEED_OPEN_ID),
                coupon: CouponInfo {
                    coupon_id: Some("70924xxxx555366".to_owned()),
                    name: Some("奶茶立减10元券".to_owned()),
                    amount_fen: Some(1000),
                    threshold_fen: Some(2000),
                    valid_from: Some(1_685_686_441),
                    valid_until: Some(1_685_772_841),
                },
                extra_coupon_ids: vec![],
            }],
            failed: vec![],
            request_ids: vec!["20230602141441E708D3A77C64701C88EB".to_owned()],
        }
    );
}

#[test]
fn the_logid_header_joins_the_request_ids_once() {
    let with_header = |name: &str, value: &str| {
        Ok(HttpResponse {
            status: 200,
            headers: vec![(name.to_owned(), value.to_owned())],
            body: SEND_SEED.as_bytes().to_vec(),
        })
    };
    let req = request(open_ids(&["u1", "u2"]));
    let answers = vec![
        with_header("X-Tt-Logid", "header-log-1"),
        with_header("x-tt-logid", "20230602141441E708D3A77C64701C88EB"),
    ];
    let outcome = send(&req, answers).0.unwrap();
    assert_eq!(
        outcome.request_ids,
        [
            "20230602141441E708D3A77C64701C88EB",
            "header-log-1",
            "20230602141441E708D3A77C64701C88EB"
        ]
    );
    // Without a body log_id, the header alone.
    let (ids, _) = read_answer(Ok(HttpResponse {
        status: 502,
        headers: vec![("X-TT-LOGID".to_owned(), " hdr ".to_owned())],
        body: SEND_HTML.as_bytes().to_vec(),
    }));
    assert_eq!(ids, ["hdr"]);
}

#[test]
fn seed_error_is_rate_limited_for_the_whole_request() {
    let (result, calls) = send(
        &request(open_ids(&["u1", "u2", "u3"])),
        vec![ok(SEND_ERROR_SEED)],
    );
    let error = result.unwrap_err();
    assert_eq!(
        error,
        AdapterError {
            class: ErrorClass::RateLimited,
            code: "29005012".to_owned(),
            message: "尝试过于频繁 (log_id 20230602111931B8431F7C63978600E24C)".to_owned(),
            retry_after_ms: Some(1000),
        }
    );
    assert_eq!(calls.len(), 1, "no further calls");
}

#[test]
fn rate_limited_after_an_issue_fails_the_rest_uncalled() {
    let req = request(open_ids(&["u1", "u2", "u3", "u4"]));
    let (result, calls) = send(&req, vec![ok(SEND_SEED), ok(SEND_ERROR_SEED)]);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(outcome.issued.len(), 1);
    assert_eq!(
        outcome.request_ids,
        [
            "20230602141441E708D3A77C64701C88EB",
            "20230602111931B8431F7C63978600E24C"
        ]
    );
    for id in ["u2", "u3", "u4"] {
        let error = failure(&outcome, &open_id(id));
        assert_eq!(
            (error.class, error.code.as_str(), error.retry_after_ms),
            (ErrorClass::RateLimited, "29005012", Some(1000)),
            "{id}"
        );
    }
    let uncalled = failure(&outcome, &open_id("u3"));
    assert!(
        uncalled
            .message
            .starts_with("not sent because an earlier call failed: 尝试过于频繁"),
        "{}",
        uncalled.message
    );
}

#[test]
fn auth_errors_stop_the_request() {
    for (fixture, class, code) in [
        (SEND_TOKEN_INVALID, ErrorClass::AuthExpired, "28001003"),
        (
            r#"{"err_no":28001008,"err_msg":"access_token过期,请刷新或重新授权","log_id":"x"}"#,
            ErrorClass::AuthExpired,
            "28001008",
        ),
        (
            r#"{"err_no":28001018,"err_msg":"no capability","log_id":"x"}"#,
            ErrorClass::Unauthorized,
            "28001018",
        ),
    ] {
        let req = request(open_ids(&["u1", "u2"]));
        let (result, calls) = send(&req, vec![ok(fixture)]);
        let error = result.unwrap_err();
        assert_eq!((error.class, error.code.as_str()), (class, code));
        assert_eq!(calls.len(), 1);

        let req = request(open_ids(&["u0", "u1", "u2"]));
        let (result, calls) = send(&req, vec![ok(SEND_SEED), ok(fixture)]);
        let outcome = result.unwrap();
        assert_eq!(calls.len(), 2);
        for id in ["u1", "u2"] {
            assert_eq!(failure(&outcome, &open_id(id)).code, code);
        }
    }
    let error = send(&request(open_ids(&["u1"])), vec![ok(SEND_TOKEN_INVALID)])
        .0
        .unwrap_err();
    assert_eq!(
        error.message,
        "access_token无效 (log_id 202405291440576E078D8757B9)"
    );
}

#[test]
fn recipient_errors_fail_only_that_recipient() {
    let req = request(open_ids(&["u1", "u2", "u3", "u4"]));
    let answers = vec![
        ok(SEND_USER_LIMIT),
        err_no(29005004),
        ok(SEND_SEED),
        err_no(28001005),
    ];
    let (result, calls) = send(&req, answers);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 4);
    let error = failure(&outcome, &open_id("u1"));
    assert_eq!(
        (error.class, error.code.as_str(), error.message.as_str()),
        (
            ErrorClass::RecipientLimit,
            "29005003",
            "用户领券已达上限 (log_id sim-user-limit)"
        )
    );
    let error = failure(&outcome, &open_id("u2"));
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::RecipientInvalid, "29005004")
    );
    assert!(error.message.contains("7 days"), "{}", error.message);
    assert_eq!(outcome.issued[0].recipient, open_id("u3"));
    assert_eq!(
        failure(&outcome, &open_id("u4")).class,
        ErrorClass::Transient
    );
}

#[test]
fn a_recipient_error_first_does_not_make_a_later_stop_whole() {
    // Nothing issued, but a recipient already has its own answer: the rate limit still ends the
    // request as a whole (nothing issued), as documented.
    let req = request(open_ids(&["u1", "u2", "u3"]));
    let (result, calls) = send(&req, vec![err_no(29005003), ok(SEND_ERROR_SEED)]);
    assert_eq!(result.unwrap_err().class, ErrorClass::RateLimited);
    assert_eq!(calls.len(), 2);
}

#[test]
fn activity_gone_or_out_of_stock_fails_the_rest_uncalled() {
    for (fixture, code) in [
        (ok(SEND_ACTIVITY_ENDED), "29005001"),
        (err_no(29005002), "29005002"),
    ] {
        // First call: every recipient fails with it, as an outcome.
        let req = request(open_ids(&["u1", "u2", "u3"]));
        let (result, calls) = send(&req, vec![fixture.clone()]);
        let outcome = result.unwrap();
        assert_eq!(calls.len(), 1);
        assert!(outcome.issued.is_empty());
        assert!(
            outcome.failed.iter().all(|f| {
                f.error.class == ErrorClass::CouponUnavailable && f.error.code == code
            })
        );
        // After an issue.
        let (result, calls) = send(&req, vec![ok(SEND_SEED), fixture]);
        let outcome = result.unwrap();
        assert_eq!((calls.len(), outcome.issued.len()), (2, 1));
        assert_eq!(
            failure(&outcome, &open_id("u3")).class,
            ErrorClass::CouponUnavailable
        );
    }
}

#[test]
fn invalid_params_on_the_first_call_fail_the_request() {
    let req = request(open_ids(&["u1", "u2"]));
    let (result, calls) = send(&req, vec![err_no(28001007)]);
    let error = result.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str(), calls.len()),
        (ErrorClass::InvalidRequest, "28001007", 1)
    );
    assert_eq!(error.message, "参数不合法 (log_id log-28001007)");
    // Later, it is this open_id's problem only.
    let req = request(open_ids(&["u1", "u2", "u3"]));
    let (result, calls) = send(&req, vec![ok(SEND_SEED), err_no(28001007), ok(SEND_SEED)]);
    let outcome = result.unwrap();
    assert_eq!((calls.len(), outcome.issued.len()), (3, 2));
    assert_eq!(failure(&outcome, &open_id("u2")).code, "28001007");
}

#[test]
fn unknown_codes_fail_the_recipient_as_unknown() {
    let req = request(open_ids(&["u1", "u2"]));
    let (result, calls) = send(&req, vec![err_no(29999999), ok(SEND_SEED)]);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 2);
    let error = failure(&outcome, &open_id("u1"));
    assert_eq!(
        (error.class, error.code.as_str(), error.message.as_str()),
        (
            ErrorClass::Unknown,
            "29999999",
            "err_no 29999999 without a message (log_id log-29999999)"
        )
    );
}

#[test]
fn every_known_code_has_its_documented_class() {
    use ErrorClass::*;
    let expected = [
        (28001005, Transient),
        (28001006, Transient),
        (28001003, AuthExpired),
        (28001008, AuthExpired),
        (28001007, InvalidRequest),
        (29005012, RateLimited),
        (28003018, RateLimited),
        (28001052, RateLimited),
        (28003017, RateLimited),
        (28001014, Unauthorized),
        (28001016, Unauthorized),
        (28001018, Unauthorized),
        (28001019, Unauthorized),
        (29005001, CouponUnavailable),
        (29005002, CouponUnavailable),
        (29005003, RecipientLimit),
        (29005004, RecipientInvalid),
        // PROTOCOLS.md §2.4's other permanent codes.
        (28001012, InvalidRequest),
        (28001015, InvalidRequest),
        (28001017, InvalidRequest),
        (28001020, InvalidRequest),
        (28001021, InvalidRequest),
        (28001056, InvalidRequest),
        (29005077, InvalidRequest),
        // Legacy codes.
        (2100004, Transient),
        (2100005, InvalidRequest),
        (2190002, AuthExpired),
        (2190008, AuthExpired),
        // Never seen.
        (1, Unknown),
        (-1, Unknown),
        (28001999, Unknown),
        (29005999, Unknown),
    ];
    for (code, class) in expected {
        assert_eq!(classify(code), class, "{code}");
        let error = platform_error(code, "", None);
        assert_eq!((error.class, error.code), (class, code.to_string()));
        let retry = matches!(code, 29005012 | 28003018).then_some(1000);
        assert_eq!(error.retry_after_ms, retry, "{code}");
        assert!(!error.message.is_empty());
    }
    assert_eq!(
        KNOWN_CODES.len(),
        expected.len() - 4,
        "every known code is listed above"
    );
}

#[test]
fn http_errors_are_classified() {
    use ErrorClass::*;
    let cases = [
        (
            HttpError::Denied("no".into()),
            InvalidRequest,
            "http.denied",
        ),
        (
            HttpError::Connect("refused".into()),
            Transient,
            "http.connect",
        ),
        (HttpError::Timeout, Transient, "http.timeout"),
        (HttpError::TooLarge, Transient, "http.too-large"),
        (
            HttpError::Unauthorized("10013".into()),
            Unauthorized,
            "http.unauthorized",
        ),
        (HttpError::Other("boom".into()), Transient, "http.other"),
    ];
    for (error, class, code) in cases {
        let error = http_error(error);
        assert_eq!((error.class, error.code.as_str()), (class, code));
    }
}

#[test]
fn transport_failures_stop_the_request_but_too_large_does_not() {
    for error in [
        HttpError::Denied("more than 64 requests in one call".into()),
        HttpError::Connect("refused".into()),
        HttpError::Timeout,
        HttpError::Unauthorized("token refused".into()),
        HttpError::Other("token fetch failed".into()),
    ] {
        let req = request(open_ids(&["u1", "u2"]));
        let (result, calls) = send(&req, vec![Err(error.clone())]);
        assert_eq!(result.unwrap_err(), http_error(error.clone()));
        assert_eq!(calls.len(), 1);

        let req = request(open_ids(&["u0", "u1", "u2"]));
        let (result, calls) = send(&req, vec![ok(SEND_SEED), Err(error.clone())]);
        let outcome = result.unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(outcome.failed.len(), 2);
        assert!(
            outcome
                .failed
                .iter()
                .all(|f| f.error.code == http_error(error.clone()).code)
        );
    }
    let req = request(open_ids(&["u1", "u2"]));
    let (result, calls) = send(&req, vec![Err(HttpError::TooLarge), ok(SEND_SEED)]);
    let outcome = result.unwrap();
    assert_eq!((calls.len(), outcome.issued.len()), (2, 1));
}

#[test]
fn http_status_and_html_bodies_are_transient_per_recipient() {
    let req = request(open_ids(&["u1", "u2", "u3", "u4"]));
    let answers = vec![
        answer(502, SEND_HTML),
        answer(500, SEND_SEED),
        ok(SEND_HTML),
        ok(""),
    ];
    let (result, calls) = send(&req, answers);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 4);
    let codes: Vec<(&str, ErrorClass)> = outcome
        .failed
        .iter()
        .map(|f| (f.error.code.as_str(), f.error.class))
        .collect();
    use ErrorClass::Transient;
    assert_eq!(
        codes,
        [
            ("http.502", Transient),
            ("http.500", Transient),
            ("bad-response", Transient),
            ("bad-response", Transient)
        ]
    );
    let html = failure(&outcome, &open_id("u3"));
    assert!(html.message.contains("502 Bad Gateway"), "{}", html.message);
    assert!(
        failure(&outcome, &open_id("u4"))
            .message
            .contains("(empty body)")
    );
    // A non-200 answer's log_id still counts.
    assert_eq!(outcome.request_ids, ["20230602141441E708D3A77C64701C88EB"]);
    assert_eq!(
        failure(&outcome, &open_id("u2")).message,
        "the Douyin open API answered HTTP 500 (log_id 20230602141441E708D3A77C64701C88EB)"
    );
}

#[test]
fn messy_success_answers_still_issue() {
    let req = request(open_ids(&["u1", "u2", "u3", "u4"]));
    let answers = vec![
        ok(SEND_MESSY),
        ok(r#"{"err_no":0,"log_id":"no-data"}"#),
        ok(r#"{"err_no":0.0,"data":{"coupon_info":"not an object"}}"#),
        ok(r#"{"err_no":0,"data":[1,2,3]}"#),
    ];
    let (result, calls) = send(&req, answers);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 4);
    assert!(outcome.failed.is_empty(), "{outcome:?}");
    assert_eq!(
        outcome.issued[0].coupon,
        CouponInfo {
            coupon_id: Some("7092400000555366".to_owned()),
            name: Some("奶茶立减10元券".to_owned()),
            amount_fen: Some(1000),
            threshold_fen: Some(2000),
            valid_from: Some(1_685_686_441),
            valid_until: Some(1_685_772_841),
        }
    );
    for issued in &outcome.issued[1..] {
        assert_eq!(issued.coupon, CouponInfo::default());
    }
    assert_eq!(outcome.request_ids, ["messy-send-1", "no-data"]);
}

#[test]
fn envelope_variants() {
    // err_tips instead of err_msg; err_no as a string.
    let (_, result) = read_answer(ok(
        r#"{"err_no":"29005004","err_tips":"用户不满足条件","log_id":"L"}"#,
    ));
    let error = result.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str(), error.message.as_str()),
        (
            ErrorClass::RecipientInvalid,
            "29005004",
            "用户不满足条件 (log_id L)"
        )
    );
    // The older data.error_code envelope.
    let (_, result) = read_answer(ok(
        r#"{"data":{"error_code":28001008,"description":"token expired"},"message":"error"}"#,
    ));
    let error = result.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str(), error.message.as_str()),
        (ErrorClass::AuthExpired, "28001008", "token expired")
    );
    let (_, result) = read_answer(ok(
        r#"{"data":{"error_code":0,"coupon_info":{"coupon_id":"x"}}}"#,
    ));
    assert_eq!(
        parse_coupon_info(&result.unwrap()).coupon_id.as_deref(),
        Some("x")
    );
    // No code at all, or a code that is not a number.
    for body in [
        r#"{"log_id":"L"}"#,
        r#"{"err_no":"abc"}"#,
        r#"{"err_no":null,"data":{}}"#,
        "[]",
        "42",
        "\"text\"",
        "null",
        "{",
    ] {
        let (_, result) = read_answer(ok(body));
        let error = result.unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::Transient, "bad-response"),
            "{body}"
        );
    }
}

#[test]
fn long_or_binary_bodies_make_short_messages() {
    let long = "x".repeat(10_000);
    let (_, result) = read_answer(ok(&long));
    let message = result.unwrap_err().message;
    assert!(message.chars().count() < 200, "{message}");
    let (_, result) = read_answer(Ok(HttpResponse {
        status: 200,
        headers: vec![],
        body: vec![0xff, 0xfe, 0x00, 0x80],
    }));
    assert_eq!(result.unwrap_err().code, "bad-response");
}

// ---------------------------------------------------------------------------------------------
// quantity

#[test]
fn quantity_sends_one_call_per_unit() {
    let mut req = request(open_ids(&["u1", "u2"]));
    req.quantity = 3;
    let answers = ["a1", "a2", "a3", "b1", "b2", "b3"]
        .map(issued_body)
        .to_vec();
    let (result, calls) = send(&req, answers);
    let outcome = result.unwrap();
    let u1 = merchant_coupon_id(KEY, "u1", 1);
    let u2 = merchant_coupon_id(KEY, "u2", 1);
    let expected: Vec<(String, String)> = [
        ("u1", u1.clone()),
        ("u1", format!("{u1}-2")),
        ("u1", format!("{u1}-3")),
        ("u2", u2.clone()),
        ("u2", format!("{u2}-2")),
        ("u2", format!("{u2}-3")),
    ]
    .map(|(o, m)| (o.to_owned(), m))
    .to_vec();
    assert_eq!(sent_ids(&calls), expected);
    assert_eq!(outcome.issued.len(), 2);
    assert_eq!(outcome.issued[0].coupon.coupon_id.as_deref(), Some("a1"));
    assert_eq!(outcome.issued[0].extra_coupon_ids, ["a2", "a3"]);
    assert_eq!(outcome.issued[1].extra_coupon_ids, ["b2", "b3"]);
    assert_eq!(outcome.request_ids.len(), 6);
}

#[test]
fn quantity_must_be_1_to_10() {
    for quantity in [0, 11, u32::MAX] {
        let mut req = request(open_ids(&["u1"]));
        req.quantity = quantity;
        let (result, calls) = send(&req, vec![]);
        let error = result.unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str(), calls.len()),
            (ErrorClass::InvalidRequest, "quantity", 0),
            "{quantity}"
        );
    }
    let mut req = request(open_ids(&["u1"]));
    req.quantity = 10;
    let (result, calls) = send(
        &req,
        (0..10).map(|i| issued_body(&format!("c{i}"))).collect(),
    );
    assert_eq!(result.unwrap().issued.len(), 1);
    assert_eq!(calls.len(), 10);
}

#[test]
fn a_unit_failing_fails_the_recipient_and_says_what_was_issued() {
    let mut req = request(open_ids(&["u1", "u2"]));
    req.quantity = 3;
    let answers = vec![
        issued_body("a1"),
        issued_body("a2"),
        ok(SEND_USER_LIMIT),
        issued_body("b1"),
        issued_body("b2"),
        issued_body("b3"),
    ];
    let (result, calls) = send(&req, answers);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 6, "the limit stops u1's units only");
    let error = failure(&outcome, &open_id("u1"));
    assert_eq!(error.class, ErrorClass::RecipientLimit);
    assert!(
        error
            .message
            .contains("2 of 3 coupons were issued to this recipient (coupon_id a1, a2)"),
        "{}",
        error.message
    );
    assert_eq!(outcome.issued[0].recipient, open_id("u2"));
}

#[test]
fn a_request_wide_error_after_a_unit_is_an_outcome_not_an_error() {
    let mut req = request(open_ids(&["u1", "u2"]));
    req.quantity = 2;
    let (result, calls) = send(&req, vec![issued_body("a1"), ok(SEND_ERROR_SEED)]);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 2);
    assert!(outcome.issued.is_empty());
    let error = failure(&outcome, &open_id("u1"));
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert!(error.message.contains("1 of 2"), "{}", error.message);
    assert!(
        failure(&outcome, &open_id("u2"))
            .message
            .starts_with("not sent because")
    );
}

// ---------------------------------------------------------------------------------------------
// recipients

#[test]
fn recipients_no_call_can_carry_are_refused() {
    let req = request(vec![
        Recipient::Nick("张三".into()),
        open_id(" "),
        open_id("u1"),
        Recipient::CustomerId("c1".into()),
        open_id("u1"),
        open_id("u2"),
    ]);
    let (result, calls) = send(&req, vec![ok(SEND_SEED), ok(SEND_SEED)]);
    let outcome = result.unwrap();
    assert_eq!(
        sent_ids(&calls)
            .iter()
            .map(|(o, _)| o.as_str())
            .collect::<Vec<_>>(),
        ["u1", "u2"]
    );
    let codes: Vec<&str> = outcome
        .failed
        .iter()
        .map(|f| f.error.code.as_str())
        .collect();
    assert_eq!(
        codes,
        [
            "recipient-kind",
            "recipient-empty",
            "recipient-kind",
            "recipient-duplicate"
        ]
    );
    assert!(
        outcome
            .failed
            .iter()
            .all(|f| f.error.class == ErrorClass::InvalidRequest)
    );
}

#[test]
fn refused_recipients_do_not_count_as_the_first_call() {
    let req = request(vec![
        Recipient::Nick("n".into()),
        open_id("u1"),
        open_id("u2"),
    ]);
    let (result, _) = send(&req, vec![err_no(28001007)]);
    assert_eq!(result.unwrap_err().code, "28001007");
}

#[test]
fn no_recipients_make_no_calls() {
    let (result, calls) = send(&request(vec![]), vec![]);
    assert_eq!(result.unwrap(), Outcome::default());
    assert!(calls.is_empty());
}

// ---------------------------------------------------------------------------------------------
// query

#[test]
fn query_request_is_exactly_the_documented_call() {
    let (result, calls) = query(open_id(SEED_OPEN_ID), ok(QUERY_LIST));
    result.unwrap();
    let expected_body =
        format!(r#"{{"app_id":"{APP_ID}","open_id":"{SEED_OPEN_ID}","coupon_status":10}}"#);
    assert_eq!(
        calls,
        [HttpRequest {
            url: "https://open.douyin.com/api/promotion/v1/coupon/get_coupon_receive_info/"
                .to_owned(),
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: expected_body.into_bytes(),
        }]
    );
}

#[test]
fn query_maps_the_receive_list() {
    let coupons = query(open_id("u1"), ok(QUERY_LIST)).0.unwrap();
    assert_eq!(
        coupons,
        [Coupon {
            id: "70924xxxx555366".to_owned(),
            title: Some("奶茶立减10元券".to_owned()),
            state: CouponState::Held,
            amount_fen: Some(1000),
            threshold_fen: Some(2000),
            valid_from: Some(1_685_686_441),
            valid_until: Some(1_685_772_841),
        }]
    );
}

#[test]
fn query_tolerates_messy_items() {
    let coupons = query(open_id("u1"), ok(QUERY_MESSY)).0.unwrap();
    let blank = |id: &str, state| Coupon {
        id: id.to_owned(),
        title: None,
        state,
        amount_fen: None,
        threshold_fen: None,
        valid_from: None,
        valid_until: None,
    };
    assert_eq!(
        coupons,
        [
            Coupon {
                amount_fen: Some(500),
                valid_from: Some(1_685_686_441),
                valid_until: Some(1_685_772_841),
                ..blank("123456789", CouponState::Used)
            },
            blank("c-expired", CouponState::Expired),
            blank("c-odd", CouponState::Unknown),
            Coupon {
                title: Some("no id, no status".to_owned()),
                ..blank("", CouponState::Unknown)
            },
        ]
    );
}

#[test]
fn query_without_a_list_is_empty() {
    for body in [
        r#"{"err_no":0,"log_id":"L"}"#,
        r#"{"err_no":0,"data":null}"#,
        r#"{"err_no":0,"data":{"coupon_receive_list":null}}"#,
        r#"{"err_no":0,"data":{"coupon_receive_list":{"a":1}}}"#,
        r#"{"err_no":0,"data":{"coupon_receive_list":[]}}"#,
    ] {
        assert_eq!(query(open_id("u1"), ok(body)).0.unwrap(), [], "{body}");
    }
}

#[test]
fn query_errors_are_classified() {
    let error = query(open_id("u1"), ok(SEND_TOKEN_INVALID)).0.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::AuthExpired, "28001003")
    );
    let error = query(open_id("u1"), ok(SEND_ERROR_SEED)).0.unwrap_err();
    assert_eq!(error.retry_after_ms, Some(1000));
    let error = query(open_id("u1"), answer(503, SEND_HTML)).0.unwrap_err();
    assert_eq!(error.code, "http.503");
    let error = query(open_id("u1"), Err(HttpError::Timeout)).0.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Transient, "http.timeout")
    );
}

#[test]
fn query_takes_a_non_empty_open_id() {
    for (recipient, code) in [
        (Recipient::Nick("n".into()), "recipient-kind"),
        (Recipient::CustomerId("c".into()), "recipient-kind"),
        (open_id(""), "recipient-empty"),
    ] {
        let (result, calls) = query(recipient, ok(QUERY_LIST));
        assert_eq!(result.unwrap_err().code, code);
        assert!(calls.is_empty());
    }
    let error = query_coupons(&open_id("u1"), &[], &no_settings, |_: &HttpRequest| {
        ok(QUERY_LIST)
    })
    .unwrap_err();
    assert_eq!(error.code, "config");
}

// ---------------------------------------------------------------------------------------------
// numbers and robustness

#[test]
fn numbers_come_as_numbers_or_strings() {
    let cases = [
        (json!(1000), Some(1000)),
        (json!("1000"), Some(1000)),
        (json!(" 1000 "), Some(1000)),
        (json!(1000.0), Some(1000)),
        (json!("1000.0"), Some(1000)),
        (json!(-5), Some(-5)),
        (json!(10.5), None),
        (json!("10.5"), None),
        (json!(""), None),
        (json!("ten"), None),
        (json!(1e300), None),
        (json!(u64::MAX), None),
        (json!(true), None),
        (json!(null), None),
        (json!([1]), None),
        (json!({"v": 1}), None),
    ];
    for (value, expected) in cases {
        assert_eq!(as_i64(&value), expected, "{value}");
    }
}

#[test]
fn no_answer_makes_it_panic() {
    let bodies = [
        "",
        "{}",
        "{\"err_no\":0,\"data\":{\"coupon_info\":{\"coupon_id\":{},\"coupon_name\":[],\"discount_amount\":{},\"valid_begin_time\":[1]}}}",
        "{\"err_no\":1e999}",
        "{\"err_no\":-0}",
        "{\"err_no\":9223372036854775808}",
        "{\"err_no\":0,\"data\":{\"coupon_receive_list\":[[],{},{\"coupon_id\":null}]}}",
        "\u{0}\u{1}",
        "<!doctype html>",
    ];
    for body in bodies {
        for status in [200, 204, 301, 429, 500] {
            let (_, result) = read_answer(answer(status, body));
            if let Ok(data) = result {
                let _ = parse_coupon_info(&data);
                let _ = parse_query_response(&data);
            }
        }
    }
}

/// A success is read without a `serde_json::Value`, except when it has a key given twice (the
/// last counts) or escapes: every such answer still means what the `Value` reader made of it.
#[test]
fn typed_reading_means_what_the_value_reader_meant() {
    let bodies = [
        r#"{"err_no":0,"log_id":"L1","data":{"coupon_info":{"coupon_id":"1","coupon_id":"2","discount_amount":"300"}}}"#,
        r#"{"err_no":"0","log_id":"L2","data":{"coupon_info":{"coupon_id":"\u0031\u0032","coupon_name":"\u5238"}}}"#,
        r#"{"err_no":0,"err_no":28001008,"log_id":"L3","data":{}}"#,
        r#"{"err_no":0,"log_id":"L4","data":null}"#,
        r#"{"err_no":0,"log_id":"L5"}"#,
        r#"{"err_no":0,"log_id":"L6","data":{"coupon_info":[1,2]}}"#,
    ];
    for body in bodies {
        let (value_ids, value) = read_answer(ok(body));
        let (result, _) = send(&request(vec![open_id("u1")]), vec![ok(body)]);
        match value {
            Ok(data) => {
                let outcome = result.unwrap();
                assert_eq!(outcome.request_ids, value_ids, "{body}");
                assert_eq!(outcome.issued[0].coupon, parse_coupon_info(&data), "{body}");
            }
            // The one error here (28001008) holds for every recipient: the request fails.
            Err(error) => assert_eq!(result.unwrap_err(), error, "{body}"),
        }
    }
    let (_, result) = read_answer(ok(bodies[0]));
    assert_eq!(
        parse_coupon_info(&result.unwrap()).coupon_id.as_deref(),
        Some("2")
    );
}
