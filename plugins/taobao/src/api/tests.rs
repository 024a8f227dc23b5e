//! Native tests of the taobao mapping, with fixtures taken from the seed pages.

use adapter_kit::test_support::{Script, assert_every_recipient_once, pairs as params};
use serde_json::json;

use super::*;

const GATEWAY: &str = "https://eco.taobao.com/router/rest";

const SEND_SEED: &str = include_str!("../../fixtures/send_seed.json");
const SEND_SEED_SIMPLIFIED: &str = include_str!("../../fixtures/send_seed_simplified.json");
const SEND_OPEN_UIDS: &str = include_str!("../../fixtures/send_open_uids.json");
const SEND_ERROR_SEED: &str = include_str!("../../fixtures/send_error_seed.json");
const SEND_COUPON_ERROR: &str = include_str!("../../fixtures/send_coupon_error.json");
const SEND_RATE_LIMITED: &str = include_str!("../../fixtures/send_rate_limited.json");
const QUERY_SEED: &str = include_str!("../../fixtures/query_seed.json");
const QUERY_MESSY: &str = include_str!("../../fixtures/query_messy.json");

type Answer = Result<HttpResponse, HttpError>;

fn settings(key: &str) -> Option<String> {
    (key == "gateway").then(|| GATEWAY.to_owned())
}

fn no_settings(_: &str) -> Option<String> {
    None
}

fn ok(body: &str) -> Answer {
    Ok(HttpResponse {
        status: 200,
        body: body.as_bytes().to_vec(),
    })
}

fn nick(value: &str) -> Recipient {
    Recipient::Nick(value.to_owned())
}

fn open_id(value: &str) -> Recipient {
    Recipient::OpenId(value.to_owned())
}

fn request(recipients: Vec<Recipient>) -> SendRequest {
    SendRequest {
        coupon: "48552".to_owned(),
        recipients,
        quantity: 1,
        options: Vec::new(),
    }
}

fn resolve(
    options: &[(String, String)],
    settings: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, TopError> {
    Config::resolve(&Lookup::new(options, settings))
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

fn failure<'a>(outcome: &'a Outcome, recipient: &Recipient) -> &'a TopError {
    let found = outcome.failed.iter().find(|f| &f.recipient == recipient);
    &found
        .unwrap_or_else(|| panic!("{recipient:?} did not fail: {outcome:?}"))
        .error
}

#[test]
fn describes_the_adapter() {
    assert_eq!(PLATFORM, "taobao");
    assert_eq!(VERSION, "0.1.0");
    assert_eq!(MAX_RECIPIENTS_PER_CALL, 100);
    const { assert!(!IDEMPOTENT_SEND, "the SNS API has no idempotency key") };
    assert_eq!(OPERATIONS, ["send-coupon", "query-coupons"]);
}

#[test]
fn config_needs_a_gateway() {
    let error = resolve(&[], &no_settings).unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::InvalidRequest, "config")
    );
    assert!(
        error.message.starts_with("settings.gateway is missing"),
        "{}",
        error.message
    );
    let blank = |_: &str| Some("  ".to_owned());
    assert_eq!(resolve(&[], &blank).unwrap_err().code, "config");
    let ftp = |_: &str| Some("ftp://x".to_owned());
    assert!(
        resolve(&[], &ftp)
            .unwrap_err()
            .message
            .contains("http(s) URL")
    );
}

#[test]
fn options_override_settings() {
    let config = resolve(&[], &settings).unwrap();
    assert_eq!(
        config,
        Config {
            gateway: GATEWAY.to_owned(),
            simplify: false
        }
    );
    let options = params(&[
        ("simplify", "TRUE"),
        ("gateway", "http://127.0.0.1:8080/router/rest"),
    ]);
    let config = resolve(&options, &settings).unwrap();
    assert_eq!(
        config,
        Config {
            gateway: "http://127.0.0.1:8080/router/rest".to_owned(),
            simplify: true
        }
    );
    let options = params(&[("simplify", "true"), ("simplify", "false")]);
    assert!(
        !resolve(&options, &settings).unwrap().simplify,
        "the last option wins"
    );
    let error = resolve(&params(&[("simplify", "yes")]), &settings).unwrap_err();
    assert_eq!(error.code, "config");
}

