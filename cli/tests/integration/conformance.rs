//! The conformance kit: every adapter in the workspace must pass the same checks against the
//! simulator. A new adapter gets the whole kit by being added to `conformance!` at the bottom,
//! whatever language it is written in.

use coupon_host::{
    CouponState, Error, ErrorClass, Host, QueryRequest, Recipient, SendOutcome, SendRequest,
};
use coupon_sim::{Fault, SimConfig};

use crate::support::{Options, TestEnv};

/// How the platform authenticates, which decides what an expired credential looks like.
#[derive(PartialEq, Eq)]
pub enum Auth {
    /// TOP: a session the seller renews; an expired one is `auth-expired`.
    Top,
    /// Douyin: a client token the host refreshes by itself.
    Douyin,
}

/// What the kit needs to know about a platform: its plugin name, a coupon the simulator's demo
/// seed has, and how its recipients and errors look.
pub struct Platform {
    pub plugin: &'static str,
    /// The simulator's name for the send API (for faults and call records).
    pub send_api: &'static str,
    pub coupon: &'static str,
    pub unknown_coupon: &'static str,
    pub recipient: fn(String) -> Recipient,
    /// Face value of `coupon` in the demo seed, in fen.
    pub amount_fen: i64,
    /// A platform answer that says "too frequent".
    pub rate_limited_body: &'static str,
    pub auth: Auth,
    /// Built with componentize-js: configured only where asked for (`Options::javascript`), and
    /// compiled once for the whole run (see [`host`]).
    pub javascript: bool,
    /// The contract version the component exports.
    pub contract: &'static str,
}

const TOP_RATE_LIMITED: &str = r#"{"error_response":{"code":7,"msg":"App Call Limited","sub_code":"isv.access-limited-by-app-access-count","sub_msg":"This ban will last 1 more seconds","request_id":"conformance"}}"#;

pub const TAOBAO: Platform = Platform {
    plugin: "taobao",
    send_api: "taobao.promotion.coupon.sns.send",
    coupon: "48552",
    unknown_coupon: "99999999",
    recipient: Recipient::Nick,
    amount_fen: 1000,
    rate_limited_body: TOP_RATE_LIMITED,
    auth: Auth::Top,
    javascript: false,
    contract: "0.2.0",
};

pub const TMALL_NRT: Platform = Platform {
    plugin: "tmall-nrt",
    send_api: "tmall.nrt.coupon.send",
    coupon: "nrt-demo-uuid",
    unknown_coupon: "no-such-uuid",
    recipient: Recipient::OpenId,
    amount_fen: 1000,
    rate_limited_body: TOP_RATE_LIMITED,
    auth: Auth::Top,
    javascript: false,
    contract: "0.2.0",
};

pub const ALSC: Platform = Platform {
    plugin: "alsc",
    send_api: "alibaba.alsc.crm.voucher.send",
    coupon: "3243421",
    unknown_coupon: "no-such-voucher",
    recipient: Recipient::CustomerId,
    amount_fen: 1000,
    rate_limited_body: TOP_RATE_LIMITED,
    auth: Auth::Top,
    javascript: false,
    contract: "0.2.0",
};

const DOUYIN_RATE_LIMITED: &str =
    r#"{"err_no":29005012,"err_msg":"尝试过于频繁","log_id":"conformance"}"#;

pub const DOUYIN: Platform = Platform {
    plugin: "douyin",
    send_api: "send_coupon_to_designated_user",
    coupon: "7218070000005644204",
    unknown_coupon: "no-such-activity",
    recipient: Recipient::OpenId,
    amount_fen: 1000,
    rate_limited_body: DOUYIN_RATE_LIMITED,
    auth: Auth::Douyin,
    javascript: false,
    contract: "0.2.0",
};

/// The Douyin adapter in JavaScript (plugins/douyin-js), configured like `douyin`.
pub const DOUYIN_JS: Platform = Platform {
    plugin: "douyin-js",
    javascript: true,
    ..DOUYIN
};

/// The Taobao adapter as built against contract 0.1.0 (tests/guests/taobao-v0-1): an adapter
/// built before accounts, auth schemes and limits must keep passing the whole kit.
pub const TAOBAO_V0_1: Platform = Platform {
    plugin: "taobao-v0-1",
    contract: "0.1.0",
    ..TAOBAO
};

/// The Rust adapter template (templates/rust-adapter), configured like `taobao`: what
/// docs/WRITING_AN_ADAPTER.md has authors copy passes the whole kit.
pub const TEMPLATE_RUST: Platform = Platform {
    plugin: "template-rust",
    ..TAOBAO
};

