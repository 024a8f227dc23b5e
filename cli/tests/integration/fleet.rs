//! Several host processes on one storage, as a fleet runs them: `coupon-host` processes that
//! share the journal, the platform's request window, the Douyin token and campaign work, and
//! die with `kill -9`. Each test runs on SQLite (processes sharing one file) and on PostgreSQL.

use std::collections::BTreeSet;
use std::time::Duration;

use coupon_sim::SimConfig;
use tokio::process::Child;

use crate::support::{Options, TAOBAO_COUPON, TestEnv, run};

/// The demo's Douyin activity.
const DOUYIN_ACTIVITY: &str = "7218070000005644204";

/// How long a dead process's leases last in these tests: short, so a test sees a takeover soon.
const LEASE_MS: u64 = 2_000;

/// The storages a fleet can share.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shared {
    /// One SQLite file, opened by every process.
    Sqlite,
    /// One PostgreSQL database (a schema of the test's own).
    Postgres,
}

impl Shared {
    /// A test env on this storage, or `None` (said on one line) when the storage cannot be
    /// reached here (outside CI only: under CI that fails the test).
    async fn env(self, sim: SimConfig, options: Options) -> Option<TestEnv> {
        self.env_with_lease(sim, options, LEASE_MS).await
    }

    /// [`Shared::env`], with leases of `lease_ms`.
    async fn env_with_lease(
        self,
        sim: SimConfig,
        mut options: Options,
        lease_ms: u64,
    ) -> Option<TestEnv> {
        match self {
            Shared::Sqlite => {
                options.storage = format!("path = \"state.db\"\nlease_ms = {lease_ms}");
                Some(TestEnv::start(sim, options).await)
            }
            Shared::Postgres => {
                use coupon_host_tests::postgres::{SchemaGuard, fresh_name, reachable};
                let url = reachable().await?;
                let schema = SchemaGuard::new(&url, fresh_name("t_"));
                options.storage = format!(
                    "backend = \"postgres\"\nurl_env = \"COUPON_TEST_PG_URL\"\nschema = \"{}\"\nlease_ms = {lease_ms}",
                    schema.schema
                );
                let mut env = TestEnv::start(sim, options).await;
                env.secrets.push(("COUPON_TEST_PG_URL".to_owned(), url));
                env.cleanup.push(Box::new(schema));
                Some(env)
            }
        }
    }
}

fn write_nicks(env: &TestEnv, name: &str, prefix: &str, count: usize) -> String {
    let path = env.dir.path().join(name);
    let text: String = (0..count).map(|i| format!("nick:{prefix}{i}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn spawn(env: &TestEnv, args: &[&str]) -> Child {
    env.command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("coupon-host starts")
}

fn kill_9(child: &Child) {
    let pid = child.id().expect("still running") as i32;
    // SAFETY: a plain kill(2) of a child this test started.
    #[allow(unsafe_code, reason = "kill -9 is the point of the test")]
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: a plain kill(2) of a child this test started.
        #[allow(unsafe_code, reason = "SIGTERM is how a worker is told to stop")]
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
    }
}

/// Waits until the simulator's ledger holds `count` Taobao coupons (bounded).
async fn wait_for_ledger(env: &TestEnv, count: usize) {
    for _ in 0..6000 {
        if env.sim.ledger().len() >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the ledger never reached {count}");
}

/// The ledger holds each of `expected` exactly once, and nothing else.
fn assert_each_once(env: &TestEnv, expected: &BTreeSet<String>) {
    env.assert_ledger("taobao", expected, &BTreeSet::new());
    let ledger: BTreeSet<String> = env.sim.ledger().into_iter().map(|i| i.recipient).collect();
    let missing: Vec<_> = expected.difference(&ledger).take(5).collect();
    assert!(missing.is_empty(), "never issued: {missing:?}…");
    assert_eq!(env.sim.ledger().len(), expected.len());
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(super::Shared::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                super::$name(super::Shared::Postgres).await
            })*
        }
    };
}

on_both!(
    a_killed_worker_is_noticed_by_its_heartbeat_before_its_leases_expire,
    a_campaign_run_killed_and_started_again_takes_its_work_over_at_once,
    one_campaign_run_twice_at_once_issues_nobody_twice,
    workers_share_a_campaign_and_a_killed_one_is_replaced,
    hosts_sharing_a_credential_are_never_told_too_frequent,
    hosts_starting_together_fetch_the_douyin_token_once,
);

/// `campaign run` of a Taobao campaign of `file`, 3 batches at a time, printing JSON.
fn run_args(file: &str) -> [&str; 10] {
    [
        "campaign",
        "run",
        "taobao",
        "--coupon",
        TAOBAO_COUPON,
        "--recipients",
        file,
        "--concurrency",
        "3",
        "--json",
    ]
}

