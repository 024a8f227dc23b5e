//! The Douyin open API over HTTP, as a client sees it: client_token, the coupon send and the
//! user coupon list (PLATFORMS.md "douyin", PROTOCOLS.md §2, seeds/004).

use std::time::Duration;

use coupon_sim::{DouyinActivity, Fault, Sim, SimConfig};
use serde_json::{Value, json};

const SEND: &str = "/api/promotion/v1/coupon/send_coupon_to_designated_user/";
const LIST: &str = "/api/promotion/v1/coupon/get_coupon_receive_info/";
const ACTIVITY: &str = "7218070000005644204";

async fn demo() -> Sim {
    Sim::start(SimConfig::demo()).await.unwrap()
}

async fn post_raw(sim: &Sim, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", sim.douyin_base_url()))
        .json(body);
    if let Some(token) = token {
        request = request.header("access-token", token);
    }
    request.send().await.expect("the simulator answers")
}

async fn post(sim: &Sim, path: &str, token: Option<&str>, body: &Value) -> Value {
    let response = post_raw(sim, path, token, body).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn token_request(client_key: &str, client_secret: &str) -> Value {
    json!({
        "grant_type": "client_credential",
        "client_key": client_key,
        "client_secret": client_secret,
    })
}

/// A fresh token for the demo app.
async fn token(sim: &Sim) -> String {
    let answer = post(
        sim,
        "/oauth/client_token/",
        None,
        &token_request("tt-demo-key", "sim-douyin-secret"),
    )
    .await;
    answer["data"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_owned()
}

fn send_body(open_id: &str, merchant_coupon_id: &str) -> Value {
    json!({
        "activity_id": ACTIVITY,
        "app_id": "tt-demo-app",
        "open_id": open_id,
        "merchant_coupon_id": merchant_coupon_id,
    })
}

async fn send(sim: &Sim, token: &str, body: &Value) -> Value {
    post(sim, SEND, Some(token), body).await
}

/// The `err_no` of an answer, after checking the envelope.
fn err_no(answer: &Value) -> i64 {
    let log_id = answer["log_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(log_id.len(), 34, "{log_id}");
    assert!(answer["err_msg"].is_string(), "{answer}");
    answer["err_no"].as_i64().unwrap()
}

/// The `error_code` of a token answer.
fn token_error(answer: &Value) -> i64 {
    assert_eq!(answer["message"], "error", "{answer}");
    assert!(answer["data"]["description"].is_string(), "{answer}");
    answer["data"]["error_code"].as_i64().unwrap()
}

fn activity(id: &str, stock: Option<u64>, valid_end_time: i64) -> DouyinActivity {
    DouyinActivity {
        activity_id: id.into(),
        coupon_name: "测试券".into(),
        discount_amount_fen: 500,
        min_pay_amount_fen: 0,
        stock,
        per_user_limit: None,
        valid_begin_time: 1_577_836_800,
        valid_end_time,
        merchant_meta_no: String::new(),
    }
}

#[tokio::test]
async fn a_token_has_the_documented_envelope() {
    let sim = demo().await;
    let answer = post(
        &sim,
        "/oauth/client_token/",
        None,
        &token_request("tt-demo-key", "sim-douyin-secret"),
    )
    .await;
    assert_eq!(answer["message"], "success", "{answer}");
    let data = &answer["data"];
    assert_eq!(data["error_code"], 0);
    assert_eq!(data["description"], "");
    assert_eq!(data["expires_in"], 7200);
    let token = data["access_token"].as_str().unwrap();
    let hex = token.strip_prefix("clt.").expect("clt. prefix");
    assert!(
        hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    assert_ne!(self::token(&sim).await, token, "each fetch is a new token");
    assert_eq!(sim.douyin_token_fetches(), 2);
    let calls = sim.calls();
    assert_eq!(calls[0].api, "client_token");
    assert!(calls[0].ok);
    assert_eq!(calls[0].params["client_secret"], "***");
    assert_eq!(calls[0].params["client_key"], "tt-demo-key");
}

#[tokio::test]
async fn bad_token_requests_have_their_error_codes() {
    let sim = demo().await;
    let cases = [
        (token_request("tt-demo-key", "wrong"), 10013),
        (token_request("tt-nobody", "sim-douyin-secret"), 10003),
        (
            json!({ "client_key": "tt-demo-key", "client_secret": "sim-douyin-secret" }),
            10002,
        ),
        (
            json!({ "grant_type": "authorization_code", "client_key": "tt-demo-key", "client_secret": "sim-douyin-secret" }),
            10002,
        ),
        (
            json!({ "grant_type": "client_credential", "client_key": "tt-demo-key" }),
            10002,
        ),
        (json!([1]), 10002),
    ];
    for (body, code) in cases {
        let answer = post(&sim, "/oauth/client_token/", None, &body).await;
        assert_eq!(token_error(&answer), code, "{body}");
    }
    // Not JSON at all.
    let response = reqwest::Client::new()
        .post(format!("{}/oauth/client_token/", sim.base_url()))
        .form(&[("grant_type", "client_credential")])
        .send()
        .await
        .unwrap();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(token_error(&answer), 10002);
    assert_eq!(sim.douyin_token_fetches(), 0);
    assert!(sim.calls().iter().all(|c| !c.ok));
    assert!(
        sim.calls()
            .iter()
            .all(|c| c.params.get("client_secret").is_none_or(|s| s == "***")),
        "secrets are masked"
    );
}

#[tokio::test]
async fn a_send_answers_coupon_info_like_seed_004() {
    let sim = demo().await;
    let token = token(&sim).await;
    let response = post_raw(&sim, SEND, Some(&token), &send_body("open-张三", "mc-1")).await;
    let header = response.headers()["x-tt-logid"]
        .to_str()
        .unwrap()
        .to_owned();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(err_no(&answer), 0, "{answer}");
    assert_eq!(answer["err_msg"], "");
    assert_eq!(answer["log_id"], header);
    let info = &answer["data"]["coupon_info"];
    let coupon_id = info["coupon_id"].as_str().expect("a string id");
    assert_eq!(info["coupon_name"], "奶茶立减10元券");
    assert_eq!(info["coupon_status"], 10);
    assert_eq!(info["discount_type"], 2);
    assert_eq!(info["discount_amount"], 1000);
    assert_eq!(info["min_pay_amount"], 2000);
    assert_eq!(info["merchant_meta_no"], "45ed-8f3d");
    assert_eq!(info["valid_begin_time"], 1_767_196_800);
    assert_eq!(info["valid_end_time"], 1_830_268_799);
    let received = info["receive_time"].as_i64().unwrap();
    assert!((chrono::Utc::now().timestamp() - received).abs() < 5);

    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].platform, "douyin");
    assert_eq!(ledger[0].coupon, ACTIVITY);
    assert_eq!(ledger[0].recipient, "open-张三");
    assert_eq!(ledger[0].instance_id, coupon_id);
    assert_eq!(ledger[0].idempotency_id.as_deref(), Some("mc-1"));

    let call = sim.calls().pop().unwrap();
    assert_eq!(call.api, "send_coupon_to_designated_user");
    assert!(call.ok);
    assert_eq!(call.request_id.as_deref(), Some(header.as_str()));
    assert_eq!(call.params["access-token"], "***");
    assert_eq!(call.params["open_id"], "open-张三");
}

#[tokio::test]
async fn a_repeated_merchant_coupon_id_answers_the_first_coupon_and_issues_nothing() {
    let sim = demo().await;
    let token = token(&sim).await;
    let first = send(&sim, &token, &send_body("u1", "mc-1")).await;
    let again = send(&sim, &token, &send_body("u1", "mc-1")).await;
    assert_eq!(err_no(&again), 0, "{again}");
    assert_eq!(again["data"], first["data"]);
    assert_eq!(sim.ledger().len(), 1);
    assert_eq!(sim.duplicate_issuances(), 0);
    // Used for another user: refused.
    assert_eq!(
        err_no(&send(&sim, &token, &send_body("u2", "mc-1")).await),
        28001007
    );
    // A new id for the same user is a new send, over the demo's one per user.
    assert_eq!(
        err_no(&send(&sim, &token, &send_body("u1", "mc-2")).await),
        29005003
    );
    assert_eq!(sim.ledger().len(), 1);
}

#[tokio::test]
async fn business_refusals_have_their_err_nos() {
    let mut config = SimConfig::demo();
    config
        .douyin
        .activities
        .push(activity("ended", None, 1_600_000_000));
    config
        .douyin
        .activities
        .push(activity("one-left", Some(1), 4_000_000_000));
    let sim = Sim::start(config).await.unwrap();
    let token = token(&sim).await;
    let with_activity = |activity_id: &str, open_id: &str| {
        let mut body = send_body(open_id, &format!("{activity_id}/{open_id}"));
        body["activity_id"] = json!(activity_id);
        body
    };
    let cases = [
        (with_activity("no-such-activity", "u"), 29005001),
        (with_activity("ended", "u"), 29005001),
        (send_body("inactive-user", "i"), 29005004),
        (with_activity("one-left", "u1"), 0),
        (with_activity("one-left", "u2"), 29005002),
        (send_body("u3", "a"), 0),
        (send_body("u3", "b"), 29005003),
    ];
    for (body, code) in cases {
        let answer = send(&sim, &token, &body).await;
        assert_eq!(err_no(&answer), code, "{body}: {answer}");
        if code != 0 {
            assert!(answer.get("data").is_none(), "{answer}");
        }
    }
    assert_eq!(sim.ledger().len(), 2);
    let answer = send(&sim, &token, &with_activity("no-such-activity", "x")).await;
    assert_eq!(answer["err_msg"], "活动不存在或已结束");
    let call = sim.calls().pop().unwrap();
    assert_eq!(call.error_code.as_deref(), Some("29005001"));
    assert!(call.detail.unwrap().contains("no-such-activity"));
}

#[tokio::test]
async fn bad_requests_are_28001007_and_bad_tokens_28001003() {
    let sim = demo().await;
    let token = token(&sim).await;
    for field in ["activity_id", "app_id", "open_id"] {
        let mut body = send_body("u", "m");
        body.as_object_mut().unwrap().remove(field);
        assert_eq!(
            err_no(&send(&sim, &token, &body).await),
            28001007,
            "{field}"
        );
        body[field] = json!(12);
        assert_eq!(
            err_no(&send(&sim, &token, &body).await),
            28001007,
            "{field}"
        );
    }
    let mut other_app = send_body("u", "m");
    other_app["app_id"] = json!("tt-other-app");
    assert_eq!(err_no(&send(&sim, &token, &other_app).await), 28001007);
    assert_eq!(err_no(&send(&sim, &token, &json!("text")).await), 28001007);
    // Sent as a form rather than JSON.
    let response = reqwest::Client::new()
        .post(format!("{}{SEND}", sim.base_url()))
        .header("access-token", &token)
        .form(&[("activity_id", ACTIVITY)])
        .send()
        .await
        .unwrap();
    assert_eq!(err_no(&response.json().await.unwrap()), 28001007);

    let answer = post(&sim, SEND, None, &send_body("u", "m")).await;
    assert_eq!(err_no(&answer), 28001003);
    assert_eq!(answer["err_msg"], "access_token无效");
    let answer = send(&sim, "clt.0000", &send_body("u", "m")).await;
    assert_eq!(err_no(&answer), 28001003);
    assert!(sim.ledger().is_empty());

    // A send without merchant_coupon_id works (and is not idempotent).
    let mut bare = send_body("u", "");
    bare.as_object_mut().unwrap().remove("merchant_coupon_id");
    assert_eq!(err_no(&send(&sim, &token, &bare).await), 0);
    assert_eq!(sim.ledger()[0].idempotency_id, None);
    // Other methods are not served.
    let response = reqwest::Client::new()
        .get(format!("{}{SEND}", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
}

#[tokio::test]
async fn a_replaced_token_has_five_minutes_and_only_the_latest_two_are_valid() {
    let sim = demo().await;
    let a = token(&sim).await;
    let b = token(&sim).await;
    // Right after the refresh both work.
    assert_eq!(err_no(&send(&sim, &a, &send_body("u1", "1")).await), 0);
    assert_eq!(err_no(&send(&sim, &b, &send_body("u2", "2")).await), 0);
    // Five minutes on, the replaced one has expired; the new one has not.
    sim.set_clock_skew(5 * 60 + 1);
    let answer = send(&sim, &a, &send_body("u3", "3")).await;
    assert_eq!(err_no(&answer), 28001008);
    assert_eq!(answer["err_msg"], "access_token过期,请刷新或重新授权");
    assert_eq!(err_no(&send(&sim, &b, &send_body("u4", "4")).await), 0);

    // Two refreshes in a row: the oldest of three is out at once, inside its grace.
    let c = token(&sim).await;
    let d = token(&sim).await;
    assert_eq!(
        err_no(&send(&sim, &b, &send_body("u5", "5")).await),
        28001008
    );
    assert_eq!(err_no(&send(&sim, &c, &send_body("u6", "6")).await), 0);
    assert_eq!(err_no(&send(&sim, &d, &send_body("u7", "7")).await), 0);
    assert_eq!(sim.douyin_token_fetches(), 4);
    assert_eq!(sim.ledger().len(), 5);
}

#[tokio::test]
async fn a_token_past_its_lifetime_is_expired() {
    let sim = demo().await;
    let token = token(&sim).await;
    sim.set_clock_skew(7200 - 60);
    assert_eq!(err_no(&send(&sim, &token, &send_body("u1", "1")).await), 0);
    sim.set_clock_skew(7200);
    assert_eq!(
        err_no(&send(&sim, &token, &send_body("u2", "2")).await),
        28001008
    );
    sim.set_clock_skew(0);

    // The test hook: every token so far is expired; a new one works.
    let token = self::token(&sim).await;
    sim.expire_douyin_tokens();
    let answer = post(
        &sim,
        LIST,
        Some(&token),
        &json!({ "app_id": "tt-demo-app", "open_id": "u1", "coupon_status": 10 }),
    )
    .await;
    assert_eq!(err_no(&answer), 28001008);
    let fresh = self::token(&sim).await;
    assert_eq!(err_no(&send(&sim, &fresh, &send_body("u3", "3")).await), 0);
    assert_eq!(sim.douyin_token_fetches(), 3);

    // The lifetime comes from the seed.
    let mut config = SimConfig::demo();
    config.douyin.token_ttl_secs = 60;
    let sim = Sim::start(config).await.unwrap();
    let answer = post(
        &sim,
        "/oauth/client_token/",
        None,
        &token_request("tt-demo-key", "sim-douyin-secret"),
    )
    .await;
    assert_eq!(answer["data"]["expires_in"], 60);
    let token = answer["data"]["access_token"].as_str().unwrap();
    sim.set_clock_skew(61);
    assert_eq!(
        err_no(&send(&sim, token, &send_body("u", "m")).await),
        28001008
    );
}

#[tokio::test]
async fn sends_over_100_a_second_are_too_frequent() {
    let sim = demo().await;
    let token = token(&sim).await;
    let client = reqwest::Client::new();
    let url = format!("{}{SEND}", sim.base_url());
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..150)
        .map(|i| {
            let request = client
                .post(&url)
                .header("access-token", &token)
                .json(&send_body(&format!("q{i}"), &format!("m{i}")));
            tokio::spawn(async move {
                let answer: Value = request.send().await.unwrap().json().await.unwrap();
                answer
            })
        })
        .collect();
    let mut limited = 0;
    let mut sent = 0;
    for call in calls {
        let answer = call.await.unwrap();
        match err_no(&answer) {
            0 => sent += 1,
            29005012 => {
                assert_eq!(answer["err_msg"], "尝试过于频繁");
                limited += 1;
            }
            other => panic!("unexpected err_no {other}: {answer}"),
        }
    }
    // All 150 in under a second (which is the premise): exactly 100 admitted.
    if started.elapsed() < Duration::from_millis(900) {
        assert_eq!((sent, limited), (100, 50));
    } else {
        assert!(sent >= 100 && limited > 0, "{sent} sent, {limited} limited");
    }
    assert_eq!(sim.ledger().len(), sent);
    // The counts a fleet test reads.
    assert_eq!(sim.too_frequent(), limited);
    assert_eq!(sim.error_counts().get("29005012").copied(), Some(limited));
    let stats = sim.stats();
    assert_eq!(stats.answers["send_coupon_to_designated_user"]["ok"], sent);
    assert_eq!(stats.token_fetches["client_token"], 1);
    // The list is not limited.
    let answer = post(
        &sim,
        LIST,
        Some(&token),
        &json!({ "app_id": "tt-demo-app", "open_id": "q0", "coupon_status": 10 }),
    )
    .await;
    assert_eq!(err_no(&answer), 0, "{answer}");
    // A second later, sends pass again.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(
        err_no(&send(&sim, &token, &send_body("late", "late")).await),
        0
    );
}

#[tokio::test]
async fn the_rate_comes_from_the_seed_and_counts_only_admitted_calls() {
    let mut config = SimConfig::demo();
    config.douyin.qps = 2;
    let sim = Sim::start(config).await.unwrap();
    let token = token(&sim).await;
    assert_eq!(err_no(&send(&sim, &token, &send_body("a", "a")).await), 0);
    assert_eq!(err_no(&send(&sim, &token, &send_body("b", "b")).await), 0);
    for _ in 0..5 {
        assert_eq!(
            err_no(&send(&sim, &token, &send_body("c", "c")).await),
            29005012
        );
    }
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(err_no(&send(&sim, &token, &send_body("c", "c")).await), 0);
    assert_eq!(sim.ledger().len(), 3);
}

#[tokio::test]
async fn the_receive_list_shows_what_the_user_holds() {
    let sim = demo().await;
    let token = token(&sim).await;
    let sent = send(&sim, &token, &send_body("张三", "m1")).await;
    send(&sim, &token, &send_body("李四", "m2")).await;
    let coupon_id = sent["data"]["coupon_info"]["coupon_id"].clone();

    let list = |body: Value| {
        let (sim, token) = (&sim, &token);
        async move { post(sim, LIST, Some(token), &body).await }
    };
    let answer =
        list(json!({ "app_id": "tt-demo-app", "open_id": "张三", "coupon_status": 10 })).await;
    assert_eq!(err_no(&answer), 0, "{answer}");
    let coupons = answer["data"]["coupon_receive_list"].as_array().unwrap();
    assert_eq!(coupons.len(), 1);
    let c = &coupons[0];
    assert_eq!(c["coupon_id"], coupon_id);
    for field in [
        "coupon_name",
        "coupon_status",
        "discount_type",
        "discount_amount",
        "min_pay_amount",
        "merchant_meta_no",
        "valid_begin_time",
        "valid_end_time",
        "receive_time",
    ] {
        assert_eq!(c[field], sent["data"]["coupon_info"][field], "{field}");
    }
    for field in [
        "receive_desc",
        "consume_desc",
        "consume_path",
        "talent_open_id",
        "talent_account",
    ] {
        assert!(c[field].is_string(), "{field}: {c}");
    }
    assert_eq!(sim.calls().pop().unwrap().api, "get_coupon_receive_info");

    let by_id =
        list(json!({ "app_id": "tt-demo-app", "open_id": "张三", "coupon_id": coupon_id })).await;
    assert_eq!(
        by_id["data"]["coupon_receive_list"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let used =
        list(json!({ "app_id": "tt-demo-app", "open_id": "张三", "coupon_status": 20 })).await;
    assert!(
        used["data"]["coupon_receive_list"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let nobody =
        list(json!({ "app_id": "tt-demo-app", "open_id": "王五", "coupon_status": 10 })).await;
    assert!(
        nobody["data"]["coupon_receive_list"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    for bad in [
        json!({ "app_id": "tt-demo-app", "open_id": "张三" }),
        json!({ "app_id": "tt-demo-app", "open_id": "张三", "coupon_status": 11 }),
        json!({ "app_id": "tt-demo-app", "coupon_status": 10 }),
        json!({ "app_id": "tt-other", "open_id": "张三", "coupon_status": 10 }),
    ] {
        assert_eq!(err_no(&list(bad.clone()).await), 28001007, "{bad}");
    }

    // After the activity ends the coupon is listed as expired (status 30).
    sim.set_clock_skew(1_830_268_800 - chrono::Utc::now().timestamp());
    let token = self::token(&sim).await;
    let answer = post(
        &sim,
        LIST,
        Some(&token),
        &json!({ "app_id": "tt-demo-app", "open_id": "张三", "coupon_status": 30 }),
    )
    .await;
    let coupons = answer["data"]["coupon_receive_list"].as_array().unwrap();
    assert_eq!(coupons.len(), 1, "{answer}");
    assert_eq!(coupons[0]["coupon_status"], 30);
    assert_eq!(
        err_no(&send(&sim, &token, &send_body("王五", "m3")).await),
        29005001
    );
}

#[tokio::test]
async fn faults_apply_to_the_douyin_routes() {
    let sim = demo().await;
    sim.inject(Fault::Status {
        api: Some("client_token".into()),
        status: 503,
        times: 1,
    });
    let response = post_raw(
        &sim,
        "/oauth/client_token/",
        None,
        &token_request("tt-demo-key", "sim-douyin-secret"),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("<html>"));
    assert_eq!(sim.douyin_token_fetches(), 0);
    let token = token(&sim).await;

    sim.inject(Fault::Status {
        api: Some("send_coupon_to_designated_user".into()),
        status: 502,
        times: 1,
    });
    sim.inject(Fault::Body {
        api: Some("send_coupon_to_designated_user".into()),
        body: "{\"err_no\":0,\"data\":{\"coupon_in".into(),
        times: 1,
    });
    sim.inject(Fault::TopError {
        api: Some("send_coupon_to_designated_user".into()),
        code: 28001005,
        msg: "系统内部错误,请重试".into(),
        sub_code: Some("ignored".into()),
        sub_msg: None,
        times: 1,
    });
    let response = post_raw(&sim, SEND, Some(&token), &send_body("u", "m")).await;
    assert_eq!(response.status(), 502);
    let response = post_raw(&sim, SEND, Some(&token), &send_body("u", "m")).await;
    assert_eq!(response.status(), 200);
    assert!(serde_json::from_str::<Value>(&response.text().await.unwrap()).is_err());
    let answer = send(&sim, &token, &send_body("u", "m")).await;
    assert_eq!(err_no(&answer), 28001005);
    assert_eq!(answer["err_msg"], "系统内部错误,请重试");
    assert!(sim.ledger().is_empty(), "faults apply nothing");
    assert_eq!(err_no(&send(&sim, &token, &send_body("u", "m")).await), 0);
    assert_eq!(sim.ledger().len(), 1);

    // A token error on the token route comes in that route's envelope.
    sim.inject(Fault::TopError {
        api: Some("client_token".into()),
        code: 10020,
        msg: "请求太频繁".into(),
        sub_code: None,
        sub_msg: None,
        times: 1,
    });
    let answer = post(
        &sim,
        "/oauth/client_token/",
        None,
        &token_request("tt-demo-key", "sim-douyin-secret"),
    )
    .await;
    assert_eq!(token_error(&answer), 10020);

    // A fault for the list does not touch the send, and vice versa.
    sim.inject(Fault::ResetConnection {
        api: Some("get_coupon_receive_info".into()),
        times: 1,
    });
    assert_eq!(err_no(&send(&sim, &token, &send_body("v", "v")).await), 0);
    let body = json!({ "app_id": "tt-demo-app", "open_id": "u", "coupon_status": 10 });
    let error = reqwest::Client::new()
        .post(format!("{}{LIST}", sim.base_url()))
        .header("access-token", &token)
        .json(&body)
        .send()
        .await
        .unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");

    let codes: Vec<_> = sim
        .calls()
        .into_iter()
        .map(|c| (c.api, c.error_code))
        .collect();
    let expect = |api: &str, code: Option<&str>| (api.to_owned(), code.map(str::to_owned));
    assert_eq!(
        codes,
        [
            expect("client_token", Some("http-503")),
            expect("client_token", None),
            expect("send_coupon_to_designated_user", Some("http-502")),
            expect("send_coupon_to_designated_user", Some("bad-body")),
            expect("send_coupon_to_designated_user", Some("28001005")),
            expect("send_coupon_to_designated_user", None),
            expect("client_token", Some("10020")),
            expect("send_coupon_to_designated_user", None),
            expect("get_coupon_receive_info", Some("reset")),
        ]
    );
}

#[tokio::test]
async fn a_delay_after_apply_issues_although_the_client_timed_out() {
    let sim = demo().await;
    let token = token(&sim).await;
    sim.inject(Fault::Delay {
        api: Some("send_coupon_to_designated_user".into()),
        millis: 1500,
        apply: true,
        times: 1,
    });
    let error = reqwest::Client::new()
        .post(format!("{}{SEND}", sim.base_url()))
        .header("access-token", &token)
        .json(&send_body("u", "m"))
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout());
    assert_eq!(sim.ledger().len(), 1);
    // The retry under the same merchant_coupon_id gets the same coupon, not a second one.
    let answer = send(&sim, &token, &send_body("u", "m")).await;
    assert_eq!(err_no(&answer), 0);
    assert_eq!(
        answer["data"]["coupon_info"]["coupon_id"],
        sim.ledger()[0].instance_id
    );
    assert_eq!(sim.ledger().len(), 1);

    // Before apply: a client that gives up leaves nothing behind.
    sim.inject(Fault::Delay {
        api: None,
        millis: 500,
        apply: false,
        times: 1,
    });
    let error = reqwest::Client::new()
        .post(format!("{}{SEND}", sim.base_url()))
        .header("access-token", &token)
        .json(&send_body("w", "w"))
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(sim.ledger().len(), 1);
}

#[tokio::test]
async fn the_admin_endpoint_expires_tokens() {
    let sim = demo().await;
    let token = token(&sim).await;
    let response = reqwest::Client::new()
        .post(format!("{}/_sim/douyin/expire_tokens", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        err_no(&send(&sim, &token, &send_body("u", "m")).await),
        28001008
    );
}

#[tokio::test]
async fn a_seed_that_contradicts_itself_does_not_start() {
    let mut config = SimConfig::demo();
    config.douyin.apps.push(config.douyin.apps[0].clone());
    let error = Sim::start(config).await.unwrap_err();
    assert!(error.to_string().contains("tt-demo-key"), "{error}");
    let mut config = SimConfig::demo();
    config.douyin.activities[0].valid_end_time = 0;
    let error = Sim::start(config).await.unwrap_err();
    assert!(error.to_string().contains("valid_end_time"), "{error}");
    let mut config = SimConfig::demo();
    config.tmall.coupons.push(config.tmall.coupons[0].clone());
    let error = Sim::start(config).await.unwrap_err();
    assert!(error.to_string().contains("nrt-demo-uuid"), "{error}");
}

#[test]
fn seeds_without_the_new_platforms_still_read() {
    // A seed written before tmall, alsc and douyin existed.
    let seed = json!({
        "top_apps": [{ "app_key": "1", "app_secret": "s", "sessions": [] }],
        "taobao": { "coupons": [] },
    });
    let config: SimConfig = serde_json::from_value(seed).unwrap();
    assert!(config.tmall.coupons.is_empty());
    assert!(config.alsc.vouchers.is_empty());
    assert!(config.douyin.apps.is_empty());
    assert_eq!(config.douyin.token_ttl_secs, 7200);
    assert_eq!(config.douyin.qps, 100);
    // The demo round-trips through JSON and TOML.
    let demo = SimConfig::demo();
    let back: SimConfig = serde_json::from_value(serde_json::to_value(&demo).unwrap()).unwrap();
    assert_eq!(back.douyin.activities[0].activity_id, ACTIVITY);
    let text = toml::to_string(&demo).unwrap();
    let back: SimConfig = toml::from_str(&text).unwrap();
    assert_eq!(back.alsc.vouchers[0].amount_yuan, "10.00");
    assert_eq!(back.tmall.coupons[0].uuid, "nrt-demo-uuid");
    // A partial douyin section takes the defaults.
    let partial: coupon_sim::DouyinSeed = serde_json::from_value(json!({ "qps": 5 })).unwrap();
    assert_eq!((partial.qps, partial.token_ttl_secs), (5, 7200));
}

async fn stable_token(sim: &Sim, client_secret: &str) -> Value {
    post(
        sim,
        "/oauth/stable_client_token/",
        None,
        &token_request("tt-demo-key", client_secret),
    )
    .await
}

#[tokio::test]
async fn a_stable_token_is_the_same_while_it_is_valid() {
    let sim = demo().await;
    let first = stable_token(&sim, "sim-douyin-secret").await;
    assert_eq!(first["message"], "success", "{first}");
    assert_eq!(first["data"]["error_code"], 0);
    assert_eq!(first["data"]["description"], "");
    assert_eq!(first["data"]["expires_in"], 7200);
    let value = first["data"]["access_token"].as_str().unwrap().to_owned();
    assert!(value.starts_with("clt."), "{value}");

    // An hour on, the same token, with the hour gone from expires_in.
    sim.set_clock_skew(3600);
    let again = stable_token(&sim, "sim-douyin-secret").await;
    assert_eq!(again["data"]["access_token"], value.as_str());
    // Whole seconds left, rounded down; some real time passed since the first fetch.
    let left = again["data"]["expires_in"].as_i64().unwrap();
    assert!((3500..=3600).contains(&left), "{again}");
    // Fetching client_tokens does not replace it, and it sends like one.
    token(&sim).await;
    token(&sim).await;
    assert_eq!(err_no(&send(&sim, &value, &send_body("u1", "1")).await), 0);

    // Past its lifetime it is expired, and the next fetch makes a new one.
    sim.set_clock_skew(7200);
    assert_eq!(
        err_no(&send(&sim, &value, &send_body("u2", "2")).await),
        28001008
    );
    let renewed = stable_token(&sim, "sim-douyin-secret").await;
    let renewed = renewed["data"]["access_token"].as_str().unwrap().to_owned();
    assert_ne!(renewed, value);
    assert_eq!(
        err_no(&send(&sim, &renewed, &send_body("u3", "3")).await),
        0
    );
    // The test hook expires it too.
    sim.expire_douyin_tokens();
    let after_hook = stable_token(&sim, "sim-douyin-secret").await;
    assert_ne!(after_hook["data"]["access_token"], renewed.as_str());

    // Refused like client_token.
    assert_eq!(token_error(&stable_token(&sim, "wrong").await), 10013);
    let unknown = post(
        &sim,
        "/oauth/stable_client_token/",
        None,
        &token_request("tt-nobody", "x"),
    )
    .await;
    assert_eq!(token_error(&unknown), 10003);

    let fetches = sim.token_fetches();
    assert_eq!(fetches["stable_client_token"], 4);
    assert_eq!(fetches["client_token"], 2);
    assert_eq!(fetches["oauth_token"], 0);
    assert_eq!(sim.douyin_token_fetches(), 6);
    let calls = sim.calls();
    let refused = calls
        .iter()
        .find(|c| c.api == "stable_client_token" && !c.ok)
        .unwrap();
    assert_eq!(refused.params["client_secret"], "***");
}
