//! The library as an engine embeds it: the runnable example, and a graceful shutdown.

use coupon_host::{CouponState, Error, SendRequest};
use coupon_sim::SimConfig;

use crate::support::{Options, TAOBAO_COUPON, TestEnv};

#[path = "../../../host/examples/embed.rs"]
mod example;

#[tokio::test(flavor = "multi_thread")]
async fn the_embedding_example_runs_against_the_simulator() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let report = example::run(
        &host,
        "taobao",
        TAOBAO_COUPON,
        "nick:张三".parse().unwrap(),
        None,
    )
    .await
    .expect("the example runs");
    assert_eq!(report.plugins, ["alsc", "douyin", "taobao", "tmall-nrt"]);
    assert_eq!(report.outcome.issued.len(), 1);
    assert!(report.outcome.failed.is_empty());
    assert!(
        report.coupons.iter().any(
            |c| c.state == CouponState::Held && c.template_id.as_deref() == Some(TAOBAO_COUPON)
        ),
        "{:?}",
        report.coupons
    );
    assert_eq!(env.sim.ledger().len(), 1);
    // The example shuts its host down last: every clone now refuses calls.
    let refused = host
        .send(
            "taobao",
            SendRequest::new(TAOBAO_COUPON, vec!["nick:李四".parse().unwrap()]),
        )
        .await;
    assert!(matches!(refused, Err(Error::ShuttingDown)), "{refused:?}");
}

/// The README's embedding commands as a user copies them: their environment (the demo's master
/// key and secrets), `examples/sandbox.toml` and the example's arguments. Only what cannot be
/// the same in a test changes: the simulator's address (a free port, not 18080), the component
/// paths (this run's builds) and where state is kept.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_embedding_commands_run_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .map(|block| block.split("```").next().unwrap())
        .find(|block| block.contains("--example embed"))
        .expect("the README shows how to run the embedding example");
    let command = block.replace("\\\n", " ");
    let line = command
        .lines()
        .find(|line| line.contains("--example embed"))
        .unwrap();
    let secrets: Vec<(String, String)> = line
        .split_whitespace()
        .map_while(|word| word.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    assert!(
        secrets
            .iter()
            .any(|(name, _)| name == "COUPON_HOST_MASTER_KEY"),
        "{line}"
    );
    let args: Vec<&str> = line
        .split_once(" -- ")
        .expect("the example's arguments follow --")
        .1
        .split_whitespace()
        .collect();
    let [config, plugin, coupon, recipient, account] = args[..] else {
        panic!("expected CONFIG PLUGIN COUPON KIND:ID ACCOUNT, got {args:?}");
    };

    let sim = coupon_sim::Sim::start(SimConfig::demo()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root.join(config)).unwrap();
    let mut rewritten = String::new();
    let mut section = "";
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("[plugins.") {
            section = name.trim_end_matches(']');
        }
        let line = if line.starts_with("component = ") {
            let (_, path) = coupon_host_tests::PLUGINS
                .iter()
                .find(|(name, _)| *name == section)
                .unwrap_or_else(|| panic!("no component built for plugin {section}"));
            format!("component = {path:?}")
        } else if line.starts_with("path = ") {
            format!("path = {:?}", dir.path().join("coupon-host.db"))
        } else if line.starts_with("cache_dir = ") {
            format!("cache_dir = {:?}", crate::support::cache_dir())
        } else {
            line.replace("http://127.0.0.1:18080", &sim.base_url())
        };
        rewritten.push_str(&line);
        rewritten.push('\n');
    }
    let config_path = dir.path().join("sandbox.toml");
    std::fs::write(&config_path, rewritten).unwrap();
    let lookup = |name: &str| {
        secrets
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let config = coupon_host::Config::load_with_env(&config_path, &lookup)
        .expect("examples/sandbox.toml loads with the README's environment");
    let host = coupon_host::Host::new(config).await.expect("host starts");
    let report = example::run(
        &host,
        plugin,
        coupon,
        recipient.parse().unwrap(),
        Some(account),
    )
    .await
    .expect("the example runs as the README runs it");
    assert_eq!(report.outcome.issued.len(), 1, "{:?}", report.outcome);
    assert!(
        report.coupons.iter().any(|c| c.state == CouponState::Held),
        "{:?}",
        report.coupons
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_refuses_new_calls_and_waits_for_running_ones() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    env.add_slow_plugin();
    let host = env.host().await;
    env.delay_next_send(1_500);
    let running = tokio::spawn({
        let host = host.clone();
        async move {
            host.send(
                "slow",
                SendRequest::new(TAOBAO_COUPON, vec!["nick:running".parse().unwrap()]),
            )
            .await
        }
    });
    env.wait_for_sends(1).await;

    let shutdown = tokio::spawn({
        let host = host.clone();
        async move { host.shutdown().await }
    });
    while !host.is_shutting_down() {
        tokio::task::yield_now().await;
    }
    let refused = host
        .query(
            "taobao",
            coupon_host::QueryRequest {
                recipient: "nick:running".parse().unwrap(),
                options: Vec::new(),
                account: None,
            },
        )
        .await;
    assert!(matches!(refused, Err(Error::ShuttingDown)), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("shutting down"));

    shutdown.await.unwrap();
    // Shutdown returned, so the running send had already ended — and it ended well.
    assert!(running.is_finished());
    let outcome = running.await.unwrap().expect("the running send completes");
    assert_eq!(outcome.issued.len(), 1);
}