/// Enqueues a Taobao campaign of `file` with `campaign run --detach`; its id.
pub(crate) async fn enqueue_detached(env: &TestEnv, file: &str) -> String {
    let enqueued = env
        .cli(&[
            "campaign",
            "run",
            "taobao",
            "--coupon",
            TAOBAO_COUPON,
            "--recipients",
            file,
            "--detach",
            "--json",
        ])
        .await
        .json();
    enqueued["id"].as_str().unwrap().to_owned()
}

/// Leases far longer than any test waits: a dead process's work can only be taken over through
/// its heartbeat.
const LONG_LEASE_MS: u64 = 3_600_000;

/// Polls a campaign's status until it is done (bounded, far below [`LONG_LEASE_MS`]); returns
/// it, and what the `campaign status` processes logged (each is a process on the storage too,
/// and may be the one that reaps a dead one).
async fn wait_until_done(env: &TestEnv, id: &str) -> (serde_json::Value, String) {
    let mut status = serde_json::Value::Null;
    let mut logs = String::new();
    for _ in 0..1500 {
        let out = env.cli(&["campaign", "status", id, "--json"]).await;
        logs.push_str(&out.stderr);
        status = out.json();
        if status["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (status, logs)
}

/// A worker of a three-worker fleet killed with SIGKILL mid-campaign, leases an hour long, and
/// no replacement: the processes left notice it is dead by its heartbeat, take its batches and
/// its sends in flight over, and finish the campaign: nobody twice, nobody missing. The takeover
/// is in the log of the process that made it.
async fn a_killed_worker_is_noticed_by_its_heartbeat_before_its_leases_expire(shared: Shared) {
    let count = match shared {
        Shared::Postgres => 20_000,
        Shared::Sqlite => 3_000,
    };
    let Some(env) = shared
        .env_with_lease(SimConfig::demo(), Options::default(), LONG_LEASE_MS)
        .await
    else {
        return;
    };
    let file = write_nicks(&env, "list.txt", "hb", count);
    let id = enqueue_detached(&env, &file).await;
    let waiting = env.cli(&["campaign", "status", &id, "--json"]).await.json();
    assert_eq!(
        waiting["state"], "waiting",
        "nobody works it yet: {waiting}"
    );

    let worker = ["worker", "--concurrency", "3"];
    let mut workers: Vec<Child> = (0..3).map(|_| spawn(&env, &worker)).collect();
    wait_for_ledger(&env, count / 4).await;
    let dead = workers[0].id().unwrap();
    kill_9(&workers[0]);
    workers[0].wait().await.unwrap();

    let (status, mut logs) = wait_until_done(&env, &id).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["issued"], count, "{status}");
    for worker in &workers[1..] {
        terminate(worker);
    }
    for worker in workers.drain(1..) {
        let out = worker.wait_with_output().await.unwrap();
        assert!(out.status.success(), "a worker stops cleanly on SIGTERM");
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        logs.lines()
            .any(|line| line.contains("took over a dead process's work")
                && line.contains(&format!(":{dead}:"))),
        "a process on the storage says it took the killed worker's work over:\n{logs}"
    );
    let expected: BTreeSet<String> = (0..count).map(|i| format!("hb{i}")).collect();
    assert_each_once(&env, &expected);
}

/// A `campaign run` killed with SIGKILL and started again at once on the same machine, leases an
/// hour long: the new process sees its predecessor's pid gone and takes its work over as it
/// starts, and finishes the campaign: nobody twice, nobody missing.
async fn a_campaign_run_killed_and_started_again_takes_its_work_over_at_once(shared: Shared) {
    let count = 2_000;
    let Some(env) = shared
        .env_with_lease(SimConfig::demo(), Options::default(), LONG_LEASE_MS)
        .await
    else {
        return;
    };
    let file = write_nicks(&env, "list.txt", "again", count);
    let args = run_args(&file);
    let first = spawn(&env, &args);
    wait_for_ledger(&env, count / 4).await;
    let dead = first.id().unwrap();
    kill_9(&first);
    first.wait_with_output().await.unwrap();

    let again = tokio::time::timeout(Duration::from_secs(240), run(env.command(&args)))
        .await
        .expect("the second run finishes long before the leases would expire");
    let status = again.json();
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["issued"], count, "{status}");
    assert!(
        again
            .stderr
            .lines()
            .any(|line| line.contains("took over a dead process's work")
                && line.contains(&format!("its pid {dead} is gone"))),
        "{}",
        again.stderr
    );
    let expected: BTreeSet<String> = (0..count).map(|i| format!("again{i}")).collect();
    assert_each_once(&env, &expected);
}

