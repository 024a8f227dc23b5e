//! The TOP gateway over HTTP, as a client sees it. Requests are signed by a small signer written
//! here for the tests (not the simulator's verifier), so the two check each other.

use std::collections::BTreeMap;
use std::time::Duration;

use coupon_sim::{Fault, Sim, SimConfig, TaobaoCoupon};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{Value, json};

#[path = "gateway/accounts.rs"]
mod accounts;
#[path = "gateway/alsc.rs"]
mod alsc;
#[path = "gateway/scale.rs"]
mod scale;
#[path = "gateway/tmall.rs"]
mod tmall;

const SNS_SEND: &str = "taobao.promotion.coupon.sns.send";
const BUYER_GET: &str = "taobao.qianniu.coupon.buyer.get";

/// The test signer: PROTOCOLS.md §1.4, written out plainly.
fn sign(params: &BTreeMap<String, String>, secret: &str, method: &str) -> String {
    let text: String = params
        .iter()
        .filter(|(k, v)| *k != "sign" && !v.trim().is_empty())
        .map(|(k, v)| format!("{k}{v}"))
        .collect();
    let bytes = match method {
        "hmac" => {
            let mut mac = Hmac::<Md5>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "hmac-sha256" => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => Md5::digest(format!("{secret}{text}{secret}")).to_vec(),
    };
    hex::encode_upper(bytes)
}

fn gmt8_now() -> String {
    gmt8_at(0)
}

/// The GMT+8 timestamp `skew_secs` from now: what a client whose clock agrees with a skewed
/// simulator sends.
fn gmt8_at(skew_secs: i64) -> String {
    let gmt8 = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    (chrono::Utc::now() + chrono::TimeDelta::seconds(skew_secs))
        .with_timezone(&gmt8)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// One TOP request, signed with the demo app unless told otherwise.
struct Req {
    params: BTreeMap<String, String>,
    secret: String,
    signed: bool,
    /// System parameters go in the query string (Java SDK style) rather than the body.
    split: bool,
    timeout: Option<Duration>,
}

impl Req {
    fn new(api: &str) -> Req {
        let params = [
            ("method", api),
            ("app_key", "12345678"),
            ("session", "sim-session"),
            ("timestamp", &gmt8_now()),
            ("format", "json"),
            ("v", "2.0"),
            ("sign_method", "md5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Req {
            params,
            secret: "sim-app-secret".into(),
            signed: true,
            split: false,
            timeout: None,
        }
    }

    fn sns(nicks: &str) -> Req {
        Req::new(SNS_SEND)
            .set("coupon_id", "48552")
            .set("buyer_nick", nicks)
    }

    fn set(mut self, name: &str, value: &str) -> Req {
        self.params.insert(name.into(), value.into());
        self
    }

    fn remove(mut self, name: &str) -> Req {
        self.params.remove(name);
        self
    }

    fn secret(mut self, secret: &str) -> Req {
        self.secret = secret.into();
        self
    }

    fn unsigned(mut self) -> Req {
        self.signed = false;
        self
    }

    fn split(mut self) -> Req {
        self.split = true;
        self
    }

    fn timeout(mut self, timeout: Duration) -> Req {
        self.timeout = Some(timeout);
        self
    }

    async fn send_raw(self, sim: &Sim) -> reqwest::Result<reqwest::Response> {
        let mut params = self.params;
        if self.signed {
            let method = params.get("sign_method").cloned().unwrap_or_default();
            let sign = sign(&params, &self.secret, &method);
            params.insert("sign".into(), sign);
        }
        let client = reqwest::Client::new();
        let mut request = client.post(sim.top_gateway());
        if self.split {
            let system = [
                "method",
                "app_key",
                "session",
                "timestamp",
                "format",
                "v",
                "sign_method",
                "sign",
            ];
            let (query, body): (BTreeMap<_, _>, BTreeMap<_, _>) = params
                .into_iter()
                .partition(|(k, _)| system.contains(&k.as_str()));
            request = request.query(&query).form(&body);
        } else {
            request = request.form(&params);
        }
        if let Some(timeout) = self.timeout {
            request = request.timeout(timeout);
        }
        request.send().await
    }

    async fn send(self, sim: &Sim) -> Value {
        let response = self.send_raw(sim).await.expect("the gateway answers");
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

/// `GET` an admin route (`/_sim/...`): its JSON answer.
async fn admin_get(sim: &Sim, path: &str) -> Value {
    reqwest::get(format!("{}{path}", sim.base_url()))
        .await
        .expect("the simulator answers")
        .json()
        .await
        .expect("a JSON answer")
}

/// `POST` JSON to an admin route (`/_sim/...`).
async fn admin_post(sim: &Sim, path: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}{path}", sim.base_url()))
        .json(body)
        .send()
        .await
        .expect("the simulator answers")
}

/// The `error_response` of an answer, which must be one.
fn error(answer: &Value) -> &Value {
    let error = &answer["error_response"];
    assert!(error.is_object(), "not an error: {answer}");
    assert!(error["request_id"].is_string(), "{answer}");
    error
}

fn assert_code(answer: &Value, code: i64) {
    assert_eq!(error(answer)["code"], code, "{answer}");
}

async fn demo() -> Sim {
    Sim::start(SimConfig::demo()).await.unwrap()
}

#[tokio::test]
async fn an_accepted_call_issues_and_is_recorded() {
    let sim = demo().await;
    let answer = Req::sns("张三,李四").send(&sim).await;
    let response = &answer["promotion_coupon_sns_send_response"];
    assert_eq!(response["is_success"], true, "{answer}");
    assert!(response["request_id"].is_string());
    let results = response["coupon_results"]["coupon_result"]
        .as_array()
        .unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["buyer_nick"], "张三");
    assert!(results[0]["coupon_number"].is_u64());
    assert_ne!(results[0]["coupon_number"], results[1]["coupon_number"]);
    assert!(
        response.get("failure_buyers").is_none(),
        "empty lists are left out"
    );

    let ledger = sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].platform, "taobao");
    assert_eq!(ledger[0].coupon, "48552");
    assert_eq!(ledger[0].recipient, "张三");
    assert_eq!(
        ledger[0].instance_id,
        results[0]["coupon_number"].to_string()
    );
    assert_eq!(ledger[0].idempotency_id, None);
    assert_eq!(sim.duplicate_issuances(), 0);

    let calls = sim.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].api, SNS_SEND);
    assert!(calls[0].ok);
    assert_eq!(calls[0].error_code, None);
    assert_eq!(calls[0].sign_method, "md5");
    assert_eq!(
        calls[0].request_id.as_ref(),
        response["request_id"].as_str().map(str::to_owned).as_ref()
    );
    assert_eq!(
        calls[0].params["session"], "***",
        "the session is masked in the log"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn every_sign_method_is_accepted_wherever_the_params_are() {
    let sim = demo().await;
    for (i, method) in ["md5", "hmac", "hmac-sha256"].into_iter().enumerate() {
        for split in [false, true] {
            let nick = format!("买家{i}{split}");
            let mut req = Req::sns(&nick).set("sign_method", method);
            if split {
                req = req.split();
            }
            let answer = req.send(&sim).await;
            assert_eq!(
                answer["promotion_coupon_sns_send_response"]["is_success"], true,
                "{method} split={split}: {answer}"
            );
        }
    }
    assert_eq!(sim.ledger().len(), 6);
    // The old Python SDK sends epoch milliseconds.
    let millis = chrono::Utc::now().timestamp_millis().to_string();
    let answer = Req::sns("毫秒").set("timestamp", &millis).send(&sim).await;
    assert_eq!(
        answer["promotion_coupon_sns_send_response"]["is_success"], true,
        "{answer}"
    );
}

#[tokio::test]
async fn a_wrong_secret_or_a_changed_param_is_an_invalid_signature() {
    let sim = demo().await;
    let answer = Req::sns("张三").secret("not-the-secret").send(&sim).await;
    assert_code(&answer, 25);
    assert_eq!(error(&answer)["msg"], "Invalid signature");
    // The legacy v1 md5 (no trailing secret) does not verify either.
    let mut req = Req::sns("张三").unsigned();
    let text: String = req.params.iter().map(|(k, v)| format!("{k}{v}")).collect();
    let legacy = hex::encode_upper(Md5::digest(format!("sim-app-secret{text}")));
    req = req.set("sign", &legacy);
    assert_code(&req.send(&sim).await, 25);
    // An unknown sign_method is answered as a bad signature.
    assert_code(
        &Req::sns("张三").set("sign_method", "sha1").send(&sim).await,
        25,
    );
    assert!(sim.ledger().is_empty());
    let calls = sim.calls();
    assert_eq!(calls[0].error_code.as_deref(), Some("25"));
    let detail = calls[0].detail.as_deref().unwrap();
    assert!(detail.contains("session***"), "{detail}");
    assert!(
        !detail.contains("sim-session") && !detail.contains("sim-app-secret"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_lowercase_signature_is_accepted() {
    let sim = demo().await;
    let mut req = Req::sns("张三").unsigned();
    let lower = sign(&req.params, "sim-app-secret", "md5").to_lowercase();
    req = req.set("sign", &lower);
    let answer = req.send(&sim).await;
    assert_eq!(
        answer["promotion_coupon_sns_send_response"]["is_success"], true,
        "{answer}"
    );
}

#[tokio::test]
async fn a_skewed_clock_is_an_invalid_timestamp() {
    let sim = demo().await;
    sim.set_clock_skew(11 * 60);
    let answer = Req::sns("张三").send(&sim).await;
    assert_code(&answer, 31);
    sim.set_clock_skew(-11 * 60);
    assert_code(&Req::sns("张三").send(&sim).await, 31);
    // Inside the ten minutes.
    sim.set_clock_skew(9 * 60);
    let answer = Req::sns("张三").send(&sim).await;
    assert_eq!(
        answer["promotion_coupon_sns_send_response"]["is_success"], true,
        "{answer}"
    );
    // Not GMT+8 text: an ISO timestamp is not accepted at all.
    sim.set_clock_skew(0);
    let iso = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string();
    assert_code(
        &Req::sns("张三").set("timestamp", &iso).send(&sim).await,
        31,
    );
    // UTC text is eight hours off.
    let utc = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
    assert_code(
        &Req::sns("张三").set("timestamp", &utc).send(&sim).await,
        31,
    );
    assert_eq!(sim.ledger().len(), 1);
}

#[tokio::test]
async fn protocol_checks_answer_their_codes() {
    let sim = demo().await;
    let cases: Vec<(Req, i64)> = vec![
        (Req::sns("a").remove("method"), 21),
        (Req::sns("a").set("method", "taobao.no.such.api"), 22),
        (Req::sns("a").remove("app_key"), 28),
        (Req::sns("a").set("app_key", "87654321"), 29),
        (Req::sns("a").unsigned(), 24),
        (Req::sns("a").remove("timestamp"), 30),
        (Req::sns("a").set("timestamp", "yesterday"), 31),
        (Req::sns("a").remove("v"), 32),
        (Req::sns("a").set("v", "1.0"), 33),
        (Req::sns("a").set("format", "yaml"), 23),
        (Req::sns("a").remove("session"), 26),
        (Req::sns("a").set("session", "expired-session"), 27),
    ];
    for (req, code) in cases {
        let answer = req.send(&sim).await;
        assert_code(&answer, code);
    }
    let answer = Req::sns("a").set("session", "nope").send(&sim).await;
    assert_eq!(error(&answer)["sub_code"], "invalid-sessionkey");
    let answer = Req::sns("a").set("app_key", "nope").send(&sim).await;
    assert_eq!(error(&answer)["sub_code"], "isv.appkey-not-exists");
    assert!(sim.ledger().is_empty());
    assert!(sim.calls().iter().all(|c| !c.ok));
}

#[tokio::test]
async fn api_parameters_are_checked() {
    let sim = demo().await;
    let answer = Req::new(SNS_SEND).set("buyer_nick", "a").send(&sim).await;
    assert_code(&answer, 40);
    assert_eq!(error(&answer)["sub_code"], "isv.missing-parameter");
    let answer = Req::sns("a").set("coupon_id", "48552x").send(&sim).await;
    assert_code(&answer, 41);
    assert_eq!(error(&answer)["sub_code"], "isv.invalid-parameter");
    assert_code(
        &Req::new(SNS_SEND)
            .set("coupon_id", "48552")
            .send(&sim)
            .await,
        40,
    );
    let many: Vec<String> = (0..101).map(|i| format!("n{i}")).collect();
    assert_code(&Req::sns(&many.join(",")).send(&sim).await, 41);
    let uids: Vec<String> = (0..1000).map(|i| format!("u{i}")).collect();
    let answer = Req::new(SNS_SEND)
        .set("coupon_id", "48552")
        .set("open_uids", &uids.join(","))
        .send(&sim)
        .await;
    assert_code(&answer, 41);
    assert_code(&Req::new(BUYER_GET).send(&sim).await, 40);
    // 100 nicks and 999 open_uids are fine.
    let answer = Req::sns(&many[..100].join(","))
        .set("open_uids", &uids[..999].join(","))
        .send(&sim)
        .await;
    let results = &answer["promotion_coupon_sns_send_response"]["coupon_results"]["coupon_result"];
    assert_eq!(results.as_array().map(Vec::len), Some(1099), "{answer}");
    assert_eq!(results[100]["open_uid"], "u0");
}

#[tokio::test]
async fn an_unknown_or_expired_coupon_is_a_coupon_error() {
    let mut config = SimConfig::demo();
    config.taobao.coupons.push(TaobaoCoupon {
        coupon_id: 40000,
        title: "过期券".into(),
        amount_yuan: 5,
        start_fee_yuan: 0,
        stock: None,
        per_buyer_limit: None,
        start_time: "2020-01-01 00:00:00".into(),
        end_time: "2020-12-31 23:59:59".into(),
        seller: None,
    });
    let sim = Sim::start(config).await.unwrap();
    for coupon in ["99999999", "40000"] {
        let answer = Req::sns("张三").set("coupon_id", coupon).send(&sim).await;
        let error = error(&answer);
        assert_eq!(error["code"], 15, "{answer}");
        assert_eq!(error["sub_code"], "isv.coupon-error");
        assert_eq!(error["sub_msg"], "优惠券不存在或者优惠券已经过期");
    }
    assert!(sim.ledger().is_empty());
}

#[tokio::test]
async fn unknown_buyers_fail_alone_and_success_is_still_true() {
    let sim = demo().await;
    let answer = Req::sns("张三,不存在的买家")
        .set("open_uids", "ghost-1,AAuid")
        .send(&sim)
        .await;
    let response = &answer["promotion_coupon_sns_send_response"];
    assert_eq!(response["is_success"], true);
    let failures = &response["failure_buyers"]["error_message"];
    assert_eq!(
        failures,
        &json!([
            { "buyer_nick": "不存在的买家", "reason": "买家不存在" },
            { "open_uid": "ghost-1", "reason": "买家不存在" },
        ])
    );
    let results = &response["coupon_results"]["coupon_result"];
    assert_eq!(results[1]["open_uid"], "AAuid");

    // Every buyer failing is still `is_success: true`, with no coupon_results at all.
    let answer = Req::sns("ghost-2").send(&sim).await;
    let response = &answer["promotion_coupon_sns_send_response"];
    assert_eq!(response["is_success"], true);
    assert!(response.get("coupon_results").is_none(), "{answer}");
    assert_eq!(
        response["failure_buyers"]["error_message"][0]["reason"],
        "买家不存在"
    );
    assert_eq!(sim.ledger().len(), 2);
}

#[tokio::test]
async fn the_per_buyer_limit_and_the_stock_are_enforced() {
    let mut config = SimConfig::demo();
    config.taobao.coupons[1].stock = Some(2);
    let sim = Sim::start(config).await.unwrap();
    // 48552 allows one per buyer.
    Req::sns("张三").send(&sim).await;
    let answer = Req::sns("张三").send(&sim).await;
    assert_eq!(
        answer["promotion_coupon_sns_send_response"]["failure_buyers"]["error_message"][0]["reason"],
        "领取数量超过限制"
    );
    // 48553 has two left.
    let answer = Req::sns("a,b,c").set("coupon_id", "48553").send(&sim).await;
    let response = &answer["promotion_coupon_sns_send_response"];
    assert_eq!(
        response["coupon_results"]["coupon_result"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        response["failure_buyers"]["error_message"],
        json!([{ "buyer_nick": "c", "reason": "优惠券已发完" }])
    );
    assert_eq!(sim.ledger().len(), 3);
}

#[tokio::test]
async fn simplify_gives_bare_objects_and_plain_arrays() {
    let sim = demo().await;
    let answer = Req::sns("张三,ghost-1")
        .set("simplify", "true")
        .send(&sim)
        .await;
    assert_eq!(answer["is_success"], true, "{answer}");
    assert!(answer["request_id"].is_string());
    assert_eq!(answer["coupon_results"][0]["buyer_nick"], "张三");
    assert_eq!(answer["failure_buyers"][0]["reason"], "买家不存在");

    let answer = Req::new(BUYER_GET)
        .set("buyer_nick", "张三")
        .set("simplify", "true")
        .send(&sim)
        .await;
    let coupons = answer["coupons"].as_array().expect("a plain array");
    assert_eq!(coupons.len(), 2);

    let wrapped = Req::new(BUYER_GET)
        .set("buyer_nick", "张三")
        .send(&sim)
        .await;
    let response = &wrapped["qianniu_coupon_buyer_get_response"];
    assert_eq!(response["is_success"], true);
    assert_eq!(response["coupons"]["coupon_info_do"], answer["coupons"]);

    // Errors keep their wrapper either way.
    let answer = Req::sns("张三")
        .set("simplify", "true")
        .secret("x")
        .send(&sim)
        .await;
    assert_code(&answer, 25);
}

#[tokio::test]
async fn buyer_get_lists_every_coupon_with_what_the_buyer_holds() {
    let sim = demo().await;
    Req::sns("张三").send(&sim).await;
    let answer = Req::new(BUYER_GET)
        .set("buyer_nick", "张三")
        .set("simplify", "true")
        .send(&sim)
        .await;
    let coupons = answer["coupons"].as_array().unwrap();
    let held = &coupons[0];
    assert_eq!(held["template_id"], 48552);
    assert_eq!(held["status"], 1);
    assert_eq!(held["amount"], 10);
    assert_eq!(held["start_fee"], 100);
    assert_eq!(held["type"], 1);
    assert_eq!(held["has_limit"], true);
    assert_eq!(held["title"], "店铺满100减10");
    assert_eq!(held["start_time"], "2026-01-01 00:00:00");
    assert_eq!(held["end_time"], "2027-12-31 23:59:59");
    assert_eq!(held["total_count"], 1_000_000);
    assert_eq!(held["apply_count"], 1);
    let id = held["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
    assert_eq!(coupons[1]["status"], 0);
    assert_ne!(coupons[1]["id"], held["id"]);

    // The id is stable per coupon and buyer.
    let again = Req::new(BUYER_GET)
        .set("buyer_nick", "张三")
        .set("simplify", "true")
        .send(&sim)
        .await;
    assert_eq!(again["coupons"][0]["id"], held["id"]);
    let other = Req::new(BUYER_GET)
        .set("buyer_nick", "李四")
        .set("simplify", "true")
        .send(&sim)
        .await;
    assert_ne!(other["coupons"][0]["id"], held["id"]);
    assert_eq!(other["coupons"][0]["status"], 0);
}

#[tokio::test]
async fn calls_over_the_rate_are_app_call_limited() {
    let mut config = SimConfig::demo();
    config.qps_per_app = Some(2);
    let sim = Sim::start(config).await.unwrap();
    Req::sns("a").send(&sim).await;
    Req::sns("b").send(&sim).await;
    let answer = Req::sns("c").send(&sim).await;
    let error = error(&answer);
    assert_eq!(error["code"], 7);
    assert_eq!(error["sub_code"], "isv.access-limited-by-app-access-count");
    assert_eq!(error["sub_msg"], "This ban will last 1 more seconds");
    assert_eq!(sim.too_frequent(), 1);
    assert_eq!(sim.stats().answers[SNS_SEND]["7"], 1);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let answer = Req::sns("c").send(&sim).await;
    assert_eq!(
        answer["promotion_coupon_sns_send_response"]["is_success"], true,
        "{answer}"
    );
    assert_eq!(sim.ledger().len(), 3);
}

#[tokio::test]
async fn injected_http_body_and_top_faults_answer_without_applying() {
    let sim = demo().await;
    sim.inject(Fault::Status {
        api: Some(SNS_SEND.into()),
        status: 502,
        times: 1,
    });
    sim.inject(Fault::Body {
        api: None,
        body: "{\"promotion_coupon_sns_send_response\":{\"coupon_res".into(),
        times: 1,
    });
    sim.inject(Fault::TopError {
        api: Some(SNS_SEND.into()),
        code: 15,
        msg: "Remote service error".into(),
        sub_code: Some("isp.top-remote-connection-timeout".into()),
        sub_msg: None,
        times: 1,
    });
    // A fault for another API does not touch sns.send.
    sim.inject(Fault::Status {
        api: Some(BUYER_GET.into()),
        status: 503,
        times: 1,
    });

    let response = Req::sns("张三").send_raw(&sim).await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(response.text().await.unwrap().contains("<html>"));
    let response = Req::sns("张三").send_raw(&sim).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(serde_json::from_str::<Value>(&response.text().await.unwrap()).is_err());
    let answer = Req::sns("张三").send(&sim).await;
    assert_eq!(
        error(&answer)["sub_code"],
        "isp.top-remote-connection-timeout"
    );
    let answer = Req::sns("张三").send(&sim).await;
    assert_eq!(
        answer["promotion_coupon_sns_send_response"]["is_success"],
        true
    );
    let response = Req::new(BUYER_GET)
        .set("buyer_nick", "张三")
        .send_raw(&sim)
        .await
        .unwrap();
    assert_eq!(response.status(), 503);

    assert_eq!(sim.ledger().len(), 1);
    let codes: Vec<_> = sim.calls().into_iter().map(|c| c.error_code).collect();
    assert_eq!(
        codes,
        [
            Some("http-502".to_owned()),
            Some("bad-body".to_owned()),
            Some("15".to_owned()),
            None,
            Some("http-503".to_owned())
        ]
    );
}

#[tokio::test]
async fn a_delay_after_apply_issues_although_the_client_timed_out() {
    let sim = demo().await;
    sim.inject(Fault::Delay {
        api: Some(SNS_SEND.into()),
        millis: 1500,
        apply: true,
        times: 1,
    });
    let result = Req::sns("张三")
        .timeout(Duration::from_millis(200))
        .send_raw(&sim)
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(
        sim.ledger().len(),
        1,
        "the send took effect before the wait"
    );
}

#[tokio::test]
async fn a_delay_before_apply_issues_nothing_when_the_client_gives_up() {
    let sim = demo().await;
    sim.inject(Fault::Delay {
        api: None,
        millis: 500,
        apply: false,
        times: 1,
    });
    let result = Req::sns("张三")
        .timeout(Duration::from_millis(100))
        .send_raw(&sim)
        .await;
    assert!(result.unwrap_err().is_timeout());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(sim.ledger().is_empty(), "{:?}", sim.ledger());
    assert!(sim.calls().is_empty(), "the call was never processed");

    // A patient client gets the answer after the wait.
    sim.inject(Fault::Delay {
        api: None,
        millis: 200,
        apply: false,
        times: 1,
    });
    let started = std::time::Instant::now();
    let answer = Req::sns("张三").send(&sim).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(
        answer["promotion_coupon_sns_send_response"]["is_success"],
        true
    );
    assert_eq!(sim.ledger().len(), 1);
}

#[tokio::test]
async fn a_reset_connection_answers_nothing_and_applies_nothing() {
    let sim = demo().await;
    sim.inject(Fault::ResetConnection {
        api: Some(SNS_SEND.into()),
        times: 1,
    });
    let result = Req::sns("张三").send_raw(&sim).await;
    let error = result.unwrap_err();
    assert!(!error.is_timeout(), "{error:?}");
    assert!(sim.ledger().is_empty());
    assert_eq!(sim.calls()[0].error_code.as_deref(), Some("reset"));
    // The server is still up.
    let answer = Req::sns("张三").send(&sim).await;
    assert_eq!(
        answer["promotion_coupon_sns_send_response"]["is_success"],
        true
    );
}

#[tokio::test]
async fn admin_endpoints_and_unknown_paths() {
    let sim = demo().await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", sim.base_url());
    let response = admin_post(
        &sim,
        "/_sim/fault",
        &json!({ "kind": "status", "status": 500 }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(Req::sns("张三").send_raw(&sim).await.unwrap().status(), 500);
    Req::sns("张三").send(&sim).await;

    let ledger = admin_get(&sim, "/_sim/ledger").await;
    assert_eq!(ledger[0]["recipient"], "张三");
    let calls = admin_get(&sim, "/_sim/calls").await;
    assert_eq!(calls.as_array().unwrap().len(), 2);

    let response = admin_post(&sim, "/_sim/clock_skew", &json!({ "skew_secs": 3600 })).await;
    assert_eq!(response.status(), 200);
    assert_code(&Req::sns("李四").send(&sim).await, 31);

    assert_eq!(client.get(url("/nope")).send().await.unwrap().status(), 404);
    let answer: Value = client
        .put(sim.top_gateway())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_code(&answer, 9);
    // GET works like POST.
    sim.set_clock_skew(0);
    let mut params = Req::new(BUYER_GET).set("buyer_nick", "张三").params;
    params.insert("sign".into(), sign(&params, "sim-app-secret", "md5"));
    let answer: Value = client
        .get(sim.top_gateway())
        .query(&params)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        answer["qianniu_coupon_buyer_get_response"]["is_success"], true,
        "{answer}"
    );
}

#[tokio::test]
async fn a_seed_that_contradicts_itself_does_not_start() {
    let mut config = SimConfig::demo();
    config.taobao.coupons[1].coupon_id = 48552;
    let error = Sim::start(config).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("48552"), "{error}");
    let mut config = SimConfig::demo();
    config.taobao.coupons[0].end_time = "2027-12-31".into();
    let error = Sim::start(config).await.unwrap_err();
    assert!(error.to_string().contains("end_time"), "{error}");
}

#[test]
fn faults_and_seeds_read_from_json() {
    let fault: Fault = serde_json::from_value(json!({"kind": "reset_connection"})).unwrap();
    assert_eq!(
        fault,
        Fault::ResetConnection {
            api: None,
            times: 1
        }
    );
    let fault: Fault = serde_json::from_value(
        json!({"kind": "delay", "api": SNS_SEND, "millis": 10, "apply": true, "times": 3}),
    )
    .unwrap();
    assert!(matches!(
        fault,
        Fault::Delay {
            times: 3,
            apply: true,
            ..
        }
    ));
    assert!(
        serde_json::from_value::<Fault>(json!({"kind": "status", "status": 1, "oops": 1})).is_err()
    );

    let seed = serde_json::to_value(SimConfig::demo()).unwrap();
    let back: SimConfig = serde_json::from_value(seed).unwrap();
    assert_eq!(back.top_apps[0].app_key, "12345678");
}
