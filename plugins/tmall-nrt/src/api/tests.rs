//! Native tests of the tmall-nrt mapping, with fixtures shaped as seed 001 and PLATFORMS.md say.

use adapter_kit::test_support::{Script, assert_every_recipient_once, pairs as options};
use serde_json::Value;
use top_common::contract::Issued;

use super::*;

const GATEWAY: &str = "https://eco.taobao.com/router/rest";
const KEY: &str = "campaign-7:batch-1";

const SEND_SEED: &str = include_str!("../../fixtures/send_seed.json");
const SEND_SEED_SIMPLIFIED: &str = include_str!("../../fixtures/send_seed_simplified.json");
const SEND_MODEL_NULL: &str = include_str!("../../fixtures/send_model_null.json");
const SEND_MODEL_MESSY: &str = include_str!("../../fixtures/send_model_messy.json");
const SEND_ERROR_LIMIT: &str = include_str!("../../fixtures/send_error_limit.json");
const SEND_ERROR_SOLD_OUT: &str = include_str!("../../fixtures/send_error_sold_out.json");
const SEND_ERROR_INVALID_COUPON: &str =
    include_str!("../../fixtures/send_error_invalid_coupon.json");
const SEND_ERROR_BUSINESS: &str = include_str!("../../fixtures/send_error_business.json");
const SEND_ERROR_SYSTEM: &str = include_str!("../../fixtures/send_error_system.json");
const SEND_ERROR_SEED: &str = include_str!("../../fixtures/send_error_seed.json");
const ERROR_RATE_LIMITED: &str = include_str!("../../fixtures/error_rate_limited.json");
const ERROR_INVALID_SESSION: &str = include_str!("../../fixtures/error_invalid_session.json");
const QUERY_SEED: &str = include_str!("../../fixtures/query_seed.json");
const QUERY_SIMPLIFIED: &str = include_str!("../../fixtures/query_simplified.json");
const QUERY_MESSY: &str = include_str!("../../fixtures/query_messy.json");
const QUERY_RESULT_ERROR: &str = include_str!("../../fixtures/query_result_error.json");

type Answer = Result<HttpResponse, HttpError>;

fn settings(key: &str) -> Option<String> {
    let value = match key {
        "gateway" => GATEWAY,
        "biz_code" => "YXX",
        "channel" => "app",
        "coupon_type" => "247",
        _ => return None,
    };
    Some(value.to_owned())
}

fn ok(body: &str) -> Answer {
    Ok(HttpResponse {
        status: 200,
        body: body.as_bytes().to_vec(),
    })
}

fn open_id(value: &str) -> Recipient {
    Recipient::OpenId(value.to_owned())
}

fn request(recipients: Vec<Recipient>) -> SendRequest {
    SendRequest {
        coupon: "nrt-demo-uuid".to_owned(),
        recipients,
        quantity: 1,
        idempotency_key: KEY.to_owned(),
        options: Vec::new(),
        account: "default".to_owned(),
    }
}

fn param<'a>(call: &'a HttpRequest, name: &str) -> Option<&'a str> {
    call.params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// Runs a send against scripted answers; returns the result and the calls made.
fn send(
    request: &SendRequest,
    answers: Vec<Answer>,
) -> (Result<Outcome, TopError>, Vec<HttpRequest>) {
    let mut script = Script::new(answers);
    let result = send_coupon(request, &settings, |call: &HttpRequest| script.answer(call));
    if let Ok(outcome) = &result {
        assert_every_recipient_once(
            &request.recipients,
            outcome.issued.iter().map(|i| &i.recipient),
            outcome.failed.iter().map(|f| &f.recipient),
        );
    }
    (result, script.into_calls())
}

fn query(
    recipient: Recipient,
    answer: Answer,
) -> (Result<Vec<Coupon>, TopError>, Vec<HttpRequest>) {
    let mut script = Script::new([answer]);
    let result = query_coupons(&recipient, &[], &settings, |call: &HttpRequest| {
        script.answer(call)
    });
    (result, script.into_calls())
}