/// The same campaign started by two `campaign run` processes at once: each batch is sent by
/// one of them, and both end with the whole campaign done.
async fn one_campaign_run_twice_at_once_issues_nobody_twice(shared: Shared) {
    let Some(env) = shared.env(SimConfig::demo(), Options::default()).await else {
        return;
    };
    let file = write_nicks(&env, "list.txt", "twice", 1500);
    let args = run_args(&file);
    let (first, second) = tokio::join!(run(env.command(&args)), run(env.command(&args)));
    for out in [&first, &second] {
        let status = out.json();
        assert_eq!(status["state"], "done", "{status}");
        assert_eq!(status["issued"], 1500, "{status}");
    }
    let expected: BTreeSet<String> = (0..1500).map(|i| format!("twice{i}")).collect();
    assert_each_once(&env, &expected);
}

/// A campaign enqueued with `--detach` and worked by three `worker` processes; one is killed
/// with SIGKILL mid-way and another started: nobody twice, nobody skipped, and the report agrees.
async fn workers_share_a_campaign_and_a_killed_one_is_replaced(shared: Shared) {
    let count = match shared {
        // The issue's fleet: 100 000 recipients on PostgreSQL; a smaller file on one SQLite file.
        Shared::Postgres => 100_000,
        Shared::Sqlite => 6_000,
    };
    let Some(env) = shared.env(SimConfig::demo(), Options::default()).await else {
        return;
    };
    let file = write_nicks(&env, "list.txt", "w", count);
    let id = enqueue_detached(&env, &file).await;
    assert_eq!(env.sim.ledger().len(), 0, "--detach sends nothing");

    let worker = ["worker", "--concurrency", "3"];
    let mut workers: Vec<Child> = (0..3).map(|_| spawn(&env, &worker)).collect();
    wait_for_ledger(&env, count / 3).await;
    kill_9(&workers[0]);
    workers.push(spawn(&env, &worker));

    let (status, _) = wait_until_done(&env, &id).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["issued"], count, "{status}");
    assert!(
        status["workers"].as_array().is_some_and(|w| w.len() >= 3),
        "the workers that took part are listed: {status}"
    );
    for worker in &workers[1..] {
        terminate(worker);
    }
    for mut worker in workers.drain(1..) {
        let exit = worker.wait().await.unwrap();
        assert!(exit.success(), "a worker stops cleanly on SIGTERM: {exit}");
    }

    let expected: BTreeSet<String> = (0..count).map(|i| format!("w{i}")).collect();
    assert_each_once(&env, &expected);
    let report = env
        .cli(&["campaign", "report", &id, "--format", "json"])
        .await;
    assert!(report.status.success(), "{}", report.stderr);
    let issued = report
        .stdout
        .lines()
        .filter(|line| line.contains("\"state\":\"issued\""))
        .count();
    assert_eq!(issued, count, "the report agrees with the ledger");
}

