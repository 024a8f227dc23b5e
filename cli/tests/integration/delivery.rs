//! Delivery guarantees through the library API: the idempotency journal, retries by class, the
//! rate limiter, and faults injected by the simulator. Every test that sends ends by checking the
//! simulator's ledger against what the host says was issued.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use coupon_host::{Error, ErrorClass, Host, SendOutcome, SendRequest};
use coupon_sim::{Fault, SimConfig};

use crate::conformance::{ALSC, DOUYIN, Platform, TAOBAO, TMALL_NRT};
use crate::support::{Options, TestEnv};

const ALL: [&Platform; 4] = [&TAOBAO, &TMALL_NRT, &ALSC, &DOUYIN];

/// The simulator's platform name for a plugin.
fn sim_platform(platform: &Platform) -> &'static str {
    platform.plugin
}

/// Checks the ledger against outcomes (see [`TestEnv::assert_ledger`]).
pub fn assert_ledger_matches(env: &TestEnv, platform: &Platform, outcomes: &[&SendOutcome]) {
    let issued: BTreeSet<String> = outcomes
        .iter()
        .flat_map(|o| o.issued.iter().map(|i| i.recipient.id().to_owned()))
        .collect();
    let unknown: BTreeSet<String> = outcomes
        .iter()
        .flat_map(|o| o.failed.iter())
        .filter(|f| f.error.class == ErrorClass::Unknown)
        .map(|f| f.recipient.id().to_owned())
        .collect();
    env.assert_ledger(sim_platform(platform), &issued, &unknown);
}

async fn env() -> TestEnv {
    TestEnv::start(SimConfig::demo(), Options::default()).await
}

fn one(platform: &Platform, name: &str) -> SendRequest {
    SendRequest::new(
        platform.coupon,
        vec![(platform.recipient)(format!("{}-{name}", platform.plugin))],
    )
}

