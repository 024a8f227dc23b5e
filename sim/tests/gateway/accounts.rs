//! Several TOP sellers, their sessions and TOP's OAuth token endpoint (PLATFORMS.md "TOP
//! OAuth", ACCOUNTS.md): whose coupons a session may send and see, expiring and revoked
//! sessions, codes and refresh tokens, and the admin hooks over HTTP.

use coupon_sim::{SessionState, Sim, SimConfig, TaobaoCoupon, TopApp, TopSeller, TopSellerSession};
use serde_json::{Value, json};

use super::{BUYER_GET, Req, admin_get, admin_post, assert_code, demo, error, gmt8_at, sign};

const NRT_SEND: &str = "tmall.nrt.coupon.send";
const NRT_QUERY: &str = "tmall.nrt.coupon.instance.query";
const SECOND: &str = "sim-seller-2";

/// POSTs a form to the OAuth token endpoint: the HTTP status and the JSON answer.
async fn token(sim: &Sim, form: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(sim.top_oauth_url())
        .form(form)
        .send()
        .await
        .expect("the token endpoint answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let answer = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, answer)
}

/// Exchanges `code` as the demo app with `redirect_uri`.
async fn exchange(sim: &Sim, code: &str, redirect_uri: &str) -> (u16, Value) {
    token(
        sim,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", "12345678"),
            ("client_secret", "sim-app-secret"),
            ("redirect_uri", redirect_uri),
        ],
    )
    .await
}

async fn refresh(sim: &Sim, refresh_token: &str) -> (u16, Value) {
    token(
        sim,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", "12345678"),
            ("client_secret", "sim-app-secret"),
        ],
    )
    .await
}

/// The OAuth `error` of a refusal, after checking its shape.
fn oauth_error(status: u16, answer: &Value) -> &str {
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error_description"].is_string(), "{answer}");
    assert!(answer.get("access_token").is_none(), "{answer}");
    answer["error"].as_str().unwrap()
}

/// A session of `seller` minted through a code, and its refresh token.
async fn authorize(sim: &Sim, seller: &str) -> (String, String) {
    let code = sim.mint_top_code("12345678", seller, None).unwrap();
    let (status, answer) = exchange(sim, &code, "urn:ietf:wg:oauth:2.0:oob").await;
    assert_eq!(status, 200, "{answer}");
    let field = |name: &str| answer[name].as_str().unwrap().to_owned();
    (field("access_token"), field("refresh_token"))
}

fn is_sent(answer: &Value) -> bool {
    answer["promotion_coupon_sns_send_response"]["coupon_results"].is_object()
}

fn nrt_dto(uuid: &str, open_id: &str, out_id: &str) -> String {
    json!({
        "biz_code": "YXX", "channel": "app", "coupon_type": 247,
        "open_id": open_id, "out_id": out_id, "uuid": uuid,
    })
    .to_string()
}

