//! Native tests of the alsc mapping, with fixtures shaped as seed 003 and PLATFORMS.md say.

use adapter_kit::test_support::{Script, assert_every_recipient_once, pairs as options};
use serde_json::Value;
use top_common::contract::Issued;

use super::*;

const GATEWAY: &str = "https://eco.taobao.com/router/rest";
const KEY: &str = "campaign-7:batch-1";

const SEND_SUCCESS: &str = include_str!("../../fixtures/send_success.json");
const SEND_SUCCESS_SIMPLIFIED: &str = include_str!("../../fixtures/send_success_simplified.json");
const SEND_SEED_DOC: &str = include_str!("../../fixtures/send_seed_doc.json");
const SEND_VOUCHER_NOT_EXIST: &str = include_str!("../../fixtures/send_voucher_not_exist.json");
const SEND_VOUCHER_STOCK_NOT_ENOUGH: &str =
    include_str!("../../fixtures/send_voucher_stock_not_enough.json");
const SEND_CUSTOMER_NOT_EXIST: &str = include_str!("../../fixtures/send_customer_not_exist.json");
const SEND_EXCEED_LIMIT: &str = include_str!("../../fixtures/send_exceed_limit.json");
const SEND_PARAM_ERROR: &str = include_str!("../../fixtures/send_param_error.json");
const SEND_SYSTEM_ERROR: &str = include_str!("../../fixtures/send_system_error.json");
const SEND_RISK_REJECT: &str = include_str!("../../fixtures/send_risk_reject.json");
const QUERY_SEED: &str = include_str!("../../fixtures/query_seed.json");
const QUERY_SIMPLIFIED: &str = include_str!("../../fixtures/query_simplified.json");
const QUERY_PAGE_1: &str = include_str!("../../fixtures/query_page_1.json");
const QUERY_PAGE_2: &str = include_str!("../../fixtures/query_page_2.json");
const QUERY_MESSY: &str = include_str!("../../fixtures/query_messy.json");
const QUERY_CUSTOMER_NOT_EXIST: &str = include_str!("../../fixtures/query_customer_not_exist.json");

const RATE_LIMITED: &str = r#"{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"isv.access-limited-by-app-access-count","sub_msg":"This ban will last 1 more seconds","request_id":"alsc-limit"}}"#;
const INVALID_SIGNATURE: &str =
    r#"{"error_response":{"code":25,"msg":"Invalid signature","request_id":"alsc-sign"}}"#;

type Answer = Result<HttpResponse, HttpError>;

fn settings(key: &str) -> Option<String> {
    (key == "gateway").then(|| GATEWAY.to_owned())
}

fn ok(body: &str) -> Answer {
    Ok(HttpResponse {
        status: 200,
        body: body.as_bytes().to_vec(),
    })
}

fn customer(value: &str) -> Recipient {
    Recipient::CustomerId(value.to_owned())
}

