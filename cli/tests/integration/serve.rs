//! `coupon-host serve` through real HTTP on loopback: the binary as an operator runs it.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use coupon_sim::SimConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::{
    APP_SECRET, DOUYIN_SECRET, Options, SESSION, TAOBAO_COUPON, TAOBAO_SEND_API, TestEnv,
};

/// Everything at `trace` but the compiler's own trace: Cranelift logs each instruction it
/// compiles (gigabytes per component on a cold cache), and it sees only wasm code, never a
/// secret.
pub(crate) const TRACE: &str =
    "trace,cranelift_codegen=info,cranelift_frontend=info,wasmtime_internal_cranelift=info";

/// A running `coupon-host serve` with JSON logs (at `info` unless started with
/// [`Server::start_at`]), its stderr collected.
pub(crate) struct Server {
    pub(crate) child: tokio::process::Child,
    pub(crate) base: String,
    stderr: Arc<Mutex<String>>,
    pub(crate) http: reqwest::Client,
    /// Sent as `Authorization: Bearer …` with every request.
    pub(crate) key: Option<String>,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) text: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    /// Asserts the status and the error kind of a JSON error answer; returns its message.
    pub(crate) fn error(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        let json = self.json();
        assert_eq!(json["error"]["kind"], kind, "{json}");
        json["error"]["message"].as_str().unwrap().to_owned()
    }
}

impl Server {
    pub(crate) async fn start(env: &TestEnv, args: &[&str]) -> Server {
        Server::start_at(env, "info", args).await
    }

    /// [`Server::start`], logging at `level` (`COUPON_HOST_LOG`): [`TRACE`] for the tests that
    /// look for secrets in everything the server could log; `""` leaves it unset (the default).
    pub(crate) async fn start_at(env: &TestEnv, level: &str, args: &[&str]) -> Server {
        match Server::try_start_at(env, level, args).await {
            Ok(server) => server,
            Err((status, first, stderr)) => {
                panic!("serve did not start ({status}): {first:?}\n{stderr}")
            }
        }
    }

    /// Starts `serve`, or returns how it exited, its first stdout line and its stderr.
    pub(crate) async fn try_start(
        env: &TestEnv,
        args: &[&str],
    ) -> Result<Server, (std::process::ExitStatus, String, String)> {
        Server::try_start_at(env, "info", args).await
    }

    async fn try_start_at(
        env: &TestEnv,
        level: &str,
        args: &[&str],
    ) -> Result<Server, (std::process::ExitStatus, String, String)> {
        let listen = if args.contains(&"--listen") {
            Vec::new()
        } else {
            vec!["--listen", "127.0.0.1:0"]
        };
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_coupon-host"));
        command
            .arg("--config")
            .arg(&env.config_path)
            .args(["--log-format", "json", "serve"])
            .args(listen)
            .args(args)
            .env("COUPON_HOST_LOG", level)
            .envs(env.secrets.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if level.is_empty() {
            command.env_remove("COUPON_HOST_LOG");
        }
        let mut child = command.spawn().expect("coupon-host starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut sink = sink.lock().unwrap();
                sink.push_str(&line);
                sink.push('\n');
            }
        });
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .await
            .unwrap();
        let Some(base) = first.trim().strip_prefix("coupon-host listening on ") else {
            let status = child.wait().await.unwrap();
            // The stderr reader ends at EOF, which follows the exit.
            for _ in 0..500 {
                if Arc::strong_count(&stderr) == 1 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let text = stderr.lock().unwrap().clone();
            return Err((status, first, text));
        };
        // A wildcard address is reached on loopback.
        let base = base.replace("0.0.0.0", "127.0.0.1");
        Ok(Server {
            base,
            child,
            stderr,
            http: reqwest::Client::new(),
            key: None,
        })
    }