#[test]
fn coupon_id_must_be_a_positive_decimal() {
    assert_eq!(parse_coupon_id("48552").unwrap(), "48552");
    assert_eq!(parse_coupon_id(" 0048552 ").unwrap(), "48552");
    assert_eq!(
        parse_coupon_id("9223372036854775807").unwrap(),
        "9223372036854775807"
    );
    for bad in [
        "",
        "0",
        "-1",
        "+1",
        "1.0",
        "1e3",
        "abc",
        "48552,1",
        "9223372036854775808",
        "４８",
    ] {
        let error = parse_coupon_id(bad).unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::InvalidRequest, "coupon-id"),
            "{bad}"
        );
    }
}

#[test]
fn plan_refuses_what_no_call_can_carry() {
    let recipients = vec![
        nick("张三"),
        Recipient::CustomerId("c1".to_owned()),
        nick("a,b"),
        nick("  "),
        nick(" 张三 "),
        open_id("x,y"),
        open_id("u1"),
        open_id("张三"),
    ];
    let plan = plan(&recipients);
    let refused: Vec<(usize, &str)> = plan
        .refused
        .iter()
        .map(|(i, e)| (*i, e.code.as_str()))
        .collect();
    assert_eq!(
        refused,
        [
            (1, "recipient-kind"),
            (2, "recipient-comma"),
            (3, "recipient-empty"),
            (4, "recipient-duplicate"),
            (5, "recipient-comma")
        ]
    );
    assert!(
        plan.refused
            .iter()
            .all(|(_, e)| e.class == ErrorClass::InvalidRequest)
    );
    assert_eq!(
        plan.batches,
        [
            Batch {
                kind: BatchKind::Nick,
                members: vec![(0, "张三".to_owned())]
            },
            Batch {
                kind: BatchKind::OpenUid,
                members: vec![(6, "u1".to_owned()), (7, "张三".to_owned())]
            },
        ]
    );
}

#[test]
fn plan_splits_at_the_api_list_limits() {
    let mut recipients: Vec<Recipient> = (0..250).map(|i| nick(&format!("n{i}"))).collect();
    recipients.extend((0..1000).map(|i| open_id(&format!("o{i}"))));
    let sizes: Vec<(BatchKind, usize)> = plan(&recipients)
        .batches
        .iter()
        .map(|b| (b.kind, b.members.len()))
        .collect();
    use BatchKind::{Nick, OpenUid};
    assert_eq!(
        sizes,
        [
            (Nick, 100),
            (Nick, 100),
            (Nick, 50),
            (OpenUid, 999),
            (OpenUid, 1)
        ]
    );
}

#[test]
fn send_params_are_exactly_the_application_params() {
    let (_, calls) = send(
        &request(vec![nick("张三"), nick("历史")]),
        vec![ok(SEND_SEED)],
    );
    assert_eq!(
        calls,
        [HttpRequest {
            url: GATEWAY.to_owned(),
            params: params(&[
                ("method", "taobao.promotion.coupon.sns.send"),
                ("format", "json"),
                ("coupon_id", "48552"),
                ("buyer_nick", "张三,历史"),
            ]),
        }]
    );
}

#[test]
fn simplify_and_open_uids_change_the_params() {
    let mut req = request(vec![open_id("asd"), open_id("asas")]);
    req.options = params(&[("simplify", "true")]);
    let (_, calls) = send(&req, vec![ok(SEND_OPEN_UIDS)]);
    let expected = params(&[
        ("method", "taobao.promotion.coupon.sns.send"),
        ("format", "json"),
        ("simplify", "true"),
        ("coupon_id", "48552"),
        ("open_uids", "asd,asas"),
    ]);
    assert_eq!(
        calls.iter().map(|c| c.params.clone()).collect::<Vec<_>>(),
        [expected]
    );
}