fn request(recipients: Vec<Recipient>) -> SendRequest {
    SendRequest {
        coupon: "3243421".to_owned(),
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
    answers: Vec<Answer>,
) -> (Result<Vec<Coupon>, TopError>, Vec<HttpRequest>) {
    let mut script = Script::new(answers);
    let result = query_coupons(&recipient, &[], &settings, |call: &HttpRequest| {
        script.answer(call)
    });
    (result, script.into_calls())
}

#[test]
fn describes_the_adapter() {
    assert_eq!(INFO.platform, "alsc");
    assert_eq!(INFO.version, "0.1.0");
    assert_eq!(INFO.max_recipients_per_call, 20);
    const {
        assert!(
            INFO.idempotent_send,
            "the platform deduplicates by request_id"
        )
    };
    assert_eq!(INFO.recipient_kinds, [RecipientKind::CustomerId]);
    assert_eq!(INFO.operations, ["send-coupon", "query-coupons"]);
}

#[test]
fn the_send_param_has_the_documented_keys_in_order() {
    let config = Config::resolve(&Lookup::new(&[], &settings)).unwrap();
    let call = build_send_request(&config, "3243421", "5757", "43242", 1).unwrap();
    assert_eq!(call.url, GATEWAY);
    assert_eq!(
        call.params,
        options(&[
            ("method", "alibaba.alsc.crm.voucher.send"),
            ("format", "json"),
            (
                "param_voucher_send_open_req",
                r#"{"customer_id":"5757","request_id":"43242","voucher_id":"3243421","voucher_num":1}"#
            ),
        ])
    );
}

#[test]
fn optional_ids_from_settings_go_in_java_bean_order() {
    let overrides = options(&[
        ("brand_id", "5445"),
        ("shop_id", "424"),
        ("out_brand_id", "24"),
        ("out_shop_id", "6556"),
        ("operator_id", "4535"),
        ("simplify", "true"),
    ]);
    let config = Config::resolve(&Lookup::new(&overrides, &settings)).unwrap();
    let call = build_send_request(&config, "3243421", "5757", "43242", 3).unwrap();
    assert_eq!(param(&call, "simplify"), Some("true"));
    assert_eq!(
        param(&call, "param_voucher_send_open_req"),
        Some(
            r#"{"brand_id":"5445","customer_id":"5757","operator_id":"4535","out_brand_id":"24","out_shop_id":"6556","request_id":"43242","shop_id":"424","voucher_id":"3243421","voucher_num":3}"#
        )
    );
    // A blank option clears a setting.
    let with_brand = |key: &str| match key {
        "brand_id" => Some("5445".to_owned()),
        other => settings(other),
    };
    let clear = options(&[("brand_id", "")]);
    let config = Config::resolve(&Lookup::new(&clear, &with_brand)).unwrap();
    assert_eq!(config.brand_id, None);
    assert_eq!(
        Config::resolve(&Lookup::new(&[], &with_brand))
            .unwrap()
            .brand_id
            .as_deref(),
        Some("5445")
    );
}

#[test]
fn request_id_is_derived_from_the_key_and_the_customer() {
    let req = request(vec![customer("5757"), customer(" 张三 ")]);
    let (_, first) = send(&req, vec![ok(SEND_SUCCESS), ok(SEND_SUCCESS)]);
    let (_, again) = send(&req, vec![ok(SEND_SUCCESS), ok(SEND_SUCCESS)]);
    assert_eq!(first, again, "a retry sends exactly the same calls");
    let sent = |call: &HttpRequest| -> Value {
        serde_json::from_str(param(call, "param_voucher_send_open_req").unwrap()).unwrap()
    };
    assert_eq!(
        sent(&first[0])["request_id"],
        recipient_idempotency_id(KEY, "5757")
    );
    assert_eq!(sent(&first[1])["customer_id"], "张三");
    assert_eq!(
        sent(&first[1])["request_id"],
        recipient_idempotency_id(KEY, "张三")
    );
    assert_ne!(sent(&first[0])["request_id"], sent(&first[1])["request_id"]);
    assert_eq!(sent(&first[0])["request_id"].as_str().unwrap().len(), 32);
}

#[test]
fn success_issues_without_coupon_fields() {
    for (body, id) in [
        (SEND_SUCCESS, Some("alsc-send-1")),
        (SEND_SUCCESS_SIMPLIFIED, Some("alsc-send-2")),
        (SEND_SEED_DOC, None),
        (
            r#"{"result":{"biz_success":"true"},"request_id":"s"}"#,
            Some("s"),
        ),
    ] {
        let req = request(vec![customer("5757")]);
        let (outcome, calls) = send(&req, vec![ok(body)]);
        let outcome = outcome.unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            outcome.issued,
            [Issued {
                recipient: customer("5757"),
                coupon: IssuedCoupon::default(),
            }],
            "{body}"
        );
        assert_eq!(outcome.request_ids, id.into_iter().collect::<Vec<_>>());
    }
}

#[test]
fn quantity_is_the_voucher_num() {
    let mut req = request(vec![customer("5757")]);
    req.quantity = 100;
    let (outcome, calls) = send(&req, vec![ok(SEND_SUCCESS)]);
    assert_eq!(outcome.unwrap().issued.len(), 1);
    assert!(
        param(&calls[0], "param_voucher_send_open_req")
            .unwrap()
            .ends_with(r#""voucher_num":100}"#)
    );
    for quantity in [0, 101, u32::MAX] {
        req.quantity = quantity;
        let (result, calls) = send(&req, vec![ok(SEND_SUCCESS)]);
        let error = result.unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::InvalidRequest, "quantity")
        );
        assert!(calls.is_empty());
    }
}

