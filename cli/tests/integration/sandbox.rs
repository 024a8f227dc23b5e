//! Hostile guests: each is contained with a classified error while another plugin's call, made
//! at the same time, succeeds; and the host keeps serving both afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coupon_host::{Error, Host, Recipient, SandboxKill, SendRequest};
use coupon_sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Options, TestEnv};

/// A test env whose config has a `[plugins.hostile]` running `guest`, with the default hostile
/// limits and then `lines` (TOML keys of the plugin table; they may use the simulator's address).
async fn env_with(guest: &str, lines: impl FnOnce(&TestEnv) -> String) -> TestEnv {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    // One attempt: these tests are about containment, not about what delivery does next.
    let mut table = format!(
        "\n[plugins.hostile]\ncomponent = {guest:?}\nretry = {{ max_attempts = 1, reconcile_after_ms = 0 }}\n"
    );
    let extra = lines(&env);
    if !extra.contains("limits") {
        table.push_str("limits = { timeout_ms = 1000, memory_mib = 16 }\n");
    }
    table.push_str(&extra);
    let mut config = std::fs::read_to_string(&env.config_path).unwrap();
    config.push_str(&table);
    std::fs::write(&env.config_path, config).unwrap();
    env
}

async fn hostile_send(host: Host) -> coupon_host::Result<coupon_host::SendOutcome> {
    host.send(
        "hostile",
        SendRequest::new("1", vec![Recipient::Nick("x".into())]),
    )
    .await
}

/// Runs the hostile send next to a Taobao send, twice, and returns the hostile error.
async fn contained(guest: &str) -> Error {
    contained_in(&env_with(guest, |_| String::new()).await).await
}

/// [`contained`] in a prepared env.
async fn contained_in(env: &TestEnv) -> Error {
    let host = env.host().await;
    let mut last = None;
    for round in 0..2 {
        let hostile = tokio::spawn(hostile_send(host.clone()));
        let neighbour = host
            .send(
                "taobao",
                SendRequest::new("48552", vec![Recipient::Nick(format!("邻居{round}"))]),
            )
            .await;
        assert_eq!(
            neighbour.expect("the other plugin is served").issued.len(),
            1
        );
        let error = hostile.await.unwrap().expect_err("the hostile call fails");
        last = Some(error);
    }
    last.unwrap()
}

/// The message of an adapter error the guest reported (the probes report what they reached).
fn report(error: &Error) -> &str {
    match error {
        Error::Adapter { error, .. } => &error.message,
        other => panic!("expected the guest's report, got {other}"),
    }
}