fn only_failure(result: Result<Outcome, TopError>) -> TopError {
    let outcome = result.expect("a per-recipient outcome");
    assert!(outcome.issued.is_empty(), "{outcome:?}");
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    outcome.failed[0].error.clone()
}

#[test]
fn describes_the_adapter() {
    assert_eq!(INFO.platform, "tmall-nrt");
    assert_eq!(INFO.version, "0.1.0");
    assert_eq!(INFO.max_recipients_per_call, 20);
    const { assert!(INFO.idempotent_send, "the platform deduplicates by out_id") };
    assert_eq!(INFO.recipient_kinds, [RecipientKind::OpenId]);
    assert_eq!(INFO.operations, ["send-coupon", "query-coupons"]);
}

#[test]
fn config_reads_settings_and_options() {
    let config = SendConfig::resolve(&Lookup::new(&[], &settings)).unwrap();
    assert_eq!(
        config,
        SendConfig {
            config: Config {
                top: TopConfig {
                    gateway: GATEWAY.to_owned(),
                    simplify: false
                },
                biz_code: "YXX".to_owned(),
                coupon_type: 247,
            },
            channel: "app".to_owned(),
            extra: None,
        }
    );
    let overrides = options(&[
        ("coupon_type", "357"),
        ("channel", "mini"),
        ("extra", r#"{"k":"v"}"#),
        ("simplify", "true"),
    ]);
    let config = SendConfig::resolve(&Lookup::new(&overrides, &settings)).unwrap();
    assert_eq!(config.config.coupon_type, 357);
    assert_eq!(config.channel, "mini");
    assert_eq!(config.extra.as_deref(), Some(r#"{"k":"v"}"#));
    assert!(config.config.top.simplify);
}

#[test]
fn config_errors_name_the_setting() {
    for (key, value, expected) in [
        (
            "coupon_type",
            "1",
            "settings.coupon_type must be 247, 276 or 357",
        ),
        (
            "coupon_type",
            "abc",
            "settings.coupon_type must be 247, 276 or 357",
        ),
        ("coupon_type", "", "settings.coupon_type is missing"),
        ("biz_code", " ", "settings.biz_code is missing"),
        ("channel", "", "settings.channel is missing"),
        ("gateway", "", "settings.gateway is missing"),
        (
            "gateway",
            "eco.taobao.com",
            "settings.gateway must be an http(s) URL",
        ),
    ] {
        let overrides = options(&[(key, value)]);
        let error = SendConfig::resolve(&Lookup::new(&overrides, &settings)).unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::InvalidRequest, "config"),
            "{key}={value}"
        );
        assert!(error.message.starts_with(expected), "{}", error.message);
    }
    // The query does not need a channel.
    let overrides = options(&[("channel", "")]);
    assert!(Config::resolve(&Lookup::new(&overrides, &settings)).is_ok());
}

#[test]
fn the_dto_is_compact_json_in_java_bean_order() {
    let config = SendConfig::resolve(&Lookup::new(&[], &settings)).unwrap();
    let call = build_send_request(&config, "fsdfsfee1f2", "dfdsdfow", "0123abcd").unwrap();
    assert_eq!(call.url, GATEWAY);
    assert_eq!(
        call.params,
        options(&[
            ("method", "tmall.nrt.coupon.send"),
            ("format", "json"),
            (
                "nrt_coupon_send_dto",
                r#"{"biz_code":"YXX","channel":"app","coupon_type":247,"open_id":"dfdsdfow","out_id":"0123abcd","uuid":"fsdfsfee1f2"}"#
            ),
        ])
    );
}

#[test]
fn extra_goes_between_coupon_type_and_open_id_and_text_is_escaped_once() {
    let overrides = options(&[
        ("extra", r#"{"key":"value"}"#),
        ("simplify", "true"),
        ("biz_code", "业务\"码"),
    ]);
    let config = SendConfig::resolve(&Lookup::new(&overrides, &settings)).unwrap();
    let call = build_send_request(&config, "u", "张三", "id").unwrap();
    assert_eq!(param(&call, "simplify"), Some("true"));
    assert_eq!(
        param(&call, "nrt_coupon_send_dto"),
        Some(
            r#"{"biz_code":"业务\"码","channel":"app","coupon_type":247,"extra":"{\"key\":\"value\"}","open_id":"张三","out_id":"id","uuid":"u"}"#
        )
    );
}

#[test]
fn out_id_is_derived_from_the_key_and_the_open_id() {
    let expected = recipient_idempotency_id(KEY, "open-1");
    assert_eq!(expected, "331d3a527a4593403ba2f0b4c6d5cc64");
    let req = request(vec![open_id("open-1"), open_id(" open-2 ")]);
    let (_, first) = send(&req, vec![ok(SEND_SEED), ok(SEND_SEED)]);
    let (_, again) = send(&req, vec![ok(SEND_SEED), ok(SEND_SEED)]);
    let dto = |call: &HttpRequest| -> Value {
        serde_json::from_str(param(call, "nrt_coupon_send_dto").unwrap()).unwrap()
    };
    assert_eq!(first, again, "a retry sends exactly the same calls");
    assert_eq!(dto(&first[0])["out_id"], expected);
    assert_eq!(dto(&first[0])["uuid"], "nrt-demo-uuid");
    assert_eq!(
        dto(&first[1])["open_id"],
        "open-2",
        "the open id is sent trimmed"
    );
    assert_eq!(
        dto(&first[1])["out_id"],
        recipient_idempotency_id(KEY, "open-2")
    );
    assert_ne!(dto(&first[0])["out_id"], dto(&first[1])["out_id"]);

    let mut other = req.clone();
    other.idempotency_key = "campaign-8:batch-1".to_owned();
    let (_, calls) = send(&other, vec![ok(SEND_SEED), ok(SEND_SEED)]);
    assert_ne!(
        dto(&calls[0])["out_id"],
        expected,
        "another send, another out_id"
    );
}

#[test]
fn a_seed_answer_issues_with_the_model() {
    let req = request(vec![open_id("open-1")]);
    let (outcome, calls) = send(&req, vec![ok(SEND_SEED)]);
    let outcome = outcome.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        outcome.issued,
        [Issued {
            recipient: open_id("open-1"),
            coupon: IssuedCoupon {
                coupon_id: Some("67890".to_owned()),
                name: Some("测试券".to_owned()),
                amount_fen: Some(1000),
                threshold_fen: Some(10000),
                valid_from: Some(1_767_196_800),
                valid_until: Some(1_798_732_799),
            },
        }]
    );
    assert!(outcome.failed.is_empty());
    assert_eq!(outcome.request_ids, ["nrt-send-1"]);
}

#[test]
fn a_simplified_answer_issues_too() {
    let req = request(vec![open_id("open-1")]);
    let (outcome, _) = send(&req, vec![ok(SEND_SEED_SIMPLIFIED)]);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.issued[0].coupon.coupon_id.as_deref(), Some("67891"));
    assert_eq!(outcome.issued[0].coupon.threshold_fen, Some(0));
    assert_eq!(outcome.request_ids, ["nrt-send-2"]);
}

