//! A hostile client against `coupon-host serve` on loopback: keys, files it must not read,
//! requests that try to pin the server (slow heads and bodies, huge or deeply nested JSON,
//! bytes that are not UTF-8, path traversal, a flood of campaign starts), drains that must end,
//! and an OpenAPI-driven fuzz run (schemathesis) that must find no server error and no answer
//! the document does not describe.

use std::time::Duration;

use coupon_sim::SimConfig;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::accounts::{MASTER_KEY, keep_accounts};
use crate::serve::{Answer, Server, assert_no_secret};
use crate::support::{APP_SECRET_ENV, Options, TAOBAO_COUPON, TAOBAO_SEND_API, TestEnv};

/// The keys [`with_keys`] configures: `engine` (send, query, campaigns), `metrics` (metrics),
/// `support` (query) and `admin` (accounts).
pub(crate) const ENGINE_KEY: &str = "engine-0123456789abcdef";
const METRICS_KEY: &str = "prometheus-fedcba9876543210";
const QUERY_KEY: &str = "support-desk-5555";
pub(crate) const ADMIN_KEY: &str = "admin-7777aaaa3333bbbb";

/// Appends `text` to the env's config.
pub(crate) fn append_config(env: &TestEnv, text: &str) {
    let mut config = std::fs::read_to_string(&env.config_path).unwrap();
    config.push_str(text);
    std::fs::write(&env.config_path, config).unwrap();
}

/// A `[serve.keys.NAME]` table for `key`.
pub(crate) fn key_table(name: &str, key: &str, scopes: &[&str]) -> String {
    format!(
        "\n[serve.keys.{name}]\nsha256 = {:?}\nscopes = {scopes:?}\n",
        hex::encode(Sha256::digest(key))
    )
}

/// An env whose config has four keys and `serve` (the `[serve]` table's own keys).
async fn with_keys(serve: &str) -> TestEnv {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    append_config(&env, &format!("\n[serve]\n{serve}\n"));
    append_config(
        &env,
        &key_table("engine", ENGINE_KEY, &["send", "query", "campaigns"]),
    );
    append_config(&env, &key_table("metrics", METRICS_KEY, &["metrics"]));
    append_config(&env, &key_table("support", QUERY_KEY, &["query"]));
    append_config(&env, &key_table("admin", ADMIN_KEY, &["accounts"]));
    env
}