#[tokio::test]
async fn a_session_sends_and_sees_only_its_own_seller_s_coupons() {
    let sim = demo().await;
    // 48560 is the second seller's: the default seller's session gets the coupon error.
    let answer = Req::sns("张三").set("coupon_id", "48560").send(&sim).await;
    let refused = error(&answer);
    assert_eq!(refused["code"], 15, "{answer}");
    assert_eq!(refused["sub_code"], "isv.coupon-error");
    assert_eq!(refused["sub_msg"], "优惠券不存在或者优惠券已经过期");
    let answer = Req::sns("张三")
        .set("session", "sim-session-2")
        .send(&sim)
        .await;
    assert_eq!(error(&answer)["sub_code"], "isv.coupon-error", "{answer}");
    let answer = Req::sns("张三")
        .set("coupon_id", "48560")
        .set("session", "sim-session-2")
        .send(&sim)
        .await;
    assert!(is_sent(&answer), "{answer}");
    assert_eq!(sim.ledger().len(), 1);

    // Each seller's Qianniu query lists its own shop's coupons.
    let templates = |answer: &Value| -> Vec<i64> {
        answer["coupons"]
            .as_array()
            .unwrap_or_else(|| panic!("{answer}"))
            .iter()
            .map(|c| c["template_id"].as_i64().unwrap())
            .collect()
    };
    let query = |session: &str| {
        Req::new(BUYER_GET)
            .set("buyer_nick", "张三")
            .set("simplify", "true")
            .set("session", session)
    };
    assert_eq!(
        templates(&query("sim-session").send(&sim).await),
        [48552, 48553]
    );
    let second = query("sim-session-2").send(&sim).await;
    assert_eq!(templates(&second), [48560]);
    assert_eq!(second["coupons"][0]["status"], 1, "{second}");

    // Tmall: another seller's uuid is as unknown (-3); queries list the seller's instances.
    let send = |uuid: &str, session: &str, out_id: &str| {
        Req::new(NRT_SEND)
            .set("nrt_coupon_send_dto", &nrt_dto(uuid, "AAuser", out_id))
            .set("session", session)
    };
    let answer = send("nrt-demo-uuid-2", "sim-session", "o1")
        .send(&sim)
        .await;
    assert_eq!(error(&answer)["sub_code"], "-3", "{answer}");
    let answer = send("nrt-demo-uuid-2", "sim-session-2", "o1")
        .send(&sim)
        .await;
    assert!(answer["tmall_nrt_coupon_send_response"]["model"].is_object());
    // The same out_id is the default seller's own to use.
    let answer = send("nrt-demo-uuid", "sim-session", "o1").send(&sim).await;
    assert!(answer["tmall_nrt_coupon_send_response"]["model"].is_object());
    let models = |session: &str| {
        Req::new(NRT_QUERY)
            .set("user_id", "AAuser")
            .set("session", session)
    };
    for (session, uuid) in [
        ("sim-session", "nrt-demo-uuid"),
        ("sim-session-2", "nrt-demo-uuid-2"),
    ] {
        let answer = models(session).send(&sim).await;
        let listed = &answer["tmall_nrt_coupon_instance_query_response"]["result"]["models"];
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{answer}");
        let model: Value = serde_json::from_str(listed[0].as_str().unwrap()).unwrap();
        assert_eq!(model["uuid"], uuid);
    }

    let sellers: Vec<_> = sim.calls().into_iter().map(|c| c.seller).collect();
    assert_eq!(sellers[0].as_deref(), Some("sim-seller"));
    assert_eq!(sellers[2].as_deref(), Some(SECOND));
}

#[tokio::test]
async fn expired_revoked_unknown_and_foreign_sessions_are_invalid() {
    let mut config = SimConfig::demo();
    config.top_apps.push(TopApp {
        sessions: vec!["other-app-session".into()],
        ..TopApp::new("87654321", "other-secret")
    });
    let sim = Sim::start(config).await.unwrap();
    let sessions = sim.top_sessions();
    assert_eq!(sessions.len(), 3);
    assert_eq!(sessions[0].session, "sim-session");
    assert_eq!(sessions[0].seller, "sim-seller");
    assert_eq!(sessions[0].seller_id, coupon_sim::DEFAULT_SELLER_ID);
    assert_eq!(sessions[0].expires_at, None);
    assert!(sessions.iter().all(|s| s.state == SessionState::Active));

    assert!(sim.expire_top_session("sim-session"));
    assert!(!sim.expire_top_session("no-such-session"));
    let answer = Req::sns("张三").send(&sim).await;
    assert_code(&answer, 27);
    assert_eq!(error(&answer)["msg"], "Invalid session");
    assert_eq!(error(&answer)["sub_code"], "invalid-sessionkey");
    let detail = sim.calls()[0].detail.clone().unwrap();
    assert!(detail.contains("expired"), "{detail}");
    // The other seller is untouched.
    let answer = Req::sns("张三")
        .set("coupon_id", "48560")
        .set("session", "sim-session-2")
        .send(&sim)
        .await;
    assert!(is_sent(&answer), "{answer}");

    assert!(sim.revoke_top_session("sim-session-2"));
    let answer = Req::sns("李四")
        .set("coupon_id", "48560")
        .set("session", "sim-session-2")
        .send(&sim)
        .await;
    assert_code(&answer, 27);
    // A session of another app key is invalid for this one.
    let answer = Req::sns("张三")
        .set("session", "other-app-session")
        .send(&sim)
        .await;
    assert_code(&answer, 27);
    assert_code(&Req::sns("张三").remove("session").send(&sim).await, 26);

    let states: Vec<_> = sim.top_sessions().into_iter().map(|s| s.state).collect();
    assert_eq!(
        states,
        // Seeded in order: the apps' sessions, then the sellers'.
        [
            SessionState::Expired,
            SessionState::Active,
            SessionState::Revoked
        ]
    );
    assert_eq!(sim.ledger().len(), 1);
}

