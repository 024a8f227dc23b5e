//! Accounts: one `taobao` plugin sending for two merchants, each with its own authorization (an
//! OAuth code exchanged through the host), its own coupons and its own fate; sessions refreshed,
//! refused and authorized again; the master key; and no account secret anywhere it could leak.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use coupon_sim::{Fault, SessionState, SimConfig};
use serde_json::Value;

use crate::support::{CliOutput, Options, TestEnv};

const MASTER_KEY_ENV: &str = "COUPON_TEST_MASTER_KEY";
pub(crate) const MASTER_KEY: &str =
    "6b1f9c3a0d2e4f5061728394a5b6c7d8e9f00112233445566778899aabbccdd0";
const OTHER_KEY: &str = "00000000000000000000000000000000000000000000000000000000000000ff";
const APP_KEY: &str = "12345678";
/// The demo's two sellers and their Taobao coupons.
const SELLER_A: &str = "sim-seller";
const SELLER_B: &str = "sim-seller-2";
const COUPON_A: &str = "48552";
const COUPON_B: &str = "48560";
const SEND_API: &str = "taobao.promotion.coupon.sns.send";

/// A test env whose host keeps accounts under [`MASTER_KEY`].
async fn env() -> TestEnv {
    let mut env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    keep_accounts(&mut env);
    env
}

/// Has the env's host keep accounts, sealed under [`MASTER_KEY`].
pub(crate) fn keep_accounts(env: &mut TestEnv) {
    crate::hostile::append_config(
        env,
        &format!("\n[accounts]\nmaster_key_env = \"{MASTER_KEY_ENV}\"\n"),
    );
    env.secrets
        .push((MASTER_KEY_ENV.to_owned(), MASTER_KEY.to_owned()));
}

/// `accounts authorize taobao ACCOUNT` with a code the simulator minted for `seller`.
async fn authorize(env: &TestEnv, account: &str, seller: &str) -> Value {
    let code = env.sim.mint_top_code(APP_KEY, seller, None).unwrap();
    env.cli(&[
        "accounts",
        "authorize",
        "taobao",
        account,
        "--code",
        &code,
        "--json",
    ])
    .await
    .json()
}

/// The session of `seller` the simulator holds active now.
fn active_session(env: &TestEnv, seller: &str) -> String {
    env.sim
        .top_sessions()
        .into_iter()
        .filter(|s| s.seller == seller && s.state == SessionState::Active && s.expires_at.is_some())
        .map(|s| s.session)
        .next_back()
        .expect("an active session")
}