/// A request with an `Authorization` header of `value` (or none); a body with `POST` and `PUT`.
pub(crate) async fn call(
    server: &Server,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> Answer {
    let url = format!("{}{path}", server.base);
    let mut request = match method {
        "GET" => server.http.get(url),
        "DELETE" => server.http.delete(url),
        "POST" | "PUT" => server
            .http
            .request(method.parse().unwrap(), url)
            .header("content-type", "application/json")
            .body(body.to_owned()),
        other => panic!("no {other} requests here"),
    };
    if let Some(value) = auth {
        request = request.header("authorization", value);
    }
    Server::answer(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_but_the_probes_needs_a_key_with_its_scope() {
    let env = with_keys("").await;
    let server = Server::start(&env, &[]).await;
    let send = json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:张三"]}).to_string();
    let query = json!({"recipient": "nick:张三"}).to_string();
    let campaign =
        json!({"plugin": "taobao", "coupon": TAOBAO_COUPON, "recipients": ["nick:c1"]}).to_string();
    let account = json!({"session": "never-kept-session"}).to_string();
    let code = json!({"code": "never-exchanged-code"}).to_string();
    let routes = [
        ("POST", "/v1/plugins/taobao/send", send.as_str(), "send"),
        ("POST", "/v1/plugins/taobao/query", query.as_str(), "query"),
        ("GET", "/v1/plugins", "", "any"),
        ("POST", "/v1/campaigns", campaign.as_str(), "campaigns"),
        ("GET", "/v1/campaigns/c-unknown", "", "campaigns"),
        ("GET", "/metrics", "", "metrics"),
        ("GET", "/v1/plugins/taobao/accounts", "", "accounts"),
        ("GET", "/v1/plugins/taobao/accounts/default", "", "accounts"),
        (
            "PUT",
            "/v1/plugins/taobao/accounts/shop-x",
            account.as_str(),
            "accounts",
        ),
        (
            "DELETE",
            "/v1/plugins/taobao/accounts/shop-x",
            "",
            "accounts",
        ),
        (
            "POST",
            "/v1/plugins/taobao/accounts/shop-x/authorize",
            code.as_str(),
            "accounts",
        ),
    ];
    let bearer = |key: &str| format!("Bearer {key}");
    for (method, path, body, scope) in routes {
        for auth in [
            None,
            Some("Bearer".to_owned()),
            Some(bearer("not-a-key")),
            Some(format!("Basic {}", ENGINE_KEY)),
            Some(bearer(&hex::encode(Sha256::digest(ENGINE_KEY)))),
        ] {
            let answer = call(&server, method, path, auth.as_deref(), body).await;
            answer.error(401, "unauthorized");
            assert_eq!(
                answer.headers["www-authenticate"], "Bearer realm=\"coupon-host\"",
                "{method} {path}"
            );
        }
        // Every key is valid; only those with the scope get through.
        for (name, key, scopes) in [
            (
                "engine",
                ENGINE_KEY,
                ["send", "query", "campaigns"].as_slice(),
            ),
            ("metrics", METRICS_KEY, ["metrics"].as_slice()),
            ("support", QUERY_KEY, ["query"].as_slice()),
            ("admin", ADMIN_KEY, ["accounts"].as_slice()),
        ] {
            let answer = call(&server, method, path, Some(&bearer(key)), body).await;
            if scope == "any" || scopes.contains(&scope) {
                assert!(
                    ![401, 403].contains(&answer.status),
                    "{name} on {method} {path}: {}",
                    answer.text
                );
            } else {
                let message = answer.error(403, "forbidden");
                assert!(
                    message.contains(name) && message.contains(scope),
                    "{message}"
                );
            }
        }
    }
    // The probes and the API's description stay open.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(
            call(&server, "GET", path, None, "").await.status,
            200,
            "{path}"
        );
    }
    // Nothing was sent without a key with the send scope: the engine's send is the only one.
    let sends = env
        .sim
        .calls()
        .iter()
        .filter(|c| c.api == TAOBAO_SEND_API)
        .count();
    assert!(sends <= 2, "{sends} sends (one send and one campaign)");

    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "{status}\n{stderr}");
    for key in [ENGINE_KEY, METRICS_KEY, QUERY_KEY, ADMIN_KEY] {
        assert!(!stderr.contains(key), "a key leaked into the log");
    }
    for secret in ["never-kept-session", "never-exchanged-code"] {
        assert!(!stderr.contains(secret), "a secret leaked into the log");
    }
    assert_no_secret(&stderr);
    // The log names the key that made the send.
    let sends: Vec<Value> = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == "close" && line["span"]["name"] == "send")
        .collect();
    assert!(!sends.is_empty(), "{stderr}");
    assert!(
        sends
            .iter()
            .all(|line| line["spans"][0]["name"] == "api" && line["spans"][0]["key"] == "engine"),
        "{sends:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_an_open_api_beyond_loopback() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let Err((status, _, stderr)) = Server::try_start(&env, &["--listen", "0.0.0.0:0"]).await else {
        panic!("serve started on 0.0.0.0 without a key");
    };
    assert!(!status.success());
    assert!(
        stderr.contains("refusing to serve on 0.0.0.0:0 without API keys"),
        "{stderr}"
    );

    // Said on purpose, it serves.
    let open = Server::start(&env, &["--listen", "0.0.0.0:0", "--insecure-no-auth"]).await;
    assert_eq!(open.get("/v1/plugins").await.status, 200);
    let (status, stderr) = open.terminate().await;
    assert!(status.success(), "{status}\n{stderr}");
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");

    // With a key, everywhere: a request without it is refused.
    append_config(&env, &key_table("engine", ENGINE_KEY, &["send"]));
    let server = Server::start(&env, &["--listen", "0.0.0.0:0"]).await;
    server.get("/v1/plugins").await.error(401, "unauthorized");
    let server = server.with_key(ENGINE_KEY);
    assert_eq!(server.get("/v1/plugins").await.status, 200);
}

/// The answer to a campaign naming `file`, which must come at once (a hung request fails the
/// test instead of hanging it).
async fn post_file(server: &Server, file: &str) -> Answer {
    let body = json!({"plugin": "taobao", "coupon": TAOBAO_COUPON, "recipients_file": file});
    let request = server.post("/v1/campaigns", body.to_string());
    tokio::time::timeout(Duration::from_secs(60), request)
        .await
        .unwrap_or_else(|_| panic!("no answer for recipients_file {file:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_reads_only_regular_files_inside_campaigns_dir() {
    // Without campaigns_dir, no file is taken, however it is named.
    let env = with_keys("").await;
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    for file in ["/etc/passwd", "/dev/zero", "list.txt"] {
        post_file(&server, file)
            .await
            .error(422, "invalid-recipients-file");
    }
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "{status}\n{stderr}");

    let env = with_keys("campaigns_dir = \"campaigns\"\nmax_campaign_file_mib = 1").await;
    let dir = env.dir.path().join("campaigns");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("list.txt"), "nick:file-a\nnick:file-b\n").unwrap();
    std::fs::write(env.dir.path().join("secret.txt"), "nick:outside\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", dir.join("escape.txt")).unwrap();
    let fifo = std::ffi::CString::new(dir.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    #[expect(unsafe_code, reason = "mkfifo has no safe wrapper in std")]
    let made = unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) };
    assert_eq!(made, 0);
    std::fs::write(dir.join("big.txt"), "nick:x\n".repeat(200_000)).unwrap();
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    for file in [
        "/etc/passwd",
        "/dev/zero",
        "../secret.txt",
        "sub/../../secret.txt",
        "passwd",
        "zero",
        "escape.txt",
        "fifo",
        "sub",
        "missing.txt",
        "",
    ] {
        let message = post_file(&server, file)
            .await
            .error(422, "invalid-recipients-file");
        assert!(!message.contains("root:"), "{message}");
    }
    post_file(&server, "big.txt")
        .await
        .error(413, "payload-too-large");
    assert!(env.sim.calls().is_empty(), "{:?}", env.sim.calls());

    // A file inside the folder is sent.
    let started = post_file(&server, "list.txt").await;
    assert_eq!(started.status, 202, "{}", started.text);
    let status = done(&server, started.json()["id"].as_str().unwrap()).await;
    assert_eq!(status["issued"], 2, "{status}");
    // The drain is not held by anything those requests started.
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "{status}\n{stderr}");
}