#[tokio::test]
async fn a_code_exchanged_at_the_token_endpoint_is_a_session_of_its_seller() {
    let sim = demo().await;
    let code = sim.mint_top_code("12345678", SECOND, None).unwrap();
    let (status, answer) = exchange(&sim, &code, "urn:ietf:wg:oauth:2.0:oob").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 86_400);
    assert_eq!(answer["re_expires_in"], 2_592_000);
    for field in [
        "r1_expires_in",
        "r2_expires_in",
        "w1_expires_in",
        "w2_expires_in",
    ] {
        assert_eq!(answer[field], 86_400, "{field}");
    }
    assert_eq!(answer["taobao_user_id"], "2200000000002");
    assert_eq!(answer["taobao_user_nick"], SECOND);
    assert_eq!(answer["sub_taobao_user_id"], "");
    assert_eq!(answer["sub_taobao_user_nick"], "");
    let session = answer["access_token"].as_str().unwrap();
    assert!(
        answer["refresh_token"]
            .as_str()
            .is_some_and(|t| t != session)
    );

    // It acts for the second seller: its coupon goes, the default seller's does not.
    let answer = Req::sns("张三")
        .set("coupon_id", "48560")
        .set("session", session)
        .send(&sim)
        .await;
    assert!(is_sent(&answer), "{answer}");
    let answer = Req::sns("张三").set("session", session).send(&sim).await;
    assert_eq!(error(&answer)["sub_code"], "isv.coupon-error");

    // A code is good once.
    let (status, again) = exchange(&sim, &code, "urn:ietf:wg:oauth:2.0:oob").await;
    assert_eq!(oauth_error(status, &again), "invalid_grant");
    assert_eq!(again["error_description"], "authorize code expire");

    let listed = sim.top_sessions();
    let minted = listed.iter().find(|s| s.session == session).unwrap();
    assert_eq!(minted.seller, SECOND);
    assert_eq!(minted.app_key, "12345678");
    assert_eq!(minted.state, SessionState::Active);
    assert!(minted.expires_at.is_some() && minted.refresh_expires_at.is_some());

    // The call log shows no credential of the exchange.
    let exchange_call = sim
        .calls()
        .into_iter()
        .find(|c| c.api == "oauth_token")
        .unwrap();
    assert!(exchange_call.ok);
    assert_eq!(exchange_call.seller.as_deref(), Some(SECOND));
    assert_eq!(exchange_call.params["client_secret"], "***");
    assert_eq!(exchange_call.params["code"], "***");
    assert_eq!(sim.token_fetches()["oauth_token"], 1);
}

#[tokio::test]
async fn the_token_endpoint_refuses_bad_requests_in_oauth_terms() {
    let sim = demo().await;
    let code = sim
        .mint_top_code("12345678", SECOND, Some("https://isv.example/cb"))
        .unwrap();
    let base = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", "12345678"),
        ("client_secret", "sim-app-secret"),
        ("redirect_uri", "https://isv.example/cb"),
    ];
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        base.iter()
            .map(|(k, v)| {
                let v = if *k == name { value } else { *v };
                ((*k).to_owned(), v.to_owned())
            })
            .filter(|(_, v)| !v.is_empty())
            .collect()
    };
    let cases = [
        (
            with("client_secret", "wrong"),
            "invalid_client",
            "client_secret is invalidate",
        ),
        (
            with("client_id", "87654321"),
            "invalid_client",
            "client_id is invalidate",
        ),
        (
            with("redirect_uri", "https://isv.example/other"),
            "invalid_client",
            "redirect_uri is invalidate",
        ),
        (
            with("redirect_uri", ""),
            "invalid_client",
            "redirect_uri is invalidate",
        ),
        (
            with("code", "not-a-code"),
            "invalid_grant",
            "authorize code expire",
        ),
        (with("code", ""), "invalid_request", "code is missing"),
        (
            with("grant_type", "password"),
            "unsupported_grant_type",
            "grant_type is invalidate",
        ),
        (
            with("grant_type", ""),
            "invalid_request",
            "grant_type is missing",
        ),
    ];
    for (form, error, description) in cases {
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, answer) = token(&sim, &pairs).await;
        assert_eq!(oauth_error(status, &answer), error, "{form:?}");
        assert_eq!(answer["error_description"], description, "{form:?}");
    }
    // None of those used the code up.
    let pairs: Vec<(&str, &str)> = base.to_vec();
    let (status, answer) = token(&sim, &pairs).await;
    assert_eq!(status, 200, "{answer}");
    // A code of one seller is not another's: it was minted for the second seller.
    assert_eq!(answer["taobao_user_nick"], SECOND);

    assert!(sim.mint_top_code("12345678", "nobody", None).is_err());
    assert!(sim.mint_top_code("87654321", SECOND, None).is_err());
    let errors = sim.error_counts();
    assert_eq!(errors["invalid_client"], 4);
    assert_eq!(errors["invalid_grant"], 1);
    assert_eq!(sim.token_fetches()["oauth_token"], 1);
}

