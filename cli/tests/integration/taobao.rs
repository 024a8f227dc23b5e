//! The Taobao adapter end to end through the library API.

use coupon_host::{Error, ErrorClass, Host, QueryRequest, Recipient, SendRequest};
use coupon_sim::SimConfig;

use crate::support::{Options, TestEnv, nicks};

fn sim_with_unknown(unknown: &[&str]) -> SimConfig {
    let mut config = SimConfig::demo();
    config.taobao.unknown_buyers = unknown.iter().map(|s| s.to_string()).collect();
    config
}

fn to_nicks(names: &[String]) -> Vec<Recipient> {
    names.iter().map(|n| Recipient::Nick(n.clone())).collect()
}

fn sns_calls(env: &TestEnv) -> Vec<coupon_sim::CallRecord> {
    env.sim
        .calls()
        .into_iter()
        .filter(|c| c.api == "taobao.promotion.coupon.sns.send")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_48552_to_150_recipients_in_two_platform_calls() {
    let mut names = nicks(150);
    names[7] = "不存在的买家A".into();
    names[120] = "不存在的买家B".into();
    let env = TestEnv::start(
        sim_with_unknown(&["不存在的买家A", "不存在的买家B"]),
        Options::default(),
    )
    .await;
    let host = env.host().await;

    let outcome = host
        .send("taobao", SendRequest::new("48552", to_nicks(&names)))
        .await
        .unwrap();

    assert_eq!(outcome.issued.len(), 148);
    assert_eq!(outcome.failed.len(), 2);
    for failure in &outcome.failed {
        assert_eq!(failure.error.class, ErrorClass::RecipientInvalid);
        assert!(failure.error.message.contains("买家不存在"), "{failure:?}");
    }
    let failed: Vec<_> = outcome
        .failed
        .iter()
        .map(|f| f.recipient.to_string())
        .collect();
    assert_eq!(failed, ["nick:不存在的买家A", "nick:不存在的买家B"]);
    // One outcome per recipient, and the issued ones carry the platform's coupon number.
    let mut all: Vec<_> = outcome
        .issued
        .iter()
        .map(|i| i.recipient.clone())
        .chain(outcome.failed.iter().map(|f| f.recipient.clone()))
        .collect();
    all.sort();
    let mut expected = to_nicks(&names);
    expected.sort();
    assert_eq!(all, expected);
    assert!(outcome.issued.iter().all(|i| i.coupon_id.is_some()));

    let calls = sns_calls(&env);
    assert_eq!(calls.len(), 2, "150 nicks take two calls of at most 100");
    assert!(calls.iter().all(|c| c.ok));
    assert_eq!(env.sim.ledger().len(), 148);
    assert_eq!(outcome.platform_request_ids.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_sign_method_is_accepted_by_the_gateway() {
    for sign_method in ["md5", "hmac", "hmac-sha256"] {
        let env = TestEnv::start(
            SimConfig::demo(),
            Options {
                sign_method,
                ..Options::default()
            },
        )
        .await;
        let host = env.host().await;
        let outcome = host
            .send("taobao", SendRequest::new("48552", to_nicks(&nicks(3))))
            .await
            .unwrap_or_else(|e| panic!("{sign_method}: {e}"));
        assert_eq!(outcome.issued.len(), 3, "{sign_method}");
        assert_eq!(sns_calls(&env)[0].sign_method, sign_method);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_app_secret_is_unauthorized() {
    let env = TestEnv::start(
        SimConfig::demo(),
        Options {
            app_secret: "not-the-real-secret",
            ..Options::default()
        },
    )
    .await;
    let host = env.host().await;
    let error = host
        .send("taobao", SendRequest::new("48552", to_nicks(&nicks(2))))
        .await
        .unwrap_err();
    let Error::Adapter { error, .. } = &error else {
        panic!("expected an adapter error, got {error}");
    };
    assert_eq!(error.class, ErrorClass::Unauthorized);
    assert_eq!(error.code, "25");
    assert!(env.sim.ledger().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_clock_is_rejected_like_the_real_gateway() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    // The gateway allows ten minutes of skew; eleven is too many.
    env.sim.set_clock_skew(11 * 60);
    let error = host
        .send("taobao", SendRequest::new("48552", to_nicks(&nicks(1))))
        .await
        .unwrap_err();
    let Error::Adapter { error, .. } = &error else {
        panic!("expected an adapter error, got {error}");
    };
    assert!(error.message.contains("TOP code 31"), "{error}");
    assert_eq!(error.class, ErrorClass::InvalidRequest);
    // Nine minutes is inside the window.
    env.sim.set_clock_skew(-9 * 60);
    host.send("taobao", SendRequest::new("48552", to_nicks(&nicks(1))))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_coupon_is_coupon_unavailable() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let error = host
        .send("taobao", SendRequest::new("99999999", to_nicks(&nicks(1))))
        .await
        .unwrap_err();
    let Error::Adapter { error, .. } = &error else {
        panic!("expected an adapter error, got {error}");
    };
    assert_eq!(error.class, ErrorClass::CouponUnavailable, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn query_returns_what_was_sent_in_fen_and_unix_seconds() {
    for simplify in ["false", "true"] {
        let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
        let host = env.host().await;
        let buyer = Recipient::Nick("张三".into());
        let mut request = SendRequest::new("48552", vec![buyer.clone()]);
        request.options = vec![("simplify".into(), simplify.into())];
        host.send("taobao", request).await.unwrap();

        let coupons = host
            .query(
                "taobao",
                QueryRequest {
                    recipient: buyer,
                    options: vec![("simplify".into(), simplify.into())],
                    account: None,
                },
            )
            .await
            .unwrap();
        let sent = coupons
            .iter()
            .find(|c| c.template_id.as_deref() == Some("48552"))
            .unwrap_or_else(|| panic!("coupon 48552 not listed: {coupons:?}"));
        assert_eq!(
            sent.state,
            coupon_host::CouponState::Held,
            "simplify={simplify}"
        );
        // The demo seed's 48552 is 10 yuan off 100 yuan, from 2026-01-01 00:00:00 GMT+8.
        assert_eq!(sent.amount_fen, Some(1000));
        assert_eq!(sent.threshold_fen, Some(10000));
        let from = sent.valid_from.expect("valid_from");
        assert_eq!(from % 3600, 16 * 3600 % 3600);
        assert!(
            coupons
                .iter()
                .filter(|c| c.template_id.as_deref() != Some("48552"))
                .all(|c| c.state == coupon_host::CouponState::Claimable)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_is_listed_with_the_component_digest() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let plugins = host.plugins();
    let taobao = plugins.iter().find(|p| p.name == "taobao").unwrap();
    assert_eq!(taobao.describe.platform, "taobao");
    assert!(!taobao.describe.idempotent_send);
    assert_eq!(taobao.describe.max_recipients_per_call, 100);
    assert_eq!(taobao.sha256.len(), 64);
    assert_eq!(taobao.contract, "coupon:adapter/adapter@0.2.0");
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_recipient_kinds_and_empty_sends_are_refused_before_any_call() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let error = host
        .send(
            "taobao",
            SendRequest::new("48552", vec![Recipient::CustomerId("5757".into())]),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest(_)), "{error}");
    let error = host
        .send("taobao", SendRequest::new("48552", vec![]))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidRequest(_)), "{error}");
    let error = host
        .send("nope", SendRequest::new("48552", to_nicks(&nicks(1))))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::UnknownPlugin(_)), "{error}");
    assert!(env.sim.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_does_not_match_its_pin_is_refused() {
    let bytes = std::fs::read(coupon_host_tests::TAOBAO).unwrap();
    let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let wrong = "0".repeat(64);

    let pinned = |pin: &str| Options {
        extra_plugin_toml: format!("sha256 = \"{pin}\""),
        ..Options::default()
    };
    let env = TestEnv::start(SimConfig::demo(), pinned(&wrong)).await;
    let error = match Host::new(env.config().unwrap()).await {
        Ok(_) => panic!("a component that does not match its pin was loaded"),
        Err(error) => error,
    };
    assert!(matches!(error, Error::Integrity { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("plugin \"taobao\""), "{message}");
    // Named where the pin is written, like every other config error.
    let line = env.config_line(&wrong);
    assert!(
        message.starts_with(&format!(
            "{}:{line}: plugins.taobao.sha256: ",
            env.config_path.display()
        )),
        "{message}"
    );
    assert!(
        message.contains(&wrong) && message.contains(&actual),
        "{message}"
    );

    let env = TestEnv::start(SimConfig::demo(), pinned(&actual.to_uppercase())).await;
    let host = env.host().await;
    let taobao = host
        .plugins()
        .into_iter()
        .find(|p| p.name == "taobao")
        .unwrap();
    assert_eq!(taobao.sha256, actual);
}