/// Waits for a campaign to be done; its status.
async fn done(server: &Server, id: &str) -> Value {
    let mut status = Value::Null;
    for _ in 0..500 {
        status = server.get(&format!("/v1/campaigns/{id}")).await.json();
        if status["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    status
}

/// Issue 22, through `serve`: a line over the limit (the `printf` of the issue) is one rejected
/// line and the nick inside it is sent nothing; a GBK file is refused until its encoding is
/// given; a link inside the folder is not followed; what a swapped-in file holds is not read.
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_file_is_read_as_written_or_refused() {
    let env = with_keys("campaigns_dir = \"campaigns\"").await;
    let dir = env.dir.path().join("campaigns");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("injected.txt"),
        format!(
            "nick:legit1\n#{}nick:injected\nnick:legit2\n",
            "x".repeat(65_535)
        ),
    )
    .unwrap();
    // nick:张三 / nick:李四 / nick:王五, GBK (from the GBK table).
    std::fs::write(
        dir.join("gbk.txt"),
        b"nick:\xd5\xc5\xc8\xfd\nnick:\xc0\xee\xcb\xc4\nnick:\xcd\xf5\xce\xe5\n",
    )
    .unwrap();
    std::fs::write(dir.join("list.txt"), "nick:file-a\n").unwrap();
    std::os::unix::fs::symlink(dir.join("list.txt"), dir.join("alias.txt")).unwrap();
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);

    let message = post_file(&server, "alias.txt")
        .await
        .error(422, "invalid-recipients-file");
    assert!(message.contains("symbolic link"), "{message}");
    let message = post_file(&server, "gbk.txt")
        .await
        .error(422, "invalid-request");
    assert!(message.contains("give its encoding"), "{message}");
    assert!(env.sim.calls().is_empty(), "{:?}", env.sim.calls());

    let started = post_file(&server, "injected.txt").await;
    assert_eq!(started.status, 202, "{}", started.text);
    let status = done(&server, started.json()["id"].as_str().unwrap()).await;
    assert_eq!(
        (&status["total"], &status["issued"], &status["rejected"]),
        (&3.into(), &2.into(), &1.into()),
        "{status}"
    );

    let body = json!({"plugin": "taobao", "coupon": TAOBAO_COUPON, "recipients_file": "gbk.txt", "encoding": "gbk"});
    let started = server.post("/v1/campaigns", body.to_string()).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let status = done(&server, started.json()["id"].as_str().unwrap()).await;
    assert_eq!(status["issued"], 3, "{status}");
    let body = json!({"plugin": "taobao", "coupon": TAOBAO_COUPON, "recipients_file": "gbk.txt", "encoding": "latin-1"});
    server
        .post("/v1/campaigns", body.to_string())
        .await
        .error(422, "invalid-body");

    let sent: std::collections::BTreeSet<String> = env
        .sim
        .ledger()
        .into_iter()
        .map(|issuance| issuance.recipient)
        .collect();
    let expected = ["legit1", "legit2", "张三", "李四", "王五"];
    assert_eq!(sent, expected.iter().map(|s| s.to_string()).collect());
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "{status}\n{stderr}");
}

