//! `tmall.nrt.coupon.send` and `tmall.nrt.coupon.instance.query` (PLATFORMS.md "tmall-nrt").

use coupon_sim::{Fault, Sim, SimConfig, TmallCoupon, TopApp};
use serde_json::{Value, json};

use super::{Req, assert_code, demo, error};

const SEND: &str = "tmall.nrt.coupon.send";
const QUERY: &str = "tmall.nrt.coupon.instance.query";

/// A DTO as the adapter writes it (keys in Java bean order), for the demo coupon.
fn dto(open_id: &str, out_id: &str) -> Value {
    json!({
        "biz_code": "YXX",
        "channel": "app",
        "coupon_type": 247,
        "open_id": open_id,
        "out_id": out_id,
        "uuid": "nrt-demo-uuid",
    })
}

fn send(dto: &Value) -> Req {
    Req::new(SEND).set("nrt_coupon_send_dto", &dto.to_string())
}

fn query(user_id: &str) -> Req {
    Req::new(QUERY)
        .set("user_id", user_id)
        .set("biz_code", "YXX")
        .set("coupon_types", "247")
}

/// The `model` of a send answer, which must be a success.
fn model(answer: &Value) -> &Value {
    let model = &answer["tmall_nrt_coupon_send_response"]["model"];
    assert!(model.is_object(), "not a success: {answer}");
    model
}

/// The answer's `sub_code` and `sub_msg`, which must be a code 15 business error.
fn business_error(answer: &Value) -> (String, String) {
    let error = error(answer);
    assert_eq!(error["code"], 15, "{answer}");
    assert_eq!(error["msg"], "Remote service error");
    (
        error["sub_code"].as_str().unwrap().to_owned(),
        error["sub_msg"].as_str().unwrap().to_owned(),
    )
}

/// The models of a query answer, parsed from their JSON strings.
fn models(answer: &Value) -> Vec<Value> {
    let result = &answer["tmall_nrt_coupon_instance_query_response"]["result"];
    assert_eq!(result["code"], "0", "{answer}");
    assert_eq!(result["message"], "success");
    result["models"]
        .as_array()
        .unwrap_or_else(|| panic!("models is not an array: {answer}"))
        .iter()
        .map(|m| serde_json::from_str(m.as_str().expect("a JSON string")).unwrap())
        .collect()
}

/// GMT+8 text `secs` from now, for a request to a simulator whose clock is skewed.
fn gmt8_in(secs: i64) -> String {
    let gmt8 = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    (chrono::Utc::now() + chrono::TimeDelta::seconds(secs))
        .with_timezone(&gmt8)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn coupon(uuid: &str, stock: Option<u64>, end_ms: i64) -> TmallCoupon {
    TmallCoupon {
        uuid: uuid.into(),
        name: "测试券".into(),
        discount_fen: 500,
        start_fee_fen: 0,
        stock,
        per_user_limit: None,
        template_id: 777,
        start_ms: 1_577_836_800_000,
        end_ms,
        seller: None,
    }
}

#[tokio::test]
async fn a_send_answers_the_model_and_is_in_the_ledger() {
    let sim = demo().await;
    let answer = send(&dto("AAopen-张三", "out-1")).send(&sim).await;
    let response = &answer["tmall_nrt_coupon_send_response"];
    assert!(response["request_id"].is_string(), "{answer}");
    let model = model(&answer);
    assert_eq!(model["discount"], 1000);
    assert_eq!(model["start_fee"], 10000);
    assert_eq!(model["coupon_name"], "满100减10");
    assert_eq!(model["coupon_template_id"], 12345);
    assert_eq!(model["start_time"], 1_767_196_800_000_i64);
    assert_eq!(model["end_time"], 1_830_268_799_000_i64);
    let instance = model["coupon_instance_id"].as_i64().unwrap();

    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].platform, "tmall-nrt");
    assert_eq!(ledger[0].coupon, "nrt-demo-uuid");
    assert_eq!(ledger[0].recipient, "AAopen-张三");
    assert_eq!(ledger[0].instance_id, instance.to_string());
    assert_eq!(ledger[0].idempotency_id.as_deref(), Some("out-1"));
    assert!(sim.calls()[0].ok);

    // simplify drops the wrapper; extra is optional text.
    let mut with_extra = dto("李四", "out-2");
    with_extra["extra"] = json!("{\"key\":\"value\"}");
    let answer = send(&with_extra).set("simplify", "true").send(&sim).await;
    assert_eq!(answer["model"]["discount"], 1000, "{answer}");
    assert_ne!(answer["model"]["coupon_instance_id"], instance);
}

