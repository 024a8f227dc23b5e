//! `alibaba.alsc.crm.voucher.send` and `alibaba.alsc.crm.customer.voucher.list` (PLATFORMS.md
//! "alsc"): the send works without a session, the list needs one; business failures come
//! inside a success envelope.

use coupon_sim::{AlscVoucher, Sim, SimConfig};
use serde_json::{Value, json};

use super::{Req, assert_code, demo, error};

const SEND: &str = "alibaba.alsc.crm.voucher.send";
const LIST: &str = "alibaba.alsc.crm.customer.voucher.list";

/// A send as the adapter makes it: no session.
fn send(req: &Value) -> Req {
    Req::new(SEND)
        .remove("session")
        .set("param_voucher_send_open_req", &req.to_string())
}

fn req(customer_id: &str, request_id: &str, voucher_num: i64) -> Value {
    json!({
        "customer_id": customer_id,
        "request_id": request_id,
        "voucher_id": "3243421",
        "voucher_num": voucher_num,
    })
}

/// A list as the adapter makes it: with the seller's session.
fn list(customer_id: &str) -> Req {
    Req::new(LIST).set(
        "customer_voucher_full_open_req",
        &json!({ "customer_id": customer_id, "page_no": 1, "page_size": 50 }).to_string(),
    )
}

/// The send answer's `result`.
fn result(answer: &Value) -> &Value {
    let result = &answer["alibaba_alsc_crm_voucher_send_response"]["result"];
    assert!(result.is_object(), "not a send answer: {answer}");
    result
}

/// The `result_code` of a business failure.
fn failure(answer: &Value) -> &str {
    let result = result(answer);
    assert_eq!(result["biz_success"], false, "{answer}");
    assert_eq!(result["result"], false, "{answer}");
    assert!(result["result_desc"].is_string());
    result["result_code"].as_str().unwrap()
}

fn assert_sent(answer: &Value) {
    let result = result(answer);
    assert_eq!(result["biz_success"], true, "{answer}");
    assert_eq!(result["result"], true);
    assert_eq!(result["result_code"], "SUCCESS");
}

/// The list answer's `result`.
fn list_result(answer: &Value) -> &Value {
    let result = &answer["alibaba_alsc_crm_customer_voucher_list_response"]["result"];
    assert!(result.is_object(), "not a list answer: {answer}");
    result
}

fn voucher(id: &str, stock: Option<u64>, end_time: &str) -> AlscVoucher {
    AlscVoucher {
        voucher_id: id.into(),
        title: "测试券".into(),
        amount_yuan: "5.50".into(),
        start_fee_yuan: "0.00".into(),
        stock,
        per_customer_limit: None,
        start_time: "2020-01-01 00:00:00".into(),
        end_time: end_time.into(),
        seller: None,
    }
}

#[tokio::test]
async fn a_send_without_a_session_issues_voucher_num_vouchers() {
    let sim = demo().await;
    let answer = send(&req("5757", "req-1", 3)).send(&sim).await;
    assert_sent(&answer);
    assert!(answer["alibaba_alsc_crm_voucher_send_response"]["request_id"].is_string());
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 3);
    for issued in &ledger {
        assert_eq!(issued.platform, "alsc");
        assert_eq!(issued.coupon, "3243421");
        assert_eq!(issued.recipient, "5757");
        assert_eq!(issued.idempotency_id.as_deref(), Some("req-1"));
    }
    assert_ne!(ledger[0].instance_id, ledger[1].instance_id);
    assert_eq!(
        sim.duplicate_issuances(),
        0,
        "one call's vouchers are not duplicates"
    );
    let calls = sim.calls();
    assert!(calls[0].ok);
    assert!(!calls[0].params.contains_key("session"));

    // A valid session is accepted too; an unknown one is not.
    assert_sent(
        &send(&req("5758", "req-2", 1))
            .set("session", "sim-session")
            .send(&sim)
            .await,
    );
    let answer = send(&req("5759", "req-3", 1))
        .set("session", "nope")
        .send(&sim)
        .await;
    assert_code(&answer, 27);
    // Signing is still checked.
    assert_code(
        &send(&req("5759", "req-3", 1)).secret("x").send(&sim).await,
        25,
    );
    // Without a request_id a send is not idempotent, but it works.
    let mut bare = req("5760", "", 1);
    bare.as_object_mut().unwrap().remove("request_id");
    assert_sent(&send(&bare).send(&sim).await);
    assert_eq!(sim.ledger()[4].idempotency_id, None);
    assert_eq!(sim.ledger().len(), 5);
}