/// A key given twice in `options` is refused like a field given twice; a `Content-Length` over
/// the body limit is answered `413` without waiting for a byte of the body; two
/// `Authorization` headers are `400`, whichever of them is valid.
#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_or_impossible_requests_are_refused_at_once() {
    // A body read timeout far past the test's own bound: waiting for the body would fail it.
    let env = with_keys("read_timeout_s = 3600\ncampaigns_dir = \"campaigns\"").await;
    std::fs::create_dir_all(env.dir.path().join("campaigns")).unwrap();
    let server = Server::start(&env, &[]).await;
    let auth = format!("Bearer {ENGINE_KEY}");
    let auth = Some(auth.as_str());
    let send = "/v1/plugins/taobao/send";

    for (path, body) in [
        (
            send,
            format!(
                r#"{{"coupon":"{TAOBAO_COUPON}","recipients":["nick:a"],"options":{{"a":"1","a":"2"}}}}"#
            ),
        ),
        (
            "/v1/plugins/taobao/query",
            r#"{"recipient":"nick:a","options":{"b":"1","b":"1"}}"#.to_owned(),
        ),
        (
            "/v1/campaigns",
            format!(
                r#"{{"plugin":"taobao","coupon":"{TAOBAO_COUPON}","recipients":["nick:a"],"options":{{"a":"1","a":"2"}}}}"#
            ),
        ),
        // Top-level fields given twice, as before.
        (
            send,
            format!(r#"{{"coupon":"{TAOBAO_COUPON}","coupon":"1","recipients":["nick:a"]}}"#),
        ),
    ] {
        let message = call(&server, "POST", path, auth, &body)
            .await
            .error(422, "invalid-body");
        assert!(message.contains("duplicate"), "{path}: {message}");
    }

    for path in [send, "/v1/campaigns"] {
        let (status, answer) = raw(
            &server,
            format!(
                "POST {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ENGINE_KEY}\r\n\
                 content-type: application/json\r\ncontent-length: 999999999999\r\n\
                 connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert!(status.contains(" 413 "), "{path}: {status}");
        assert!(answer.contains("payload-too-large"), "{answer}");
    }

    for second in [ENGINE_KEY, "not-a-key"] {
        let (status, answer) = raw(
            &server,
            format!(
                "GET /v1/plugins HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ENGINE_KEY}\r\n\
                 authorization: Bearer {second}\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert!(status.contains(" 400 "), "{status}");
        assert!(answer.contains("bad-request"), "{answer}");
    }
    // One header, as ever, is enough.
    assert_eq!(
        call(&server, "GET", "/v1/plugins", auth, "").await.status,
        200
    );
    assert!(env.sim.calls().is_empty(), "{:?}", env.sim.calls());
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "{status}\n{stderr}");
}

/// Serve with the `slow` plugin and `[serve] drain_timeout_s = 1`; a send held at the platform
/// for a minute is cut at the deadline, the process exits, and the send stays in flight in the
/// journal: the next send with the same key reconciles it instead of sending twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_drain_ends_at_drain_timeout_and_leaves_the_cut_send_to_the_journal() {
    let env = with_keys("drain_timeout_s = 1").await;
    env.add_slow_plugin();
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    env.delay_next_send(60_000);
    let body =
        json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:cut"], "idempotency_key": "cut-1"});
    let request = server
        .http
        .post(format!("{}/v1/plugins/slow/send", server.base))
        .bearer_auth(ENGINE_KEY)
        .json(&body)
        .send();
    let held = tokio::spawn(request);
    env.wait_for_sends(1).await;

    let (status, stderr) = server.terminate().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the drain did not finish within 1 s"),
        "{stderr}"
    );
    assert!(
        held.await.unwrap().is_err(),
        "the cut request got no answer"
    );

    // The platform applied the send; the journal still has it in flight, so the same key
    // asks the platform first and reports it issued, without a second send.
    let again = env
        .cli(&[
            "send",
            "slow",
            "--coupon",
            TAOBAO_COUPON,
            "--to",
            "nick:cut",
            "--idempotency-key",
            "cut-1",
            "--json",
        ])
        .await
        .json();
    assert_eq!(again["issued"][0]["recipient"], "nick:cut", "{again}");
    let sends = env
        .sim
        .calls()
        .iter()
        .filter(|c| c.api == TAOBAO_SEND_API)
        .count();
    assert_eq!(sends, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_exits_at_once() {
    let env = with_keys("drain_timeout_s = 3600").await;
    env.add_slow_plugin();
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    env.delay_next_send(60_000);
    let request = server
        .http
        .post(format!("{}/v1/plugins/slow/send", server.base))
        .bearer_auth(ENGINE_KEY)
        .json(&json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:twice"]}))
        .send();
    let _held = tokio::spawn(request);
    env.wait_for_sends(1).await;
    server.signal_term();
    for _ in 0..500 {
        if server.stderr().contains("draining") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.stderr().contains("draining"), "{}", server.stderr());
    let (status, stderr) = server.terminate().await;
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("second signal"), "{stderr}");
}

/// A server that starts a campaign of 120 recipients through the slow plugin and is cut by a
/// drain (1 s) while its first send is held: the env, the recipients, the campaign's body and
/// id, and the server's stderr. `running` sees the campaign's status while it ran.
async fn a_campaign_cut_by_a_drain(
    prefix: &str,
    running: impl FnOnce(&Value),
) -> (TestEnv, Vec<String>, Value, String, String) {
    let env = with_keys("drain_timeout_s = 1").await;
    env.add_slow_plugin();
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    env.delay_next_send(60_000);
    let recipients: Vec<String> = (0..120).map(|i| format!("nick:{prefix}{i:03}")).collect();
    let body = json!({"plugin": "slow", "coupon": TAOBAO_COUPON, "recipients": recipients, "concurrency": 1});
    let started = server.post("/v1/campaigns", body.to_string()).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    env.wait_for_sends(1).await;
    running(&server.get(&format!("/v1/campaigns/{id}")).await.json());
    let (status, stderr) = server.terminate().await;
    assert_eq!(status.code(), Some(1), "{stderr}");
    (env, recipients, body, id, stderr)
}

/// A campaign started over HTTP stops at the drain deadline too, and posting it again to the
/// next server resumes it: everyone gets the coupon once.
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_stops_at_the_drain_deadline_and_resumes_on_the_next_server() {
    let (env, recipients, body, id, stderr) = a_campaign_cut_by_a_drain("drained", |_| {}).await;
    assert!(stderr.contains("1 campaigns"), "{stderr}");

    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    let again = server.post("/v1/campaigns", body.to_string()).await;
    assert_eq!(again.json()["id"], id.as_str());
    finishes_once_each(&server, &env, &id, &recipients).await;
}

/// Waits until campaign `id` is done on `server` (bounded) — its status never saying `running`
/// with `"running":false` — and checks everyone in `recipients` got the coupon once.
async fn finishes_once_each(server: &Server, env: &TestEnv, id: &str, recipients: &[String]) {
    let mut status = Value::Null;
    for _ in 0..3000 {
        status = server.get(&format!("/v1/campaigns/{id}")).await.json();
        assert!(
            !(status["state"] == "running" && status["running"] == false),
            "{status}"
        );
        if status["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["issued"], recipients.len(), "{status}");
    let issued = recipients
        .iter()
        .map(|r| r.trim_start_matches("nick:").to_owned())
        .collect();
    env.assert_ledger("taobao", &issued, &Default::default());
}

/// A campaign cut off by a drain is resumed by the next server without being posted again
/// (`serve` works unfinished campaigns like a worker); meanwhile, with no process working it,
/// its status says `waiting`, never `running`. A drain that ends in time logs no error.
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_cut_by_a_drain_resumes_on_restart_without_being_posted_again() {
    let (env, recipients, _, id, _) = a_campaign_cut_by_a_drain("resumed", |running| {
        assert_eq!(
            (&running["state"], &running["running"]),
            (&json!("running"), &json!(true)),
            "{running}"
        );
    })
    .await;

    // Nobody works it now.
    let between = env.cli(&["campaign", "status", &id, "--json"]).await.json();
    assert_eq!(between["state"], "waiting", "{between}");
    assert!(between["pending"].as_u64().unwrap() > 0, "{between}");

    // The next server picks it up on its own; it is never posted again.
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    finishes_once_each(&server, &env, &id, &recipients).await;
    // This drain has nothing left to cut: it ends in time, and says nothing at ERROR.
    let (status, stderr) = server.terminate().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("\"level\":\"ERROR\""), "{stderr}");
}

/// A campaign the platform refuses whole (an unknown coupon) says `stopped` over HTTP, with
/// the refusal, and `"running":false`.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_campaign_says_stopped_over_http() {
    let env = with_keys("").await;
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    let recipients: Vec<String> = (0..30).map(|i| format!("nick:refused{i}")).collect();
    let body = json!({"plugin": "taobao", "coupon": "99999", "recipients": recipients});
    let started = server.post("/v1/campaigns", body.to_string()).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let id = started.json()["id"].as_str().unwrap().to_owned();
    let mut status = Value::Null;
    for _ in 0..1000 {
        status = server.get(&format!("/v1/campaigns/{id}")).await.json();
        if status["state"] == "stopped" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status["state"], "stopped", "{status}");
    assert_eq!(status["running"], false, "{status}");
    assert_eq!(status["error"]["class"], "coupon-unavailable", "{status}");
    assert_eq!(status["pending"], 30, "{status}");
    let (exit, stderr) = server.terminate().await;
    assert_eq!(exit.code(), Some(0), "{stderr}");
}

/// With `work_campaigns = false`, `serve` leaves campaigns it does not run to workers.
#[tokio::test(flavor = "multi_thread")]
async fn serve_told_not_to_work_campaigns_leaves_them_waiting() {
    let env = with_keys("work_campaigns = false").await;
    let list = env.dir.path().join("list.txt");
    std::fs::write(&list, "nick:idle1\nnick:idle2\n").unwrap();
    let id = crate::fleet::enqueue_detached(&env, list.to_str().unwrap()).await;
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    // A send through the server: by the time it is answered, a worker would have claimed a
    // batch long since (it polls every 250 ms and is woken at once).
    for _ in 0..5 {
        let sent = server
            .send(
                "taobao",
                json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:other"]}),
            )
            .await;
        assert_eq!(sent.status, 200, "{}", sent.text);
    }
    let status = server.get(&format!("/v1/campaigns/{id}")).await.json();
    assert_eq!(
        (&status["state"], &status["running"]),
        (&json!("waiting"), &json!(false)),
        "{status}"
    );
    assert_eq!(status["pending"], 2, "{status}");
    let (status, stderr) = server.terminate().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// Refused starts write nothing: twenty inline campaigns refused with 422 (`concurrency: 0`,
/// an account the plugin does not have) leave no recipients file and no campaign.
#[tokio::test(flavor = "multi_thread")]
async fn refused_campaign_starts_leave_no_file_and_no_campaign() {
    let env = with_keys("").await;
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    for i in 0..20 {
        let recipients: Vec<String> = (0..1000).map(|j| format!("nick:refused{i}-{j}")).collect();
        let body = if i % 2 == 0 {
            json!({"plugin": "taobao", "coupon": TAOBAO_COUPON, "recipients": recipients, "concurrency": 0})
        } else {
            json!({"plugin": "taobao", "coupon": TAOBAO_COUPON, "recipients": recipients, "account": "nobody"})
        };
        let answer = server.post("/v1/campaigns", body.to_string()).await;
        assert_eq!(answer.status, 422, "{}", answer.text);
    }
    assert_eq!(campaign_files(&env), 0);
    assert_eq!(campaign_rows(&env), 0);
    let (status, stderr) = server.terminate().await;
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// Inline lists kept in the env's data folder (beside `state.db`).
fn campaign_files(env: &TestEnv) -> usize {
    std::fs::read_dir(env.dir.path().join("campaigns"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Campaigns registered in the env's `state.db`.
fn campaign_rows(env: &TestEnv) -> usize {
    let db = rusqlite::Connection::open(env.dir.path().join("state.db")).unwrap();
    db.query_row("SELECT COUNT(*) FROM campaigns", [], |row| {
        row.get::<_, i64>(0)
    })
    .unwrap() as usize
}

/// Connections that send their head a byte at a time, or promise a body and stall, are closed
/// after `[serve] read_timeout_s`; meanwhile the server answers everyone else, and its drain
/// is not held by them.
#[tokio::test(flavor = "multi_thread")]
async fn slow_heads_and_bodies_are_cut_and_pin_nothing() {
    let env = with_keys("read_timeout_s = 1").await;
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..32 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST /v1/plugins/taobao/send HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(tokio::spawn(async move {
            // One header byte every 200 ms, until the server closes the connection.
            for _ in 0..500 {
                if stream.write_all(b"x").await.is_err() {
                    return true;
                }
                let mut buffer = [0u8; 256];
                let read =
                    tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer));
                if let Ok(Ok(0) | Err(_)) = read.await {
                    return true;
                }
            }
            false
        }));
    }
    // A body that never comes: 408 as JSON.
    let mut stalled = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /v1/plugins/taobao/send HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ENGINE_KEY}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"coupon\""
    );
    stalled.write_all(head.as_bytes()).await.unwrap();

    let sent = server
        .send(
            "taobao",
            json!({"coupon": TAOBAO_COUPON, "recipients": ["nick:patient"]}),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text);

    let mut answer = String::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stalled.read_to_string(&mut answer));
    read.await.expect("the stalled body is answered").unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request-timeout\""), "{answer}");
    for task in slow {
        assert!(task.await.unwrap(), "a slow head kept its connection");
    }
    let (status, stderr) = server.terminate().await;
    assert!(status.success(), "{status}\n{stderr}");
}