#[test]
fn seed_answer_issues_fails_and_reports_the_unmentioned() {
    for fixture in [SEND_SEED, SEND_SEED_SIMPLIFIED] {
        let req = request(vec![nick("张三"), nick("买家昵称"), nick("李四")]);
        let (result, _) = send(&req, vec![ok(fixture)]);
        let outcome = result.unwrap();
        let id = if fixture == SEND_SEED {
            "seed-send-1"
        } else {
            "seed-send-2"
        };
        assert_eq!(outcome.request_ids, [id]);
        assert_eq!(
            outcome.issued,
            [Issued {
                recipient: nick("买家昵称"),
                coupon_id: Some("122345456".to_owned())
            }]
        );

        let error = failure(&outcome, &nick("张三"));
        assert_eq!(
            (error.class, error.code.as_str(), error.message.as_str()),
            (ErrorClass::RecipientInvalid, "failure_buyers", "买家不存在")
        );
        assert_eq!(error.request_id.as_deref(), Some(id));

        let error = failure(&outcome, &nick("李四"));
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::Unknown, "not-reported")
        );
        assert!(
            error.message.contains("is_success true"),
            "{}",
            error.message
        );
        let order: Vec<&Recipient> = outcome.failed.iter().map(|f| &f.recipient).collect();
        assert_eq!(
            order,
            [&nick("张三"), &nick("李四")],
            "failures keep request order"
        );
    }
}

#[test]
fn open_uid_answers_match_by_open_uid() {
    let req = request(vec![open_id("asd"), open_id("asas")]);
    let outcome = send(&req, vec![ok(SEND_OPEN_UIDS)]).0.unwrap();
    assert_eq!(
        outcome.issued,
        [Issued {
            recipient: open_id("asd"),
            coupon_id: Some("900000000000000001".to_owned())
        }]
    );
    assert_eq!(
        failure(&outcome, &open_id("asas")).class,
        ErrorClass::CouponUnavailable
    );
}

#[test]
fn an_issued_recipient_listed_as_failed_too_stays_issued() {
    let body = json!({"coupon_results": [{"buyer_nick": "a", "coupon_number": 1}, {"buyer_nick": "a", "coupon_number": 2}],
        "failure_buyers": [{"buyer_nick": "a", "reason": "买家不存在"}, {"buyer_nick": "b"}, {"buyer_nick": "stranger", "reason": "x"}]});
    let outcome = send(
        &request(vec![nick("a"), nick("b")]),
        vec![ok(&body.to_string())],
    )
    .0
    .unwrap();
    assert_eq!(
        outcome.issued,
        [Issued {
            recipient: nick("a"),
            coupon_id: Some("1".to_owned())
        }]
    );
    let error = failure(&outcome, &nick("b"));
    assert_eq!(
        (error.class, error.message.as_str()),
        (ErrorClass::RecipientInvalid, "the platform gave no reason")
    );
    assert!(outcome.request_ids.is_empty());
}

#[test]
fn an_empty_answer_leaves_everyone_unknown() {
    let outcome = send(
        &request(vec![nick("a")]),
        vec![ok(r#"{"promotion_coupon_sns_send_response":{}}"#)],
    )
    .0
    .unwrap();
    let error = failure(&outcome, &nick("a"));
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Unknown, "not-reported")
    );
    assert!(
        error.message.contains("is_success absent"),
        "{}",
        error.message
    );
}