#[test]
fn each_result_code_has_its_class() {
    let cases = [
        (
            SEND_VOUCHER_NOT_EXIST,
            ErrorClass::CouponUnavailable,
            "VOUCHER_NOT_EXIST",
            "券模板不存在",
        ),
        (
            SEND_VOUCHER_STOCK_NOT_ENOUGH,
            ErrorClass::CouponUnavailable,
            "VOUCHER_STOCK_NOT_ENOUGH",
            "券库存不足",
        ),
        (
            SEND_CUSTOMER_NOT_EXIST,
            ErrorClass::RecipientInvalid,
            "CUSTOMER_NOT_EXIST",
            "顾客不存在",
        ),
        (
            SEND_EXCEED_LIMIT,
            ErrorClass::RecipientLimit,
            "EXCEED_LIMIT",
            "超过领取上限",
        ),
        (
            SEND_PARAM_ERROR,
            ErrorClass::InvalidRequest,
            "PARAM_ERROR",
            "参数错误",
        ),
        (
            SEND_SYSTEM_ERROR,
            ErrorClass::Transient,
            "SYSTEM_ERROR",
            "系统异常",
        ),
        (
            SEND_RISK_REJECT,
            ErrorClass::Unknown,
            "RISK_REJECT",
            "风控拦截",
        ),
    ];
    for (body, class, code, text) in cases {
        let req = request(vec![customer("5757")]);
        let (outcome, calls) = send(&req, vec![ok(body)]);
        assert_eq!(calls.len(), 1);
        let outcome = outcome.unwrap();
        assert!(outcome.issued.is_empty());
        let error = &outcome.failed[0].error;
        assert_eq!((error.class, error.code.as_str()), (class, code));
        assert!(error.message.contains(text), "{}", error.message);
        let id = format!("alsc-{}", code.to_ascii_lowercase());
        assert_eq!(error.request_id.as_deref(), Some(id.as_str()));
        assert!(error.message.contains(&id), "{}", error.message);
        assert_eq!(outcome.request_ids, [id]);
    }
}

#[test]
fn an_answer_that_does_not_say_is_transient_or_unknown() {
    let cases = [
        ("{}", ErrorClass::Transient, "bad-response"),
        (r#"{"result":"ok"}"#, ErrorClass::Transient, "bad-response"),
        (
            r#"{"result":{"result":true}}"#,
            ErrorClass::Transient,
            "bad-response",
        ),
        (
            r#"{"result":{"biz_success":"perhaps","result_code":"SUCCESS"}}"#,
            ErrorClass::Unknown,
            "SUCCESS",
        ),
        (
            r#"{"result":{"biz_success":false}}"#,
            ErrorClass::Unknown,
            "biz-failure",
        ),
        (
            r#"{"result":{"result":true,"biz_success":false,"result_code":" EXCEED_LIMIT "}}"#,
            ErrorClass::RecipientLimit,
            "EXCEED_LIMIT",
        ),
    ];
    for (body, class, code) in cases {
        let req = request(vec![customer("5757")]);
        let (outcome, _) = send(&req, vec![ok(body)]);
        let outcome = outcome.unwrap();
        let error = &outcome.failed[0].error;
        assert_eq!((error.class, error.code.as_str()), (class, code), "{body}");
    }
}

#[test]
fn a_per_recipient_failure_does_not_stop_the_others() {
    let req = request(vec![customer("a"), customer("b"), customer("c")]);
    let (outcome, calls) = send(
        &req,
        vec![
            ok(SEND_CUSTOMER_NOT_EXIST),
            Err(HttpError::Timeout),
            ok(SEND_SUCCESS),
        ],
    );
    let outcome = outcome.unwrap();
    assert_eq!(calls.len(), 3);
    assert_eq!(outcome.issued.len(), 1);
    let failed: Vec<_> = outcome
        .failed
        .iter()
        .map(|f| (f.error.class, f.error.code.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            (ErrorClass::RecipientInvalid, "CUSTOMER_NOT_EXIST"),
            (ErrorClass::Transient, "http.timeout"),
        ]
    );
    assert_eq!(
        outcome.request_ids,
        ["alsc-customer_not_exist", "alsc-send-1"]
    );
}

#[test]
fn request_wide_errors_stop_the_send() {
    for (body, class) in [
        (RATE_LIMITED, ErrorClass::RateLimited),
        (INVALID_SIGNATURE, ErrorClass::Unauthorized),
    ] {
        let req = request(vec![customer("a"), customer("b")]);
        let (result, calls) = send(&req, vec![ok(body), ok(SEND_SUCCESS)]);
        assert_eq!(result.unwrap_err().class, class);
        assert_eq!(calls.len(), 1);

        let req = request(vec![customer("a"), customer("b"), customer("c")]);
        let (outcome, calls) = send(&req, vec![ok(SEND_SUCCESS), ok(body), ok(SEND_SUCCESS)]);
        let outcome = outcome.unwrap();
        assert_eq!(calls.len(), 2, "no call after {body}");
        let classes: Vec<_> = outcome.failed.iter().map(|f| f.error.class).collect();
        assert_eq!(classes, [class, class]);
        assert_eq!(outcome.issued.len(), 1);
    }
}

#[test]
fn transport_failures_and_odd_answers_never_panic() {
    let bodies = [
        "",
        "null",
        "[]",
        "{}",
        "{\"",
        "<html><body>502 Bad Gateway</body></html>",
        r#"{"unexpected":{"deeply":{"nested":[1,2,3]}},"err_no":"0"}"#,
        r#"{"x_response":{"extra":true},"error_response":null}"#,
        r#"{"alibaba_alsc_crm_voucher_send_response":{"result":{"biz_success":[true],"result_code":{"a":1}}}}"#,
        r#"{"alibaba_alsc_crm_customer_voucher_list_response":{"result":{"result_list":7,"has_next_page":true}}}"#,
    ];
    for body in bodies {
        let req = request(vec![customer("a")]);
        let (result, _) = send(&req, vec![ok(body)]);
        let outcome = result.unwrap_or_else(|error| panic!("{body:?}: {error}"));
        assert_eq!(outcome.failed.len(), 1, "{body}");
        let _ = query(customer("a"), vec![ok(body)]);
    }
    let (outcome, _) = send(
        &request(vec![customer("a")]),
        vec![Ok(HttpResponse {
            status: 502,
            body: b"Bad Gateway".to_vec(),
        })],
    );
    let error = &outcome.unwrap().failed[0].error;
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Transient, "http.502")
    );
}