    /// This server, with `key` sent on every request.
    pub(crate) fn with_key(mut self, key: &str) -> Server {
        self.key = Some(key.to_owned());
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    pub(crate) async fn answer(response: reqwest::Response) -> Answer {
        Answer {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        let response = self
            .authorized(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        Server::answer(response).await
    }

    pub(crate) async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        let response = self
            .authorized(self.http.post(format!("{}{path}", self.base)))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        Server::answer(response).await
    }

    pub(crate) async fn send(&self, plugin: &str, body: Value) -> Answer {
        self.post(&format!("/v1/plugins/{plugin}/send"), body.to_string())
            .await
    }

    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM.
    pub(crate) fn signal_term(&self) {
        let pid = self.child.id().unwrap().to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(kill.success());
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(crate) async fn terminate(self) -> (std::process::ExitStatus, String) {
        self.signal_term();
        self.exit().await
    }

    /// Waits for the process to exit; its status and stderr.
    pub(crate) async fn exit(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().await.unwrap();
        // The stderr reader ends at EOF, which follows the exit.
        for _ in 0..500 {
            if Arc::strong_count(&self.stderr) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        (status, self.stderr())
    }
}

pub(crate) fn assert_no_secret(text: &str) {
    for secret in [APP_SECRET, SESSION, DOUYIN_SECRET] {
        assert!(!text.contains(secret), "a secret leaked: {text}");
    }
}

/// The keys of a JSON object, sorted.
fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_answers_in_the_shapes_the_cli_prints() {
    let mut sim = SimConfig::demo();
    sim.taobao.unknown_buyers = vec!["鬼".into()];
    let env = TestEnv::start(sim, Options::default()).await;
    let server = Server::start(&env, &[]).await;

    let health = server.get("/healthz").await;
    assert_eq!(
        (health.status, health.json()),
        (200, json!({"status": "ok"}))
    );
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");

    let plugins = server.get("/v1/plugins").await;
    assert_eq!(plugins.status, 200);
    // The CLI's, but with each component named by its file name only: a client (any key) is
    // not told where the server keeps its files.
    let mut cli_plugins = env.cli(&["plugins", "--json"]).await.json();
    for plugin in cli_plugins["plugins"].as_array_mut().unwrap() {
        let path = plugin["component"].as_str().unwrap().to_owned();
        assert!(path.starts_with('/'), "{path}");
        let name = std::path::Path::new(&path).file_name().unwrap();
        plugin["component"] = name.to_str().unwrap().into();
    }
    assert_eq!(plugins.json(), cli_plugins);

    let sent = server
        .send(
            "taobao",
            json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:张三", "nick:鬼"],
                   "idempotency_key": "serve-shapes-1", "options": {"simplify": "true"}}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let outcome = sent.json();
    assert_eq!(outcome["issued"][0]["recipient"], "nick:张三");
    assert!(outcome["issued"][0]["coupon_id"].is_string());
    assert_eq!(outcome["failed"][0]["recipient"], "nick:鬼");
    assert_eq!(outcome["failed"][0]["error"]["class"], "recipient-invalid");
    assert_eq!(outcome["idempotency_key"], "serve-shapes-1");
    let cli_send = env
        .cli(&[
            "send",
            "taobao",
            "--coupon",
            "48553",
            "--to",
            "nick:李四",
            "--json",
        ])
        .await
        .json();
    assert_eq!(keys(&outcome), keys(&cli_send));
    assert_eq!(keys(&outcome["issued"][0]), keys(&cli_send["issued"][0]));

    let queried = server
        .post(
            "/v1/plugins/taobao/query",
            json!({"recipient": "nick:张三"}).to_string(),
        )
        .await;
    assert_eq!(queried.status, 200, "{}", queried.text);
    let coupons = queried.json();
    let cli_query = env
        .cli(&["query", "taobao", "--recipient", "nick:张三", "--json"])
        .await
        .json();
    assert_eq!(coupons, cli_query);
    assert!(
        coupons["coupons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["state"] == "held"),
        "{coupons}"
    );

    let openapi = server.get("/openapi.json").await;
    assert_eq!(openapi.status, 200);
    let doc = openapi.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/plugins/{name}/send"]["post"].is_object());
    assert!(doc["paths"]["/v1/campaigns"]["post"].is_object());

    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    server.get("/v1/nothing-here").await.error(404, "not-found");
    server
        .get("/v1/plugins/taobao/send")
        .await
        .error(405, "method-not-allowed");
    assert_no_secret(&server.stderr());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_json_errors_and_reach_no_platform() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let server = Server::start(&env, &["--max-body-kib", "1"]).await;
    let send = "/v1/plugins/taobao/send";

    let message = server
        .post(send, r#"{"coupon": "48552", "recipients": ["nick:a"#)
        .await
        .error(400, "malformed-json");
    assert!(message.contains("not valid JSON"), "{message}");
    server.post(send, "").await.error(400, "malformed-json");

    let message = server
        .send("taobao", json!({"coupon": 48552, "recipients": ["nick:a"]}))
        .await
        .error(422, "invalid-body");
    assert!(message.contains("invalid type"), "{message}");
    let message = server
        .send("taobao", json!({"coupon": "48552", "recipients": "nick:a"}))
        .await
        .error(422, "invalid-body");
    assert!(message.contains("invalid type"), "{message}");
    let message = server
        .send(
            "taobao",
            json!({"coupon": "48552", "recipients": ["nick:a"], "priority": "high"}),
        )
        .await
        .error(422, "invalid-body");
    assert!(message.contains("unknown field `priority`"), "{message}");
    let message = server
        .send("taobao", json!({"recipients": ["nick:a"]}))
        .await
        .error(422, "invalid-body");
    assert!(message.contains("missing field `coupon`"), "{message}");
    let message = server
        .send(
            "taobao",
            json!({"coupon": "48552", "recipients": ["email:a@b"]}),
        )
        .await
        .error(422, "invalid-body");
    assert!(message.contains("invalid recipient"), "{message}");
    let message = server
        .post(
            "/v1/plugins/taobao/query",
            json!({"recipient": "张三"}).to_string(),
        )
        .await
        .error(422, "invalid-body");
    assert!(message.contains("invalid recipient"), "{message}");

    // Valid JSON the host refuses before any adapter sees it.
    let message = server
        .send(
            "taobao",
            json!({"coupon": "48552", "recipients": ["nick:a", "nick:a"]}),
        )
        .await
        .error(422, "invalid-request");
    assert!(message.contains("listed twice"), "{message}");
    server
        .send(
            "taobao",
            json!({"coupon": "48552", "recipients": ["customer-id:5757"]}),
        )
        .await
        .error(422, "invalid-request");

    let message = server
        .send("weibo", json!({"coupon": "1", "recipients": ["nick:a"]}))
        .await
        .error(404, "unknown-plugin");
    assert!(message.contains("weibo"), "{message}");

    let recipients: Vec<String> = (0..200).map(|i| format!("nick:buyer-{i}")).collect();
    let big = json!({"coupon": "48552", "recipients": recipients}).to_string();
    assert!(big.len() > 2048);
    let message = server.post(send, big).await.error(413, "payload-too-large");
    assert!(message.contains("1024 bytes"), "{message}");

    assert!(
        env.sim.calls().is_empty(),
        "a refused request reached the platform: {:?}",
        env.sim.calls()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_max_in_flight_answers_429_with_retry_after_at_once() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    env.add_slow_plugin();
    let server = Arc::new(Server::start(&env, &["--max-in-flight", "1"]).await);
    env.delay_next_send(3_000);

    let held = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .send(
                    "slow",
                    json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:first"]}),
                )
                .await
        }
    });
    // The first send has reached the platform and is held there: its permit is taken.
    env.wait_for_sends(1).await;

    let refused = server
        .send(
            "taobao",
            json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:second"]}),
        )
        .await;
    refused.error(429, "overloaded");
    let retry_after = refused.headers["retry-after"].to_str().unwrap();
    assert!(retry_after.parse::<u64>().unwrap() >= 1, "{retry_after}");
    // Probes are not behind the limit.
    assert_eq!(server.get("/healthz").await.status, 200);

    let first = held.await.unwrap();
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.json()["issued"][0]["recipient"], "nick:first");
    // The refused send never reached the platform, and the permit is free again.
    assert_eq!(
        env.sim
            .calls()
            .iter()
            .filter(|c| c.api == TAOBAO_SEND_API)
            .count(),
        1
    );
    let after = server
        .send(
            "taobao",
            json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:second"]}),
        )
        .await;
    assert_eq!(after.status, 200, "{}", after.text);

    let metrics = server.get("/metrics").await.text;
    assert!(
        metrics.contains(
            r#"coupon_host_http_requests_total{route="/v1/plugins/{name}/send",status="429"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_served_send_by_plugin_outcome_and_class() {
    let mut sim = SimConfig::demo();
    sim.taobao.unknown_buyers = vec!["鬼".into()];
    let env = TestEnv::start(sim, Options::default()).await;
    let server = Server::start(&env, &[]).await;
    let calls_ok =
        r#"coupon_host_calls_total{plugin="taobao",op="send",outcome="ok",class="none"} 1"#;
    assert!(!server.get("/metrics").await.text.contains(calls_ok));

    let sent = server
        .send(
            "taobao",
            json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:张三", "nick:鬼"]}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    server
        .send(
            "taobao",
            json!({"coupon": "999999", "recipients": ["nick:张三"]}),
        )
        .await
        .error(422, "adapter");

    let metrics = server.get("/metrics").await.text;
    for line in [
        calls_ok,
        r#"coupon_host_calls_total{plugin="taobao",op="send",outcome="error",class="coupon-unavailable"} 1"#,
        r#"coupon_host_recipients_total{plugin="taobao",outcome="issued",class="none"} 1"#,
        r#"coupon_host_recipients_total{plugin="taobao",outcome="failed",class="recipient-invalid"} 1"#,
        r#"coupon_host_platform_requests_total{plugin="taobao",status="200"} 2"#,
        r#"coupon_host_http_requests_total{route="/v1/plugins/{name}/send",status="200"} 1"#,
        r#"coupon_host_call_duration_seconds_count{plugin="taobao",op="send"} 2"#,
        r#"coupon_host_platform_request_duration_seconds_count{plugin="taobao"} 2"#,
        r#"coupon_host_overhead_seconds_count{plugin="taobao",op="send"} 2"#,
        "coupon_host_instances_in_use 0",
        "# HELP coupon_host_calls_total",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
}

/// The JSON log lines of `stderr` that close a span named `name`.
fn span_closes(stderr: &str, name: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "close" && line["span"]["name"] == name)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_served_send_leaves_spans_with_key_request_id_outcome_and_latency() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let server = Server::start(&env, &[]).await;
    let sent = server
        .send(
            "taobao",
            json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:张三"], "idempotency_key": "trace-me-1"}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let request_id = sent.json()["platform_request_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "{status}\n{stderr}");

    let sends = span_closes(&stderr, "send");
    assert_eq!(sends.len(), 1, "{stderr}");
    let span = &sends[0]["span"];
    assert_eq!(span["plugin"], "taobao");
    assert_eq!(span["idempotency_key"], "trace-me-1");
    assert_eq!(span["issued"], 1);
    assert_eq!(span["failed"], 0);
    assert_eq!(span["platform_request_ids"], request_id.as_str());
    assert!(span["elapsed_ms"].is_u64(), "{span}");
    assert!(span.get("error_class").is_none(), "{span}");

    let platform_calls = span_closes(&stderr, "platform_call");
    let call = platform_calls
        .iter()
        .find(|line| line["span"]["api"] == TAOBAO_SEND_API)
        .unwrap_or_else(|| panic!("no platform_call span: {stderr}"));
    assert_eq!(call["span"]["plugin"], "taobao");
    assert_eq!(call["span"]["status"], "200");
    assert!(call["span"]["elapsed_ms"].is_u64());
    // It ran inside the send's span.
    assert_eq!(call["spans"][0]["name"], "send");
    assert_eq!(call["spans"][0]["idempotency_key"], "trace-me-1");
    assert_no_secret(&stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_running_send_finish_then_exits_zero() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    env.add_slow_plugin();
    let server = Server::start(&env, &[]).await;
    env.delay_next_send(2_000);
    let http = server.http.clone();
    let url = format!("{}/v1/plugins/slow/send", server.base);
    let running = tokio::spawn(async move {
        let response = http
            .post(url)
            .json(&json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:draining"]}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    });
    env.wait_for_sends(1).await;

    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "exit {status}\n{stderr}");
    // `terminate` returned after the process exited, so the send was answered before the exit.
    let (code, body) = running.await.unwrap();
    assert_eq!(code, 200, "{body}");
    let outcome: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(outcome["issued"][0]["recipient"], "nick:draining");
    assert!(stderr.contains("drained"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_posted_over_http_runs_in_the_background_and_reports_its_status() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let server = Server::start(&env, &[]).await;
    let recipients: Vec<String> = (0..250).map(|i| format!("nick:http{i:03}")).collect();
    let body = json!({"plugin": "taobao", "coupon": "48552", "recipients": recipients});
    let started = server.post("/v1/campaigns", body.to_string()).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.json()["id"].as_str().unwrap().to_owned();

    let mut status = Value::Null;
    for _ in 0..500 {
        status = server.get(&format!("/v1/campaigns/{id}")).await.json();
        if status["state"] == "done" && status["running"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(
        (status["total"].as_u64(), status["issued"].as_u64()),
        (Some(250), Some(250))
    );
    assert_eq!(env.sim.ledger().len(), 250);

    // The same campaign posted again is the same campaign: nothing is sent twice.
    let again = server.post("/v1/campaigns", body.to_string()).await;
    assert_eq!(again.json()["id"], id.as_str());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(env.sim.ledger().len(), 250);

    server
        .get("/v1/campaigns/no-such-campaign")
        .await
        .error(404, "unknown-campaign");
    let both = json!({"plugin": "taobao", "coupon": "48552", "recipients": ["nick:a"], "recipients_file": "/etc/hosts"});
    server
        .post("/v1/campaigns", both.to_string())
        .await
        .error(422, "invalid-body");
    let unknown = json!({"plugin": "nope", "coupon": "1", "recipients": ["nick:a"]});
    server
        .post("/v1/campaigns", unknown.to_string())
        .await
        .error(404, "unknown-plugin");
    // Without `[serve] campaigns_dir`, no file on the server may be named.
    let file = json!({"plugin": "taobao", "coupon": "1", "recipients_file": "list.txt"});
    server
        .post("/v1/campaigns", file.to_string())
        .await
        .error(422, "invalid-recipients-file");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_config_and_a_broken_one_changes_nothing() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let server = Server::start(&env, &[]).await;
    let plugins = |answer: Answer| answer.json()["plugins"].as_array().unwrap().len();
    assert_eq!(plugins(server.get("/v1/plugins").await), 4);
    let hangup = |pid: u32| {
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    let pid = server.child.id().unwrap();
    let original = std::fs::read_to_string(&env.config_path).unwrap();

    // A broken file: logged, nothing changes.
    std::fs::write(&env.config_path, "[plugins.taobao\n").unwrap();
    hangup(pid);
    for _ in 0..500 {
        if server.stderr().contains("the config does not load") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        server.stderr().contains("the config does not load"),
        "{}",
        server.stderr()
    );
    assert_eq!(plugins(server.get("/v1/plugins").await), 4);

    // Without alsc: after the reload, alsc is gone and the others still serve.
    let start = original.find("[plugins.alsc]").unwrap();
    let end = start + original[start..].find("\n[plugins.douyin]").unwrap();
    std::fs::write(
        &env.config_path,
        format!("{}{}", &original[..start], &original[end..]),
    )
    .unwrap();
    hangup(pid);
    let mut count = 4;
    for _ in 0..500 {
        count = plugins(server.get("/v1/plugins").await);
        if count == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(count, 3);
    server
        .send(
            "alsc",
            json!({"coupon": "3243421", "recipients": ["customer-id:1"]}),
        )
        .await
        .error(404, "unknown-plugin");
    let sent = server
        .send(
            "taobao",
            json!({"coupon": "48552", "recipients": ["nick:after-hup"]}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
}

/// A send that fails as a whole (the platform answering 502 until the retries are spent) names
/// the idempotency key it ran under, generated, in its 502 answer; sent again under that key once
/// the platform is back, it issues the coupon, once.
#[tokio::test(flavor = "multi_thread")]
async fn a_send_failed_as_a_whole_answers_its_key_to_resend_with() {
    let options = Options {
        retry: format!("{}, max_attempts = 2", crate::support::FAST_RETRY),
        ..Options::default()
    };
    let env = TestEnv::start(SimConfig::demo(), options).await;
    let server = Server::start(&env, &[]).await;
    env.sim.inject(coupon_sim::Fault::Status {
        api: Some(TAOBAO_SEND_API.to_owned()),
        status: 502,
        times: 2,
    });
    let body = json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:resent"]});
    let failed = server.send("taobao", body.clone()).await;
    failed.error(502, "adapter");
    let key = failed.json()["error"]["idempotency_key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key: {}", failed.text))
        .to_owned();
    assert!(env.sim.ledger().is_empty());

    let mut again = body;
    again["idempotency_key"] = key.clone().into();
    let sent = server.send("taobao", again).await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    assert_eq!(sent.json()["idempotency_key"], key.as_str());
    assert_eq!(sent.json()["issued"][0]["recipient"], "nick:resent");
    assert_eq!(env.sim.ledger().len(), 1);

    // A key the client gave is the one named.
    env.sim.inject(coupon_sim::Fault::Status {
        api: Some(TAOBAO_SEND_API.to_owned()),
        status: 502,
        times: 2,
    });
    let given =
        json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:other"], "idempotency_key": "mine-1"});
    let failed = server.send("taobao", given).await;
    failed.error(502, "adapter");
    assert_eq!(failed.json()["error"]["idempotency_key"], "mine-1");
}

/// At the default log level (no `COUPON_HOST_LOG`), a successful SIGHUP reload leaves a line in
/// the log: an operator who reloads sees that it took.
#[tokio::test(flavor = "multi_thread")]
async fn a_sighup_reload_is_logged_at_the_default_level() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let server = Server::start_at(&env, "", &[]).await;
    let pid = server.child.id().unwrap();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    for _ in 0..1000 {
        if server.stderr().contains("reloaded the config on SIGHUP") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let stderr = server.stderr();
    let line = stderr
        .lines()
        .find(|line| line.contains("reloaded the config on SIGHUP"))
        .unwrap_or_else(|| panic!("no reload line: {stderr}"));
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["level"], "INFO", "{line}");
    // The default level is not every call's: a send leaves no line.
    let sent = server
        .send(
            "taobao",
            json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:quiet"]}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);
    let (_, stderr) = server.terminate().await;
    assert!(!stderr.contains("\"message\":\"close\""), "{stderr}");
}

/// `[serve]` is `serve`'s: a `campaigns_dir` that does not exist here stops `serve` with the
/// config's file and line, and no other command.
#[tokio::test(flavor = "multi_thread")]
async fn serve_settings_are_checked_by_serve_only() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    crate::hostile::append_config(&env, "\n[serve]\ncampaigns_dir = \"no-such-dir\"\n");
    let plugins = env.cli(&["plugins", "--json"]).await.json();
    assert_eq!(plugins["plugins"].as_array().unwrap().len(), 4);
    let status = env.cli(&["campaign", "status", "nope"]).await;
    assert!(
        status.stderr.contains("no campaign") && !status.stderr.contains("campaigns_dir"),
        "{}",
        status.stderr
    );
    let Err((exit, _, stderr)) = Server::try_start(&env, &[]).await else {
        panic!("serve started without its campaigns_dir");
    };
    assert!(!exit.success());
    assert!(
        stderr.contains(&format!("{}:", env.config_path.display()))
            && stderr.contains("serve.campaigns_dir"),
        "{stderr}"
    );
}
