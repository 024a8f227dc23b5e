//! `Host::reload`: calls in flight finish on the version they started with, new calls use the
//! new one, and a new version that fails to load leaves the old one serving.

use std::time::Duration;

use coupon_host::{Config, Error, Recipient, SendRequest};
use coupon_sim::{Fault, SimConfig};

use crate::support::{Options, TestEnv};

/// The env's config with plugin `taobao` running the Tmall adapter instead.
fn swapped(env: &TestEnv) -> String {
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let tmall_settings = text
        .lines()
        .find(|l| l.starts_with("settings = ") && l.contains("biz_code"))
        .unwrap()
        .to_owned();
    let taobao_settings = text
        .lines()
        .find(|l| l.starts_with("settings = "))
        .unwrap()
        .to_owned();
    text.replacen(
        &format!("{:?}", coupon_host_tests::TAOBAO),
        &format!("{:?}", coupon_host_tests::TMALL_NRT),
        1,
    )
    .replacen(&taobao_settings, &tmall_settings, 1)
}

fn config_from(env: &TestEnv, text: &str) -> Result<Config, coupon_host::ConfigError> {
    let path = env.dir.path().join("next.toml");
    std::fs::write(&path, text).unwrap();
    let lookup = |name: &str| {
        env.secrets
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    Config::load_with_env(&path, &lookup)
}

fn sha_of(host: &coupon_host::Host, plugin: &str) -> String {
    host.plugins()
        .into_iter()
        .find(|p| p.name == plugin)
        .map(|p| p.sha256)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_calls_finish_on_the_old_version_and_new_calls_use_the_new() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let old_sha = sha_of(&host, "taobao");
    // A Taobao send that takes a while at the platform.
    env.sim.inject(Fault::Delay {
        api: Some("taobao.promotion.coupon.sns.send".into()),
        millis: 1_000,
        apply: true,
        times: 1,
    });
    let in_flight = {
        let host = host.clone();
        tokio::spawn(async move {
            host.send(
                "taobao",
                SendRequest::new("48552", vec![Recipient::OpenId("before".into())]),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = host
        .reload(config_from(&env, &swapped(&env)).unwrap())
        .await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(report.loaded.contains(&"taobao".to_owned()));
    assert_ne!(sha_of(&host, "taobao"), old_sha);

    // The new version serves new calls: plugin `taobao` now speaks Tmall.
    let after = host
        .send(
            "taobao",
            SendRequest::new("nrt-demo-uuid", vec![Recipient::OpenId("after".into())]),
        )
        .await
        .unwrap();
    assert_eq!(after.issued.len(), 1, "{after:?}");
    let before = in_flight.await.unwrap().unwrap();
    assert_eq!(before.issued.len(), 1, "{before:?}");

    let by_recipient: Vec<(String, String)> = env
        .sim
        .ledger()
        .into_iter()
        .map(|i| (i.recipient, i.platform))
        .collect();
    assert!(
        by_recipient.contains(&("before".into(), "taobao".into())),
        "{by_recipient:?}"
    );
    assert!(
        by_recipient.contains(&("after".into(), "tmall-nrt".into())),
        "{by_recipient:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_fails_to_load_leaves_the_old_one_serving() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let old_sha = sha_of(&host, "taobao");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let tampered = text.replacen(
        "[plugins.taobao]\n",
        &format!("[plugins.taobao]\nsha256 = \"{}\"\n", "0".repeat(64)),
        1,
    );
    let junk = env.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not a component").unwrap();
    let broken = text.replacen(
        &format!("{:?}", coupon_host_tests::TAOBAO),
        &format!("{:?}", junk.display().to_string()),
        1,
    );
    for (round, next) in [tampered, broken].into_iter().enumerate() {
        let report = host.reload(config_from(&env, &next).unwrap()).await;
        assert_eq!(report.failed.len(), 1, "{report:?}");
        assert_eq!(report.failed[0].0, "taobao");
        assert_eq!(sha_of(&host, "taobao"), old_sha);
        let outcome = host
            .send(
                "taobao",
                SendRequest::new("48552", vec![Recipient::Nick(format!("still-{round}"))]),
            )
            .await
            .unwrap();
        assert_eq!(outcome.issued.len(), 1, "{outcome:?}");
    }

    // A config that does not parse changes nothing.
    std::fs::write(env.dir.path().join("broken.toml"), "[plugins.taobao\n").unwrap();
    let error = host
        .reload_from_file(&env.dir.path().join("broken.toml"))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error}");
    assert_eq!(host.plugins().len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_removed_by_reload_is_unknown_afterwards() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let start = text.find("[plugins.alsc]").unwrap();
    let end = start + text[start..].find("\n[plugins.douyin]").unwrap();
    let without = format!("{}{}", &text[..start], &text[end..]);
    let report = host.reload(config_from(&env, &without).unwrap()).await;
    assert_eq!(report.removed, ["alsc"]);
    let error = host
        .send(
            "alsc",
            SendRequest::new("3243421", vec![Recipient::CustomerId("c".into())]),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::UnknownPlugin(_)), "{error}");
}