#[test]
fn a_messy_model_still_issues_with_what_can_be_read() {
    let req = request(vec![open_id("open-1")]);
    let (outcome, _) = send(&req, vec![ok(SEND_MODEL_MESSY)]);
    let issued = &outcome.unwrap().issued[0].coupon;
    assert_eq!(
        issued,
        &IssuedCoupon {
            coupon_id: Some("67892".to_owned()),
            name: None,
            amount_fen: Some(1000),
            threshold_fen: None,
            valid_from: None,
            valid_until: None,
        }
    );
}

#[test]
fn an_answer_without_a_model_is_transient() {
    let req = request(vec![open_id("open-1")]);
    for body in [
        SEND_MODEL_NULL,
        r#"{"tmall_nrt_coupon_send_response":{"request_id":"x"}}"#,
        r#"{"tmall_nrt_coupon_send_response":{"model":"67890"}}"#,
        "{}",
    ] {
        let (outcome, _) = send(&req, vec![ok(body)]);
        let error = only_failure(outcome);
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::Transient, "no-model"),
            "{body}"
        );
    }
    let (outcome, _) = send(&req, vec![ok(SEND_MODEL_NULL)]);
    let outcome = outcome.unwrap();
    assert_eq!(outcome.request_ids, ["nrt-send-null"]);
    assert_eq!(
        outcome.failed[0].error.request_id.as_deref(),
        Some("nrt-send-null")
    );
}