#[tokio::test]
async fn a_refresh_replaces_the_session_and_its_refresh_token() {
    let sim = demo().await;
    let (old, old_refresh) = authorize(&sim, SECOND).await;
    let (status, answer) = refresh(&sim, &old_refresh).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["taobao_user_nick"], SECOND);
    let new = answer["access_token"].as_str().unwrap().to_owned();
    let new_refresh = answer["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_ne!(new_refresh, old_refresh);

    let send = |session: &str, nick: &str| {
        Req::sns(nick)
            .set("coupon_id", "48560")
            .set("session", session)
    };
    assert_code(&send(&old, "张三").send(&sim).await, 27);
    assert!(is_sent(&send(&new, "张三").send(&sim).await));
    // The old refresh token is used up.
    let (status, answer) = refresh(&sim, &old_refresh).await;
    assert_eq!(oauth_error(status, &answer), "invalid_grant");

    // An expired session can still be refreshed; a revoked one cannot.
    assert!(sim.expire_top_session(&new));
    assert_code(&send(&new, "李四").send(&sim).await, 27);
    let (status, answer) = refresh(&sim, &new_refresh).await;
    assert_eq!(status, 200, "{answer}");
    let newest = answer["access_token"].as_str().unwrap().to_owned();
    let newest_refresh = answer["refresh_token"].as_str().unwrap().to_owned();
    assert!(is_sent(&send(&newest, "李四").send(&sim).await));
    assert!(sim.revoke_top_session(&newest));
    let (status, answer) = refresh(&sim, &newest_refresh).await;
    assert_eq!(oauth_error(status, &answer), "invalid_grant");

    let states: Vec<_> = sim
        .top_sessions()
        .into_iter()
        .filter(|s| s.seller == SECOND)
        .map(|s| (s.state, s.refresh_expires_at.is_some()))
        .collect();
    assert_eq!(
        states,
        [
            (SessionState::Active, false), // sim-session-2, seeded
            (SessionState::Revoked, false),
            (SessionState::Revoked, false),
            (SessionState::Revoked, false),
        ]
    );
}

#[tokio::test]
async fn an_app_that_cannot_refresh_says_re_expires_in_0_and_is_refused() {
    let mut config = SimConfig::demo();
    config.top_apps[0].refresh_ttl_secs = 0;
    config.top_apps[0].session_ttl_secs = 3600;
    let sim = Sim::start(config).await.unwrap();
    let code = sim.mint_top_code("12345678", SECOND, None).unwrap();
    let (status, answer) = exchange(&sim, &code, "urn:ietf:wg:oauth:2.0:oob").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["re_expires_in"], 0);
    assert_eq!(answer["expires_in"], 3600);
    let (status, refused) = refresh(&sim, answer["refresh_token"].as_str().unwrap()).await;
    assert_eq!(oauth_error(status, &refused), "invalid_grant");
    let detail = sim.calls().last().unwrap().detail.clone().unwrap();
    assert!(detail.contains("cannot refresh"), "{detail}");
}

#[tokio::test]
async fn sessions_expire_by_the_simulator_s_clock() {
    let mut config = SimConfig::demo();
    config.top_apps[0].session_ttl_secs = 3600;
    config.top_sellers[0].sessions.push(TopSellerSession {
        app_key: "12345678".into(),
        session: "short-lived".into(),
        ttl_secs: Some(60),
    });
    let sim = Sim::start(config).await.unwrap();
    let (minted, _) = authorize(&sim, SECOND).await;
    let send = |session: &str, nick: &str, skew: i64| {
        Req::sns(nick)
            .set("coupon_id", "48560")
            .set("session", session)
            .set("timestamp", &gmt8_at(skew))
    };
    assert!(is_sent(&send("short-lived", "a", 0).send(&sim).await));
    // Ninety seconds on, the seeded 60-second session is over; the minted one is not.
    sim.set_clock_skew(90);
    assert_code(&send("short-lived", "b", 90).send(&sim).await, 27);
    assert!(is_sent(&send(&minted, "c", 90).send(&sim).await));
    // An hour on, the minted one is over too; the seed's own sessions never expire.
    sim.set_clock_skew(3600);
    assert_code(&send(&minted, "d", 3600).send(&sim).await, 27);
    assert!(is_sent(&send("sim-session-2", "e", 3600).send(&sim).await));
}