#[tokio::test]
async fn a_repeated_out_id_answers_the_first_model_and_issues_nothing() {
    let sim = demo().await;
    let first = send(&dto("张三", "out-1")).send(&sim).await;
    let again = send(&dto("张三", "out-1")).send(&sim).await;
    assert_eq!(model(&again), model(&first));
    assert_eq!(sim.ledger().len(), 1);
    assert_eq!(sim.duplicate_issuances(), 0);
    // Another out_id for the same user is a new send, over the demo's one per user.
    let (sub_code, sub_msg) = business_error(&send(&dto("张三", "out-2")).send(&sim).await);
    assert_eq!(
        (sub_code.as_str(), sub_msg.as_str()),
        ("-7", "领取太多了,不要贪心~")
    );
    // An out_id used for someone else is refused, not answered with their coupon.
    let (sub_code, _) = business_error(&send(&dto("李四", "out-1")).send(&sim).await);
    assert_eq!(sub_code, "-11");
    assert_eq!(sim.ledger().len(), 1);
}

#[tokio::test]
async fn out_ids_are_per_app() {
    let mut config = SimConfig::demo();
    config.tmall.coupons[0].per_user_limit = None;
    config.top_apps.push(TopApp {
        sessions: vec!["other-session".into()],
        ..TopApp::new("87654321", "other-secret")
    });
    let sim = Sim::start(config).await.unwrap();
    let first = send(&dto("张三", "out-1")).send(&sim).await;
    let other = send(&dto("张三", "out-1"))
        .set("app_key", "87654321")
        .set("session", "other-session")
        .secret("other-secret")
        .send(&sim)
        .await;
    assert_ne!(
        model(&first)["coupon_instance_id"],
        model(&other)["coupon_instance_id"]
    );
    assert_eq!(sim.ledger().len(), 2);
}

#[tokio::test]
async fn a_failed_send_can_be_retried_under_the_same_out_id() {
    let sim = demo().await;
    sim.inject(Fault::TopError {
        api: Some(SEND.into()),
        code: 15,
        msg: "Remote service error".into(),
        sub_code: Some("-9999".into()),
        sub_msg: Some("系统异常".into()),
        times: 1,
    });
    let (sub_code, sub_msg) = business_error(&send(&dto("张三", "out-1")).send(&sim).await);
    assert_eq!((sub_code.as_str(), sub_msg.as_str()), ("-9999", "系统异常"));
    assert!(sim.ledger().is_empty());
    model(&send(&dto("张三", "out-1")).send(&sim).await);
    assert_eq!(sim.ledger().len(), 1);
}

#[tokio::test]
async fn unknown_expired_and_exhausted_coupons_have_their_sub_codes() {
    let mut config = SimConfig::demo();
    config
        .tmall
        .coupons
        .push(coupon("ended", None, 1_609_459_199_000));
    config
        .tmall
        .coupons
        .push(coupon("one-left", Some(1), 4_102_444_800_000));
    let sim = Sim::start(config).await.unwrap();
    let with_uuid = |uuid: &str, out_id: &str| {
        let mut dto = dto("张三", out_id);
        dto["uuid"] = json!(uuid);
        send(&dto)
    };
    for (uuid, sub) in [("no-such-uuid", "-3"), ("ended", "-3")] {
        let (sub_code, sub_msg) = business_error(&with_uuid(uuid, uuid).send(&sim).await);
        assert_eq!(sub_code, sub);
        assert_eq!(sub_msg, "优惠券无效,请联系客服~");
    }
    model(&with_uuid("one-left", "a").send(&sim).await);
    let mut dto = dto("李四", "b");
    dto["uuid"] = json!("one-left");
    let (sub_code, sub_msg) = business_error(&send(&dto).send(&sim).await);
    assert_eq!(
        (sub_code.as_str(), sub_msg.as_str()),
        ("-6", "优惠券已领完,下次早点喔~")
    );
    assert_eq!(sim.ledger().len(), 1);
    let calls = sim.calls();
    assert_eq!(calls[0].error_code.as_deref(), Some("15"));
    assert_eq!(calls[0].sub_code.as_deref(), Some("-3"));
}