#[test]
fn the_request_is_checked_before_any_call() {
    let mut req = request(vec![customer("a")]);
    req.idempotency_key = String::new();
    assert_eq!(send(&req, vec![]).0.unwrap_err().code, "idempotency-key");
    let mut req = request(vec![customer("a")]);
    req.coupon = " ".to_owned();
    assert_eq!(send(&req, vec![]).0.unwrap_err().code, "coupon");
    let mut req = request(vec![customer("a")]);
    req.options = options(&[("gateway", "")]);
    let (result, calls) = send(&req, vec![]);
    assert_eq!(result.unwrap_err().code, "config");
    assert!(calls.is_empty());
}

#[test]
fn other_recipient_kinds_are_refused_without_a_call() {
    let req = request(vec![
        Recipient::OpenId("o".to_owned()),
        customer("a"),
        Recipient::Nick("n".to_owned()),
    ]);
    let (outcome, calls) = send(&req, vec![ok(SEND_SUCCESS)]);
    let outcome = outcome.unwrap();
    assert_eq!(calls.len(), 1);
    assert_eq!(outcome.issued.len(), 1);
    assert_eq!(
        outcome.failed[0].error.message,
        "alsc takes customer-id recipients, not open-id"
    );
}

#[test]
fn the_query_sends_the_documented_param() {
    let (result, calls) = query(customer(" 5757 "), vec![ok(QUERY_SEED)]);
    result.unwrap();
    assert_eq!(
        calls,
        [HttpRequest {
            url: GATEWAY.to_owned(),
            params: options(&[
                ("method", "alibaba.alsc.crm.customer.voucher.list"),
                ("format", "json"),
                (
                    "customer_voucher_full_open_req",
                    r#"{"customer_id":"5757","page_no":1,"page_size":50}"#
                ),
            ]),
        }]
    );
}

#[test]
fn the_query_converts_yuan_times_and_status() {
    let (result, _) = query(customer("5757"), vec![ok(QUERY_SEED)]);
    let coupons = result.unwrap();
    let held = Coupon {
        id: "80000000001".to_owned(),
        template_id: Some("3243421".to_owned()),
        title: Some("满100减10".to_owned()),
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
        (
            coupons[1].state,
            coupons[1].amount_fen,
            coupons[1].threshold_fen
        ),
        (CouponState::Used, Some(29), Some(0))
    );
    assert_eq!(coupons[2].state, CouponState::Expired);

    let (result, _) = query(customer("5757"), vec![ok(QUERY_SIMPLIFIED)]);
    assert_eq!(result.unwrap(), [held]);
}