#[test]
fn each_seed_error_number_has_its_class() {
    let cases = [
        (
            SEND_ERROR_LIMIT,
            ErrorClass::RecipientLimit,
            "-7",
            "领取太多了",
        ),
        (
            SEND_ERROR_SOLD_OUT,
            ErrorClass::CouponUnavailable,
            "-6",
            "优惠券已领完",
        ),
        (
            SEND_ERROR_INVALID_COUPON,
            ErrorClass::CouponUnavailable,
            "-3",
            "优惠券无效",
        ),
        (
            SEND_ERROR_BUSINESS,
            ErrorClass::InvalidRequest,
            "-11",
            "业务异常",
        ),
        (
            SEND_ERROR_SYSTEM,
            ErrorClass::Transient,
            "-9999",
            "系统异常",
        ),
        (
            SEND_ERROR_SEED,
            ErrorClass::InvalidRequest,
            "isv.invalid-parameter",
            "非法参数",
        ),
    ];
    for (body, class, code, text) in cases {
        let req = request(vec![open_id("open-1")]);
        let (outcome, calls) = send(&req, vec![ok(body)]);
        assert_eq!(calls.len(), 1);
        let outcome = outcome.unwrap();
        assert_eq!(
            outcome.request_ids.len(),
            1,
            "{code}: the request id is kept"
        );
        let error = &outcome.failed[0].error;
        assert_eq!((error.class, error.code.as_str()), (class, code));
        assert!(error.message.contains(text), "{}", error.message);
        assert_eq!(error.retry_after_ms, None);
    }
}

#[test]
fn a_per_recipient_error_does_not_stop_the_others() {
    let req = request(vec![open_id("a"), open_id("b"), open_id("c")]);
    let (outcome, calls) = send(
        &req,
        vec![ok(SEND_ERROR_LIMIT), ok(SEND_ERROR_SYSTEM), ok(SEND_SEED)],
    );
    let outcome = outcome.unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(outcome.issued.len(), 1);
    assert_eq!(outcome.issued[0].recipient, open_id("c"));
    let classes: Vec<_> = outcome.failed.iter().map(|f| f.error.class).collect();
    assert_eq!(classes, [ErrorClass::RecipientLimit, ErrorClass::Transient]);
    assert_eq!(
        outcome.request_ids,
        ["nrt-err-7", "nrt-err-9999", "nrt-send-1"]
    );
}