#[tokio::test]
async fn a_repeated_request_id_answers_success_and_issues_nothing() {
    let sim = demo().await;
    let first = send(&req("5757", "req-1", 2)).send(&sim).await;
    let again = send(&req("5757", "req-1", 2)).send(&sim).await;
    assert_sent(&again);
    assert_eq!(result(&again), result(&first));
    assert_eq!(sim.ledger().len(), 2);
    assert_eq!(sim.duplicate_issuances(), 0);
    // The same id for another customer or number is refused.
    assert_eq!(
        failure(&send(&req("5758", "req-1", 2)).send(&sim).await),
        "PARAM_ERROR"
    );
    assert_eq!(
        failure(&send(&req("5757", "req-1", 1)).send(&sim).await),
        "PARAM_ERROR"
    );
    assert_eq!(sim.ledger().len(), 2);
}

#[tokio::test]
async fn business_failures_have_their_result_codes() {
    let mut config = SimConfig::demo();
    config
        .alsc
        .vouchers
        .push(voucher("ended", None, "2020-12-31 23:59:59"));
    config
        .alsc
        .vouchers
        .push(voucher("two-left", Some(2), "2099-12-31 23:59:59"));
    let sim = Sim::start(config).await.unwrap();
    let with_voucher = |voucher_id: &str, num: i64| {
        let mut req = req("5757", &format!("{voucher_id}-{num}"), num);
        req["voucher_id"] = json!(voucher_id);
        send(&req)
    };
    let code = |answer: Value| failure(&answer).to_owned();
    assert_eq!(
        code(with_voucher("no-such-voucher", 1).send(&sim).await),
        "VOUCHER_NOT_EXIST"
    );
    assert_eq!(
        code(with_voucher("ended", 1).send(&sim).await),
        "VOUCHER_NOT_EXIST"
    );
    // All or nothing: three asked, two left.
    assert_eq!(
        code(with_voucher("two-left", 3).send(&sim).await),
        "VOUCHER_STOCK_NOT_ENOUGH"
    );
    assert_sent(&with_voucher("two-left", 2).send(&sim).await);
    assert_eq!(
        code(send(&req("ghost-customer", "g", 1)).send(&sim).await),
        "CUSTOMER_NOT_EXIST"
    );
    // The demo voucher allows five per customer: three, then three more is too many.
    assert_sent(&send(&req("limit", "l-1", 3)).send(&sim).await);
    assert_eq!(
        code(send(&req("limit", "l-2", 3)).send(&sim).await),
        "EXCEED_LIMIT"
    );
    assert_sent(&send(&req("limit", "l-3", 2)).send(&sim).await);
    assert_eq!(
        code(send(&req("limit", "l-4", 1)).send(&sim).await),
        "EXCEED_LIMIT"
    );
    assert_eq!(sim.ledger().len(), 7);

    let calls = sim.calls();
    assert!(!calls[0].ok);
    assert_eq!(calls[0].error_code.as_deref(), Some("VOUCHER_NOT_EXIST"));
    assert!(
        calls[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("no-such-voucher")
    );

    // A failed send can be retried under its request_id once the cause is gone.
    let answer = send(&req("5757", "ended-1", 1)).send(&sim).await;
    assert_sent(&answer);
}

#[tokio::test]
async fn bad_requests_are_param_errors_or_invalid_parameters() {
    let sim = demo().await;
    // The request object is optional on the seed page: without it, its fields are missing.
    assert_eq!(
        failure(&Req::new(SEND).remove("session").send(&sim).await),
        "PARAM_ERROR"
    );
    for field in ["customer_id", "voucher_id", "voucher_num"] {
        let mut missing = req("5757", "r", 1);
        missing.as_object_mut().unwrap().remove(field);
        assert_eq!(
            failure(&send(&missing).send(&sim).await),
            "PARAM_ERROR",
            "{field}"
        );
    }
    for (field, value) in [
        ("voucher_num", json!(0)),
        ("voucher_num", json!(1001)),
        ("voucher_num", json!("1")),
        ("voucher_id", json!(3243421)),
        ("customer_id", json!(" ")),
        ("request_id", json!(7)),
    ] {
        let mut bad = req("5757", "r", 1);
        bad[field] = value;
        assert_eq!(
            failure(&send(&bad).send(&sim).await),
            "PARAM_ERROR",
            "{field}"
        );
    }
    // Not JSON at all: the gateway cannot bind it.
    let answer = Req::new(SEND)
        .remove("session")
        .set("param_voucher_send_open_req", "{customer_id:1}")
        .send(&sim)
        .await;
    assert_code(&answer, 41);
    assert_eq!(error(&answer)["sub_code"], "isv.invalid-parameter");
    assert!(sim.ledger().is_empty());
}

#[tokio::test]
async fn the_list_pages_through_what_the_customer_holds() {
    let sim = demo().await;
    send(&req("5757", "a", 3)).send(&sim).await;
    send(&req("other", "b", 1)).send(&sim).await;

    let answer = list("5757").send(&sim).await;
    let result = list_result(&answer);
    assert_eq!(result["biz_success"], true, "{answer}");
    assert_eq!(result["total_size"], 3);
    assert_eq!(result["current_page"], 1);
    assert_eq!(result["page_size"], 50);
    assert_eq!(result["has_next_page"], false);
    let vouchers = result["result_list"]["voucher_open_info"]
        .as_array()
        .unwrap();
    assert_eq!(vouchers.len(), 3);
    let v = &vouchers[0];
    assert_eq!(v["voucher_id"], sim.ledger()[0].instance_id);
    assert_eq!(v["voucher_template_id"], "3243421");
    assert_eq!(v["title"], "满100减10");
    assert_eq!(v["amount"], "10.00");
    assert_eq!(v["start_fee"], "100.00");
    assert_eq!(v["status"], "NORMAL");
    assert_eq!(v["start_time"], "2026-01-01 00:00:00");
    assert_eq!(v["end_time"], "2027-12-31 23:59:59");
    assert_eq!(v["customer_id"], "5757");
    assert!(v["gmt_created"].as_str().unwrap().len() == 19, "{v}");

    // simplify: a plain array.
    let simple = list("5757").set("simplify", "true").send(&sim).await;
    assert_eq!(
        simple["result"]["result_list"].as_array().unwrap().len(),
        3,
        "{simple}"
    );

    // Pages of two.
    let page = |no: i64| {
        Req::new(LIST).set(
            "customer_voucher_full_open_req",
            &json!({ "customer_id": "5757", "page_no": no, "page_size": 2 }).to_string(),
        )
    };
    let second = page(2).send(&sim).await;
    let result = list_result(&second);
    assert_eq!(
        result["result_list"]["voucher_open_info"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(result["has_next_page"], false);
    assert_eq!(result["total_page"], 2);
    assert_eq!(
        list_result(&page(1).send(&sim).await)["has_next_page"],
        true
    );

    // Status filter, unknown customers, bad requests.
    let deleted = Req::new(LIST)
        .set(
            "customer_voucher_full_open_req",
            &json!({ "customer_id": "5757", "voucher_status_list": ["DELETED", "ISUSED"] })
                .to_string(),
        )
        .send(&sim)
        .await;
    assert_eq!(list_result(&deleted)["total_size"], 0, "{deleted}");
    let ghost = list("ghost-customer").send(&sim).await;
    assert_eq!(list_result(&ghost)["result_code"], "CUSTOMER_NOT_EXIST");
    let nobody = list("nobody").send(&sim).await;
    assert_eq!(list_result(&nobody)["total_size"], 0);
    let bad = Req::new(LIST).send(&sim).await;
    assert_eq!(list_result(&bad)["result_code"], "PARAM_ERROR");
    assert_eq!(list_result(&bad)["biz_success"], false);
}

#[tokio::test]
async fn an_ended_voucher_is_listed_as_deleted() {
    let mut config = SimConfig::demo();
    let gmt8 = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let soon = (chrono::Utc::now() + chrono::TimeDelta::minutes(5))
        .with_timezone(&gmt8)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    config.alsc.vouchers.push(voucher("soon", None, &soon));
    let sim = Sim::start(config).await.unwrap();
    let mut soon_req = req("5757", "s", 1);
    soon_req["voucher_id"] = json!("soon");
    assert_sent(&send(&soon_req).send(&sim).await);
    sim.set_clock_skew(9 * 60);
    let in_nine = (chrono::Utc::now() + chrono::TimeDelta::minutes(9))
        .with_timezone(&gmt8)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    let answer = list("5757").set("timestamp", &in_nine).send(&sim).await;
    assert_eq!(
        list_result(&answer)["result_list"]["voucher_open_info"][0]["status"],
        "DELETED",
        "{answer}"
    );
}

#[tokio::test]
async fn a_seed_with_bad_vouchers_does_not_start() {
    let mut config = SimConfig::demo();
    config.alsc.vouchers[0].amount_yuan = "10元".into();
    let error = Sim::start(config).await.unwrap_err();
    assert!(error.to_string().contains("amount_yuan"), "{error}");
    let mut config = SimConfig::demo();
    config.alsc.vouchers.push(config.alsc.vouchers[0].clone());
    let error = Sim::start(config).await.unwrap_err();
    assert!(error.to_string().contains("3243421"), "{error}");
}

#[tokio::test]
async fn the_list_needs_a_session_and_shows_its_seller_s_vouchers_only() {
    let sim = demo().await;
    // Seed 003 sends without a session, whoever's voucher it is.
    assert_sent(&send(&req("5757", "a", 1)).send(&sim).await);
    let mut second = req("5757", "b", 2);
    second["voucher_id"] = json!("3243422");
    assert_sent(&send(&second).send(&sim).await);

    let answer = list("5757").remove("session").send(&sim).await;
    assert_code(&answer, 26);
    assert_eq!(error(&answer)["msg"], "Missing session");
    let answer = list("5757")
        .set("session", "expired-or-unknown")
        .send(&sim)
        .await;
    assert_code(&answer, 27);

    let mine = list("5757").send(&sim).await;
    assert_eq!(list_result(&mine)["total_size"], 1, "{mine}");
    let theirs = list("5757")
        .set("session", "sim-session-2")
        .send(&sim)
        .await;
    let result = list_result(&theirs);
    assert_eq!(result["total_size"], 2, "{theirs}");
    assert_eq!(
        result["result_list"]["voucher_open_info"][0]["voucher_template_id"],
        "3243422"
    );
    let calls = sim.calls();
    let last = calls.last().unwrap();
    assert_eq!(last.seller.as_deref(), Some("sim-seller-2"));
}

#[tokio::test]
async fn a_send_with_a_session_may_only_send_its_seller_s_vouchers() {
    let sim = demo().await;
    let answer = send(&req("5757", "a", 1))
        .set("session", "sim-session-2")
        .send(&sim)
        .await;
    assert_eq!(failure(&answer), "VOUCHER_NOT_EXIST");
    let mut own = req("5757", "a", 1);
    own["voucher_id"] = json!("3243422");
    let answer = send(&own).set("session", "sim-session-2").send(&sim).await;
    assert_sent(&answer);
    // request_ids are the seller's own: the default seller may use "a" too.
    let answer = send(&req("5757", "a", 1))
        .set("session", "sim-session")
        .send(&sim)
        .await;
    assert_sent(&answer);
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].coupon, "3243422");
    assert_eq!(ledger[1].coupon, "3243421");
}