/// The JavaScript adapter template (templates/js-adapter), configured like `taobao`.
pub const TEMPLATE_JS: Platform = Platform {
    plugin: "template-js",
    javascript: true,
    ..TAOBAO
};

/// The classes a send ended with: the whole-request error's, or each failed recipient's.
fn classes(result: &Result<SendOutcome, Error>) -> Vec<ErrorClass> {
    match result {
        Ok(outcome) => outcome.failed.iter().map(|f| f.error.class).collect(),
        Err(Error::Adapter { error, .. }) => vec![error.class],
        Err(other) => panic!("expected a classified answer, got {other}"),
    }
}

fn recipients(platform: &Platform, ids: &[&str]) -> Vec<Recipient> {
    ids.iter()
        .map(|id| (platform.recipient)(format!("{}-{id}", platform.plugin)))
        .collect()
}

/// Starts `env`'s host. A JavaScript component takes seconds to compile, so the first test that
/// loads one compiles it into the run's shared cache while the others of the same platform wait
/// for that, instead of each compiling it at the same time; from then on every host loads the
/// cached artifact.
async fn host(env: &TestEnv, platform: &Platform) -> Host {
    type Compiled = std::sync::Arc<tokio::sync::OnceCell<()>>;
    static COMPILED: std::sync::Mutex<Vec<(&str, Compiled)>> = std::sync::Mutex::new(Vec::new());
    if platform.javascript {
        let compiled = {
            let mut cells = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
            match cells.iter().find(|(plugin, _)| *plugin == platform.plugin) {
                Some((_, cell)) => cell.clone(),
                None => {
                    let cell = Compiled::default();
                    cells.push((platform.plugin, cell.clone()));
                    cell
                }
            }
        };
        compiled
            .get_or_init(|| async { drop(env.host().await) })
            .await;
    }
    env.host().await
}

/// Sends `coupon` to one recipient of the platform's kind.
async fn send_one(host: &Host, platform: &Platform, coupon: &str) -> Result<SendOutcome, Error> {
    host.send(
        platform.plugin,
        SendRequest::new(coupon, recipients(platform, &["a"])),
    )
    .await
}

/// The kit checks how each adapter classifies, so the host does not retry here (delivery.rs
/// checks what the host does with each class).
async fn env(platform: &Platform) -> TestEnv {
    env_with(
        platform,
        Options {
            retry: format!("{}, max_attempts = 1", crate::support::FAST_RETRY),
            ..Options::default()
        },
    )
    .await
}

/// A simulator and config with `options`, and the platform's plugin configured.
async fn env_with(platform: &Platform, options: Options) -> TestEnv {
    let is_template = [TEMPLATE_RUST.plugin, TEMPLATE_JS.plugin].contains(&platform.plugin);
    let options = Options {
        javascript: platform.plugin == DOUYIN_JS.plugin,
        taobao_v0_1: platform.plugin == TAOBAO_V0_1.plugin,
        template: is_template.then_some(platform.plugin),
        ..options
    };
    TestEnv::start(SimConfig::demo(), options).await
}

pub async fn describe_is_complete(platform: &Platform) {
    let env = env(platform).await;
    let host = host(&env, platform).await;
    let info = host
        .plugins()
        .into_iter()
        .find(|p| p.name == platform.plugin)
        .expect("the plugin is loaded");
    let describe = &info.describe;
    assert!(!describe.platform.is_empty());
    assert!(!describe.version.is_empty());
    assert!(describe.max_recipients_per_call >= 1);
    assert!(
        describe
            .recipient_kinds
            .contains(&(platform.recipient)("x".into()).kind())
    );
    for operation in ["send-coupon", "query-coupons"] {
        assert!(
            describe.operations.iter().any(|o| o == operation),
            "{describe:?}"
        );
    }
    let contract = format!("coupon:adapter/adapter@{}", platform.contract);
    assert_eq!(info.contract, contract);
    // From 0.2.0 an adapter names the auth scheme it needs; 0.1.0 had no place for it.
    let scheme = match platform.auth {
        Auth::Top => "top",
        Auth::Douyin => "douyin",
    };
    let declared = (platform.contract != "0.1.0").then_some(scheme);
    assert_eq!(describe.auth_scheme.as_deref(), declared, "{describe:?}");
}

