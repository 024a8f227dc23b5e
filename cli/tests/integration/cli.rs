//! The `coupon-host` binary: its contract for scripts, and its failures as one clear line.

use coupon_sim::SimConfig;

use crate::support::{APP_SECRET, Options, SESSION, TestEnv, nicks};

fn assert_one_line_error(output: &crate::support::CliOutput, needle: &str) {
    assert!(
        !output.status.success(),
        "expected failure, got {}",
        output.stdout
    );
    let lines: Vec<_> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr is not one line: {}", output.stderr);
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    assert!(lines[0].contains(needle), "{:?} lacks {needle:?}", lines[0]);
}

fn assert_no_secret(texts: &[&str]) {
    for text in texts {
        for secret in [APP_SECRET, SESSION, crate::support::DOUYIN_SECRET] {
            assert!(!text.contains(secret), "a secret leaked: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_json_lists_what_describe_returned() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let output = env.cli(&["plugins", "--json"]).await;
    let json = output.json();
    let plugins = json["plugins"].as_array().unwrap();
    let names: Vec<_> = plugins
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alsc", "douyin", "taobao", "tmall-nrt"]);
    let plugin = &plugins[2];
    assert_eq!(plugin["describe"]["platform"], "taobao");
    assert_eq!(plugin["describe"]["max_recipients_per_call"], 100);
    assert_eq!(plugin["describe"]["recipient_kinds"][0], "nick");
    assert_eq!(plugin["sha256"].as_str().unwrap().len(), 64);
}

#[tokio::test(flavor = "multi_thread")]
async fn send_json_has_one_outcome_per_recipient() {
    let mut sim = SimConfig::demo();
    sim.taobao.unknown_buyers = vec!["鬼".into()];
    let env = TestEnv::start(sim, Options::default()).await;
    let output = env
        .cli(&[
            "send",
            "taobao",
            "--coupon",
            "48552",
            "--to",
            "nick:张三",
            "--to",
            "nick:鬼",
            "--json",
        ])
        .await;
    let json = output.json();
    assert_eq!(json["issued"][0]["recipient"], "nick:张三");
    assert!(json["issued"][0]["coupon_id"].is_string());
    assert_eq!(json["failed"][0]["recipient"], "nick:鬼");
    assert_eq!(json["failed"][0]["error"]["class"], "recipient-invalid");
    assert!(json["failed"][0]["error"]["code"].is_string());
    assert!(json["idempotency_key"].is_string());

    let query = env
        .cli(&["query", "taobao", "--recipient", "nick:张三", "--json"])
        .await
        .json();
    assert!(
        query["coupons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["state"] == "held"),
        "{query}"
    );
    assert_no_secret(&[&output.stdout, &output.stderr]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_fails_the_send_with_class_unauthorized() {
    let env = TestEnv::start(
        SimConfig::demo(),
        Options {
            app_secret: "wrong-secret-value",
            ..Options::default()
        },
    )
    .await;
    let output = env
        .cli(&["send", "taobao", "--coupon", "48552", "--to", "nick:张三"])
        .await;
    assert_one_line_error(&output, "unauthorized");
    assert!(!output.stderr.contains("wrong-secret-value"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_variable_is_one_line_naming_the_key() {
    let mut env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    env.secrets
        .retain(|(k, _)| k != crate::support::SESSION_ENV);
    let output = env.cli(&["plugins"]).await;
    assert_one_line_error(
        &output,
        "plugins.taobao.auth.session_env: environment variable COUPON_TEST_TAOBAO_SESSION is not set",
    );
    assert_no_secret(&[&output.stderr]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_config_is_one_line_naming_file_line_and_key() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(
        &env.config_path,
        text.replace("memory_mib = 64", "memory_mib = 64, memroy = 1"),
    )
    .unwrap();
    let output = env.cli(&["plugins"]).await;
    assert_one_line_error(
        &output,
        "coupon-host.toml:12: plugins.taobao.limits.memroy: unknown field",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_is_not_an_adapter_is_one_line() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let cases: [(&str, &[u8], &str); 3] = [
        (
            "garbage.wasm",
            b"this is not wasm",
            "not a valid WebAssembly component",
        ),
        (
            "core.wasm",
            b"\0asm\x01\0\0\0",
            "core wasm module, not a component",
        ),
        // An empty component: valid, but it exports no adapter.
        (
            "empty.wasm",
            b"\0asm\x0d\0\x01\0",
            "does not export coupon:adapter/adapter@0.2.0 or coupon:adapter/adapter@0.1.0",
        ),
    ];
    for (name, bytes, needle) in cases {
        let path = env.dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        std::fs::write(
            &env.config_path,
            text.replace(coupon_host_tests::TAOBAO, path.to_str().unwrap()),
        )
        .unwrap();
        let output = env.cli(&["plugins"]).await;
        assert_one_line_error(&output, needle);
        assert!(
            output.stderr.contains("plugin \"taobao\""),
            "{}",
            output.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_cli_input_is_a_clear_error() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let output = env
        .cli(&["send", "taobao", "--coupon", "48552", "--to", "张三"])
        .await;
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("invalid recipient"),
        "{}",
        output.stderr
    );

    // Linux refuses a single argument over 128 KiB before the program starts; this is near it.
    let huge = format!("nick:{}", "x".repeat(120_000));
    let output = env
        .cli(&["send", "taobao", "--coupon", "48552", "--to", &huge])
        .await;
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("longer than 256 bytes"),
        "{}",
        &output.stderr[..output.stderr.len().min(300)]
    );
    assert!(output.stderr.len() < 2000, "the error echoes the argument");
    assert!(env.sim.calls().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_any_output_log_or_state() {
    let mut sim = SimConfig::demo();
    sim.taobao.unknown_buyers = vec!["鬼".into()];
    let env = TestEnv::start(sim, Options::default()).await;
    let recipients = env.dir.path().join("campaign.txt");
    std::fs::write(&recipients, "nick:甲\nnick:乙\nnick:鬼\nbad line\n").unwrap();
    let recipients = recipients.to_str().unwrap();
    let mut outputs = Vec::new();
    for args in [
        vec!["plugins", "--json"],
        vec![
            "send",
            "taobao",
            "--coupon",
            "48552",
            "--to",
            "nick:张三",
            "--to",
            "nick:鬼",
            "--json",
        ],
        vec!["send", "taobao", "--coupon", "1", "--to", "nick:张三"],
        vec!["query", "taobao", "--recipient", "nick:张三"],
        vec![
            "send",
            "douyin",
            "--coupon",
            "7218070000005644204",
            "--to",
            "open-id:x",
            "--json",
        ],
        vec![
            "send",
            "alsc",
            "--coupon",
            "3243421",
            "--to",
            "customer-id:5757",
            "--json",
        ],
        vec![
            "campaign",
            "run",
            "taobao",
            "--coupon",
            "48552",
            "--recipients",
            recipients,
            "--id",
            "scan",
            "--json",
        ],
        vec!["campaign", "status", "scan", "--json"],
        vec!["campaign", "report", "scan", "--format", "json"],
        vec!["campaign", "report", "scan"],
    ] {
        let mut command = env.command(&["--log-format", "json"]);
        command.args(&args).env("COUPON_HOST_LOG", "trace");
        outputs.push(crate::support::run(command).await);
    }
    for output in &outputs {
        assert_no_secret(&[&output.stdout, &output.stderr]);
    }
    // Trace logging really ran, and the sends went through (a scan of empty output or of
    // failed calls would prove nothing).
    assert!(outputs[1].stderr.contains("plugin loaded"));
    assert!(outputs[4].stderr.contains("fetched a douyin client_token"));
    assert!(
        outputs[6].stdout.contains("\"issued\":2"),
        "{}",
        outputs[6].stdout
    );
    assert_eq!(
        outputs[8].stdout.lines().count(),
        4,
        "{}",
        outputs[8].stdout
    );
    for i in [1, 4, 5] {
        assert!(outputs[i].status.success(), "{}", outputs[i].stderr);
        assert!(
            outputs[i].stdout.contains("\"issued\":[{"),
            "{}",
            outputs[i].stdout
        );
    }
    for entry in walk(env.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in [APP_SECRET, SESSION, crate::support::DOUYIN_SECRET] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret",
                entry.display()
            );
        }
    }
    let _ = nicks(0);
}

pub(crate) fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A key reused for another request is refused, and the error names the key without advising
/// to send again under it (that would be refused again); a send that could not finish does.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_key_is_named_without_advice_to_resend_under_it() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let send = |to: &'static str| {
        [
            "send",
            "taobao",
            "--coupon",
            "48552",
            "--to",
            to,
            "--idempotency-key",
            "reused-key",
        ]
    };
    assert!(env.cli(&send("nick:张三")).await.status.success());
    let refused = env.cli(&send("nick:李四")).await;
    assert_eq!(refused.status.code(), Some(1), "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("already used for a different request")
            && refused.stderr.contains("(idempotency key reused-key)")
            && !refused.stderr.contains("send again"),
        "{}",
        refused.stderr
    );
}

/// The platform answers 502 to every attempt: the send fails as a whole. `--json` prints one
/// JSON object naming the key it ran under, the text `error:` line names it too, and sent again
/// under that key once the platform is back, the recipient gets the coupon, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_send_failed_as_a_whole_names_its_idempotency_key() {
    let options = Options {
        retry: format!("{}, max_attempts = 2", crate::support::FAST_RETRY),
        ..Options::default()
    };
    let env = TestEnv::start(SimConfig::demo(), options).await;
    let fail_twice = || {
        env.sim.inject(coupon_sim::Fault::Status {
            api: Some(crate::support::TAOBAO_SEND_API.to_owned()),
            status: 502,
            times: 2,
        })
    };
    let send = ["send", "taobao", "--coupon", "48552", "--to", "nick:张三"];

    fail_twice();
    let output = env.cli(&[&send[..], &["--json"]].concat()).await;
    assert_one_line_error(&output, "transient");
    let json: serde_json::Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", output.stdout));
    let error = &json["error"];
    assert_eq!(error["class"], "transient", "{json}");
    assert!(error["code"].is_string(), "{json}");
    assert!(
        error["message"].as_str().unwrap().contains("taobao"),
        "{json}"
    );
    let key = error["idempotency_key"].as_str().unwrap().to_owned();
    assert!(output.stderr.contains(&key), "{}", output.stderr);
    assert!(env.sim.ledger().is_empty());

    // In text mode the `error:` line names the generated key.
    fail_twice();
    let output = env.cli(&send).await;
    assert_one_line_error(&output, "--idempotency-key ch-");
    assert!(output.stdout.is_empty(), "{}", output.stdout);

    // Resent under the first key: issued once.
    let resent = env
        .cli(&[&send[..], &["--idempotency-key", &key, "--json"]].concat())
        .await
        .json();
    assert_eq!(resent["idempotency_key"], key.as_str());
    assert_eq!(resent["issued"][0]["recipient"], "nick:张三");
    assert_eq!(env.sim.ledger().len(), 1);
}

/// Every command given `--json` answers a failure with one JSON object on stdout too, of the
/// same shape; `--log-format json` makes the final `error:` a JSON log line.
#[tokio::test(flavor = "multi_thread")]
async fn every_json_command_fails_with_one_json_object() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let cases: [(&[&str], &str); 5] = [
        (
            &["query", "nope", "--recipient", "nick:a", "--json"],
            "unknown-plugin",
        ),
        (
            &["query", "taobao", "--recipient", "a", "--json"],
            "invalid-request",
        ),
        (
            &["campaign", "status", "nope", "--json"],
            "unknown-campaign",
        ),
        (&["accounts", "list", "nope", "--json"], "unknown-plugin"),
        (
            &["send", "nope", "--coupon", "1", "--to", "nick:a", "--json"],
            "unknown-plugin",
        ),
    ];
    for (args, class) in cases {
        let output = env.cli(args).await;
        assert_one_line_error(&output, "");
        let json: serde_json::Value = serde_json::from_str(&output.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: not one JSON object ({e}): {}", output.stdout));
        assert_eq!(json["error"]["class"], class, "{args:?}: {json}");
        assert!(json["error"]["code"].is_null(), "{json}");
        assert!(json["error"]["message"].is_string(), "{json}");
        assert_eq!(json.as_object().unwrap().len(), 1, "{json}");
    }
    // A config that does not load: `plugins --json` too.
    std::fs::write(env.dir.path().join("broken.toml"), "[plugins.taobao\n").unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_coupon-host"));
    command
        .args(["--config", "broken.toml", "plugins", "--json"])
        .current_dir(env.dir.path());
    let output = crate::support::run(command).await;
    assert_one_line_error(&output, "broken.toml:1");
    let json: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(json["error"]["class"], "config", "{json}");

    // With JSON logs, the last words are a JSON line too.
    let mut command = env.command(&[
        "--log-format",
        "json",
        "query",
        "nope",
        "--recipient",
        "nick:a",
    ]);
    command.env("COUPON_HOST_LOG", "off");
    let output = crate::support::run(command).await;
    assert!(!output.status.success());
    let lines: Vec<_> = output.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", output.stderr);
    let line: serde_json::Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {}", lines[0]));
    assert_eq!(line["level"], "ERROR", "{line}");
    let message = line["fields"]["message"].as_str().unwrap();
    assert!(message.starts_with("error: unknown plugin"), "{line}");
}

/// Logs on a stderr that is not a terminal (a pipe here, a file or a collector in production)
/// carry no colour codes.
#[tokio::test(flavor = "multi_thread")]
async fn logs_to_a_pipe_have_no_colour_codes() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let mut command = env.command(&["plugins"]);
    command.env("COUPON_HOST_LOG", "info");
    let output = crate::support::run(command).await;
    assert!(output.status.success(), "{}", output.stderr);
    assert!(output.stderr.contains("plugin loaded"), "{}", output.stderr);
    assert!(!output.stderr.contains('\u{1b}'), "{:?}", output.stderr);
}

/// A report of a campaign that does not exist writes nothing before its error (no CSV header,
/// no file); a report whose reader stops early (`| head`) ends quietly.
#[tokio::test(flavor = "multi_thread")]
async fn campaign_reports_fail_cleanly_and_stop_quietly() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let output = env.cli(&["campaign", "report", "nope"]).await;
    assert_one_line_error(&output, "no campaign \"nope\"");
    assert!(output.stdout.is_empty(), "{}", output.stdout);
    let file = env.dir.path().join("report.csv");
    let output = env
        .cli(&[
            "campaign",
            "report",
            "nope",
            "--output",
            file.to_str().unwrap(),
        ])
        .await;
    assert_one_line_error(&output, "no campaign");
    assert!(!file.exists());

    // A report far larger than a pipe's buffer, its reader gone after one line.
    let recipients = env.dir.path().join("many.txt");
    let lines: Vec<String> = (0..5000).map(|i| format!("nick:读者-{i:05}")).collect();
    std::fs::write(&recipients, lines.join("\n")).unwrap();
    let run = env
        .cli(&[
            "campaign",
            "run",
            "taobao",
            "--coupon",
            "48552",
            "--recipients",
            recipients.to_str().unwrap(),
            "--id",
            "piped",
            "--json",
        ])
        .await
        .json();
    assert_eq!(run["issued"], 5000, "{run}");
    let mut command = env.command(&["campaign", "report", "piped", "--format", "json"]);
    command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut first)
        .await
        .unwrap();
    assert!(first.contains("读者-00000"), "{first}");
    drop(stdout);
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(stderr.is_empty(), "{stderr}");
}

/// A `campaign run` that joins work already done says how much, and its progress counts the
/// whole campaign: here the first run stops after one batch, and the second joins at 100.
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_run_joining_done_work_says_so() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let recipients = env.dir.path().join("joined.txt");
    let lines: Vec<String> = (0..300).map(|i| format!("nick:j{i}")).collect();
    std::fs::write(&recipients, lines.join("\n")).unwrap();
    let args = [
        "campaign",
        "run",
        "taobao",
        "--coupon",
        "48552",
        "--recipients",
        recipients.to_str().unwrap(),
        "--concurrency",
        "1",
    ];
    // The first batch goes through; the second meets an expired session and stops the run.
    env.sim.inject(coupon_sim::Fault::Delay {
        api: Some(crate::support::TAOBAO_SEND_API.into()),
        millis: 1,
        apply: true,
        times: 1,
    });
    env.sim.inject(coupon_sim::Fault::TopError {
        api: Some(crate::support::TAOBAO_SEND_API.into()),
        code: 27,
        msg: "Invalid session".into(),
        sub_code: Some("invalid-sessionkey".into()),
        sub_msg: None,
        times: 1,
    });
    let stopped = env.cli(&args).await;
    assert!(!stopped.status.success());
    assert_eq!(env.sim.ledger().len(), 100);
    let joined = env.cli(&args).await;
    assert!(joined.status.success(), "{}", joined.stderr);
    assert!(
        joined.stderr.contains(": 100 of 300 done before this run"),
        "{}",
        joined.stderr
    );
    assert_eq!(env.sim.ledger().len(), 300);
}

/// Counts read as English: one coupon, one account.
#[tokio::test(flavor = "multi_thread")]
async fn counts_of_one_are_singular() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    // Douyin's demo seed has one activity: the recipient holds one coupon.
    let to = ["--to", "open-id:一个"];
    let sent = env
        .cli(
            &[
                &["send", "douyin", "--coupon", "7218070000005644204"][..],
                &to,
            ]
            .concat(),
        )
        .await;
    assert!(sent.status.success(), "{}", sent.stderr);
    let query = env
        .cli(&["query", "douyin", "--recipient", "open-id:一个"])
        .await;
    assert_eq!(
        query.stdout.lines().last(),
        Some("1 coupon"),
        "{}",
        query.stdout
    );
    let list = env.cli(&["accounts", "list", "taobao"]).await;
    assert_eq!(
        list.stdout.lines().last(),
        Some("1 account"),
        "{}",
        list.stdout
    );
}

/// `default` is the plugin's own credentials, from the config: removing it is refused with
/// that reason, not with advice to choose another name.
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_default_account_says_why_not() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let output = env.cli(&["accounts", "remove", "taobao", "default"]).await;
    assert_one_line_error(
        &output,
        "own credentials in the config (plugins.taobao.auth)",
    );
    assert!(
        !output.stderr.contains("choose another"),
        "{}",
        output.stderr
    );
}

/// A platform nobody listens for: the failure names the address the host tried.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_names_the_address() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    crate::hostile::append_config(
        &env,
        &format!(
            r#"
[plugins.closed]
component = {component:?}
allowed_hosts = ["http://127.0.0.1:{port}"]
auth = {{ scheme = "top", app_key = "12345678", app_secret_env = "{secret}" }}
retry = {{ max_attempts = 1 }}
settings = {{ gateway = "http://127.0.0.1:{port}/router/rest" }}
"#,
            component = coupon_host_tests::TAOBAO,
            secret = crate::support::APP_SECRET_ENV,
        ),
    );
    let output = env
        .cli(&["send", "closed", "--coupon", "48552", "--to", "nick:a"])
        .await;
    let said = format!("{}{}", output.stdout, output.stderr);
    assert!(
        said.contains(&format!("cannot connect to http://127.0.0.1:{port}")),
        "{said}"
    );
}
