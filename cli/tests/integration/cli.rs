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