pub async fn a_normal_send_issues(platform: &Platform) {
    let env = env(platform).await;
    let host = host(&env, platform).await;
    // Chinese ids must round-trip exactly, whatever the recipient kind.
    let to = recipients(platform, &["张三", "李四"]);
    let outcome = host
        .send(
            platform.plugin,
            SendRequest::new(platform.coupon, to.clone()),
        )
        .await
        .unwrap();
    assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
    let issued: Vec<_> = outcome.issued.iter().map(|i| i.recipient.clone()).collect();
    assert_eq!(issued, to);
    let ledger = env.sim.ledger();
    assert_eq!(ledger.len(), 2);
    assert!(!outcome.platform_request_ids.is_empty());
    // A coupon id the adapter reports is the one the platform issued to that recipient.
    for coupon in &outcome.issued {
        if let Some(id) = &coupon.coupon_id {
            let recipient = coupon.recipient.id();
            let issuance = ledger.iter().find(|i| i.recipient == recipient);
            assert_eq!(
                Some(id),
                issuance.map(|i| &i.instance_id),
                "{recipient}: {ledger:?}"
            );
        }
    }
}

pub async fn an_unknown_coupon_is_coupon_unavailable(platform: &Platform) {
    let env = env(platform).await;
    let host = host(&env, platform).await;
    let result = send_one(&host, platform, platform.unknown_coupon).await;
    assert_eq!(
        classes(&result),
        [ErrorClass::CouponUnavailable],
        "{result:?}"
    );
}

pub async fn bad_credentials_are_unauthorized(platform: &Platform) {
    let env = env_with(
        platform,
        Options {
            app_secret: "wrong-app-secret",
            douyin_secret: "wrong-douyin-secret",
            ..Options::default()
        },
    )
    .await;
    let host = host(&env, platform).await;
    let result = send_one(&host, platform, platform.coupon).await;
    assert_eq!(classes(&result), [ErrorClass::Unauthorized], "{result:?}");
    assert!(env.sim.ledger().is_empty());
}

pub async fn an_expired_session_is_auth_expired_or_refreshed(platform: &Platform) {
    let env = env(platform).await;
    let host = host(&env, platform).await;
    let send = |id: &'static str| {
        host.send(
            platform.plugin,
            SendRequest::new(platform.coupon, recipients(platform, &[id])),
        )
    };
    if platform.auth == Auth::Douyin {
        // The host refreshes the token once and the call succeeds.
        send("a").await.unwrap();
        env.sim.expire_douyin_tokens();
        let outcome = send("b").await.unwrap();
        assert_eq!(outcome.issued.len(), 1, "{outcome:?}");
        assert_eq!(env.sim.douyin_token_fetches(), 2);
    } else {
        env.sim.inject(Fault::Body {
            api: Some(platform.send_api.into()),
            body: r#"{"error_response":{"code":27,"msg":"Invalid session","sub_code":"invalid-sessionkey","request_id":"x"}}"#.into(),
            times: 1,
        });
        assert_eq!(classes(&send("a").await), [ErrorClass::AuthExpired]);
    }
}

pub async fn a_platform_5xx_is_transient(platform: &Platform) {
    let env = env(platform).await;
    let host = host(&env, platform).await;
    env.sim.inject(Fault::Status {
        api: Some(platform.send_api.into()),
        status: 502,
        times: 1,
    });
    let result = send_one(&host, platform, platform.coupon).await;
    assert_eq!(classes(&result), [ErrorClass::Transient], "{result:?}");
}

pub async fn a_timeout_is_transient_unless_the_send_is_not_idempotent(platform: &Platform) {
    let env = env(platform).await;
    let host = host(&env, platform).await;
    let idempotent = host
        .plugins()
        .into_iter()
        .find(|p| p.name == platform.plugin)
        .unwrap()
        .describe
        .idempotent_send;
    env.sim.inject(Fault::Delay {
        api: Some(platform.send_api.into()),
        millis: 3_000,
        apply: false,
        times: 1,
    });
    let result = send_one(&host, platform, platform.coupon).await;
    // A send that cannot be repeated safely must not invite a blind retry.
    let expected = if idempotent {
        ErrorClass::Transient
    } else {
        ErrorClass::Unknown
    };
    assert_eq!(classes(&result), [expected], "{result:?}");
}