#[test]
fn failure_reasons_are_classified() {
    use ErrorClass::*;
    let cases = [
        ("买家不存在", RecipientInvalid),
        ("该用户不存在", RecipientInvalid),
        ("买家不是店铺的微淘粉丝", RecipientInvalid),
        ("user is not a fan", RecipientInvalid),
        ("优惠券已发完", CouponUnavailable),
        ("库存不足", CouponUnavailable),
        ("优惠券不存在或者优惠券已经过期", CouponUnavailable),
        ("coupon expired", CouponUnavailable),
        ("超过领取限制", RecipientLimit),
        ("已达到领取上限", RecipientLimit),
        ("买家已经领取过该优惠券", RecipientLimit),
        ("Too many coupons", RecipientLimit),
        ("系统异常,请稍后再试", Transient),
        ("system busy", Transient),
        ("", RecipientInvalid),
        ("其他原因", RecipientInvalid),
    ];
    for (reason, class) in cases {
        assert_eq!(classify_failure_reason(reason), class, "{reason}");
    }
}

#[test]
fn request_errors_make_no_call() {
    let mut req = request(vec![nick("a")]);
    req.quantity = 2;
    let (result, calls) = send(&req, vec![]);
    assert_eq!(result.unwrap_err().code, "quantity");
    assert!(calls.is_empty());

    let mut req = request(vec![nick("a")]);
    req.coupon = "COUPON-1".to_owned();
    let (result, calls) = send(&req, vec![]);
    assert_eq!(result.unwrap_err().code, "coupon-id");
    assert!(calls.is_empty());

    let result = send_coupon(
        &request(vec![nick("a")]),
        &no_settings,
        |_: &HttpRequest| -> Answer { panic!("no call without a gateway") },
    );
    assert_eq!(result.unwrap_err().code, "config");
}

#[test]
fn no_sendable_recipient_means_no_call() {
    let (result, calls) = send(&request(vec![]), vec![]);
    assert_eq!(result.unwrap(), Outcome::default());
    assert!(calls.is_empty());

    let req = request(vec![Recipient::CustomerId("c".to_owned()), nick("a,b")]);
    let (result, calls) = send(&req, vec![]);
    let outcome = result.unwrap();
    assert_eq!(outcome.failed.len(), 2);
    assert!(calls.is_empty());
}

#[test]
fn a_failing_first_call_fails_the_whole_request() {
    let cases = [
        (
            ok(SEND_ERROR_SEED),
            ErrorClass::InvalidRequest,
            "isv.invalid-parameter",
        ),
        (
            ok(SEND_COUPON_ERROR),
            ErrorClass::CouponUnavailable,
            "isv.coupon-error",
        ),
        (
            Err(HttpError::Denied("host not allowed".to_owned())),
            ErrorClass::InvalidRequest,
            "http.denied",
        ),
        (
            Err(HttpError::Connect("refused".to_owned())),
            ErrorClass::Transient,
            "http.connect",
        ),
        (Err(HttpError::Timeout), ErrorClass::Unknown, "http.timeout"),
        (
            Err(HttpError::TooLarge),
            ErrorClass::Transient,
            "http.too-large",
        ),
        (
            Err(HttpError::Unauthorized("token refused".to_owned())),
            ErrorClass::Unauthorized,
            "http.unauthorized",
        ),
        (
            Err(HttpError::Other("no session".to_owned())),
            ErrorClass::Transient,
            "http.other",
        ),
        (
            Ok(HttpResponse {
                status: 502,
                body: b"<html>".to_vec(),
            }),
            ErrorClass::Transient,
            "http.502",
        ),
        (
            ok("<html>busy</html>"),
            ErrorClass::Transient,
            "bad-response",
        ),
    ];
    for (answer, class, code) in cases {
        let req = request(vec![
            nick("a"),
            Recipient::CustomerId("c".to_owned()),
            open_id("o"),
        ]);
        let (result, calls) = send(&req, vec![answer]);
        let error = result.unwrap_err();
        assert_eq!((error.class, error.code.as_str()), (class, code));
        assert_eq!(calls.len(), 1, "{code}: the open-id call is not made");
    }
}