fn kill(error: &Error) -> SandboxKill {
    match error {
        Error::Sandbox { kind, .. } => *kind,
        other => panic!("expected a sandbox kill, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spin_loop() {
    let error = contained(coupon_host_tests::GUEST_SPIN_LOOP).await;
    assert_eq!(kill(&error), SandboxKill::Deadline, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb() {
    let error = contained(coupon_host_tests::GUEST_MEMORY_BOMB).await;
    assert_eq!(kill(&error), SandboxKill::Memory, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn recursion() {
    let error = contained(coupon_host_tests::GUEST_RECURSION).await;
    assert_eq!(kill(&error), SandboxKill::Trap, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn panic() {
    let error = contained(coupon_host_tests::GUEST_PANIC).await;
    assert_eq!(kill(&error), SandboxKill::Trap, "{error}");
}

/// Reading another plugin's kv keys is tried here only by one spelling, with nothing stored under
/// it; `kv_abuse` stores a real key in taobao's namespace and tries every spelling.
#[tokio::test(flavor = "multi_thread")]
async fn secret_probe() {
    let error = contained(coupon_host_tests::GUEST_SECRET_PROBE).await;
    let Error::Adapter { error, .. } = &error else {
        panic!("the probe answers with what it found, got {error}");
    };
    // No environment, no arguments, no files or directories, no sockets, no foreign kv.
    assert_eq!(error.code, "probe");
    assert_eq!(error.message, "", "the guest reached: {}", error.message);
}

/// A 100 MiB string, or half a million list entries, handed back as the answer: wasmtime counts
/// the bytes it would copy while lifting (the store's hostcall fuel, set to 16 MiB) and fails
/// the lift before allocating them; the host reports a contract kill. The guest gets 256 MiB so
/// that it can build its answer: this is the lift's limit, not the memory cap, at work.
#[tokio::test(flavor = "multi_thread")]
async fn huge_answer() {
    for shape in ["string", "list"] {
        let env = env_with(coupon_host_tests::GUEST_HUGE_ANSWER, |_| {
            format!(
                "limits = {{ timeout_ms = 20000, memory_mib = 256 }}\nsettings = {{ shape = {shape:?} }}\n"
            )
        })
        .await;
        let error = contained_in(&env).await;
        assert_eq!(kill(&error), SandboxKill::Contract, "{shape}: {error}");
        assert!(error.to_string().contains("16 MiB"), "{shape}: {error}");
    }
}

/// Thousands of requests, kv writes and log lines in one call: the host serves
/// `limits.max_http_requests` requests and denies the rest, makes 1000 kv operations and refuses
/// the rest, keeps serving the neighbour, and (`flood_logs_are_capped`) drops log lines past its cap.
#[tokio::test(flavor = "multi_thread")]
async fn call_flood() {
    let env = env_with(coupon_host_tests::GUEST_CALL_FLOOD, |env| {
        let origin = env.sim.base_url();
        format!(
            "allowed_hosts = [{origin:?}]\nlimits = {{ timeout_ms = 30000, max_http_requests = 8 }}\nsettings = {{ target = \"{origin}/flood\" }}\n"
        )
    })
    .await;
    let error = contained_in(&env).await;
    assert_eq!(
        report(&error),
        "http ok=8 denied=4992 other=0; kv ok=1000 refused=4000"
    );
}

/// Many cheap host calls in one call (the benchmarks time an import with this guest) are all
/// served: only HTTP, kv and log are capped per call.
#[tokio::test(flavor = "multi_thread")]
async fn host_calls() {
    let env = env_with(coupon_host_tests::GUEST_HOST_CALLS, |_| String::new()).await;
    let host = env.host().await;
    let mut request = SendRequest::new("1", vec![Recipient::Nick("x".into())]);
    request.quantity = 20_000;
    let error = host.send("hostile", request).await.unwrap_err();
    assert_eq!(report(&error), "20000 calls, 0 found");
}

/// The guest's log lines reach the operator's log up to the cap (1000 lines a call), then one
/// warning says the rest was dropped.
#[tokio::test(flavor = "multi_thread")]
async fn flood_logs_are_capped() {
    let env = env_with(coupon_host_tests::GUEST_CALL_FLOOD, |env| {
        let origin = env.sim.base_url();
        format!(
            "allowed_hosts = [{origin:?}]\nlimits = {{ timeout_ms = 30000, max_http_requests = 1 }}\nsettings = {{ target = \"{origin}/flood\" }}\n"
        )
    })
    .await;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_coupon-host"));
    command
        .arg("--config")
        .arg(&env.config_path)
        .args(["send", "hostile", "--coupon", "1", "--to", "nick:x"])
        .env("COUPON_HOST_LOG", "warn,coupon_host::guest=info")
        .envs(env.secrets.iter().map(|(k, v)| (k, v)));
    let output = crate::support::run(command).await;
    assert!(
        !output.status.success(),
        "the flood's send fails as a whole"
    );
    let guest_lines = output
        .stderr
        .lines()
        .filter(|l| l.contains("flood line"))
        .count();
    assert_eq!(guest_lines, 1000, "{}", excerpt(&output.stderr));
    let notes = output.stderr.matches("log truncated").count();
    assert_eq!(notes, 1, "{}", excerpt(&output.stderr));
}

fn excerpt(text: &str) -> String {
    text.lines().rev().take(5).collect::<Vec<_>>().join("\n")
}

/// A one-answer HTTP server on 127.0.0.1 that counts the connections it got.
async fn serve(answer: String) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 4096];
            let _ = socket.read(&mut buffer).await;
            let _ = socket.write_all(answer.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (port, hits)
}

/// Egress: a host outside the allowlist, IP literals (private, loopback, the metadata service,
/// IPv6 loopback) not on it, an allowed *name* that resolves to loopback (the egress guard), and
/// an allowed origin that redirects to one that is not: the guest gets the 302 itself, and the
/// redirect's target is never contacted.
#[tokio::test(flavor = "multi_thread")]
async fn egress_probe() {
    let (target_port, target_hits) = serve(
        "HTTP/1.1 200 OK\r\ncontent-length: 20\r\nconnection: close\r\n\r\nREDIRECT-TARGET-BODY"
            .to_owned(),
    )
    .await;
    let (redirect_port, redirect_hits) = serve(format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target_port}/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ))
    .await;
    let env = env_with(coupon_host_tests::GUEST_EGRESS_PROBE, |env| {
        let origin = env.sim.base_url();
        let sim_port = env.sim.addr().port();
        let redirector = format!("http://127.0.0.1:{redirect_port}");
        let targets = [
            "https://example.com/".to_owned(),
            "http://10.0.0.1/".to_owned(),
            format!("http://127.0.0.1:{target_port}/"),
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            format!("http://[::1]:{sim_port}/"),
            format!("http://localhost:{sim_port}/"),
            format!("{redirector}/start"),
        ];
        format!(
            "allowed_hosts = [{origin:?}, {redirector:?}, \"http://localhost:{sim_port}\"]\nsettings = {{ targets = {:?} }}\n",
            targets.join(" ")
        )
    })
    .await;
    let error = contained_in(&env).await;
    let lines: Vec<&str> = report(&error).lines().collect();
    assert_eq!(lines.len(), 7, "{lines:#?}");
    for line in &lines[..5] {
        assert!(line.contains("=> denied: "), "{line}");
        assert!(line.contains("not in allowed_hosts"), "{line}");
    }
    assert!(
        lines[5].contains("=> denied: ") && lines[5].contains("localhost resolves to a loopback"),
        "an allowed name for loopback is refused by the egress guard: {}",
        lines[5]
    );
    assert!(
        lines[6].ends_with("=> status 302 body \"\""),
        "the redirect comes back to the guest: {}",
        lines[6]
    );
    assert_eq!(
        redirect_hits.load(Ordering::SeqCst),
        2,
        "one redirect a round"
    );
    assert_eq!(
        target_hits.load(Ordering::SeqCst),
        0,
        "the redirect's target was never contacted"
    );
}

/// Past `limits.kv_max_keys` a write is `quota-exceeded`; an oversized value or key is
/// `too-large`; and a key stored in taobao's namespace cannot be read by any spelling, because the
/// host, not the guest, chooses the namespace.
#[tokio::test(flavor = "multi_thread")]
async fn kv_abuse() {
    let env = env_with(coupon_host_tests::GUEST_KV_ABUSE, |_| {
        "limits = { timeout_ms = 5000, memory_mib = 16, kv_max_keys = 4 }\n".to_owned()
    })
    .await;
    // The state file as a host creates it; the keys are planted in taobao's namespace beside
    // the host, as another plugin's data would be.
    drop(env.host().await);
    let store = rusqlite::Connection::open(env.dir.path().join("state.db")).unwrap();
    for key in [
        "secret",
        "../taobao/secret",
        "taobao/secret",
        "hostile/secret",
    ] {
        store
            .execute(
                "INSERT INTO kv (plugin, account, key, value) VALUES ('taobao', 'default', ?1, ?2)",
                rusqlite::params![key, b"TAOBAO-KV-SECRET".as_slice()],
            )
            .unwrap();
    }
    drop(store);
    let error = contained_in(&env).await;
    assert_eq!(
        report(&error),
        "writes ok,ok,ok,ok,quota-exceeded,quota-exceeded,quota-exceeded,quota-exceeded,quota-exceeded,quota-exceeded; \
         big value too-large; big key too-large"
    );
}

/// No state survives a call: a global static counter and buffer start fresh every time.
#[tokio::test(flavor = "multi_thread")]
async fn fresh_instance() {
    let error = contained(coupon_host_tests::GUEST_FRESH_INSTANCE).await;
    assert_eq!(report(&error), "calls=1 seen_before=0");
}

/// Every test guest is used by a test: the hostile ones here, the contract 0.1.0 adapter by the
/// conformance kit (`conformance::TAOBAO_V0_1`) and `versions.rs`, the ones that break the
/// adapter contract by `check.rs`.
#[test]
fn every_guest_has_a_test() {
    let tested = [
        "taobao-v0-1",
        "spin-loop",
        "memory-bomb",
        "recursion",
        "panic",
        "secret-probe",
        "huge-answer",
        "call-flood",
        "egress-probe",
        "kv-abuse",
        "fresh-instance",
        "host-calls",
    ];
    for (crate_name, _) in coupon_host_tests::GUESTS {
        let name = crate_name.trim_start_matches("guest-");
        assert!(
            tested.contains(&name) || crate::check::TESTED_GUESTS.contains(&name),
            "guest {crate_name} has no test"
        );
    }
}

/// `component` with `instances` more core instances, and `memories` more linear memories: an
/// empty core module and a one-memory module are appended and instantiated that many times
/// (the component's own code and exports are untouched). Components built with
/// componentize-py have 14 core instances, 38 with `--stub-wasi`; a Rust one about five.
fn fatten(component: &[u8], instances: u32, memories: u32) -> Vec<u8> {
    fn leb(mut value: u32, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, content: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(content.len() as u32, out);
        out.extend_from_slice(content);
    }
    // Count the core modules the component defines at its top level (section 1), so the
    // appended ones get the next indices.
    let mut modules = 0;
    let mut at = 8;
    while at < component.len() {
        let id = component[at];
        let (mut size, mut shift, mut len) = (0u32, 0, 1);
        while component[at + len] & 0x80 != 0 {
            size |= u32::from(component[at + len] & 0x7f) << shift;
            shift += 7;
            len += 1;
        }
        size |= u32::from(component[at + len]) << shift;
        if id == 1 {
            modules += 1;
        }
        at += 1 + len + size as usize;
    }
    let mut out = component.to_vec();
    let header = b"\0asm\x01\0\0\0";
    section(1, header, &mut out);
    let mut with_memory = header.to_vec();
    // A memory section: one memory of one page.
    with_memory.extend_from_slice(&[0x05, 0x03, 0x01, 0x00, 0x01]);
    section(1, &with_memory, &mut out);
    let mut entries = Vec::new();
    leb(instances + memories, &mut entries);
    for i in 0..instances + memories {
        // instantiate (module index) with no arguments
        entries.push(0x00);
        leb(modules + u32::from(i >= instances), &mut entries);
        entries.push(0x00);
    }
    section(2, &entries, &mut out);
    out
}

/// Components with more core instances and memories than a pool slot holds on average run
/// many calls at once, side by side: `py` is the size of a componentize-py build (14 core
/// instances), `fat` of one with `--stub-wasi` (about 45, and an extra memory), on a pool of two
/// slots. Each call waits for room in the pool; none fails, least of all as `unknown`.
#[tokio::test(flavor = "multi_thread")]
async fn a_component_larger_than_a_slot_waits_for_room_and_is_never_unknown() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let bytes = std::fs::read(coupon_host_tests::TAOBAO).unwrap();
    let mut config = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("max_instances = 16", "max_instances = 2");
    let taobao = config[config.find("[plugins.taobao]").unwrap()..].to_owned();
    let taobao = &taobao[..taobao.find("\n[plugins.").unwrap()];
    for (name, instances, memories) in [("py", 9, 0), ("fat", 40, 1)] {
        let file = env.dir.path().join(format!("{name}.wasm"));
        std::fs::write(&file, fatten(&bytes, instances, memories)).unwrap();
        config.push_str(
            &taobao
                .replace("[plugins.taobao]", &format!("\n[plugins.{name}]"))
                .replace(coupon_host_tests::TAOBAO, file.to_str().unwrap()),
        );
    }
    std::fs::write(&env.config_path, config).unwrap();

    let host = env.host().await;
    let mut sends = Vec::new();
    for i in 0..16 {
        let host = host.clone();
        let plugin = if i % 2 == 0 { "py" } else { "fat" };
        sends.push(tokio::spawn(async move {
            host.send(
                plugin,
                SendRequest::new("48552", vec![Recipient::Nick(format!("胖{i}"))]),
            )
            .await
        }));
    }
    for send in sends {
        let outcome = send.await.unwrap().expect("the send completes");
        assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
        assert_eq!(outcome.issued.len(), 1);
    }
}