fn send_calls(env: &TestEnv, platform: &Platform) -> usize {
    env.sim
        .calls()
        .iter()
        .filter(|c| c.api == platform.send_api)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_faults_are_retried_until_issued() {
    for platform in ALL {
        let env = env().await;
        let host = env.host().await;
        let api = Some(platform.send_api.to_owned());
        env.sim.inject(Fault::Status {
            api: api.clone(),
            status: 502,
            times: 1,
        });
        env.sim.inject(Fault::ResetConnection {
            api: api.clone(),
            times: 1,
        });
        env.sim.inject(Fault::Body {
            api: api.clone(),
            body: "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>".into(),
            times: 1,
        });
        let outcome = host.send(platform.plugin, one(platform, "flaky")).await;
        let outcome = outcome.unwrap_or_else(|e| panic!("{}: {e}", platform.plugin));
        assert_eq!(outcome.issued.len(), 1, "{}: {outcome:?}", platform.plugin);
        assert_eq!(send_calls(&env, platform), 4, "{}", platform.plugin);
        assert_ledger_matches(&env, platform, &[&outcome]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_after_the_platform_applied_never_issues_twice() {
    for platform in ALL {
        let env = env().await;
        let host = env.host().await;
        env.sim.inject(Fault::Delay {
            api: Some(platform.send_api.to_owned()),
            millis: 3_000,
            apply: true,
            times: 1,
        });
        let outcome = host
            .send(platform.plugin, one(platform, "slow"))
            .await
            .unwrap();
        // Idempotent platforms get the same send again and answer it from their own record;
        // Taobao's send cannot be repeated, so the host asks query-coupons and finds the coupon.
        assert_eq!(outcome.issued.len(), 1, "{}: {outcome:?}", platform.plugin);
        assert_ledger_matches(&env, platform, &[&outcome]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_before_the_platform_applied_is_sent_again() {
    for platform in ALL {
        let env = env().await;
        let host = env.host().await;
        env.sim.inject(Fault::Delay {
            api: Some(platform.send_api.to_owned()),
            millis: 3_000,
            apply: false,
            times: 1,
        });
        let outcome = host
            .send(platform.plugin, one(platform, "lost"))
            .await
            .unwrap();
        assert_eq!(outcome.issued.len(), 1, "{}: {outcome:?}", platform.plugin);
        assert_ledger_matches(&env, platform, &[&outcome]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ambiguous_taobao_send_the_platform_cannot_confirm_stays_unknown() {
    let env = env().await;
    let host = env.host().await;
    env.sim.inject(Fault::Delay {
        api: Some(TAOBAO.send_api.to_owned()),
        millis: 3_000,
        apply: true,
        times: 1,
    });
    // The reconciling query keeps failing: nobody can tell, so nobody resends.
    env.sim.inject(Fault::Status {
        api: Some("taobao.qianniu.coupon.buyer.get".into()),
        status: 502,
        times: 100,
    });
    let outcome = host.send("taobao", one(&TAOBAO, "murky")).await.unwrap();
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    assert_eq!(outcome.failed[0].error.class, ErrorClass::Unknown);
    assert_eq!(send_calls(&env, &TAOBAO), 1, "an unknown send was repeated");
    assert_ledger_matches(&env, &TAOBAO, &[&outcome]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_ban_pauses_the_plugin_for_the_time_the_platform_names() {
    for platform in ALL {
        let env = env().await;
        let host = env.host().await;
        env.sim.inject(Fault::Body {
            api: Some(platform.send_api.to_owned()),
            body: platform.rate_limited_body.into(),
            times: 1,
        });
        let started = Instant::now();
        let outcome = host
            .send(platform.plugin, one(platform, "banned"))
            .await
            .unwrap();
        assert_eq!(outcome.issued.len(), 1, "{}: {outcome:?}", platform.plugin);
        // TOP said "ban will last 1 more seconds"; Douyin's 29005012 names no time, and the
        // adapter asks for its documented wait. Either way the retry came after it.
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{}: retried during the ban",
            platform.plugin
        );
        assert_ledger_matches(&env, platform, &[&outcome]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_key_returns_the_recorded_outcome_without_calling() {
    let env = env().await;
    let host = env.host().await;
    let mut request = one(&TAOBAO, "again");
    request.idempotency_key = Some("order-42".into());
    let first = host.send("taobao", request.clone()).await.unwrap();
    assert!(!first.replayed);
    let calls = env.sim.calls().len();
    // Another host on the same storage (another process, after a restart) replays it too.
    let other = env.host().await;
    let second = other.send("taobao", request.clone()).await.unwrap();
    assert!(second.replayed);
    assert_eq!(
        env.sim.calls().len(),
        calls,
        "the platform was called again"
    );
    assert_eq!(first.issued, second.issued);
    assert_eq!(second.idempotency_key, "order-42");

    // The same key for another request is refused, not replayed.
    request.coupon = "48553".into();
    let error = host.send("taobao", request).await.unwrap_err();
    assert!(
        matches!(&error, Error::InvalidRequest(m) if m.contains("order-42")),
        "{error}"
    );
    assert_ledger_matches(&env, &TAOBAO, &[&first]);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_sends_with_one_key_make_one_platform_call() {
    let env = env().await;
    let host = env.host().await;
    let mut request = one(&TAOBAO, "rush");
    request.idempotency_key = Some("double-click".into());
    let sends: Vec<_> = (0..8)
        .map(|_| {
            let host = host.clone();
            let request = request.clone();
            tokio::spawn(async move { host.send("taobao", request).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for send in sends {
        outcomes.push(send.await.unwrap().unwrap());
    }
    assert_eq!(send_calls(&env, &TAOBAO), 1);
    assert_eq!(outcomes.iter().filter(|o| !o.replayed).count(), 1);
    for outcome in &outcomes {
        assert_eq!(outcome.issued, outcomes[0].issued);
    }
    assert_ledger_matches(&env, &TAOBAO, &outcomes.iter().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_refused_as_a_whole_leaves_its_key_free() {
    let env = env().await;
    let host = env.host().await;
    env.sim.inject(Fault::TopError {
        api: Some(TAOBAO.send_api.to_owned()),
        code: 11,
        msg: "Insufficient isv permissions".into(),
        sub_code: Some("isv.permission-api-package-limit".into()),
        sub_msg: None,
        times: 1,
    });
    let mut request = one(&TAOBAO, "refused");
    request.idempotency_key = Some("fix-and-retry".into());
    let error = host.send("taobao", request.clone()).await.unwrap_err();
    assert!(matches!(error, Error::Adapter { .. }), "{error}");
    // Nothing happened on the platform, so the same key may try again, and this time it works.
    let outcome = host.send("taobao", request).await.unwrap();
    assert!(!outcome.replayed);
    assert_eq!(outcome.issued.len(), 1);
    assert_ledger_matches(&env, &TAOBAO, &[&outcome]);
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_stop_at_max_attempts_with_the_last_class() {
    let env = TestEnv::start(
        SimConfig::demo(),
        Options {
            retry: format!("{}, max_attempts = 3", crate::support::FAST_RETRY),
            ..Options::default()
        },
    )
    .await;
    let host = env.host().await;
    env.sim.inject(Fault::Status {
        api: Some(TMALL_NRT.send_api.to_owned()),
        status: 503,
        times: 10,
    });
    let outcome = host.send("tmall-nrt", one(&TMALL_NRT, "down")).await;
    let classes: Vec<_> = match &outcome {
        Ok(o) => o.failed.iter().map(|f| f.error.class).collect(),
        Err(Error::Adapter { error, .. }) => vec![error.class],
        Err(e) => panic!("{e}"),
    };
    assert_eq!(classes, [ErrorClass::Transient]);
    assert_eq!(send_calls(&env, &TMALL_NRT), 3);
    assert!(env.sim.ledger().is_empty());
}

/// Drives a plugin limited to `qps` as hard as it can and counts "too frequent" answers from a
/// simulator enforcing the same limit.
async fn too_frequent_answers(
    platform: &'static Platform,
    sim: SimConfig,
    qps: u32,
    sends: usize,
) -> usize {
    let env = TestEnv::start(
        sim,
        Options {
            extra_plugin_toml: String::new(),
            ..Options::default()
        },
    )
    .await;
    // Rewrite the plugin's limits: one limiter for every call of the process.
    let config = std::fs::read_to_string(&env.config_path).unwrap();
    let section = format!("[plugins.{}]", platform.plugin);
    let start = config.find(&section).unwrap();
    let limits = start + config[start..].find("limits = {").unwrap() + "limits = {".len();
    let config = format!(
        "{} qps = {qps}, burst = {qps},{}",
        &config[..limits],
        &config[limits..]
    );
    std::fs::write(&env.config_path, config).unwrap();
    let host: Host = env.host().await;
    let tasks: Vec<_> = (0..sends)
        .map(|i| {
            let host = host.clone();
            let request = one(platform, &format!("q{i}"));
            tokio::spawn(async move { host.send(platform.plugin, request).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap().unwrap());
    }
    assert!(outcomes.iter().all(|o| o.issued.len() == 1));
    assert_ledger_matches(&env, platform, &outcomes.iter().collect::<Vec<_>>());
    env.sim
        .calls()
        .iter()
        .filter(|c| matches!(c.error_code.as_deref(), Some("7" | "29005012")))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_limited_to_the_platform_qps_is_never_told_too_frequent() {
    // Douyin's simulator admits 100 sends per sliding second, as the platform does.
    assert_eq!(
        too_frequent_answers(&DOUYIN, SimConfig::demo(), 100, 300).await,
        0
    );
    let mut sim = SimConfig::demo();
    sim.qps_per_app = Some(50);
    assert_eq!(too_frequent_answers(&TMALL_NRT, sim, 50, 150).await, 0);
}