#[test]
fn seed_error_keeps_the_platform_message_and_request_id() {
    let error = send(&request(vec![nick("a")]), vec![ok(SEND_ERROR_SEED)])
        .0
        .unwrap_err();
    assert_eq!(error.request_id.as_deref(), Some("seed-error-1"));
    assert!(
        error.message.starts_with("Remote service error: 非法参数"),
        "{}",
        error.message
    );
}

#[test]
fn a_later_failing_call_fails_only_its_recipients() {
    let nicks: Vec<Recipient> = (0..101).map(|i| nick(&format!("n{i}"))).collect();
    let mut recipients = nicks.clone();
    recipients.push(open_id("o1"));
    let first = json!({"coupon_results": {"coupon_result": (0..100).map(|i| json!({"buyer_nick": format!("n{i}"), "coupon_number": i})).collect::<Vec<_>>()}, "request_id": "r1"});
    let third =
        json!({"coupon_results": [{"open_uid": "o1", "coupon_number": 7}], "request_id": "r3"});
    let answers = vec![
        ok(&first.to_string()),
        Err(HttpError::Timeout),
        ok(&third.to_string()),
    ];
    let (result, calls) = send(&request(recipients), answers);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(outcome.issued.len(), 101);
    let error = failure(&outcome, &nick("n100"));
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Unknown, "http.timeout")
    );
    assert_eq!(outcome.request_ids, ["r1", "r3"]);
}

#[test]
fn a_later_rate_limit_stops_the_remaining_calls() {
    let mut recipients: Vec<Recipient> = (0..201).map(|i| nick(&format!("n{i}"))).collect();
    recipients.push(open_id("o1"));
    let answers = vec![ok(SEND_SEED), ok(SEND_RATE_LIMITED)];
    let (result, calls) = send(&request(recipients), answers);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 2, "no call after the ban");
    assert_eq!(outcome.request_ids, ["seed-send-1", "limited-1"]);
    let banned = failure(&outcome, &nick("n150"));
    assert_eq!(
        (banned.class, banned.retry_after_ms),
        (ErrorClass::RateLimited, Some(10_000))
    );
    let skipped = failure(&outcome, &open_id("o1"));
    assert_eq!(
        (skipped.class, skipped.retry_after_ms),
        (ErrorClass::RateLimited, Some(10_000))
    );
    assert!(
        skipped
            .message
            .starts_with("not sent because an earlier call failed"),
        "{}",
        skipped.message
    );
    assert_eq!(failure(&outcome, &nick("n0")).code, "not-reported");
}

#[test]
fn a_later_transient_failure_does_not_stop_the_remaining_calls() {
    let mut recipients: Vec<Recipient> = (0..101).map(|i| nick(&format!("n{i}"))).collect();
    recipients.push(open_id("asd"));
    let answers = vec![
        ok(SEND_SEED),
        Ok(HttpResponse {
            status: 503,
            body: vec![],
        }),
        ok(SEND_OPEN_UIDS),
    ];
    let (result, calls) = send(&request(recipients), answers);
    let outcome = result.unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(failure(&outcome, &nick("n100")).code, "http.503");
    assert!(outcome.issued.iter().any(|i| i.recipient == open_id("asd")));
}

