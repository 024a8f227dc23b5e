//! Campaigns through the CLI and the library: streaming a recipients file, reports, resuming
//! after `kill -9`, faults mid-campaign. Each ends by checking the simulator's ledger against the
//! campaign's report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coupon_host::campaign::{CampaignSpec, ReportLine};
use coupon_host::{Error, ErrorClass};
use coupon_sim::{Fault, SimConfig};

use crate::support::{Options, TestEnv};

fn write_lines(dir: &Path, name: &str, lines: impl IntoIterator<Item = String>) -> PathBuf {
    let path = dir.join(name);
    let mut text = String::new();
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A campaign's report, read by a host of its own on the env's storage (on a runtime thread of
/// its own, so sync helpers can call it).
fn report(env: &TestEnv, id: &str) -> Vec<ReportLine> {
    let config = env.config().unwrap();
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        let host = coupon_host::Host::new(config).await.unwrap();
                        let mut lines = Vec::new();
                        host.campaign_report(id, |line| {
                            lines.push(line);
                            Ok(())
                        })
                        .await
                        .unwrap();
                        lines
                    })
            })
            .join()
            .unwrap()
    })
}

/// Checks a report against the ledger (see [`TestEnv::assert_ledger`]), and that every line
/// ended: `failed` ones with a class.
fn assert_report_matches_ledger(env: &TestEnv, platform: &str, lines: &[ReportLine]) {
    for line in lines {
        assert!(
            ["issued", "failed", "unknown", "rejected", "skipped"].contains(&line.state.as_str()),
            "line {} ended {}",
            line.line,
            line.state
        );
        if line.state == "failed" {
            assert!(
                line.class.is_some(),
                "line {} failed without a class",
                line.line
            );
        }
    }
    let ids = |state: &str| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|l| l.state == state)
            .filter_map(|l| l.recipient.split_once(':').map(|(_, id)| id.to_owned()))
            .collect()
    };
    env.assert_ledger(platform, &ids("issued"), &ids("unknown"));
}