fn accounts(env_out: &CliOutput) -> BTreeMap<String, Value> {
    env_out.json()["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap().to_owned(), a.clone()))
        .collect()
}

/// Recipients of `coupon` in the ledger, with how many coupons each got.
fn ledger(env: &TestEnv, coupon: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for issuance in env.sim.ledger() {
        if issuance.coupon == coupon {
            *counts.entry(issuance.recipient).or_default() += 1;
        }
    }
    counts
}

async fn send(env: &TestEnv, account: &str, coupon: &str, to: &str) -> CliOutput {
    env.cli(&[
        "send",
        "taobao",
        "--account",
        account,
        "--coupon",
        coupon,
        "--to",
        to,
        "--json",
    ])
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn two_merchants_share_one_plugin_each_seeing_only_its_own_coupons() {
    let env = env().await;
    let a = authorize(&env, "shop-a", SELLER_A).await;
    assert_eq!(a["state"], "active", "{a}");
    assert_eq!(a["seller"], SELLER_A, "{a}");
    assert!(
        a["expires_at"].as_i64().is_some() && a["refresh_expires_at"].as_i64().is_some(),
        "{a}"
    );
    authorize(&env, "shop-b", SELLER_B).await;

    let listed = accounts(&env.cli(&["accounts", "list", "taobao", "--json"]).await);
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        ["default", "shop-a", "shop-b"]
    );
    assert_eq!(listed["default"]["source"], "config");
    assert_eq!(listed["shop-b"]["session"], true);

    let sent = send(&env, "shop-a", COUPON_A, "nick:甲").await.json();
    assert_eq!(sent["issued"].as_array().unwrap().len(), 1, "{sent}");
    let sent = send(&env, "shop-b", COUPON_B, "nick:甲").await.json();
    assert_eq!(sent["issued"].as_array().unwrap().len(), 1, "{sent}");
    // Seller B's session cannot send seller A's coupon.
    let refused = send(&env, "shop-b", COUPON_A, "nick:乙").await;
    assert!(
        refused.stderr.contains("coupon") || refused.stdout.contains("coupon-unavailable"),
        "{} {}",
        refused.stdout,
        refused.stderr
    );
    assert!(!ledger(&env, COUPON_A).contains_key("乙"));

    // With several accounts, a call must name one.
    let unnamed = env
        .cli(&["send", "taobao", "--coupon", COUPON_A, "--to", "nick:丙"])
        .await;
    assert!(!unnamed.status.success());
    assert!(
        unnamed.stderr.contains("several accounts"),
        "{}",
        unnamed.stderr
    );

    // Each merchant's view of the buyer shows its own coupon only.
    for (account, own, other) in [
        ("shop-a", COUPON_A, COUPON_B),
        ("shop-b", COUPON_B, COUPON_A),
    ] {
        let coupons = env
            .cli(&[
                "query",
                "taobao",
                "--account",
                account,
                "--recipient",
                "nick:甲",
                "--json",
            ])
            .await
            .json();
        let templates: BTreeSet<&str> = coupons["coupons"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["template_id"].as_str())
            .collect();
        assert!(templates.contains(own), "{account}: {coupons}");
        assert!(!templates.contains(other), "{account}: {coupons}");
    }
}

/// Two accounts' campaigns at once; one account's session is revoked mid-way: that campaign
/// stops `needs-reauth` while the other finishes; after `accounts authorize` with a new code the
/// same command resumes and finishes; nobody twice, nobody missing.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_session_stops_only_its_campaign_and_authorize_resumes_it() {
    let env = env().await;
    authorize(&env, "shop-a", SELLER_A).await;
    authorize(&env, "shop-b", SELLER_B).await;
    let write = |name: &str, prefix: &str| {
        let path = env.dir.path().join(name);
        let text: String = (0..600).map(|i| format!("nick:{prefix}{i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (file_a, file_b) = (write("a.txt", "a"), write("b.txt", "b"));
    let run = |account: &'static str, coupon: &'static str, file: &str| {
        let file = file.to_owned();
        let command = env.command(&[
            "campaign",
            "run",
            "taobao",
            "--account",
            account,
            "--coupon",
            coupon,
            "--recipients",
            &file,
            "--concurrency",
            "1",
            "--json",
        ]);
        tokio::spawn(crate::support::run(command))
    };
    // Slow sends, so the revocation lands mid-way.
    env.sim.inject(Fault::Delay {
        api: Some(SEND_API.into()),
        millis: 60,
        apply: true,
        times: 40,
    });
    let campaign_a = run("shop-a", COUPON_A, &file_a);
    let campaign_b = run("shop-b", COUPON_B, &file_b);
    for _ in 0..2000 {
        if ledger(&env, COUPON_B).len() >= 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The merchant cancels the authorization: the session and its refresh token are dead.
    assert!(env.sim.revoke_top_session(&active_session(&env, SELLER_B)));

    let stopped = campaign_b.await.unwrap();
    assert!(!stopped.status.success());
    assert!(
        stopped.stderr.contains("needs re-authorization") && stopped.stderr.contains("shop-b"),
        "{}",
        stopped.stderr
    );
    let finished = campaign_a.await.unwrap().json();
    assert_eq!(
        (finished["state"].as_str(), finished["issued"].as_u64()),
        (Some("done"), Some(600))
    );
    let listed = accounts(&env.cli(&["accounts", "list", "taobao", "--json"]).await);
    assert_eq!(
        listed["shop-b"]["state"], "needs-reauth",
        "{:?}",
        listed["shop-b"]
    );
    assert_eq!(listed["shop-a"]["state"], "active");
    // Its calls fail at once, naming the account.
    let refused = env
        .cli(&[
            "send",
            "taobao",
            "--account",
            "shop-b",
            "--coupon",
            COUPON_B,
            "--to",
            "nick:x",
        ])
        .await;
    assert!(
        refused.stderr.contains("unauthorized") && refused.stderr.contains("shop-b"),
        "{}",
        refused.stderr
    );

    // The merchant authorizes again; the same command picks up where it stopped.
    authorize(&env, "shop-b", SELLER_B).await;
    let resumed = run("shop-b", COUPON_B, &file_b).await.unwrap().json();
    assert_eq!(
        (resumed["state"].as_str(), resumed["issued"].as_u64()),
        (Some("done"), Some(600)),
        "{resumed}"
    );

    for (coupon, prefix) in [(COUPON_A, "a"), (COUPON_B, "b")] {
        let counts = ledger(&env, coupon);
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "issued twice: {twice:?}");
        let expected: BTreeSet<String> = (0..600).map(|i| format!("{prefix}{i}")).collect();
        assert_eq!(
            counts.keys().cloned().collect::<BTreeSet<_>>(),
            expected,
            "coupon {coupon}"
        );
    }
}

/// An expired session whose refresh token still works is refreshed when the platform refuses
/// it, and the call goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_session_is_refreshed_and_the_call_goes_through() {
    let env = env().await;
    authorize(&env, "shop-a", SELLER_A).await;
    let first = active_session(&env, SELLER_A);
    assert!(env.sim.expire_top_session(&first));
    let sent = env
        .cli(&[
            "send",
            "taobao",
            "--account",
            "shop-a",
            "--coupon",
            COUPON_A,
            "--to",
            "nick:丁",
            "--json",
        ])
        .await
        .json();
    assert_eq!(sent["issued"].as_array().unwrap().len(), 1, "{sent}");
    assert_ne!(
        active_session(&env, SELLER_A),
        first,
        "a new session was granted"
    );
    let shown = env
        .cli(&["accounts", "show", "taobao", "shop-a", "--json"])
        .await
        .json();
    assert_eq!(shown["state"], "active");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_master_key_is_one_clear_error_at_start() {
    let mut env = env().await;
    authorize(&env, "shop-a", SELLER_A).await;
    // A wrong key.
    for (var, value) in env.secrets.iter_mut() {
        if var == MASTER_KEY_ENV {
            *value = OTHER_KEY.to_owned();
        }
    }
    let wrong = env.cli(&["plugins"]).await;
    assert!(!wrong.status.success());
    assert_eq!(wrong.stderr.lines().count(), 1, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains(MASTER_KEY_ENV) && wrong.stderr.contains("not the master key"),
        "{}",
        wrong.stderr
    );
    // Named at the config's file and line, like any config error, with how to make a key.
    let line = env.config_line("master_key_env");
    assert!(
        wrong.stderr.starts_with(&format!(
            "error: {}:{line}: accounts.master_key_env: ",
            env.config_path.display()
        )),
        "{}",
        wrong.stderr
    );
    assert!(
        wrong.stderr.contains("openssl rand -hex 32"),
        "{}",
        wrong.stderr
    );
    // No key at all, with accounts kept.
    let config = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        config.replace(
            &format!("[accounts]\nmaster_key_env = \"{MASTER_KEY_ENV}\"\n"),
            "",
        ),
    )
    .unwrap();
    let missing = env.cli(&["plugins"]).await;
    assert!(!missing.status.success());
    assert!(
        missing.stderr.contains("master_key_env"),
        "{}",
        missing.stderr
    );
    assert!(!missing.stderr.contains(MASTER_KEY) && !wrong.stderr.contains(OTHER_KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn rekey_seals_every_account_under_the_new_key() {
    let mut env = env().await;
    authorize(&env, "shop-a", SELLER_A).await;
    env.secrets
        .push(("COUPON_TEST_NEW_KEY".to_owned(), OTHER_KEY.to_owned()));
    let rekeyed = env
        .cli(&["accounts", "rekey", "--new-key-env", "COUPON_TEST_NEW_KEY"])
        .await;
    assert!(rekeyed.status.success(), "{}", rekeyed.stderr);
    // The old key no longer opens them; the new one does, and the account still sends.
    assert!(!env.cli(&["plugins"]).await.status.success());
    for (var, value) in env.secrets.iter_mut() {
        if var == MASTER_KEY_ENV {
            *value = OTHER_KEY.to_owned();
        }
    }
    let sent = env
        .cli(&[
            "send",
            "taobao",
            "--account",
            "shop-a",
            "--coupon",
            COUPON_A,
            "--to",
            "nick:戊",
            "--json",
        ])
        .await
        .json();
    assert_eq!(sent["issued"].as_array().unwrap().len(), 1, "{sent}");
}

/// Every account secret the simulator has issued (sessions, refresh tokens), the master key and
/// an OAuth `code`.
fn account_secrets(env: &TestEnv, code: &str) -> Vec<String> {
    let mut secrets: Vec<String> = env
        .sim
        .top_sessions()
        .into_iter()
        .map(|s| s.session)
        .collect();
    secrets.extend(env.sim.top_refresh_tokens());
    secrets.push(MASTER_KEY.to_owned());
    secrets.push(code.to_owned());
    secrets
}

#[tokio::test(flavor = "multi_thread")]
async fn no_account_secret_appears_in_any_output_log_or_state() {
    let env = env().await;
    let mut outputs = Vec::new();
    let code = env.sim.mint_top_code(APP_KEY, SELLER_A, None).unwrap();
    let b_session = "sim-session-2";
    for args in [
        vec![
            "accounts",
            "authorize",
            "taobao",
            "shop-a",
            "--code",
            &code,
            "--json",
        ],
        vec![
            "accounts",
            "add",
            "taobao",
            "shop-b",
            "--session-env",
            "COUPON_TEST_B_SESSION",
            "--setting",
            "simplify=true",
            "--json",
        ],
        vec!["accounts", "list", "taobao", "--json"],
        vec!["accounts", "show", "taobao", "shop-a", "--json"],
        vec![
            "send",
            "taobao",
            "--account",
            "shop-a",
            "--coupon",
            COUPON_A,
            "--to",
            "nick:己",
            "--json",
        ],
        vec![
            "send",
            "taobao",
            "--account",
            "shop-b",
            "--coupon",
            COUPON_B,
            "--to",
            "nick:己",
            "--json",
        ],
        vec![
            "query",
            "taobao",
            "--account",
            "shop-b",
            "--recipient",
            "nick:己",
            "--json",
        ],
    ] {
        let mut command = env.command(&["--log-format", "json"]);
        command
            .args(&args)
            .env("COUPON_HOST_LOG", "trace")
            .env("COUPON_TEST_B_SESSION", b_session);
        outputs.push(crate::support::run(command).await);
    }
    for output in &outputs {
        assert!(output.status.success(), "{}", output.stderr);
    }
    assert!(
        outputs[4].stdout.contains("\"issued\":[{"),
        "{}",
        outputs[4].stdout
    );
    assert!(
        outputs[5].stdout.contains("\"issued\":[{"),
        "{}",
        outputs[5].stdout
    );
    let secrets = account_secrets(&env, &code);
    assert!(secrets.len() >= 5, "{}", secrets.len());
    for output in &outputs {
        for secret in &secrets {
            assert!(
                !output.stdout.contains(secret.as_str())
                    && !output.stderr.contains(secret.as_str()),
                "a secret in the output of a command"
            );
        }
    }
    for entry in crate::cli::walk(env.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds an account secret",
                entry.display()
            );
        }
    }
}

/// Accounts over HTTP, under the `accounts` scope: an account kept with a session, listed and
/// shown as the CLI shows them, sent through by name; another authorized with a code from the
/// simulator; one removed. A key without the scope is refused, and no secret — session, code,
/// refresh token, master key, API key — is in any answer or anywhere in the server's log at
/// `trace`.
#[tokio::test(flavor = "multi_thread")]
async fn accounts_are_managed_over_http_and_no_secret_comes_back() {
    use crate::hostile::{ADMIN_KEY, ENGINE_KEY, append_config, call, key_table};
    use crate::serve::Answer;
    use serde_json::json;

    let env = env().await;
    append_config(&env, &key_table("admin", ADMIN_KEY, &["accounts"]));
    append_config(
        &env,
        &key_table("engine", ENGINE_KEY, &["send", "query", "campaigns"]),
    );
    let server = crate::serve::Server::start_at(&env, crate::serve::TRACE, &[]).await;
    let (admin, engine) = (
        format!("Bearer {ADMIN_KEY}"),
        format!("Bearer {ENGINE_KEY}"),
    );
    let mut answers = Vec::new();
    let mut ask = async |method: &str, path: &str, key: &str, body: Value| {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let answer = call(&server, method, path, Some(key), &body).await;
        answers.push(answer.text.clone());
        answer
    };
    let accounts = "/v1/plugins/taobao/accounts";
    let b_session = "sim-session-2";
    let send = "/v1/plugins/taobao/send";
    let issued = |answer: &Answer| answer.json()["issued"][0]["recipient"].clone();

    // Without the scope, nothing is read or kept.
    for (method, path) in [
        ("GET", accounts.to_owned()),
        ("PUT", format!("{accounts}/shop-b")),
        ("DELETE", format!("{accounts}/default")),
        ("POST", format!("{accounts}/shop-b/authorize")),
    ] {
        let body = json!({"session": b_session});
        let message = ask(method, &path, &engine, body)
            .await
            .error(403, "forbidden");
        assert!(message.contains("\"accounts\""), "{message}");
    }

    // Kept with a session: the answer says it holds one, never which.
    let kept = ask(
        "PUT",
        &format!("{accounts}/shop-b"),
        &admin,
        json!({"session": b_session, "settings": {"simplify": "true"}, "qps": 5}),
    )
    .await;
    assert_eq!(kept.status, 200, "{}", kept.text);
    let kept = kept.json();
    assert_eq!(
        (
            &kept["name"],
            &kept["state"],
            &kept["source"],
            &kept["session"]
        ),
        (
            &json!("shop-b"),
            &json!("active"),
            &json!("host"),
            &json!(true)
        ),
        "{kept}"
    );
    assert_eq!(kept["settings"], json!({"simplify": "true"}));
    assert_eq!(kept["qps"], 5);

    // Listed and shown as the CLI lists and shows them.
    let listed = ask("GET", accounts, &admin, Value::Null).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let cli = env.cli(&["accounts", "list", "taobao", "--json"]).await;
    assert_eq!(listed.json(), cli.json());
    let names: Vec<_> = listed.json()["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["default", "shop-b"]);
    let shown = ask("GET", &format!("{accounts}/shop-b"), &admin, Value::Null).await;
    let cli = env
        .cli(&["accounts", "show", "taobao", "shop-b", "--json"])
        .await;
    assert_eq!(shown.json(), cli.json());

    // A send names its account; with two, one that names none is refused.
    let body = json!({"coupon": COUPON_B, "recipients": ["nick:庚"], "account": "shop-b"});
    let sent = ask("POST", send, &engine, body).await;
    assert_eq!(issued(&sent), "nick:庚", "{}", sent.text);
    assert_eq!(ledger(&env, COUPON_B).get("庚"), Some(&1));
    let message = ask(
        "POST",
        send,
        &engine,
        json!({"coupon": COUPON_B, "recipients": ["nick:辛"]}),
    )
    .await
    .error(422, "invalid-request");
    assert!(message.contains("several accounts"), "{message}");

    // Authorized with a code the simulator minted for the second seller.
    let code = env.sim.mint_top_code(APP_KEY, SELLER_B, None).unwrap();
    let authorize = |account: &str| format!("{accounts}/{account}/authorize");
    let with_code = json!({ "code": code });
    let authorized = ask("POST", &authorize("shop-c"), &admin, with_code.clone()).await;
    assert_eq!(authorized.status, 200, "{}", authorized.text);
    let authorized = authorized.json();
    assert_eq!(authorized["state"], "active", "{authorized}");
    assert_eq!(authorized["seller"], SELLER_B, "{authorized}");
    assert_eq!(authorized["session"], true, "{authorized}");
    assert!(authorized["expires_at"].is_i64(), "{authorized}");
    let body = json!({"coupon": COUPON_B, "recipients": ["nick:壬"], "account": "shop-c"});
    let sent = ask("POST", send, &engine, body).await;
    assert_eq!(issued(&sent), "nick:壬", "{}", sent.text);
    // A code is good once: the platform's refusal is the request's fault, not the server's.
    let again = ask("POST", &authorize("shop-d"), &admin, with_code).await;
    again.error(422, "authorization-refused");
    assert_eq!(again.json()["error"]["class"], "unauthorized");
    // Douyin has no OAuth code to exchange.
    ask(
        "POST",
        "/v1/plugins/douyin/accounts/m1/authorize",
        &admin,
        json!({"code": "any"}),
    )
    .await
    .error(422, "authorization-refused");

    // Refusals, each in the API's shape; a secret of the wrong type is refused without its value.
    let message = ask(
        "PUT",
        &format!("{accounts}/shop-e"),
        &admin,
        json!({"session": 987654321}),
    )
    .await
    .error(422, "invalid-body");
    assert!(
        message.contains("session") && !message.contains("987654321"),
        "{message}"
    );
    for body in [
        json!({"session": " "}),
        json!({"session": null}),
        json!({"client_key": "k"}),
        json!({"qps": -1}),
        json!({"settings": {"": "x"}}),
        json!({"sesion": b_session}),
    ] {
        ask("PUT", &format!("{accounts}/shop-e"), &admin, body.clone())
            .await
            .error(422, "invalid-body");
    }
    for (method, path, body) in [
        ("PUT", "default", json!({"session": b_session})),
        (
            "PUT",
            "shop-e",
            json!({"client_key": "k", "client_secret": "s"}),
        ),
        ("DELETE", "default", Value::Null),
        ("PUT", "no%20spaces", json!({})),
        // A name must start with a letter or digit: `..` would not survive a URL's normalisation.
        ("PUT", ".hidden", json!({"session": b_session})),
        ("PUT", "-dash", json!({"session": b_session})),
        ("PUT", "shop-e", json!({"qps": 0})),
    ] {
        ask(method, &format!("{accounts}/{path}"), &admin, body)
            .await
            .error(422, "invalid-request");
    }
    for (method, path) in [
        ("GET", format!("{accounts}/shop-e")),
        ("DELETE", format!("{accounts}/shop-e")),
    ] {
        ask(method, &path, &admin, Value::Null)
            .await
            .error(404, "unknown-account");
    }
    ask("GET", "/v1/plugins/weibo/accounts", &admin, Value::Null)
        .await
        .error(404, "unknown-plugin");

    // Removed: gone from the list, and a send through it is refused.
    let removed = ask("DELETE", &format!("{accounts}/shop-b"), &admin, Value::Null).await;
    assert_eq!((removed.status, removed.text.as_str()), (204, ""));
    ask("GET", &format!("{accounts}/shop-b"), &admin, Value::Null)
        .await
        .error(404, "unknown-account");
    let message = ask(
        "POST",
        send,
        &engine,
        json!({"coupon": COUPON_B, "recipients": ["nick:癸"], "account": "shop-b"}),
    )
    .await
    .error(422, "invalid-request");
    assert!(message.contains("has no account"), "{message}");
    let listed = ask("GET", accounts, &admin, Value::Null).await.json();
    assert_eq!(listed["accounts"].as_array().unwrap().len(), 2, "{listed}");

    let (status, log) = server.terminate().await;
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("\"level\":\"TRACE\""), "not a trace log");
    let mut secrets = account_secrets(&env, &code);
    secrets.extend([ADMIN_KEY, ENGINE_KEY].map(str::to_owned));
    assert!(secrets.iter().any(|s| s == b_session), "{secrets:?}");
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret in the server's log"
        );
        for answer in &answers {
            assert!(
                !answer.contains(secret.as_str()),
                "a secret in an answer: {answer}"
            );
        }
    }
    crate::serve::assert_no_secret(&log);
}

/// The first `accounts add` on a plugin whose config holds credentials (account `default`)
/// makes calls that name no account fail: it says so, on stderr and in its JSON; the next add
/// changes nothing more and says nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_added_account_says_calls_without_one_now_fail() {
    let mut env = env().await;
    env.secrets
        .push(("COUPON_TEST_B_SESSION".to_owned(), "b-session".to_owned()));
    let add = |name: &'static str| {
        [
            "accounts",
            "add",
            "taobao",
            name,
            "--session-env",
            "COUPON_TEST_B_SESSION",
            "--json",
        ]
    };
    let first = env.cli(&add("shop-b")).await;
    assert!(first.status.success(), "{}", first.stderr);
    assert!(
        first
            .stderr
            .contains("warning: plugin \"taobao\" now has 2 accounts (default, shop-b)"),
        "{}",
        first.stderr
    );
    assert!(
        first.json()["warning"]
            .as_str()
            .is_some_and(|w| w.contains("fails with invalid-request")),
        "{}",
        first.stdout
    );
    // As it said: a send that names no account is refused.
    let send = env
        .cli(&["send", "taobao", "--coupon", COUPON_A, "--to", "nick:x"])
        .await;
    assert!(!send.status.success());
    assert!(send.stderr.contains("several accounts"), "{}", send.stderr);

    let second = env.cli(&add("shop-c")).await;
    assert!(second.status.success(), "{}", second.stderr);
    assert!(!second.stderr.contains("warning"), "{}", second.stderr);
    assert!(second.json().get("warning").is_none(), "{}", second.stdout);
}