#[test]
fn no_answer_makes_the_adapter_panic_or_drop_a_recipient() {
    let fixtures = [
        SEND_SEED,
        SEND_SEED_SIMPLIFIED,
        SEND_OPEN_UIDS,
        SEND_ERROR_SEED,
        SEND_RATE_LIMITED,
        QUERY_MESSY,
    ];
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for fixture in fixtures {
        let bytes = fixture.as_bytes();
        // Every truncation, on or off a character boundary.
        bodies.extend((0..bytes.len()).map(|end| bytes[..end].to_vec()));
    }
    let odd = [
        r#"{"coupon_results":"x","failure_buyers":7}"#,
        r#"{"coupon_results":[1,null,[],{"buyer_nick":5,"coupon_number":{}}],"failure_buyers":{"error_message":"x"}}"#,
        r#"{"coupon_results":{"coupon_result":{"buyer_nick":"a","coupon_number":1e400}}}"#,
        r#"{"a_response":[],"coupon_results":[{"buyer_nick":["a"]}]}"#,
        r#"{"error_response":{"code":"x","msg":[],"sub_msg":{"a":1}}}"#,
        "\u{feff}",
        "null",
    ];
    bodies.extend(odd.iter().map(|b| b.as_bytes().to_vec()));
    for body in bodies {
        for status in [200, 500] {
            let req = request(vec![nick("a"), nick("张三"), open_id("asd")]);
            let answer = Ok(HttpResponse {
                status,
                body: body.clone(),
            });
            // `send` checks the every-recipient-once invariant on every Ok outcome.
            let _ = send(&req, vec![answer.clone(), answer.clone()]);
            let _ = query(nick("a"), answer);
        }
    }
}

#[test]
fn query_params_are_exactly_the_application_params() {
    let (_, calls) = query(nick(" huazhao "), ok(QUERY_SEED));
    assert_eq!(
        calls,
        [HttpRequest {
            url: GATEWAY.to_owned(),
            params: params(&[
                ("method", "taobao.qianniu.coupon.buyer.get"),
                ("format", "json"),
                ("buyer_nick", "huazhao")
            ]),
        }]
    );
}

#[test]
fn seed_query_maps_coupon_info_do() {
    let coupons = query(nick("huazhao"), ok(QUERY_SEED)).0.unwrap();
    assert_eq!(
        coupons,
        [Coupon {
            id: "demo".to_owned(),
            template_id: Some("100".to_owned()),
            title: Some("demo".to_owned()),
            state: CouponState::Held,
            amount_fen: Some(10_000),
            threshold_fen: Some(10_000),
            valid_from: Some(1_420_041_600),
            valid_until: Some(1_420_041_600),
            claim_url: Some("demo".to_owned()),
        }]
    );
}

#[test]
fn messy_query_answers_are_tolerated() {
    let coupons = query(nick("a"), ok(QUERY_MESSY)).0.unwrap();
    let blank = Coupon {
        id: String::new(),
        template_id: None,
        title: None,
        state: CouponState::Unknown,
        amount_fen: None,
        threshold_fen: None,
        valid_from: None,
        valid_until: None,
        claim_url: None,
    };
    assert_eq!(
        coupons,
        [
            Coupon {
                id: "a1".to_owned(),
                template_id: Some("7788".to_owned()),
                title: Some("满99减10.5".to_owned()),
                state: CouponState::Claimable,
                amount_fen: Some(1050),
                threshold_fen: Some(9900),
                valid_from: Some(1_420_041_600),
                valid_until: Some(1_422_719_999),
                claim_url: Some("https://example.invalid/a1".to_owned()),
            },
            Coupon {
                id: "12345".to_owned(),
                template_id: Some("1500.0".to_owned()),
                ..blank.clone()
            },
            blank.clone(),
            Coupon {
                state: CouponState::Held,
                amount_fen: Some(29),
                ..blank
            },
        ]
    );
}