pub async fn rate_limiting_is_rate_limited(platform: &Platform) {
    let env = env(platform).await;
    let host = host(&env, platform).await;
    env.sim.inject(Fault::Body {
        api: Some(platform.send_api.into()),
        body: platform.rate_limited_body.into(),
        times: 1,
    });
    let result = send_one(&host, platform, platform.coupon).await;
    assert_eq!(classes(&result), [ErrorClass::RateLimited], "{result:?}");
}

pub async fn odd_answers_never_trap_the_adapter(platform: &Platform) {
    let env = env(platform).await;
    let host = host(&env, platform).await;
    let bodies = [
        "",
        "null",
        "[]",
        "{}",
        "{\"",
        "<html><body>502 Bad Gateway</body></html>",
        r#"{"unexpected":{"deeply":{"nested":[1,2,3]}},"err_no":"0"}"#,
        r#"{"x_response":{"extra":true},"error_response":null}"#,
        r#"{"err_no":0,"data":{"coupon_info":{"coupon_id":12,"discount_amount":"x"}}}"#,
    ];
    for body in bodies {
        env.sim.inject(Fault::Body {
            api: Some(platform.send_api.into()),
            body: body.into(),
            times: 1,
        });
        let result = send_one(&host, platform, platform.coupon).await;
        assert!(
            !matches!(result, Err(Error::Sandbox { .. })),
            "{body:?} trapped the adapter: {result:?}"
        );
    }
}

pub async fn query_returns_what_was_sent(platform: &Platform) {
    let env = env(platform).await;
    let host = host(&env, platform).await;
    let recipient = recipients(platform, &["王五"]).remove(0);
    host.send(
        platform.plugin,
        SendRequest::new(platform.coupon, vec![recipient.clone()]),
    )
    .await
    .unwrap();
    let coupons = host
        .query(
            platform.plugin,
            QueryRequest {
                recipient,
                options: Vec::new(),
                account: None,
            },
        )
        .await
        .unwrap();
    let held: Vec<_> = coupons
        .iter()
        .filter(|c| c.state == CouponState::Held)
        .collect();
    assert_eq!(held.len(), 1, "{coupons:?}");
    let coupon = held[0];
    // Amounts in fen, times in unix seconds UTC (2020..2100).
    assert_eq!(coupon.amount_fen, Some(platform.amount_fen), "{coupon:?}");
    for time in [coupon.valid_from, coupon.valid_until]
        .into_iter()
        .flatten()
    {
        assert!((1_577_836_800..4_102_444_800).contains(&time), "{coupon:?}");
    }
}

macro_rules! conformance {
    ($($platform:ident),* $(,)?) => {
        $(
            #[allow(non_snake_case, reason = "one module per platform constant")]
            mod $platform {
                macro_rules! check {
                    ($check:ident) => {
                        #[tokio::test(flavor = "multi_thread")]
                        async fn $check() {
                            super::$check(&super::$platform).await;
                        }
                    };
                }
                check!(describe_is_complete);
                check!(a_normal_send_issues);
                check!(an_unknown_coupon_is_coupon_unavailable);
                check!(bad_credentials_are_unauthorized);
                check!(an_expired_session_is_auth_expired_or_refreshed);
                check!(a_platform_5xx_is_transient);
                check!(a_timeout_is_transient_unless_the_send_is_not_idempotent);
                check!(rate_limiting_is_rate_limited);
                check!(odd_answers_never_trap_the_adapter);
                check!(query_returns_what_was_sent);
            }
        )*
    };
}

// Every adapter in the workspace. The `every_plugin_is_in_the_kit` test keeps this list honest.
conformance!(
    TAOBAO,
    TMALL_NRT,
    ALSC,
    DOUYIN,
    DOUYIN_JS,
    TAOBAO_V0_1,
    TEMPLATE_RUST,
    TEMPLATE_JS
);

#[test]
fn every_plugin_is_in_the_kit() {
    let listed = [
        TAOBAO.plugin,
        TMALL_NRT.plugin,
        ALSC.plugin,
        DOUYIN.plugin,
        DOUYIN_JS.plugin,
    ];
    // Rust crates and JavaScript adapter folders alike.
    for (name, _) in coupon_host_tests::PLUGINS {
        assert!(
            listed.contains(&name.replace('_', "-").as_str()),
            "plugin {name} is not in the conformance kit"
        );
    }
    // The templates too: an author's copy starts from a passing adapter.
    let templates = [TEMPLATE_RUST.plugin, TEMPLATE_JS.plugin];
    for (name, _) in coupon_host_tests::TEMPLATES {
        assert!(
            templates.contains(name),
            "template {name} is not in the conformance kit"
        );
    }
}