#[tokio::test]
async fn a_bad_dto_is_an_invalid_parameter() {
    let sim = demo().await;
    assert_code(&Req::new(SEND).send(&sim).await, 40);
    for text in ["not json", "[1,2]", "{\"biz_code\":", "\"text\""] {
        let answer = Req::new(SEND)
            .set("nrt_coupon_send_dto", text)
            .send(&sim)
            .await;
        assert_code(&answer, 41);
        assert_eq!(error(&answer)["sub_code"], "isv.invalid-parameter");
    }
    for field in [
        "biz_code",
        "open_id",
        "channel",
        "out_id",
        "uuid",
        "coupon_type",
    ] {
        let mut missing = dto("张三", "x");
        missing.as_object_mut().unwrap().remove(field);
        assert_code(&send(&missing).send(&sim).await, 41);
        let mut blank = dto("张三", "x");
        blank[field] = json!("");
        assert_code(&send(&blank).send(&sim).await, 41);
    }
    for coupon_type in [json!(1), json!("247"), json!(247.5)] {
        let mut bad = dto("张三", "x");
        bad["coupon_type"] = coupon_type;
        assert_code(&send(&bad).send(&sim).await, 41);
    }
    let mut bad = dto("张三", "x");
    bad["extra"] = json!({ "key": "value" });
    assert_code(&send(&bad).send(&sim).await, 41);
    // Every documented type is fine, and unknown fields are ignored.
    for (i, coupon_type) in [247, 276, 357].into_iter().enumerate() {
        let mut good = dto(&format!("u{i}"), &format!("t{i}"));
        good["coupon_type"] = json!(coupon_type);
        good["unknown_field"] = json!(true);
        model(&send(&good).send(&sim).await);
    }
    // The session is required.
    assert_code(&send(&dto("a", "b")).remove("session").send(&sim).await, 26);
    assert_eq!(sim.ledger().len(), 3);
}

#[tokio::test]
async fn the_query_lists_the_user_s_instances_as_json_strings() {
    let sim = demo().await;
    let sent = send(&dto("张三", "out-1")).send(&sim).await;
    let instance = model(&sent)["coupon_instance_id"].clone();
    send(&dto("李四", "out-2")).send(&sim).await;

    let answer = query("张三").send(&sim).await;
    let held = models(&answer);
    assert_eq!(held.len(), 1, "{answer}");
    let m = &held[0];
    assert_eq!(m["coupon_instance_id"], instance);
    assert_eq!(m["coupon_template_id"], 12345);
    assert_eq!(m["coupon_name"], "满100减10");
    assert_eq!(m["uuid"], "nrt-demo-uuid");
    assert_eq!(m["discount"], 1000);
    assert_eq!(m["start_fee"], 10000);
    assert_eq!(m["status"], 1);
    assert_eq!(m["start_time"], 1_767_196_800_000_i64);
    assert_eq!(m["end_time"], 1_830_268_799_000_i64);

    // With simplify, models are still strings.
    let simple = query("张三").set("simplify", "true").send(&sim).await;
    assert!(simple["result"]["models"][0].is_string(), "{simple}");

    // Narrowed by type, biz code and instance id; nobody else's coupons.
    let other_type = query("张三")
        .set("coupon_types", "276,357")
        .send(&sim)
        .await;
    assert!(models(&other_type).is_empty());
    let other_biz = query("张三").set("biz_code", "OTHER").send(&sim).await;
    assert!(models(&other_biz).is_empty());
    let by_id = query("张三")
        .set("instance_ids", &format!("1,{instance}"))
        .send(&sim)
        .await;
    assert_eq!(models(&by_id).len(), 1);
    assert!(models(&query("王五").send(&sim).await).is_empty());

    assert_code(&Req::new(QUERY).send(&sim).await, 40);
    assert_code(&query("张三").set("coupon_types", "x").send(&sim).await, 41);
    assert_code(&query("张三").remove("session").send(&sim).await, 26);
}

#[tokio::test]
async fn an_ended_coupon_is_listed_as_expired() {
    let mut config = SimConfig::demo();
    let in_five_minutes = chrono::Utc::now().timestamp_millis() + 5 * 60 * 1000;
    config
        .tmall
        .coupons
        .push(coupon("soon", None, in_five_minutes));
    let sim = Sim::start(config).await.unwrap();
    let mut dto = dto("张三", "x");
    dto["uuid"] = json!("soon");
    model(&send(&dto).send(&sim).await);
    // Nine minutes on: the coupon has ended, the gateway still takes the timestamp.
    sim.set_clock_skew(9 * 60);
    let answer = query("张三")
        .set("timestamp", &gmt8_in(9 * 60))
        .send(&sim)
        .await;
    assert_eq!(models(&answer)[0]["status"], 3, "{answer}");
    let mut again = dto.clone();
    again["out_id"] = json!("y");
    let answer = send(&again)
        .set("timestamp", &gmt8_in(9 * 60))
        .send(&sim)
        .await;
    assert_eq!(business_error(&answer).0, "-3");
}
