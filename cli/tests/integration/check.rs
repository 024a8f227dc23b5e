//! `coupon-host check`: every in-tree adapter holds the contract against the scripted platform,
//! and each test guest that breaks it is refused with the violation named.

use std::path::Path;

use coupon_host::check::{CheckOptions, CheckReport};

use crate::support::{CliOutput, cache_dir, run};

/// The guests only `check` tests (sandbox.rs's `every_guest_has_a_test` counts them).
pub const TESTED_GUESTS: &[&str] = &[
    "drops-recipient",
    "reports-twice",
    "traps-on-garbage",
    "request-loop",
    "careless",
];

/// The settings an in-tree adapter needs beyond the check's defaults.
fn settings_for(plugin: &str) -> &'static [&'static str] {
    match plugin {
        "tmall-nrt" => &["biz_code=YXX", "channel=app", "coupon_type=247"],
        _ => &[],
    }
}

/// `coupon-host check ARGS…`, with the run's shared component cache.
async fn cli(args: &[&str]) -> CliOutput {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_coupon-host"));
    command
        .arg("check")
        .args(args)
        .arg("--cache-dir")
        .arg(cache_dir())
        .env_remove("COUPON_HOST_CONFIG");
    run(command).await
}

/// The library's check of `component` with `timeout_ms`.
async fn check(component: &str, timeout_ms: u64) -> CheckReport {
    let mut options = CheckOptions::default();
    options.cache_dir = Some(cache_dir());
    options.timeout_ms = timeout_ms;
    coupon_host::check::check(Path::new(component), &options)
        .await
        .unwrap_or_else(|e| panic!("{component} cannot be checked: {e}"))
}

/// The violations of `report` at checks whose name contains `check`, as lines.
fn violations(report: &CheckReport, check: &str) -> Vec<String> {
    report
        .violations
        .iter()
        .filter(|v| v.check.contains(check))
        .map(|v| v.to_string())
        .collect()
}

/// Asserts that `report` failed with a violation at `check` saying `says`.
fn assert_violation(report: &CheckReport, check: &str, says: &str) {
    assert!(!report.passed, "{:#?}", report.violations);
    let found = violations(report, check);
    assert!(
        found.iter().any(|line| line.contains(says)),
        "no violation at {check} says {says:?}; all: {:#?}",
        report.violations
    );
}