#[test]
fn simplified_query_answers_are_read_too() {
    let body = r#"{"is_success":true,"coupons":[{"id":"x","status":0}],"request_id":"q"}"#;
    let coupons = query(nick("a"), ok(body)).0.unwrap();
    assert_eq!(
        coupons
            .iter()
            .map(|c| (c.id.as_str(), c.state))
            .collect::<Vec<_>>(),
        [("x", CouponState::Claimable)]
    );
    assert!(
        query(nick("a"), ok(r#"{"is_success":true}"#))
            .0
            .unwrap()
            .is_empty()
    );
}

#[test]
fn query_takes_nicks_only() {
    for recipient in [open_id("o"), Recipient::CustomerId("c".to_owned())] {
        let (result, calls) = query(recipient, ok(QUERY_SEED));
        assert_eq!(result.unwrap_err().code, "recipient-kind");
        assert!(calls.is_empty());
    }
    assert_eq!(
        query(nick(" "), ok(QUERY_SEED)).0.unwrap_err().code,
        "recipient-empty"
    );
}

#[test]
fn query_errors_are_returned() {
    let error = query(nick("a"), ok(SEND_ERROR_SEED)).0.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::InvalidRequest, "isv.invalid-parameter")
    );
    let error = query(nick("a"), Err(HttpError::Timeout)).0.unwrap_err();
    assert_eq!(error.code, "http.timeout");
    let body = r#"{"qianniu_coupon_buyer_get_response":{"is_success":false,"request_id":"q2"}}"#;
    let error = query(nick("a"), ok(body)).0.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Transient, "not-success")
    );
    assert_eq!(error.request_id.as_deref(), Some("q2"));
}

/// The typed reader refuses what a `serde_json::Value` takes silently (a key given twice, where
/// the last counts) and borrows only unescaped strings; both kinds of answer must mean what they
/// meant when answers were read into a `Value`.
#[test]
fn repeated_keys_and_escapes_read_as_before() {
    let body = r#"{"promotion_coupon_sns_send_response":{"coupon_results":{"coupon_result":[{"buyer_nick":"a","coupon_number":1,"coupon_number":"2"},{"buyer_nick":"\u5f20\u4e09","coupon_number":3}]},"failure_buyers":{"error_message":[{"buyer_nick":12,"reason":"\u5df2\u9886\u53d6"}]},"is_success":true,"request_id":"r1","request_id":"r2"}}"#;
    let req = request(vec![nick("a"), nick("张三"), nick("12")]);
    let (result, _) = send(&req, vec![ok(body)]);
    let outcome = result.unwrap();
    let issued: Vec<(Recipient, Option<String>)> = outcome
        .issued
        .iter()
        .map(|i| (i.recipient.clone(), i.coupon_id.clone()))
        .collect();
    assert_eq!(
        issued,
        [
            (nick("a"), Some("2".to_owned())),
            (nick("张三"), Some("3".to_owned()))
        ]
    );
    let error = failure(&outcome, &nick("12"));
    assert_eq!(
        (error.class, error.message.as_str()),
        (ErrorClass::RecipientLimit, "已领取")
    );
    assert_eq!(outcome.request_ids, ["r2"]);
}

/// Entries are matched to the batch whatever their order: the usual in-order answer and a
/// shuffled one with a buyer nobody sent to give the same outcome.
#[test]
fn entries_match_their_buyers_in_any_order() {
    let req = request(vec![nick("a"), nick("b"), nick("c")]);
    let in_order = r#"{"coupon_results":[{"buyer_nick":"a","coupon_number":1},{"buyer_nick":"b","coupon_number":2}],"failure_buyers":[{"buyer_nick":"c","reason":"库存不足"}],"request_id":"r"}"#;
    let shuffled = r#"{"coupon_results":[{"buyer_nick":"zz","coupon_number":9},{"buyer_nick":" b ","coupon_number":2},{"buyer_nick":"a","coupon_number":1}],"failure_buyers":[{"buyer_nick":"c","reason":"库存不足"}],"request_id":"r"}"#;
    let (first, _) = send(&req, vec![ok(in_order)]);
    let (second, _) = send(&req, vec![ok(shuffled)]);
    let first = first.unwrap();
    assert_eq!(first, second.unwrap());
    let issued: Vec<Option<&str>> = first
        .issued
        .iter()
        .map(|i| i.coupon_id.as_deref())
        .collect();
    assert_eq!(issued, [Some("1"), Some("2")]);
    assert_eq!(
        failure(&first, &nick("c")).class,
        ErrorClass::CouponUnavailable
    );
}