/// A status without its workers' `seen_ago_ms`, which grows between two readings.
fn ageless(mut status: serde_json::Value) -> serde_json::Value {
    for worker in status["workers"].as_array_mut().into_iter().flatten() {
        worker.as_object_mut().unwrap().remove("seen_ago_ms");
    }
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_sends_each_line_once_and_reports_every_line() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let mut lines: Vec<String> = (0..250).map(|i| format!("nick:客户{i:04}")).collect();
    lines.insert(10, "# a comment".into());
    lines.insert(20, String::new());
    lines.insert(30, "nick客户".into()); // malformed
    lines.insert(40, "nick:客户0005".into()); // a repeat
    lines.insert(50, "customer-id:42".into()); // a kind taobao does not take
    let file = write_lines(env.dir.path(), "recipients.txt", lines);
    let file_arg = file.to_str().unwrap();
    let run = env
        .cli(&[
            "campaign",
            "run",
            "taobao",
            "--coupon",
            "48552",
            "--recipients",
            file_arg,
            "--json",
        ])
        .await;
    let status = run.json();
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["total"], 253);
    assert_eq!(status["issued"], 250);
    // As the report says: two lines rejected, one repeat skipped.
    assert_eq!(status["rejected"], 2);
    assert_eq!(status["skipped"], 1);
    assert_eq!(status["pending"], 0);
    let id = status["id"].as_str().unwrap().to_owned();

    // Running it again finds it done: no platform call.
    let calls = env.sim.calls().len();
    let again = env
        .cli(&[
            "campaign",
            "run",
            "taobao",
            "--coupon",
            "48552",
            "--recipients",
            file_arg,
            "--json",
        ])
        .await
        .json();
    assert_eq!(ageless(again), ageless(status.clone()));
    assert_eq!(env.sim.calls().len(), calls);

    let shown = env.cli(&["campaign", "status", &id, "--json"]).await.json();
    assert_eq!(ageless(shown), ageless(status.clone()));

    let csv = env.cli(&["campaign", "report", &id]).await;
    assert!(csv.status.success(), "{}", csv.stderr);
    let mut rows = csv.stdout.lines();
    assert_eq!(
        rows.next().unwrap(),
        "line,recipient,state,coupon_id,class,code,message"
    );
    assert_eq!(rows.count(), 253);

    let json = env
        .cli(&["campaign", "report", &id, "--format", "json"])
        .await;
    let lines: Vec<ReportLine> = json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 253);
    assert!(lines.windows(2).all(|w| w[0].line < w[1].line));
    let by_state = |state: &str| lines.iter().filter(|l| l.state == state).count();
    assert_eq!(
        (
            by_state("issued"),
            by_state("rejected"),
            by_state("skipped")
        ),
        (250, 2, 1)
    );
    let skipped = lines.iter().find(|l| l.state == "skipped").unwrap();
    assert!(
        skipped.message.as_deref().unwrap().contains("repeats line"),
        "{skipped:?}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l.state == "issued")
            .all(|l| l.coupon_id.is_some())
    );
    assert_report_matches_ledger(&env, "taobao", &lines);
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_files_with_a_recipient_column_are_read() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let lines = std::iter::once("name,recipient,segment".to_owned())
        .chain((0..30).map(|i| format!("\"Buyer, {i}\",open-id:u{i},vip")));
    let file = write_lines(env.dir.path(), "recipients.csv", lines);
    let status = env
        .cli(&[
            "campaign",
            "run",
            "douyin",
            "--coupon",
            "7218070000005644204",
            "--recipients",
            file.to_str().unwrap(),
            "--concurrency",
            "2",
            "--json",
        ])
        .await
        .json();
    assert_eq!(
        (status["total"].as_u64(), status["issued"].as_u64()),
        (Some(30), Some(30)),
        "{status}"
    );
    let lines = report(&env, status["id"].as_str().unwrap());
    assert_eq!(lines[0].recipient, "open-id:u0");
    assert_eq!(lines[0].line, 2);
    assert_report_matches_ledger(&env, "douyin", &lines);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_campaign_input_is_a_clear_error() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let empty = write_lines(env.dir.path(), "empty.txt", ["# nobody".to_owned()]);
    let missing = env.dir.path().join("missing.txt");
    for (file, expected) in [(&empty, "has no recipients"), (&missing, "cannot read")] {
        let out = env
            .cli(&[
                "campaign",
                "run",
                "taobao",
                "--coupon",
                "48552",
                "--recipients",
                file.to_str().unwrap(),
            ])
            .await;
        assert!(!out.status.success());
        assert!(out.stderr.contains(expected), "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    }
    let out = env.cli(&["campaign", "status", "no-such-campaign"]).await;
    assert!(out.stderr.contains("no campaign"), "{}", out.stderr);

    // A file changed under a running campaign is refused, not sent twice.
    let file = write_lines(
        env.dir.path(),
        "r.txt",
        (0..5).map(|i| format!("nick:x{i}")),
    );
    let host = env.host().await;
    let mut spec = CampaignSpec::new("taobao", "48552", file.clone());
    spec.id = Some("spring".into());
    host.campaign(spec.clone(), |_| {}).await.unwrap();
    write_lines(
        env.dir.path(),
        "r.txt",
        (0..6).map(|i| format!("nick:x{i}")),
    );
    let error = host.campaign(spec, |_| {}).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("changed since campaign spring started"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stock_running_out_stops_the_campaign_instead_of_failing_everyone_after() {
    let mut sim = SimConfig::demo();
    sim.taobao.coupons[0].stock = Some(120);
    let env = TestEnv::start(sim, Options::default()).await;
    let file = write_lines(
        env.dir.path(),
        "r.txt",
        (0..1000).map(|i| format!("nick:s{i}")),
    );
    let host = env.host().await;
    let mut spec = CampaignSpec::new("taobao", "48552", file);
    spec.concurrency = 1;
    let error = host.campaign(spec.clone(), |_| {}).await.unwrap_err();
    let Error::CampaignStopped { id, error, pending } = &error else {
        panic!("{error}");
    };
    assert_eq!(error.class, ErrorClass::CouponUnavailable, "{error}");
    // Batch 1 issued the last 20 and failed 80; batch 2 failed whole and stopped the run.
    let status = host.campaign_status(id).await.unwrap();
    assert_eq!(
        (status.issued, status.failed, status.pending),
        (120, 80, 800),
        "{status:?}"
    );
    assert_eq!(*pending, 800);
    assert_eq!(status.state, "stopped");
    assert_eq!(
        status.error.as_ref().map(|e| e.class),
        Some(ErrorClass::CouponUnavailable)
    );
    let lines = report(&env, id);
    assert_eq!(lines.iter().filter(|l| l.state == "pending").count(), 800);
    assert!(
        lines
            .iter()
            .filter(|l| l.state == "failed")
            .all(|l| l.class.as_deref() == Some("coupon-unavailable")),
        "{lines:?}"
    );
    let done: Vec<ReportLine> = lines.into_iter().filter(|l| l.state != "pending").collect();
    assert_report_matches_ledger(&env, "taobao", &done);
}

/// The README's stopped campaign: a coupon the platform does not know refuses the first batch
/// whole; `campaign run` exits 1 saying it stopped, and `campaign status` says `stopped` with
/// the refusal (text and JSON), never `running`.
#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_campaign_says_stopped_with_its_error() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let file = write_lines(
        env.dir.path(),
        "r.txt",
        (0..30).map(|i| format!("nick:x{i}")),
    );
    let run = env
        .cli(&[
            "campaign",
            "run",
            "taobao",
            "--coupon",
            "99999",
            "--recipients",
            file.to_str().unwrap(),
            "--id",
            "unknown-coupon",
        ])
        .await;
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains("stopped: coupon-unavailable"),
        "{}",
        run.stderr
    );

    let text = env.cli(&["campaign", "status", "unknown-coupon"]).await;
    assert!(text.status.success(), "{}", text.stderr);
    assert!(
        text.stdout.contains("\tstopped\t0 of 30 done"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("stopped: coupon-unavailable"),
        "{}",
        text.stdout
    );
    assert!(!text.stdout.contains("running"), "{}", text.stdout);
    let json = env
        .cli(&["campaign", "status", "unknown-coupon", "--json"])
        .await
        .json();
    assert_eq!(json["state"], "stopped", "{json}");
    assert_eq!(json["error"]["class"], "coupon-unavailable", "{json}");
    assert_eq!(json["pending"], 30, "{json}");
    assert_eq!(env.sim.ledger().len(), 0);
}

/// A Taobao campaign of coupon `coupon` to `count` nicks `PREFIX0…`, enqueued by a host that
/// does not work it: the env, that host and the campaign's id.
async fn enqueued(
    coupon: &str,
    prefix: &str,
    count: usize,
) -> (TestEnv, coupon_host::Host, String) {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let file = write_lines(
        env.dir.path(),
        "r.txt",
        (0..count).map(|i| format!("nick:{prefix}{i}")),
    );
    let host = env.host().await;
    let id = host
        .campaign_enqueue(CampaignSpec::new("taobao", coupon, file))
        .await
        .unwrap();
    (env, host, id)
}

/// Works every campaign with a worker host of its own (2 batches at a time) until campaign `id`
/// says `state` (bounded: 120 s); its status then.
async fn work_until(
    env: &TestEnv,
    host: &coupon_host::Host,
    id: &str,
    state: &str,
) -> coupon_host::campaign::CampaignStatus {
    let worker = env.host().await;
    let reached = async {
        while host.campaign_status(id).await.unwrap().state != state {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), worker.work(2, reached))
        .await
        .unwrap_or_else(|_| panic!("campaign {id} never became {state}"))
        .unwrap();
    host.campaign_status(id).await.unwrap()
}

/// A campaign a worker stops (not the process that started it): its status says `stopped`,
/// with the refusal, though the one who started it only enqueued it.
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_a_worker_stops_says_stopped_with_its_error() {
    let (env, host, id) = enqueued("99999", "w", 200).await;
    // Enqueued, nobody works it yet: it waits, and does not say it runs.
    assert_eq!(host.campaign_status(&id).await.unwrap().state, "waiting");
    let status = work_until(&env, &host, &id, "stopped").await;
    assert_eq!(status.state, "stopped", "{status:?}");
    assert_eq!(
        status.error.as_ref().map(|e| e.class),
        Some(ErrorClass::CouponUnavailable),
        "{status:?}"
    );
    assert_eq!(status.pending, 200);
}

/// A batch leased for an hour by a process on another machine that stopped beating 60 s ago:
/// a worker reaps it by its silent heartbeat and finishes the campaign, long before the lease
/// would have run out.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_held_by_a_silent_process_elsewhere_is_taken_over() {
    let (env, host, id) = enqueued("48552", "h", 250).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Planted as that process left them: its heartbeat, and batch 1 leased to it.
    let db = rusqlite::Connection::open(env.dir.path().join("state.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute(
        "INSERT INTO processes (holder, host, pid, works, beat_ms)
         VALUES ('elsewhere:4242:dead', 'elsewhere', 4242, '*', ?1)",
        [now - 60_000],
    )
    .unwrap();
    let leased = db
        .execute(
            "UPDATE campaign_batches SET state = 'leased', holder = 'elsewhere:4242:dead',
             lease_until_ms = ?2 WHERE campaign = ?1 AND batch = 1",
            rusqlite::params![id, now + 3_600_000],
        )
        .unwrap();
    assert_eq!(leased, 1);
    drop(db);

    let status = work_until(&env, &host, &id, "done").await;
    assert_eq!((status.issued, status.pending), (250, 0), "{status:?}");
    assert_report_matches_ledger(&env, "taobao", &report(&env, &id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_expiring_mid_campaign_stops_it_and_the_same_command_resumes() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let file = write_lines(
        env.dir.path(),
        "r.txt",
        (0..600).map(|i| format!("nick:e{i}")),
    );
    let args = [
        "campaign",
        "run",
        "taobao",
        "--coupon",
        "48552",
        "--recipients",
        file.to_str().unwrap(),
        "--concurrency",
        "2",
        "--json",
    ];
    // The seller's session expires after the first calls: code 27, as the gateway says it.
    env.sim.inject(Fault::Delay {
        api: Some("taobao.promotion.coupon.sns.send".into()),
        millis: 10,
        apply: true,
        times: 2,
    });
    env.sim.inject(Fault::TopError {
        api: Some("taobao.promotion.coupon.sns.send".into()),
        code: 27,
        msg: "Invalid session".into(),
        sub_code: Some("invalid-sessionkey".into()),
        sub_msg: None,
        times: 2,
    });
    let stopped = env.cli(&args).await;
    assert!(!stopped.status.success());
    assert!(
        stopped.stderr.contains("stopped: auth-expired"),
        "{}",
        stopped.stderr
    );
    assert!(
        stopped
            .stderr
            .contains("run the same campaign again to resume"),
        "{}",
        stopped.stderr
    );
    assert_eq!(env.sim.ledger().len(), 200);

    // The session is renewed (the faults are spent): the same command picks up from there.
    let finished = env.cli(&args).await.json();
    assert_eq!(finished["state"], "done", "{finished}");
    assert_eq!(finished["issued"], 600, "{finished}");
    assert_report_matches_ledger(
        &env,
        "taobao",
        &report(&env, finished["id"].as_str().unwrap()),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_douyin_token_expiring_mid_campaign_is_refreshed() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let file = write_lines(
        env.dir.path(),
        "r.txt",
        (0..200).map(|i| format!("open-id:t{i}")),
    );
    let host = env.host().await;
    let mut expired = false;
    let status = host
        .campaign(
            CampaignSpec::new("douyin", "7218070000005644204", file),
            |progress| {
                if !expired && progress.status.issued >= 40 {
                    env.sim.expire_douyin_tokens();
                    expired = true;
                }
            },
        )
        .await
        .unwrap();
    assert!(expired);
    assert_eq!((status.issued, status.pending), (200, 0), "{status:?}");
    assert!(env.sim.douyin_token_fetches() >= 2);
    assert_report_matches_ledger(&env, "douyin", &report(&env, &status.id));
}

/// Faults the simulator draws from during a chaos run: every kind the platforms show.
fn chaos_faults() -> Vec<Fault> {
    vec![
        Fault::Status {
            api: None,
            status: 502,
            times: 1,
        },
        Fault::Status {
            api: None,
            status: 503,
            times: 1,
        },
        Fault::ResetConnection {
            api: None,
            times: 1,
        },
        Fault::Body {
            api: None,
            body: "<html><head><title>502 Bad Gateway</title></head></html>".into(),
            times: 1,
        },
        Fault::Body {
            api: None,
            body: "{\"promotion_coupon".into(),
            times: 1,
        },
        Fault::Delay {
            api: None,
            millis: 2_500,
            apply: true,
            times: 1,
        },
        Fault::Delay {
            api: None,
            millis: 2_500,
            apply: false,
            times: 1,
        },
        Fault::Delay {
            api: None,
            millis: 300,
            apply: true,
            times: 1,
        },
        Fault::TopError {
            api: None,
            code: 7,
            msg: "App Call Limited".into(),
            sub_code: Some("isv.access-limited-by-app-access-count".into()),
            sub_msg: Some("This ban will last 1 more seconds".into()),
            times: 1,
        },
        Fault::TopError {
            api: None,
            code: 15,
            msg: "Remote service error".into(),
            sub_code: Some("isp.top-remote-connection-timeout".into()),
            sub_msg: None,
            times: 1,
        },
    ]
}

/// The delivery issue's acceptance run, scaled by `COUPON_CHAOS_RECIPIENTS` (default 3 000; the
/// issue's run is 100 000): a Taobao campaign with 5 % of calls faulted, killed with SIGKILL at
/// random points three times and resumed, ends with every line final, and the ledger agrees.
/// Taobao, because its send has no idempotency key: only the journal and reconciliation keep a
/// resend from issuing twice (the seed allows a buyer many coupons, so a duplicate would show).
#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_killed_three_times_under_faults_issues_nobody_twice() {
    let recipients: usize = std::env::var("COUPON_CHAOS_RECIPIENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3_000);
    let mut sim = SimConfig::demo();
    sim.taobao.coupons[0].per_buyer_limit = None;
    let env = TestEnv::start(sim, Options::default()).await;
    env.sim.set_chaos(0.05, chaos_faults());
    let file = write_lines(
        env.dir.path(),
        "r.txt",
        (0..recipients).map(|i| format!("nick:c{i:07}")),
    );
    let args = [
        "campaign",
        "run",
        "taobao",
        "--coupon",
        "48552",
        "--recipients",
        file.to_str().unwrap(),
        "--concurrency",
        "8",
        "--json",
    ];
    for kill in 0..3 {
        let mut command = env.command(&args);
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let before = env.sim.calls().len();
        let sends = |calls: &[coupon_sim::CallRecord]| {
            calls
                .iter()
                .filter(|call| call.api == "taobao.promotion.coupon.sns.send")
                .count()
        };
        let mut child = command.spawn().unwrap();
        // Kill it mid-run, while it sends: after a random number of send calls of this run, at
        // most a quarter of the batches still to send (besides sends, a run makes one query per
        // recipient that the run before left in flight, to reconcile it), so that it cannot
        // have ended first.
        let left = (recipients - env.sim.ledger().len()).div_ceil(100) as u64;
        let after_sends = rand_between(1, left / 4 + 2) as usize;
        while sends(&env.sim.calls()[before..]) < after_sends {
            assert!(
                child.try_wait().unwrap().is_none(),
                "run {kill} ended before it was killed"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        let calls = env.sim.calls();
        eprintln!(
            "killed run {kill} after {} calls ({} sends); ledger has {}",
            calls.len() - before,
            sends(&calls[before..]),
            env.sim.ledger().len()
        );
    }
    let finished = env.cli(&args).await.json();
    assert_eq!(finished["state"], "done", "{finished}");
    assert_eq!(finished["pending"], 0, "{finished}");
    assert_eq!(finished["total"].as_u64(), Some(recipients as u64));
    let lines = report(&env, finished["id"].as_str().unwrap());
    assert_eq!(lines.len(), recipients);
    assert_report_matches_ledger(&env, "taobao", &lines);
    for line in lines.iter().filter(|l| l.state == "unknown").take(3) {
        eprintln!("unknown: {line:?}");
    }
    let faulted = env
        .sim
        .calls()
        .iter()
        .filter(|c| c.error_code.is_some())
        .count();
    eprintln!(
        "{recipients} recipients: {} issued, {} failed, {} unknown; {faulted} faulted calls",
        finished["issued"], finished["failed"], finished["unknown"]
    );
}

fn rand_between(low: u64, high: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    low + RandomState::new().hash_one(std::time::SystemTime::now()) % (high - low)
}

/// The recipients in the simulator's ledger for `platform` (platform ids, no `KIND:`).
fn ledger(env: &TestEnv, platform: &str) -> BTreeSet<String> {
    env.sim
        .ledger()
        .into_iter()
        .filter(|issuance| issuance.platform == platform)
        .map(|issuance| issuance.recipient)
        .collect()
}

/// Taobao issued the coupon to exactly `expected`, as the report says.
fn assert_sent_exactly(env: &TestEnv, lines: &[ReportLine], expected: &[&str]) {
    assert_eq!(
        ledger(env, "taobao"),
        expected
            .iter()
            .map(|id| id.to_string())
            .collect::<BTreeSet<_>>()
    );
    assert_report_matches_ledger(env, "taobao", lines);
}

/// `coupon-host campaign run taobao --coupon 48552 --recipients FILE [extra…] --json`.
async fn run_file(env: &TestEnv, file: &Path, extra: &[&str]) -> crate::support::CliOutput {
    let mut args = vec![
        "campaign",
        "run",
        "taobao",
        "--coupon",
        "48552",
        "--recipients",
        file.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    tokio::time::timeout(Duration::from_secs(120), env.cli(&args))
        .await
        .unwrap_or_else(|_| panic!("campaign run on {} did not end", file.display()))
}

/// Issue 22's `printf 'nick:legit1\n#%s%s\nnick:legit2\n' "$(head -c 65535 /dev/zero | tr '\0'
/// x)" nick:injected`: the 65 KiB comment is one line, rejected whole; the nick at its end is
/// not a line and is sent nothing; the report has the file's 3 lines, numbered as `wc -l` does.
#[tokio::test(flavor = "multi_thread")]
async fn a_line_over_the_limit_is_one_rejected_line_and_nothing_in_it_is_sent() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let file = env.dir.path().join("injected.txt");
    let text = format!(
        "nick:legit1\n#{}nick:injected\nnick:legit2\n",
        "x".repeat(65_535)
    );
    std::fs::write(&file, &text).unwrap();
    let run = run_file(&env, &file, &[]).await;
    let status = run.json();
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(
        (&status["total"], &status["issued"], &status["rejected"]),
        (&3.into(), &2.into(), &1.into()),
        "{status}"
    );
    let lines = report(&env, status["id"].as_str().unwrap());
    let rows: Vec<_> = lines.iter().map(|l| (l.line, l.state.as_str())).collect();
    assert_eq!(rows, [(1, "issued"), (2, "rejected"), (3, "issued")]);
    assert!(
        lines[1]
            .message
            .as_deref()
            .unwrap_or("")
            .contains("longer than 4096 bytes"),
        "{:?}",
        lines[1]
    );
    assert_sent_exactly(&env, &lines, &["legit1", "legit2"]);
}

/// A GBK export (bytes from the GBK table, not from the host's decoder): refused as UTF-8
/// before anything is sent, with what to do; sent under the right nicks with `--encoding gbk`.
#[tokio::test(flavor = "multi_thread")]
async fn a_gbk_file_is_refused_as_utf8_and_sent_with_its_encoding() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let file = env.dir.path().join("gbk.txt");
    // nick:张三 / nick:李四 / nick:王五 in GBK (Python: '张三'.encode('gbk') == b'\xd5\xc5\xc8\xfd').
    std::fs::write(
        &file,
        b"nick:\xd5\xc5\xc8\xfd\r\nnick:\xc0\xee\xcb\xc4\r\nnick:\xcd\xf5\xce\xe5\r\n",
    )
    .unwrap();
    let refused = run_file(&env, &file, &[]).await;
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("is not UTF-8 text")
            && refused.stderr.contains("give its encoding"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("line 1"), "{}", refused.stderr);
    assert!(env.sim.calls().is_empty(), "{:?}", env.sim.calls());

    let status = run_file(&env, &file, &["--encoding", "gbk"]).await.json();
    assert_eq!(status["issued"], 3, "{status}");
    assert_eq!(
        ledger(&env, "taobao"),
        BTreeSet::from(["张三".to_owned(), "李四".to_owned(), "王五".to_owned()])
    );
    let unknown = run_file(&env, &file, &["--encoding", "latin-1"]).await;
    assert!(
        unknown.stderr.contains("use utf-8, gb18030 or gbk"),
        "{}",
        unknown.stderr
    );
}

/// A line that is not UTF-8 in a UTF-8 file is rejected with its line and byte; a BOM is taken;
/// invisible characters are refused in ids, and NFC and NFD spellings are one recipient.
#[tokio::test(flavor = "multi_thread")]
async fn ids_are_held_to_the_rule_and_a_bad_line_is_named() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let file = env.dir.path().join("ids.txt");
    let mut bytes = b"\xEF\xBB\xBFnick:caf\xC3\xA9\n".to_vec(); // BOM, then NFC é
    bytes.extend_from_slice("nick:cafe\u{301}\n".as_bytes()); // the same, NFD
    bytes.extend_from_slice("nick:\u{200b}\nnick:a\u{202e}b\nnick:\u{feff}c\n".as_bytes());
    bytes.extend_from_slice(b"nick:ok\xff\xfe\nnick:plain\n");
    std::fs::write(&file, &bytes).unwrap();
    let status = run_file(&env, &file, &[]).await.json();
    assert_eq!(status["issued"], 2, "{status}");
    let lines = report(&env, status["id"].as_str().unwrap());
    let rows: Vec<_> = lines.iter().map(|l| (l.line, l.state.as_str())).collect();
    assert_eq!(
        rows,
        [
            (1, "issued"),
            (2, "skipped"),
            (3, "rejected"),
            (4, "rejected"),
            (5, "rejected"),
            (6, "rejected"),
            (7, "issued")
        ]
    );
    let reason = |i: usize| lines[i].message.clone().unwrap_or_default();
    assert!(reason(2).contains("U+200B"), "{}", reason(2));
    assert!(reason(3).contains("U+202E"), "{}", reason(3));
    assert!(reason(4).contains("U+FEFF"), "{}", reason(4));
    assert!(
        reason(5).contains("not valid UTF-8 at byte offset 7"),
        "{}",
        reason(5)
    );
    assert_sent_exactly(&env, &lines, &["caf\u{e9}", "plain"]);
}

/// `--recipients` that is not a regular file is refused at once, saying what it is; a symbolic
/// link is not followed.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_a_fifo_or_a_link_is_refused_at_once() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let fifo = env.dir.path().join("fifo");
    crate::support::mkfifo(&fifo);
    let list = write_lines(env.dir.path(), "list.txt", ["nick:a".to_owned()]);
    let link = env.dir.path().join("link.txt");
    std::os::unix::fs::symlink(&list, &link).unwrap();
    for (file, what) in [
        (Path::new("/dev/zero"), "a character device"),
        (fifo.as_path(), "a FIFO"),
        (env.dir.path(), "a folder"),
        (link.as_path(), "a symbolic link"),
    ] {
        let out = run_file(&env, file, &[]).await;
        assert!(!out.status.success());
        assert!(out.stderr.contains(what), "{what}: {}", out.stderr);
    }
    assert!(env.sim.calls().is_empty());
}

/// The file is read once, when the campaign is checked: what is sent is what was read then,
/// even when another file is put at its path before it runs.
#[tokio::test(flavor = "multi_thread")]
async fn a_prepared_campaign_sends_the_file_as_it_was_read() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let file = write_lines(
        env.dir.path(),
        "r.txt",
        (0..3).map(|i| format!("nick:first{i}")),
    );
    let host = env.host().await;
    let prepared = host
        .campaign_prepare(CampaignSpec::new("taobao", "48552", file.clone()))
        .await
        .unwrap();
    let swapped = write_lines(
        env.dir.path(),
        "other.txt",
        (0..3).map(|i| format!("nick:swapped{i}")),
    );
    std::fs::rename(&swapped, &file).unwrap();
    let status = prepared.run(|_| {}).await.unwrap();
    assert_eq!(status.issued, 3);
    assert_eq!(
        ledger(&env, "taobao"),
        (0..3).map(|i| format!("first{i}")).collect::<BTreeSet<_>>()
    );
}
