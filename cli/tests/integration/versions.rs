//! Contract versions: an adapter built against `wit/adapter@0.1.0` keeps loading and serving
//! beside 0.2.0 ones, for every account; a 0.2.0 adapter's declarations (auth scheme, platform
//! limits) hold the plugin's config to them. The whole conformance kit also runs over the 0.1.0
//! build (`conformance::TAOBAO_V0_1`).

use coupon_host::{Host, Recipient, SendRequest};
use coupon_sim::SimConfig;

use crate::support::{APP_SECRET_ENV, DOUYIN_SECRET_ENV, Options, TestEnv};

const MASTER_KEY_ENV: &str = "COUPON_TEST_MASTER_KEY";
const MASTER_KEY: &str = "5a1f9c3a0d2e4f5061728394a5b6c7d8e9f00112233445566778899aabbccdd0";

/// A 0.1.0 adapter sends with the host's credentials like a 0.2.0 one: for the configured
/// merchant and for an account authorized later, which the adapter never learns of (0.1.0 sends
/// carry no account), and whose session the host signs with.
#[tokio::test(flavor = "multi_thread")]
async fn a_contract_0_1_adapter_serves_every_account_beside_0_2_ones() {
    let options = Options {
        taobao_v0_1: true,
        extra_toml: format!("[accounts]\nmaster_key_env = \"{MASTER_KEY_ENV}\"\n"),
        ..Options::default()
    };
    let mut env = TestEnv::start(SimConfig::demo(), options).await;
    env.secrets
        .push((MASTER_KEY_ENV.to_owned(), MASTER_KEY.to_owned()));

    let listed = env.cli(&["plugins", "--json"]).await.json();
    let contract = |name: &str| {
        listed["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["contract"].clone())
    };
    let v0_1 = Some("coupon:adapter/adapter@0.1.0".into());
    let v0_2 = Some("coupon:adapter/adapter@0.2.0".into());
    assert_eq!(contract("taobao-v0-1"), v0_1, "{listed}");
    assert_eq!(contract("taobao"), v0_2, "{listed}");
    assert_eq!(contract("douyin"), v0_2, "{listed}");

    let code = env
        .sim
        .mint_top_code("12345678", "sim-seller-2", None)
        .unwrap();
    let authorized = env
        .cli(&[
            "accounts",
            "authorize",
            "taobao-v0-1",
            "shop-b",
            "--code",
            &code,
            "--json",
        ])
        .await;
    assert!(authorized.status.success(), "{}", authorized.stderr);

    let host = env.host().await;
    for (account, coupon) in [("default", "48552"), ("shop-b", "48560")] {
        let request = SendRequest {
            account: Some(account.to_owned()),
            ..SendRequest::new(coupon, vec![Recipient::Nick(format!("旧-{account}"))])
        };
        let outcome = host.send("taobao-v0-1", request).await.unwrap();
        assert_eq!(outcome.issued.len(), 1, "{account}: {outcome:?}");
    }
    // Seller 2's coupon went out under seller 2's session: the default session cannot send it.
    let request = SendRequest {
        account: Some("default".to_owned()),
        ..SendRequest::new("48560", vec![Recipient::Nick("旧-x".into())])
    };
    let outcome = host.send("taobao-v0-1", request).await;
    assert!(
        outcome.as_ref().map_or(true, |o| o.issued.is_empty()),
        "{outcome:?}"
    );
    let ledger = env.sim.ledger();
    let got = |coupon: &str, who: &str| {
        ledger
            .iter()
            .filter(|i| i.coupon == coupon && i.recipient == who)
            .count()
    };
    assert_eq!(got("48552", "旧-default"), 1);
    assert_eq!(got("48560", "旧-shop-b"), 1);
    assert_eq!(got("48560", "旧-x"), 0);
}

/// Appends a plugin running the Rust Douyin adapter with `auth` (a TOML line, or none) and
/// `limits`.
fn add_douyin_plugin(env: &TestEnv, name: &str, auth: &str, limits: &str) {
    let mut text = std::fs::read_to_string(&env.config_path).unwrap();
    text.push_str(&format!(
        r#"
[plugins.{name}]
component = {component:?}
allowed_hosts = [{origin:?}]
{auth}
limits = {limits}
settings = {{ base_url = "{origin}", app_id = "tt-demo-app" }}
"#,
        component = coupon_host_tests::DOUYIN,
        origin = env.sim.base_url(),
    ));
    std::fs::write(&env.config_path, text).unwrap();
}

async fn load_error(env: &TestEnv) -> String {
    match Host::new(env.config().expect("config loads")).await {
        Ok(_) => panic!("the host started"),
        Err(error) => error.to_string(),
    }
}

/// The Douyin adapter declares the `douyin` scheme: configured with TOP signing, or none, the
/// plugin is refused at load with both names, instead of sending unauthenticated calls.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_configured_with_another_auth_scheme_is_refused_at_load() {
    let top = format!(
        r#"auth = {{ scheme = "top", app_key = "12345678", app_secret_env = "{APP_SECRET_ENV}" }}"#
    );
    for (auth, says) in [(top.as_str(), r#"says "top""#), ("", "is not set")] {
        let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
        add_douyin_plugin(&env, "mislabeled", auth, "{ http_timeout_ms = 2000 }");
        let error = load_error(&env).await;
        assert!(error.contains("mislabeled"), "{error}");
        assert!(
            error.contains(r#"expects auth scheme "douyin""#) && error.contains(says),
            "{error}"
        );
    }
}

/// Douyin documents 100 requests a second per app: a higher `limits.qps` is refused at load,
/// and without one the host paces the plugin to 100, so a burst of 260 single-recipient calls
/// meets no "too frequent" from the simulator (which enforces the documented limit). Without the
/// default the host would send them as fast as it could.
#[tokio::test(flavor = "multi_thread")]
async fn the_declared_qps_is_the_default_and_the_ceiling() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let auth = format!(
        r#"auth = {{ scheme = "douyin", client_key = "tt-demo-key", client_secret_env = "{DOUYIN_SECRET_ENV}" }}"#
    );
    add_douyin_plugin(&env, "greedy", &auth, "{ qps = 500 }");
    let error = load_error(&env).await;
    // A config problem, named at its file and line like any other: not a component that failed.
    let line = env.config_line("qps = 500");
    assert!(
        error.starts_with(&format!(
            "{}:{line}: plugins.greedy.limits.qps: 500 is above the 100",
            env.config_path.display()
        )),
        "{error}"
    );
    assert!(!error.contains("cannot load component"), "{error}");

    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let to: Vec<_> = (0..260)
        .map(|i| Recipient::OpenId(format!("open-{i}")))
        .collect();
    let mut sends = tokio::task::JoinSet::new();
    for chunk in to.chunks(20) {
        let (host, chunk) = (host.clone(), chunk.to_vec());
        sends.spawn(async move {
            let request = SendRequest::new("7218070000005644204", chunk);
            host.send("douyin", request).await
        });
    }
    let mut issued = 0;
    for outcome in sends.join_all().await {
        issued += outcome.unwrap().issued.len();
    }
    assert_eq!(issued, 260);
    assert_eq!(env.sim.too_frequent(), 0, "the host kept to 100 a second");
}