#[test]
fn a_request_wide_error_on_the_first_call_fails_the_request() {
    for (body, class) in [
        (ERROR_RATE_LIMITED, ErrorClass::RateLimited),
        (ERROR_INVALID_SESSION, ErrorClass::AuthExpired),
        (
            r#"{"error_response":{"code":25,"msg":"Invalid signature"}}"#,
            ErrorClass::Unauthorized,
        ),
        (
            r#"{"error_response":{"code":31,"msg":"Invalid timestamp"}}"#,
            ErrorClass::InvalidRequest,
        ),
    ] {
        let req = request(vec![open_id("a"), open_id("b")]);
        let (result, calls) = send(&req, vec![ok(body), ok(SEND_SEED)]);
        let error = result.unwrap_err();
        assert_eq!(error.class, class, "{body}");
        assert_eq!(calls.len(), 1, "no second call after {body}");
    }
    let req = request(vec![open_id("a")]);
    let (result, _) = send(&req, vec![ok(ERROR_RATE_LIMITED)]);
    assert_eq!(result.unwrap_err().retry_after_ms, Some(3000));
}

#[test]
fn a_request_wide_error_later_fails_the_rest_without_calling() {
    let req = request(vec![open_id("a"), open_id("b"), open_id("c")]);
    let (outcome, calls) = send(&req, vec![ok(SEND_SEED), ok(ERROR_RATE_LIMITED)]);
    let outcome = outcome.unwrap();
    assert_eq!(calls.len(), 2, "the rate-limited app stops calling");
    assert_eq!(outcome.issued.len(), 1);
    let failed: Vec<_> = outcome
        .failed
        .iter()
        .map(|f| (f.recipient.clone(), f.error.class))
        .collect();
    assert_eq!(
        failed,
        [
            (open_id("b"), ErrorClass::RateLimited),
            (open_id("c"), ErrorClass::RateLimited)
        ]
    );
    assert!(
        outcome.failed[1]
            .error
            .message
            .starts_with("not sent because an earlier call failed")
    );
    assert_eq!(outcome.request_ids, ["nrt-send-1", "nrt-err-7-limit"]);
}

#[test]
fn transport_failures_are_classified() {
    let cases = [
        (
            Err(HttpError::Timeout),
            ErrorClass::Transient,
            "http.timeout",
        ),
        (
            Ok(HttpResponse {
                status: 502,
                body: b"<html>502 Bad Gateway</html>".to_vec(),
            }),
            ErrorClass::Transient,
            "http.502",
        ),
        (
            Err(HttpError::TooLarge),
            ErrorClass::Transient,
            "http.too-large",
        ),
        (
            ok("<html><body>502</body></html>"),
            ErrorClass::Transient,
            "bad-response",
        ),
    ];
    for (answer, class, code) in cases {
        let req = request(vec![open_id("a"), open_id("b")]);
        let (outcome, calls) = send(&req, vec![answer, ok(SEND_SEED)]);
        assert_eq!(calls.len(), 2, "{code} concerns one call only");
        let outcome = outcome.unwrap();
        assert_eq!(
            (
                outcome.failed[0].error.class,
                outcome.failed[0].error.code.as_str()
            ),
            (class, code)
        );
        assert_eq!(outcome.issued.len(), 1);
    }
    for (answer, class, code) in [
        (
            Err(HttpError::Connect("refused".to_owned())),
            ErrorClass::Transient,
            "http.connect",
        ),
        (
            Err(HttpError::Denied("host not allowed".to_owned())),
            ErrorClass::InvalidRequest,
            "http.denied",
        ),
        (
            Err(HttpError::Unauthorized("no session".to_owned())),
            ErrorClass::Unauthorized,
            "http.unauthorized",
        ),
    ] {
        let req = request(vec![open_id("a"), open_id("b")]);
        let (result, calls) = send(&req, vec![answer, ok(SEND_SEED)]);
        let error = result.unwrap_err();
        assert_eq!((error.class, error.code.as_str()), (class, code));
        assert_eq!(calls.len(), 1);
    }
}