#[tokio::test]
async fn the_admin_routes_mint_list_expire_and_revoke() {
    let sim = demo().await;
    let mint = |seller: &str| json!({ "app_key": "12345678", "seller": seller });
    let response = admin_post(&sim, "/_sim/top/code", &mint(SECOND)).await;
    let minted: Value = response.json().await.unwrap();
    let code = minted["code"].as_str().unwrap();
    let (status, answer) = exchange(&sim, code, "urn:ietf:wg:oauth:2.0:oob").await;
    assert_eq!(status, 200, "{answer}");
    let session = answer["access_token"].as_str().unwrap();
    let response = admin_post(&sim, "/_sim/top/code", &mint("nobody")).await;
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("nobody"));

    let listed = admin_get(&sim, "/_sim/top/sessions").await;
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
    assert_eq!(listed[2]["session"], session);
    assert_eq!(listed[2]["seller"], SECOND);
    assert_eq!(listed[2]["state"], "active");

    for (route, state) in [("expire_session", "expired"), ("revoke_session", "revoked")] {
        let path = format!("/_sim/top/{route}");
        let response = admin_post(&sim, &path, &json!({ "session": session })).await;
        assert_eq!(response.status(), 200, "{route}");
        let expected: SessionState = serde_json::from_value(json!(state)).unwrap();
        assert_eq!(sim.top_sessions()[2].state, expected);
        let response = admin_post(&sim, &path, &json!({ "session": "no-such-session" })).await;
        assert_eq!(response.status(), 404, "{route}");
    }

    let stats = admin_get(&sim, "/_sim/stats").await;
    assert_eq!(stats["token_fetches"]["oauth_token"], 1, "{stats}");
    assert_eq!(stats["answers"]["oauth_token"]["ok"], 1, "{stats}");
}

#[tokio::test]
async fn a_seed_with_bad_sellers_does_not_start() {
    let mut config = SimConfig::demo();
    config.taobao.coupons.push(TaobaoCoupon {
        coupon_id: 1,
        seller: Some("nobody".into()),
        ..config.taobao.coupons[0].clone()
    });
    let error = Sim::start(config).await.unwrap_err();
    assert!(error.to_string().contains("nobody"), "{error}");

    let mut config = SimConfig::demo();
    config.top_sellers.push(TopSeller {
        nick: "third".into(),
        user_id: 3,
        sessions: vec![TopSellerSession {
            app_key: "12345678".into(),
            session: "sim-session".into(),
            ttl_secs: None,
        }],
    });
    let error = Sim::start(config).await.unwrap_err().to_string();
    assert!(error.contains("listed twice"), "{error}");
    assert!(
        !error.contains("sim-session"),
        "the seed's credential is not shown: {error}"
    );

    let mut config = SimConfig::demo();
    config.top_sellers[0].sessions[0].app_key = "87654321".into();
    let error = Sim::start(config).await.unwrap_err();
    assert!(error.to_string().contains("87654321"), "{error}");

    let mut config = SimConfig::demo();
    config.top_sellers[0].user_id = coupon_sim::DEFAULT_SELLER_ID;
    let error = Sim::start(config).await.unwrap_err();
    assert!(error.to_string().contains("user_id"), "{error}");
}

/// The test signer agrees with the simulator about a session minted over OAuth: it is signed
/// like any other parameter.
#[tokio::test]
async fn a_minted_session_is_signed_like_any_parameter() {
    let sim = demo().await;
    let (session, _) = authorize(&sim, SECOND).await;
    let mut req = Req::new(BUYER_GET)
        .set("buyer_nick", "张三")
        .set("session", &session)
        .unsigned();
    // Signed without the session: the gateway computes over what it received, session included.
    let mut without = req.params.clone();
    without.remove("session");
    req = req.set("sign", &sign(&without, "sim-app-secret", "md5"));
    assert_code(&req.send(&sim).await, 25);
}