#[test]
fn the_query_follows_has_next_page() {
    let (result, calls) = query(customer("5757"), vec![ok(QUERY_PAGE_1), ok(QUERY_PAGE_2)]);
    let ids: Vec<_> = result.unwrap().into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["80000000001", "80000000002"]);
    let pages: Vec<_> = calls
        .iter()
        .map(|call| param(call, "customer_voucher_full_open_req").unwrap())
        .collect();
    assert_eq!(
        pages,
        [
            r#"{"customer_id":"5757","page_no":1,"page_size":50}"#,
            r#"{"customer_id":"5757","page_no":2,"page_size":50}"#,
        ]
    );

    // An answer that always says there is more stops at QUERY_PAGES.
    let answers = (0..QUERY_PAGES + 5).map(|_| ok(QUERY_PAGE_1)).collect();
    let (result, calls) = query(customer("5757"), answers);
    assert_eq!(result.unwrap().len(), QUERY_PAGES as usize);
    assert_eq!(calls.len(), QUERY_PAGES as usize);

    // A failing later page fails the query.
    let (result, _) = query(
        customer("5757"),
        vec![ok(QUERY_PAGE_1), Err(HttpError::Timeout)],
    );
    assert_eq!(result.unwrap_err().code, "http.timeout");
}

#[test]
fn the_query_reads_messy_items() {
    let (result, calls) = query(customer("5757"), vec![ok(QUERY_MESSY)]);
    assert_eq!(calls.len(), 1, "has_next_page \"maybe\" is not true");
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
                c.valid_until,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "80000000010",
                CouponState::Held,
                None,
                Some(1200),
                None,
                Some(1_798_732_799)
            ),
            ("", CouponState::Unknown, None, None, None, None),
            (
                "80000000011",
                CouponState::Unknown,
                None,
                None,
                Some(1_767_196_800),
                None
            ),
        ]
    );
    assert_eq!(coupons[1].title, None);
}

#[test]
fn query_errors_are_classified() {
    let (result, _) = query(customer("5757"), vec![ok(QUERY_CUSTOMER_NOT_EXIST)]);
    let error = result.unwrap_err();
    assert_eq!(
        (
            error.class,
            error.code.as_str(),
            error.request_id.as_deref()
        ),
        (
            ErrorClass::RecipientInvalid,
            "CUSTOMER_NOT_EXIST",
            Some("alsc-query-err")
        )
    );
    let error = query(customer("5757"), vec![ok(RATE_LIMITED)])
        .0
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited);
    let error = query(customer("5757"), vec![ok("{}")]).0.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Transient, "bad-response")
    );

    let (result, calls) = query(Recipient::OpenId("o".to_owned()), vec![]);
    assert_eq!(result.unwrap_err().code, "recipient-kind");
    assert!(calls.is_empty());
    let (result, _) = query(customer(""), vec![]);
    assert_eq!(result.unwrap_err().code, "recipient-empty");
}

/// A key given twice counts by its last value, as it did when answers were read into a
/// `serde_json::Value`; `biz_success` as a string is still a boolean.
#[test]
fn repeated_keys_and_strings_read_as_before() {
    let body = r#"{"alibaba_alsc_crm_voucher_send_response":{"result":{"biz_success":true,"biz_success":"false","result_code":"EXCEED_LIMIT"},"request_id":"alsc-1"}}"#;
    let (result, _) = send(&request(vec![customer("c1")]), vec![ok(body)]);
    let outcome = result.unwrap();
    assert!(outcome.issued.is_empty());
    assert_eq!(
        (
            outcome.failed[0].error.class,
            outcome.failed[0].error.code.as_str()
        ),
        (ErrorClass::RecipientLimit, "EXCEED_LIMIT")
    );
    let body = r#"{"alibaba_alsc_crm_voucher_send_response":{"result":{"biz_success":"true"},"request_id":"alsc-2"}}"#;
    let (result, _) = send(&request(vec![customer("c1")]), vec![ok(body)]);
    assert_eq!(result.unwrap().issued.len(), 1);
}