#[test]
fn odd_answers_never_panic() {
    let bodies = [
        "",
        "null",
        "[]",
        "{}",
        "{\"",
        "<html><body>502 Bad Gateway</body></html>",
        r#"{"unexpected":{"deeply":{"nested":[1,2,3]}}}"#,
        r#"{"x_response":{"extra":true},"error_response":null}"#,
        r#"{"tmall_nrt_coupon_send_response":{"model":{"coupon_instance_id":{"a":1},"discount":1e400}}}"#,
        r#"{"tmall_nrt_coupon_send_response":{"model":{"discount":-5,"start_time":-9223372036854775808}}}"#,
        r#"{"error_response":{"code":"x","sub_code":[1],"sub_msg":{}}}"#,
        "\u{feff}{}",
    ];
    for body in bodies {
        let req = request(vec![open_id("a")]);
        let (result, _) = send(&req, vec![ok(body)]);
        let outcome = result.unwrap_or_else(|error| panic!("{body:?}: {error}"));
        assert_eq!(outcome.issued.len() + outcome.failed.len(), 1);
        let (result, _) = query(open_id("a"), ok(body));
        let _ = result;
    }
}

#[test]
fn the_request_is_checked_before_any_call() {
    let mut req = request(vec![open_id("a")]);
    req.quantity = 2;
    let (result, calls) = send(&req, vec![]);
    assert_eq!(result.unwrap_err().code, "quantity");
    assert!(calls.is_empty());

    let mut req = request(vec![open_id("a")]);
    req.quantity = 0;
    assert_eq!(send(&req, vec![]).0.unwrap_err().code, "quantity");

    let mut req = request(vec![open_id("a")]);
    req.idempotency_key = " ".to_owned();
    assert_eq!(send(&req, vec![]).0.unwrap_err().code, "idempotency-key");

    let mut req = request(vec![open_id("a")]);
    req.coupon = "  ".to_owned();
    assert_eq!(send(&req, vec![]).0.unwrap_err().code, "coupon");

    let mut req = request(vec![open_id("a")]);
    req.options = options(&[("coupon_type", "1")]);
    let (result, calls) = send(&req, vec![]);
    assert_eq!(result.unwrap_err().code, "config");
    assert!(calls.is_empty());
}

#[test]
fn other_recipient_kinds_blanks_and_repeats_are_refused_without_a_call() {
    let req = request(vec![
        Recipient::Nick("张三".to_owned()),
        open_id("a"),
        Recipient::CustomerId("5757".to_owned()),
        open_id(""),
        open_id("a"),
    ]);
    let (outcome, calls) = send(&req, vec![ok(SEND_SEED)]);
    let outcome = outcome.unwrap();
    assert_eq!(calls.len(), 1);
    let codes: Vec<_> = outcome
        .failed
        .iter()
        .map(|f| f.error.code.as_str())
        .collect();
    assert_eq!(
        codes,
        [
            "recipient-kind",
            "recipient-kind",
            "recipient-empty",
            "recipient-duplicate"
        ]
    );
    assert_eq!(
        outcome.failed[0].error.message,
        "tmall-nrt takes open-id recipients, not nick"
    );
}

#[test]
fn the_query_sends_the_documented_params() {
    let (result, calls) = query(open_id(" open-1 "), ok(QUERY_SEED));
    result.unwrap();
    assert_eq!(
        calls,
        [HttpRequest {
            url: GATEWAY.to_owned(),
            params: options(&[
                ("method", "tmall.nrt.coupon.instance.query"),
                ("format", "json"),
                ("user_id", "open-1"),
                ("biz_code", "YXX"),
                ("coupon_types", "247"),
            ]),
        }]
    );
}