/// Three hosts of one app key, driven as hard as they go against a gateway that enforces a
/// sliding 100/s window, are never told "too frequent"; nor when one is killed with SIGKILL and
/// started again at once (it finds the window in the storage).
async fn hosts_sharing_a_credential_are_never_told_too_frequent(shared: Shared) {
    let sim = SimConfig {
        qps_per_app: Some(100),
        ..SimConfig::demo()
    };
    let Some(env) = shared.env(sim, Options::default()).await else {
        return;
    };
    // Plugin `paced`: the Taobao adapter under the platform's own limit, 100 requests a second.
    let mut config = std::fs::read_to_string(&env.config_path).unwrap();
    config.push_str(&format!(
        r#"
[plugins.paced]
component = {component:?}
allowed_hosts = [{origin:?}]
auth = {{ scheme = "top", app_key = "12345678", app_secret_env = "{secret}", session_env = "{session}" }}
limits = {{ qps = 100, http_timeout_ms = 5000 }}
settings = {{ gateway = "{gateway}" }}
"#,
        component = coupon_host_tests::TAOBAO,
        origin = env.sim.base_url(),
        gateway = env.sim.top_gateway(),
        secret = crate::support::APP_SECRET_ENV,
        session = crate::support::SESSION_ENV,
    ));
    std::fs::write(&env.config_path, config).unwrap();
    let per_host = 15_000;
    let files: Vec<String> = (0..3)
        .map(|h| write_nicks(&env, &format!("list{h}.txt"), &format!("q{h}-"), per_host))
        .collect();
    let args = |file: &str| {
        vec![
            "campaign".to_owned(),
            "run".to_owned(),
            "paced".to_owned(),
            "--coupon".to_owned(),
            TAOBAO_COUPON.to_owned(),
            "--recipients".to_owned(),
            file.to_owned(),
            "--concurrency".to_owned(),
            "8".to_owned(),
            "--json".to_owned(),
        ]
    };
    let mut hosts: Vec<Child> = files
        .iter()
        .map(|file| {
            let args = args(file);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            spawn(&env, &args)
        })
        .collect();
    wait_for_ledger(&env, per_host).await;
    // Killed and started again at once: the new process must not burst into the window.
    kill_9(&hosts[0]);
    hosts[0].wait().await.unwrap();
    let restarted = args(&files[0]);
    let restarted: Vec<&str> = restarted.iter().map(String::as_str).collect();
    hosts[0] = spawn(&env, &restarted);
    for host in hosts {
        let out = host.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let too_frequent = env
        .sim
        .calls()
        .iter()
        .filter(|call| call.error_code.as_deref() == Some("7"))
        .count();
    assert_eq!(too_frequent, 0, "the gateway said too frequent");
    let expected: BTreeSet<String> = (0..3)
        .flat_map(|h| (0..per_host).map(move |i| format!("q{h}-{i}")))
        .collect();
    assert_each_once(&env, &expected);
}

/// Three hosts started together on an empty storage, each sending through Douyin at once: the
/// client token is fetched once, and shared.
async fn hosts_starting_together_fetch_the_douyin_token_once(shared: Shared) {
    let Some(env) = shared.env(SimConfig::demo(), Options::default()).await else {
        return;
    };
    let sends: Vec<_> = (0..3)
        .map(|i| {
            let to = format!("open-id:fleet-{i}");
            let mut command = env.command(&[
                "send",
                "douyin",
                "--coupon",
                DOUYIN_ACTIVITY,
                "--to",
                &to,
                "--json",
            ]);
            command.kill_on_drop(true);
            tokio::spawn(run(command))
        })
        .collect();
    for send in sends {
        let outcome = send.await.unwrap().json();
        assert_eq!(
            outcome["issued"].as_array().map(Vec::len),
            Some(1),
            "{outcome}"
        );
    }
    assert_eq!(env.sim.douyin_token_fetches(), 1);
}

/// A campaign worked by two `worker` processes over verified TLS (`sslmode=verify-full`) on a
/// PostgreSQL cluster of the test's own, restarted mid-campaign (`pg_ctl restart`, every
/// connection cut): the workers reconnect and finish it, nobody twice, nobody skipped. Each
/// worker logged at start that its connection is encrypted and verified.
#[tokio::test(flavor = "multi_thread")]
async fn workers_finish_a_campaign_across_a_postgres_restart() {
    let Some(cluster) = coupon_host_tests::cluster::Cluster::start() else {
        return;
    };
    let count = 6_000;
    let options = Options {
        storage: format!(
            "backend = \"postgres\"\nurl_env = \"COUPON_TEST_PG_URL\"\nlease_ms = {LEASE_MS}\n\
             tls_ca_file = {:?}",
            cluster.ca_file()
        ),
        ..Options::default()
    };
    let mut env = TestEnv::start(SimConfig::demo(), options).await;
    let url = format!("{}?sslmode=verify-full", cluster.url("localhost"));
    env.secrets.push(("COUPON_TEST_PG_URL".to_owned(), url));
    let file = write_nicks(&env, "list.txt", "r", count);
    let id = enqueue_detached(&env, &file).await;

    // Their logs go to files: a pipe nobody reads while they work could fill and stop them.
    let logs: Vec<std::path::PathBuf> = (0..2)
        .map(|i| env.dir.path().join(format!("worker{i}.log")))
        .collect();
    let workers: Vec<Child> = logs
        .iter()
        .map(|log| {
            env.command(&["worker", "--concurrency", "3"])
                .env("COUPON_HOST_LOG", "info")
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .kill_on_drop(true)
                .spawn()
                .expect("coupon-host starts")
        })
        .collect();
    wait_for_ledger(&env, count / 3).await;
    let before = env.sim.ledger().len();
    tokio::task::block_in_place(|| cluster.restart());
    assert!(before < count, "the restart came mid-campaign");

    let (status, _) = wait_until_done(&env, &id).await;
    assert_eq!(status["state"], "done", "{status}");
    assert_eq!(status["issued"], count, "{status}");
    for worker in &workers {
        terminate(worker);
    }
    for (mut worker, log) in workers.into_iter().zip(&logs) {
        let exit = worker.wait().await.unwrap();
        let log = std::fs::read_to_string(log).unwrap();
        assert!(exit.success(), "a worker stops cleanly: {exit}\n{log}");
        assert!(
            log.contains("PostgreSQL connection: encrypted (TLS), certificate chain")
                && log.contains("and host name verified (sslmode=verify-full)"),
            "{log}"
        );
    }
    let expected: BTreeSet<String> = (0..count).map(|i| format!("r{i}")).collect();
    assert_each_once(&env, &expected);
}