/// Every adapter of the repository, the Taobao adapter built against contract 0.1.0, and the
/// adapter templates (templates/rust-adapter, templates/js-adapter) as an author builds them.
#[tokio::test(flavor = "multi_thread")]
async fn every_in_tree_adapter_passes() {
    let mut failures = Vec::new();
    let adapters = coupon_host_tests::PLUGINS
        .iter()
        .chain([&("taobao-v0-1", coupon_host_tests::GUEST_TAOBAO_V0_1)])
        .chain(coupon_host_tests::TEMPLATES);
    for (crate_name, component) in adapters {
        let plugin = crate_name.replace('_', "-");
        let mut args = vec![*component, "--json"];
        for setting in settings_for(&plugin) {
            args.extend(["--setting", setting]);
        }
        let output = cli(&args).await;
        let report: serde_json::Value = match serde_json::from_str(&output.stdout) {
            Ok(report) => report,
            Err(e) => {
                failures.push(format!("{plugin}: no JSON report ({e}): {}", output.stderr));
                continue;
            }
        };
        if !output.status.success() || report["passed"] != true {
            failures.push(format!(
                "{plugin}: {} {:#}",
                output.stderr, report["violations"]
            ));
        }
        // Each made its requests, so every scenario tested how it reads an answer.
        if report["warnings"] != serde_json::json!([]) {
            failures.push(format!("{plugin}: {:#}", report["warnings"]));
        }
        let scenarios = report["scenarios"].as_array().map(Vec::len).unwrap_or(0);
        if scenarios < 40 {
            failures.push(format!("{plugin}: only {scenarios} scenarios ran"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// `--json` prints one object: the component, its contract, imports and exports, `describe`,
/// the settings used, and a verdict per operation and scenario.
#[tokio::test(flavor = "multi_thread")]
async fn json_reports_every_scenario() {
    let output = cli(&[coupon_host_tests::TAOBAO, "--json"]).await;
    let report = output.json();
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["contract"]["version"], "0.2.0");
    assert_eq!(report["contract"]["export"], "coupon:adapter/adapter@0.2.0");
    let names = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {report:#}"))
            .iter()
            .map(|name| name.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        names("imports").contains(&"coupon:adapter/signed-http@0.2.0".to_owned()),
        "{:?}",
        names("imports")
    );
    assert_eq!(names("exports"), ["coupon:adapter/adapter@0.2.0"]);
    assert_eq!(report["describe"]["platform"], "taobao");
    assert_eq!(report["describe"]["auth_scheme"], "top");
    assert_eq!(
        report["settings"]["gateway"],
        "https://platform.check.invalid/router/rest"
    );
    assert_eq!(report["sha256"].as_str().map(str::len), Some(64));
    let scenarios = report["scenarios"].as_array().unwrap();
    for operation in ["send-coupon", "query-coupons"] {
        for scenario in [
            "ok",
            "partial",
            "server-error",
            "connection-refused",
            "timeout",
            "truncated-json",
            "html",
            "huge-body",
            "random-bytes",
            "empty-body",
            "redirect",
        ] {
            let verdict = scenarios
                .iter()
                .find(|v| v["operation"] == operation && v["scenario"] == scenario)
                .unwrap_or_else(|| panic!("no verdict for {operation}/{scenario}"));
            for key in ["about", "outcome"] {
                assert!(verdict[key].is_string(), "{verdict:#}");
            }
            assert!(verdict["requests"].is_u64(), "{verdict:#}");
            assert_eq!(verdict["passed"], true, "{verdict:#}");
            assert_eq!(verdict["violations"], serde_json::json!([]), "{verdict:#}");
        }
    }
    // Taobao sends nicks and open ids in one call each: the platform's partial answer names one
    // of them, and the adapter fails the rest rather than dropping them.
    let partial = scenarios
        .iter()
        .find(|v| v["operation"] == "send-coupon" && v["scenario"] == "partial")
        .unwrap();
    assert_eq!(partial["requests"], 2, "{partial:#}");
    assert_eq!(
        partial["outcome"], "2 issued, 4 failed (unknown)",
        "{partial:#}"
    );
    assert_eq!(report["violations"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recipient_dropped_is_refused() {
    let report = check(coupon_host_tests::GUEST_DROPS_RECIPIENT, 5_000).await;
    assert_violation(
        &report,
        "send-coupon/ok",
        "nick:check-收件人-3 was not reported",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recipient_reported_twice_is_refused() {
    let report = check(coupon_host_tests::GUEST_REPORTS_TWICE, 5_000).await;
    assert_violation(
        &report,
        "send-coupon/ok",
        "nick:check-收件人-1 was reported 2 times (failed, failed)",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_on_a_garbage_body_is_refused() {
    let report = check(coupon_host_tests::GUEST_TRAPS_ON_GARBAGE, 5_000).await;
    for scenario in ["html", "random-bytes", "empty-body", "server-error"] {
        assert_violation(&report, &format!("send-coupon/{scenario}"), "trapped");
    }
    // A JSON answer does not trip it: the check names the scenarios that do.
    assert!(
        violations(&report, "send-coupon/ok").is_empty(),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_loop_of_requests_is_refused() {
    let report = check(coupon_host_tests::GUEST_REQUEST_LOOP, 5_000).await;
    assert_violation(
        &report,
        "send-coupon/server-error",
        "HTTP requests for 3 recipients; at most 8 are allowed",
    );
}

/// Issuing on a 500, a blind `transient` after a timeout of a send that is not idempotent, and
/// a query that answers "no coupons" for a failure are each refused.
#[tokio::test(flavor = "multi_thread")]
async fn believing_every_answer_is_refused() {
    let report = check(coupon_host_tests::GUEST_CARELESS, 5_000).await;
    assert_violation(
        &report,
        "send-coupon/server-error",
        "reported 3 recipients issued, but no request of the call was answered with a 2xx",
    );
    assert_violation(
        &report,
        "send-coupon/timeout",
        "failed the send as transient after a timeout",
    );
    assert_violation(
        &report,
        "query-coupons/server-error",
        "delivery would take that for \"not there\"",
    );
    assert!(
        violations(&report, "send-coupon/ok").is_empty(),
        "{report:#?}"
    );
    assert!(
        violations(&report, "send-coupon/connection-refused").is_empty(),
        "transient is right when nothing reached the platform: {report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hang_is_refused_at_the_deadline() {
    let report = check(coupon_host_tests::GUEST_SPIN_LOOP, 100).await;
    assert_violation(&report, "send-coupon/ok", "hung: no answer within 100 ms");
}

/// The human report lists every scenario, marks the failed ones, and names each violation; the
/// exit code is 1 with one `error:` line.
#[tokio::test(flavor = "multi_thread")]
async fn the_text_report_names_each_violation_and_exits_1() {
    let output = cli(&[coupon_host_tests::GUEST_DROPS_RECIPIENT]).await;
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    assert!(
        output
            .stdout
            .contains("contract   coupon:adapter/adapter@0.1.0 (version 0.1.0)"),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.lines().any(|line| line.starts_with("FAIL")
            && line.contains("send-coupon")
            && line.contains("timeout")),
        "{}",
        output.stdout
    );
    assert!(
        output.stdout.contains(
            "  send-coupon/html: nick:check-收件人-3 was not reported: every recipient of the \
             request must end issued or failed"
        ),
        "{}",
        output.stdout
    );
    let failed = output
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .count();
    let errors: Vec<&str> = output
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", output.stderr);
    // One violation in each send scenario: the dropped recipient.
    let expected = format!("breaks the adapter contract: {failed} violations (listed above)");
    assert!(
        errors[0].ends_with(&expected),
        "{}\nexpected: {expected}",
        errors[0]
    );
}

/// A failing check's `--json` is still one object on stdout, with the violations.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_json_report_is_one_object() {
    let output = cli(&[coupon_host_tests::GUEST_REPORTS_TWICE, "--json"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
    let report: serde_json::Value = serde_json::from_str(&output.stdout).unwrap();
    assert_eq!(report["passed"], false);
    let first = &report["violations"][0];
    assert_eq!(first["check"], "send-coupon/ok", "{report:#}");
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("reported 2 times")
    );
}

/// An adapter that needs a setting the check does not default makes no request; the check
/// passes (nothing broke) but says so, and passes without the warning once given it.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_setting_is_a_warning() {
    let output = cli(&[coupon_host_tests::TMALL_NRT, "--json"]).await;
    let report = output.json();
    assert_eq!(report["passed"], true, "{report:#}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("send-coupon made no HTTP request") && warnings.contains("--setting"),
        "{warnings}"
    );
}

/// Not an adapter: one `error:` line naming the file and why, nothing on stdout.
#[tokio::test(flavor = "multi_thread")]
async fn what_is_not_an_adapter_is_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    // An empty component: valid, exports nothing.
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"\0asm\x0d\0\x01\0").unwrap();
    let text = dir.path().join("adapter.wasm");
    std::fs::write(&text, b"not wasm at all").unwrap();
    let missing = dir.path().join("missing.wasm");
    // Not files at all: refused at once, without a byte read (a FIFO without a writer would
    // hang a reader; /dev/zero would fill the memory).
    let fifo = dir.path().join("adapter.fifo");
    crate::support::mkfifo(&fifo);
    let zero = std::path::PathBuf::from("/dev/zero");
    let folder = dir.path().to_owned();
    for (file, says) in [
        (&zero, "it is a character device, not a regular file"),
        (&fifo, "it is a FIFO (named pipe), not a regular file"),
        (&folder, "it is a folder, not a regular file"),
        (&core, "it is a core wasm module, not a component"),
        (
            &empty,
            "it is not a coupon adapter: it does not export coupon:adapter/adapter@",
        ),
        (&text, "it is not a valid WebAssembly component"),
        (&missing, "cannot read it"),
    ] {
        let output = cli(&[file.to_str().unwrap()]).await;
        assert_eq!(output.status.code(), Some(1), "{}", output.stderr);
        assert_eq!(output.stdout, "", "{file:?}");
        let lines: Vec<&str> = output.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", output.stderr);
        let expected = format!("error: cannot check {}: {says}", file.display());
        assert!(
            lines[0].starts_with(&expected),
            "{}\nexpected: {expected}",
            lines[0]
        );
    }
}