#[test]
fn the_query_reads_the_model_strings() {
    let (result, _) = query(open_id("open-1"), ok(QUERY_SEED));
    let coupons = result.unwrap();
    let held = Coupon {
        id: "67890".to_owned(),
        template_id: Some("12345".to_owned()),
        title: Some("测试券".to_owned()),
        state: CouponState::Held,
        amount_fen: Some(1000),
        threshold_fen: Some(10000),
        valid_from: Some(1_767_196_800),
        valid_until: Some(1_798_732_799),
        claim_url: None,
    };
    assert_eq!(coupons.len(), 3);
    assert_eq!(coupons[0], held);
    assert_eq!(
        (coupons[1].id.as_str(), coupons[1].state),
        ("67891", CouponState::Used)
    );
    assert_eq!(
        (coupons[2].id.as_str(), coupons[2].state),
        ("67892", CouponState::Expired)
    );

    let (result, _) = query(open_id("open-1"), ok(QUERY_SIMPLIFIED));
    assert_eq!(result.unwrap(), [held]);
}

#[test]
fn the_query_skips_unreadable_models() {
    let (result, _) = query(open_id("open-1"), ok(QUERY_MESSY));
    let coupons = result.unwrap();
    let summary: Vec<_> = coupons
        .iter()
        .map(|c| {
            (
                c.id.as_str(),
                c.state,
                c.amount_fen,
                c.threshold_fen,
                c.valid_from,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("77", CouponState::Used, None, None, Some(1_767_196_800)),
            ("", CouponState::Unknown, None, None, None),
            ("", CouponState::Held, Some(1000), None, Some(1_767_196_800)),
        ]
    );
}

#[test]
fn query_errors_are_classified() {
    let (result, _) = query(open_id("open-1"), ok(QUERY_RESULT_ERROR));
    let error = result.unwrap_err();
    assert_eq!(
        (
            error.class,
            error.code.as_str(),
            error.request_id.as_deref()
        ),
        (ErrorClass::Transient, "-9999", Some("nrt-query-err"))
    );
    assert!(error.message.contains("系统异常"), "{}", error.message);

    let body = r#"{"result":{"code":"E42","message":"bad biz_code"}}"#;
    let error = query(open_id("open-1"), ok(body)).0.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::InvalidRequest, "E42")
    );

    let error = query(open_id("open-1"), ok(ERROR_INVALID_SESSION))
        .0
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::AuthExpired);
    let error = query(open_id("open-1"), ok(SEND_ERROR_SYSTEM))
        .0
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::Transient);

    let error = query(open_id("open-1"), ok(r#"{"x_response":{}}"#))
        .0
        .unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Transient, "bad-response")
    );

    let error = query(open_id("open-1"), Err(HttpError::Timeout))
        .0
        .unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Transient, "http.timeout")
    );

    let empty = r#"{"tmall_nrt_coupon_instance_query_response":{"result":{"code":"0","message":"success"}}}"#;
    assert_eq!(query(open_id("open-1"), ok(empty)).0.unwrap(), []);
}

#[test]
fn the_query_takes_an_open_id_only() {
    let (result, calls) = query(Recipient::Nick("张三".to_owned()), ok(QUERY_SEED));
    assert_eq!(result.unwrap_err().code, "recipient-kind");
    assert!(calls.is_empty());
    let (result, _) = query(open_id(" "), ok(QUERY_SEED));
    assert_eq!(result.unwrap_err().code, "recipient-empty");
}

/// A key given twice counts by its last value, as it did when answers were read into a
/// `serde_json::Value`; escaped strings read as their text.
#[test]
fn repeated_keys_and_escapes_read_as_before() {
    let body = r#"{"tmall_nrt_coupon_send_response":{"model":{"coupon_instance_id":"1","coupon_instance_id":"2","coupon_name":"\u5238","discount":100},"request_id":"nrt-1"}}"#;
    let (outcome, _) = send(&request(vec![open_id("o1")]), vec![ok(body)]);
    let outcome = outcome.unwrap();
    assert_eq!(
        outcome.issued[0].coupon,
        IssuedCoupon {
            coupon_id: Some("2".to_owned()),
            name: Some("券".to_owned()),
            amount_fen: Some(100),
            ..IssuedCoupon::default()
        }
    );
    assert_eq!(outcome.request_ids, ["nrt-1"]);
}