/// Sends raw bytes and returns the answer's status line and body.
async fn raw(server: &Server, request: &[u8]) -> (String, String) {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer));
    read.await.expect("an answer").unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_nested_and_non_utf8_bodies_get_json_errors() {
    let env = with_keys("").await;
    let server = Server::start(&env, &["--max-body-kib", "64"]).await;
    let send = "/v1/plugins/taobao/send";
    let auth = format!("Bearer {ENGINE_KEY}");
    let auth = Some(auth.as_str());

    // Over the limit, declared or streamed.
    let big = format!("{{\"coupon\":\"{}\"}}", "x".repeat(1 << 20));
    call(&server, "POST", send, auth, &big)
        .await
        .error(413, "payload-too-large");
    // Chunked, with no length declared: cut at the limit all the same.
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {send} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ENGINE_KEY}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = format!("4000\r\n{}\r\n", " ".repeat(0x4000));
    for _ in 0..64 {
        // The server may answer and close before the body ends.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer));
    let _ = read.await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload-too-large"), "{answer}");
    // Nested 20 000 deep, within the size limit: refused at once, as the wrong shape (the
    // parser meets an array or object where a string belongs and does not descend into it).
    for nested in [
        format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)),
        format!(
            "{{\"coupon\":\"1\",\"recipients\":[\"nick:a\"],\"options\":{}1{}}}",
            "{\"a\":".repeat(10_000),
            "}".repeat(10_000)
        ),
        format!("{{\"coupon\":{}", "{\"a\":[".repeat(10_000)),
    ] {
        let answer = call(&server, "POST", send, auth, &nested).await;
        assert!([400, 422].contains(&answer.status), "{}", answer.text);
        let kind = answer.json()["error"]["kind"].clone();
        assert!(kind == "invalid-body" || kind == "malformed-json", "{kind}");
    }
    // Bytes that are not UTF-8: in the body, the path and the key.
    let body = b"{\"coupon\":\"\xff\xfe\",\"recipients\":[\"nick:a\"]}";
    let mut request = format!(
        "POST {send} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ENGINE_KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let (status, answer) = raw(&server, &request).await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(answer.contains("malformed-json"), "{answer}");
    let (status, answer) = raw(
        &server,
        format!("POST /v1/plugins/%FF%FE/send HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ENGINE_KEY}\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}").as_bytes(),
    )
    .await;
    assert!(status.contains(" 400 "), "{status}");
    assert!(answer.contains("bad-path"), "{answer}");
    let (status, answer) = raw(
        &server,
        b"GET /v1/plugins HTTP/1.1\r\nhost: x\r\nauthorization: Bearer \xff\xfe\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(status.contains(" 401 "), "{status}");
    assert!(answer.contains("unauthorized"), "{answer}");
    assert!(env.sim.calls().is_empty());
    assert_eq!(server.get("/healthz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn path_traversal_in_every_path_parameter_finds_nothing() {
    let env = with_keys("campaigns_dir = \".\"").await;
    let server = Server::start(&env, &[]).await.with_key(ENGINE_KEY);
    let body = json!({"coupon": "1", "recipients": ["nick:a"]}).to_string();
    let query = json!({"recipient": "nick:a"}).to_string();
    // (`%2E%2E` is left to the raw requests below: the client would resolve it as `..`.)
    for evil in [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "..%2F..%2Fcoupon-host.toml",
        "..%5C..%5Cwindows",
        "taobao%00",
        "%2Fetc%2Fpasswd",
    ] {
        server
            .post(&format!("/v1/plugins/{evil}/send"), body.clone())
            .await
            .error(404, "unknown-plugin");
        server
            .post(&format!("/v1/plugins/{evil}/query"), query.clone())
            .await
            .error(404, "unknown-plugin");
        let answer = server.get(&format!("/v1/campaigns/{evil}")).await;
        let message = answer.error(404, "unknown-campaign");
        assert!(!message.contains("root:"), "{message}");
    }
    // Dot segments the client does not normalise reach no file either.
    for path in [
        "/v1/plugins/../../etc/passwd",
        "/v1/campaigns/../../coupon-host.toml",
        "/../../../../etc/passwd",
        "/v1/plugins/%2E%2E/send",
        "/v1/campaigns/%2E%2E%2F%2E%2E%2Fstate.db",
    ] {
        let (status, answer) = raw(
            &server,
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ENGINE_KEY}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            status.contains(" 404 ") || status.contains(" 405 "),
            "{path}: {status}"
        );
        assert!(
            !answer.contains("root:") && !answer.contains("[plugins"),
            "{answer}"
        );
    }
    assert!(env.sim.calls().is_empty());
}

/// Forty campaign starts at once, past `[serve] max_campaigns`: every answer is `202` or `429`,
/// never a server error; no more campaigns run than the cap; the same list posted at once
/// is one campaign; and the server goes on answering.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_campaign_starts_is_capped_and_answered() {
    let env = with_keys("max_campaigns = 2").await;
    env.add_slow_plugin();
    let server = std::sync::Arc::new(Server::start(&env, &[]).await.with_key(ENGINE_KEY));
    for _ in 0..4 {
        env.delay_next_send(2_000);
    }
    let mut posts = Vec::new();
    for i in 0..40 {
        let server = server.clone();
        // Ten posts share a list: they are one campaign.
        let list = if i % 4 == 0 { 999 } else { i };
        let recipients: Vec<String> = (0..5).map(|j| format!("nick:flood{list}-{j}")).collect();
        let body = json!({"plugin": "slow", "coupon": TAOBAO_COUPON, "recipients": recipients});
        posts.push(tokio::spawn(async move {
            server.post("/v1/campaigns", body.to_string()).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut refused = 0;
    for post in posts {
        let answer = post.await.unwrap();
        match answer.status {
            202 => {
                ids.insert(answer.json()["id"].as_str().unwrap().to_owned());
            }
            429 => {
                let message = answer.error(429, "overloaded");
                assert!(message.contains("2 campaigns are running"), "{message}");
                refused += 1;
            }
            other => panic!("{other}: {}", answer.text),
        }
    }
    // The first campaigns hold the platform's first sends for two seconds: the rest of the
    // flood meets the cap.
    assert!(
        !ids.is_empty() && refused > 0,
        "{} started, {refused} refused",
        ids.len()
    );
    assert_eq!(server.get("/healthz").await.status, 200);
    // Every accepted campaign finishes, and nobody got a coupon twice.
    for id in &ids {
        let mut status = Value::Null;
        for _ in 0..1000 {
            status = server.get(&format!("/v1/campaigns/{id}")).await.json();
            if status["state"] == "done" && status["running"] == false {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(status["issued"], 5, "{status}");
    }
    assert_eq!(env.sim.duplicate_issuances(), 0);
    // The refused starts left nothing: one file and one campaign per accepted list, each done.
    assert_eq!(campaign_files(&env), ids.len());
    assert_eq!(campaign_rows(&env), ids.len());
}

/// The schemathesis release the fuzz run uses; installed from PyPI into a virtual environment
/// under the target dir on first use.
const SCHEMATHESIS: &str = "4.32.5";

/// The `schemathesis` executable, installed if it is not yet. Panics with the reason when it
/// cannot be installed: a fuzz run that silently did not happen would prove nothing.
fn schemathesis() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("schemathesis-{SCHEMATHESIS}"));
    let exe = root.join("bin/schemathesis");
    let installed = root.join("installed");
    if installed.is_file() {
        return exe;
    }
    let _ = std::fs::remove_dir_all(&root);
    let run = |program: &std::path::Path, args: &[&str]| {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} {args:?} failed: {}\n{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(
        std::path::Path::new("python3"),
        &["-m", "venv", root.to_str().unwrap()],
    );
    run(
        &root.join("bin/pip"),
        &[
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("schemathesis=={SCHEMATHESIS}"),
        ],
    );
    std::fs::write(&installed, SCHEMATHESIS).unwrap();
    exe
}

/// A schemathesis check of our own: a body the document calls valid is never refused for its
/// shape (`invalid-body`, `malformed-json`) nor by the host's own rules (`invalid-request`),
/// unless the refusal is about what the plugin or the stored state allows (a recipient kind
/// the platform does not take, a credential its auth scheme does not, an id another campaign
/// has, an account the plugin does not have). Refusals by the platform (`adapter`,
/// `authorization-refused`) are its judgement of the content, which no schema can know.
const HOOKS: &str = r#"
import schemathesis

PLUGIN_OR_STATE = (
    " recipients, not ",
    "choose another id",
    "has no recipients",
    " scheme) takes no ",
    "has no account",
    "has several accounts",
)

@schemathesis.check
def host_takes_what_the_document_calls_valid(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    if response.status_code not in (400, 422):
        return None
    error = (response.json() or {}).get("error", {})
    kind, message = error.get("kind"), error.get("message", "")
    if kind in ("invalid-body", "malformed-json", "bad-path"):
        raise AssertionError(f"a schema-valid request was refused as {kind}: {message}")
    if kind == "invalid-request" and not any(part in message for part in PLUGIN_OR_STATE):
        raise AssertionError(f"a schema-valid request was refused by the host: {message}")
    return None
"#;

/// An OpenAPI-driven fuzz run against `serve` with keys: schemathesis generates requests from
/// `/openapi.json` (valid and invalid ones, every route, sends to a real plugin, accounts kept
/// under a master key and authorized at the simulator's OAuth endpoint) and checks every
/// answer: no server error, every status, header, content type and body as the document says,
/// invalid data refused, valid data not refused for its shape. It must find nothing.
#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let schemathesis = schemathesis();
    let mut env = with_keys("campaigns_dir = \"campaigns\"\nmax_campaigns = 1000").await;
    append_config(
        &env,
        &key_table(
            "fuzz",
            "fuzz-key-0123456789",
            &["send", "query", "campaigns", "metrics", "accounts"],
        ),
    );
    keep_accounts(&mut env);
    // The account routes are fuzzed on a plugin of their own (see `schemathesis.toml` below).
    append_config(
        &env,
        &format!(
            r#"
[plugins.shops]
component = {component:?}
allowed_hosts = [{origin:?}]
auth = {{ scheme = "top", app_key = "12345678", app_secret_env = "{APP_SECRET_ENV}", oauth_token_url = "{origin}/token" }}
limits = {{ http_timeout_ms = 2000 }}
settings = {{ gateway = "{gateway}" }}
"#,
            component = coupon_host_tests::TAOBAO,
            origin = env.sim.base_url(),
            gateway = env.sim.top_gateway(),
        ),
    );
    let dir = env.dir.path();
    std::fs::create_dir_all(dir.join("campaigns")).unwrap();
    std::fs::write(dir.join("campaigns/list.txt"), "nick:fuzz-a\nnick:fuzz-b\n").unwrap();
    std::fs::write(dir.join("hooks.py"), HOOKS).unwrap();
    std::fs::write(
        dir.join("schemathesis.toml"),
        r#"
[parameters]
"path.name" = "taobao"

# The account routes act on plugin `shops`, which no fuzzed send reaches: a session made up
# and kept there would have the platform refuse a later fuzzed send through that account (a
# `502`, as documented: the platform refused the host's credentials), and a kept account
# would leave every `taobao` send that names none ambiguous.
[[operations]]
include-path-regex = "/accounts"
parameters = { "path.name" = "shops" }

# A valid body may still be refused by the platform (`422 adapter`: an unknown coupon) or
# found unknown (`404`): those are judgements of content no schema can know. The host's own
# refusals are held to the document by the hook's check.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429"]
"#,
    )
    .unwrap();
    let server = Server::start(&env, &[]).await;
    let output = tokio::process::Command::new(&schemathesis)
        .current_dir(dir)
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", dir)
        .args([
            "--config-file",
            "schemathesis.toml",
            "run",
            &format!("{}/openapi.json", server.base),
            "--header",
            "Authorization: Bearer fuzz-key-0123456789",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,negative_data_rejection,\
             positive_data_acceptance,missing_required_header,unsupported_method,\
             ignored_auth,host_takes_what_the_document_calls_valid",
            "--max-examples",
            "150",
            "--seed",
            "15",
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--no-color",
            "--generation-database",
            "none",
        ])
        .output()
        .await
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("passed"), "{stdout}");
    // The summary, for whoever reads the test output.
    println!("{stdout}");
    assert_eq!(env.sim.duplicate_issuances(), 0);
    // The account routes were reached, and kept accounts on `shops` alone.
    let fuzz = Some("Bearer fuzz-key-0123456789");
    let kept = |answer: Answer| {
        answer.json()["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|account| account["source"] == "host")
            .count()
    };
    let shops = call(&server, "GET", "/v1/plugins/shops/accounts", fuzz, "").await;
    assert!(kept(shops) > 0, "schemathesis kept no account");
    let taobao = call(&server, "GET", "/v1/plugins/taobao/accounts", fuzz, "").await;
    assert_eq!(kept(taobao), 0);
    let (status, log) = server.terminate().await;
    assert!(status.success(), "{status}");
    assert!(
        !log.contains("fuzz-key-0123456789"),
        "the key leaked into the log"
    );
    assert!(
        !log.contains(MASTER_KEY),
        "the master key leaked into the log"
    );
}
