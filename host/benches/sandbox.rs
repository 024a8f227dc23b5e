//! What the sandbox costs, measured against a native client in the same run.
//!
//! `cargo bench -p coupon-host --features bench --bench sandbox` (add `-- --quick` for a smaller run, `-- --no-write`
//! to leave docs/BENCHMARKS.md alone, `-- --only r1,micro` for some sections). It prints every
//! result and writes them to docs/BENCHMARKS.md between `<!-- bench:start -->` and
//! `<!-- bench:end -->`.
//!
//! Sections: `micro`, `r5`, `procs`, `r1`, `r3`, `r4`, `m1`, `s1`, `r3fleet`. The last three run
//! this binary again as child processes (`--child SPEC`, see [`child`]); `s1` and `r3fleet` also
//! use PostgreSQL at `$COUPON_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! in a schema of their own that they drop, and report their PostgreSQL rows as skipped where no
//! server answers.
//!
//! The machine is shared and noisy, so nothing is a single absolute time: every comparison is made
//! of interleaved rounds (A, B, C, A, B, C, …, the order rotating each round) and reported as the
//! median of the per-round ratios with their range. CPU-bound micro results use the thread's own
//! CPU time (`CLOCK_THREAD_CPUTIME_ID`), which a busy neighbour inflates less than wall time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use coupon_host::bench::top;
use coupon_host::bench::{Canned, Harness};
use coupon_host::campaign::CampaignSpec;
use coupon_host::{Config, Host, QueryRequest, Recipient, SendRequest};
use coupon_sim::{Sim, SimConfig};

const APP_SECRET: &str = "sim-app-secret";
const SESSION: &str = "sim-session";
const DOUYIN_SECRET: &str = "sim-douyin-secret";
const SIGN_METHOD: top::SignMethod = top::SignMethod::HmacSha256;

// ---------------------------------------------------------------------------------------------
// The run: arguments, sizes, the report.

struct Args {
    quick: bool,
    write: bool,
    only: Option<Vec<String>>,
    /// R1 only: these adapters / these modes (for profiling one path).
    adapters: Option<Vec<String>>,
    modes: Option<Vec<String>>,
}

impl Args {
    fn parse() -> Args {
        let mut args = Args {
            quick: false,
            write: true,
            only: None,
            adapters: None,
            modes: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => args.quick = true,
                "--no-write" => args.write = false,
                "--only" | "--adapters" | "--modes" => {
                    let list = it.next().expect("a comma-separated list");
                    let list = Some(list.split(',').map(str::to_owned).collect());
                    match arg.as_str() {
                        "--only" => args.only = list,
                        "--adapters" => args.adapters = list,
                        _ => args.modes = list,
                    }
                }
                // `cargo bench` passes `--bench`; libtest flags mean nothing here.
                _ => {}
            }
        }
        args
    }

    fn picks(list: &Option<Vec<String>>, name: &str) -> bool {
        list.as_ref().is_none_or(|l| l.iter().any(|s| s == name))
    }

    fn runs(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }
}

/// Sizes of one run: `--quick` for iterating, the default for the numbers in the docs.
struct Sizes {
    /// Interleaved rounds of each comparison.
    rounds: usize,
    /// Length of one throughput round.
    round: Duration,
    /// Concurrent sends in the end-to-end comparisons.
    concurrency: usize,
    /// Calls per CPU-time micro round.
    micro_calls: usize,
    /// How long the rate-limit runs drive the limiter.
    overload: Duration,
    /// Recipients of the big campaign (R4, M1).
    campaign: usize,
}

impl Sizes {
    fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                rounds: 3,
                round: Duration::from_millis(500),
                concurrency: 32,
                micro_calls: 2_000,
                overload: Duration::from_secs(3),
                campaign: 50_000,
            }
        } else {
            Sizes {
                rounds: 5,
                round: Duration::from_secs(2),
                concurrency: 32,
                micro_calls: 10_000,
                overload: Duration::from_secs(10),
                campaign: 1_000_000,
            }
        }
    }
}

/// What the run found, as markdown.
#[derive(Default)]
struct Report {
    /// One row per goal: metric, value, goal, verdict.
    goals: Vec<[String; 4]>,
    /// Sections of detail.
    body: String,
}

impl Report {
    fn goal(&mut self, metric: &str, value: String, goal: &str, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "—",
        };
        println!("  {metric}: {value} (goal {goal}: {verdict})");
        self.goals.push([
            metric.to_owned(),
            value,
            goal.to_owned(),
            verdict.to_owned(),
        ]);
    }

    fn section(&mut self, title: &str, text: &str) {
        println!("\n### {title}\n{text}");
        writeln!(self.body, "\n#### {title}\n\n{text}").unwrap();
    }
}

fn main() {
    // This binary re-run as one process of a fleet (see [`run_children`]).
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--child") {
        child(argv.get(2).expect("--child SPEC"));
    }
    let args = Args::parse();
    // R1 and S1 measure the host's own cost per send: Douyin's declared 100 sends a second would
    // pace them instead. R3 and the fleet sections configure their pace explicitly.
    coupon_host::bench::lift_declared_limits();
    let sizes = Sizes::new(args.quick);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let work = Work::new();
    let mut report = Report::default();
    let machine = machine();
    println!("{machine}");
    let started = Instant::now();

    if args.runs("micro") {
        micro(&work, &sizes, &mut report);
    }
    if args.runs("r5") {
        r5(&work, &sizes, &mut report);
    }
    if args.runs("procs") {
        tokio.block_on(procs(&work, &sizes, &mut report));
    }
    tokio.block_on(async {
        if args.runs("r1") {
            r1(&work, &sizes, &args, &mut report).await;
        }
        if args.runs("r3") {
            r3(&work, &sizes, &mut report).await;
        }
        if args.runs("r4") {
            r4(&work, &sizes, &mut report).await;
        }
        if args.runs("m1") {
            m1(&work, &sizes, &mut report).await;
        }
        if args.runs("s1") {
            s1(&work, &sizes, &mut report).await;
        }
        if args.runs("r3fleet") {
            r3_fleet(&work, &sizes, &mut report).await;
        }
    });
    let took = started.elapsed();
    println!("\nran in {:.0} s", took.as_secs_f64());

    if args.write {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/BENCHMARKS.md");
        let section = render(&machine, &report, &args, took);
        write_section(&path, &section).expect("write docs/BENCHMARKS.md");
        println!("wrote {}", path.display());
    }
}

fn render(machine: &str, report: &Report, args: &Args, took: Duration) -> String {
    let mut text = String::new();
    writeln!(
        text,
        "## Sandbox cost\n\nWritten by `cargo bench -p coupon-host --features bench --bench sandbox{}` in {:.0} s. \
         Every ratio is the median of interleaved rounds (A, B, A, B, … with the order rotating), \
         with the range of the per-round ratios in brackets; the machine is shared, so absolute \
         numbers are context, not results.\n",
        if args.quick { " -- --quick" } else { "" },
        took.as_secs_f64()
    )
    .unwrap();
    writeln!(text, "{machine}").unwrap();
    writeln!(text, "| metric | value | goal | |\n|---|---|---|---|").unwrap();
    for [metric, value, goal, verdict] in &report.goals {
        writeln!(text, "| {metric} | {value} | {goal} | {verdict} |").unwrap();
    }
    text.push_str(&report.body);
    text
}

/// Replaces the text between the markers, or appends the markers and the text.
fn write_section(path: &Path, section: &str) -> std::io::Result<()> {
    const START: &str = "<!-- bench:start -->";
    const END: &str = "<!-- bench:end -->";
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "# Benchmarks\n".to_owned(),
        Err(e) => return Err(e),
    };
    let block = format!("{START}\n{section}\n{END}");
    let new = match (old.find(START), old.find(END)) {
        (Some(start), Some(end)) if start < end => {
            format!("{}{block}{}", &old[..start], &old[end + END.len()..])
        }
        _ => format!("{}\n{block}\n", old.trim_end()),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, new)
}

/// The machine, as a markdown table.
fn machine() -> String {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = read("/proc/meminfo");
    let ram_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let lock = read(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock"));
    let wasmtime = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"wasmtime\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_default();
    let load = read("/proc/loadavg");
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "| machine | |\n|---|---|\n| nproc | {nproc} |\n| CPU | {cpu} |\n| RAM | {:.1} GiB |\n\
         | kernel | {kernel} |\n| rustc | {rustc} |\n| wasmtime | {wasmtime} |\n\
         | load average at start | {load} |\n",
        ram_kib as f64 / (1 << 20) as f64
    )
}

// ---------------------------------------------------------------------------------------------
// Statistics.

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let v = sorted(values);
    if v.is_empty() {
        return f64::NAN;
    }
    let at = ((v.len() - 1) as f64 * p).round() as usize;
    v[at]
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// `median [min–max]`, with `digits` decimals.
fn spread(values: &[f64], digits: usize) -> String {
    let v = sorted(values);
    format!(
        "{:.digits$} [{:.digits$}–{:.digits$}]",
        median(&v),
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
    )
}

fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

/// This thread's CPU time so far (`CLOCK_THREAD_CPUTIME_ID`: nanoseconds, unlike
/// `/proc/thread-self/schedstat`, which moves in scheduler ticks).
fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// This process's CPU time so far, all its threads (`CLOCK_PROCESS_CPUTIME_ID`).
fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant Linux knows.
    #[expect(unsafe_code, reason = "clock_gettime has no safe wrapper in std")]
    let rc = unsafe { libc::clock_gettime(clock, &mut now) };
    assert_eq!(rc, 0, "clock_gettime({clock})");
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// CPU seconds used so far by the processes named `postgres` on this machine: the server's live
/// processes, and (as the server's children's times) its ended backends. Moves in ticks
/// (`USER_HZ`, 1/100 s).
fn postgres_cpu() -> f64 {
    let mut ticks = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`: utime, stime, cutime and cstime are fields 14 to 17.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        if &stat[open + 1..close] != "postgres" {
            continue;
        }
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        ticks += fields
            .get(11..15)
            .unwrap_or_default()
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .sum::<u64>();
    }
    ticks as f64 / 100.0
}

/// A process's `VmHWM` or `VmRSS`, in KiB.
fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|l| {
            l.trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

// ---------------------------------------------------------------------------------------------
// The environment: a simulator, a config pointing at it, the secrets.

/// Where a run keeps its files.
struct Work {
    dir: PathBuf,
    cache: PathBuf,
}

impl Work {
    fn new() -> Work {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-bench");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Components compiled by earlier runs are reused (R5 measures both ways itself).
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-bench-cache");
        Work { dir, cache }
    }

    /// A fresh directory under the work dir (or under /dev/shm, on tmpfs).
    fn fresh(&self, name: &str, tmpfs: bool) -> PathBuf {
        let base = if tmpfs {
            PathBuf::from("/dev/shm/coupon-host-bench")
        } else {
            self.dir.clone()
        };
        let dir = base.join(format!("{name}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn env_lookup(name: &str) -> Option<String> {
    match name {
        "BENCH_APP_SECRET" => Some(APP_SECRET.to_owned()),
        "BENCH_SESSION" => Some(SESSION.to_owned()),
        "BENCH_DOUYIN_SECRET" => Some(DOUYIN_SECRET.to_owned()),
        PG_URL_VAR => Some(pg_url()),
        _ => None,
    }
}

const SECRETS: [(&str, &str); 3] = [
    ("BENCH_APP_SECRET", APP_SECRET),
    ("BENCH_SESSION", SESSION),
    ("BENCH_DOUYIN_SECRET", DOUYIN_SECRET),
];

/// The four adapters, as the benchmarks drive them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adapter {
    Taobao,
    Tmall,
    Alsc,
    Douyin,
}

const ADAPTERS: [Adapter; 4] = [
    Adapter::Taobao,
    Adapter::Tmall,
    Adapter::Alsc,
    Adapter::Douyin,
];

impl Adapter {
    fn name(self) -> &'static str {
        match self {
            Adapter::Taobao => "taobao",
            Adapter::Tmall => "tmall-nrt",
            Adapter::Alsc => "alsc",
            Adapter::Douyin => "douyin",
        }
    }

    fn component(self) -> &'static str {
        match self {
            Adapter::Taobao => coupon_host_tests::TAOBAO,
            Adapter::Tmall => coupon_host_tests::TMALL_NRT,
            Adapter::Alsc => coupon_host_tests::ALSC,
            Adapter::Douyin => coupon_host_tests::DOUYIN,
        }
    }

    fn coupon(self) -> &'static str {
        match self {
            Adapter::Taobao => "48552",
            Adapter::Tmall => "nrt-demo-uuid",
            Adapter::Alsc => "3243421",
            Adapter::Douyin => "7218070000005644204",
        }
    }

    /// A recipient nobody got a coupon for yet in this process.
    fn recipient(self, n: u64) -> Recipient {
        match self {
            Adapter::Taobao => Recipient::Nick(format!("买家b{n}")),
            Adapter::Tmall => Recipient::OpenId(format!("tm{n}")),
            Adapter::Alsc => Recipient::CustomerId(format!("cu{n}")),
            Adapter::Douyin => Recipient::OpenId(format!("dy{n}")),
        }
    }

    /// `app` names the Douyin app (client_key = app_id); the simulator keeps only an app's latest
    /// two tokens valid, so clients that fetch their own tokens use apps of their own.
    fn settings(self, sim: &str, app: &str) -> Vec<(&'static str, String)> {
        let gateway = format!("{sim}/router/rest");
        match self {
            Adapter::Taobao | Adapter::Alsc => vec![("gateway", gateway)],
            Adapter::Tmall => vec![
                ("gateway", gateway),
                ("biz_code", "YXX".into()),
                ("channel", "app".into()),
                ("coupon_type", "247".into()),
            ],
            Adapter::Douyin => vec![("base_url", sim.to_owned()), ("app_id", app.to_owned())],
        }
    }

    fn auth(self, app: &str) -> String {
        let text = match self {
            Adapter::Taobao | Adapter::Tmall => {
                r#"{ scheme = "top", app_key = "12345678", app_secret_env = "BENCH_APP_SECRET", session_env = "BENCH_SESSION", sign_method = "hmac-sha256" }"#
            }
            Adapter::Alsc => {
                r#"{ scheme = "top", app_key = "12345678", app_secret_env = "BENCH_APP_SECRET", sign_method = "hmac-sha256" }"#
            }
            Adapter::Douyin => {
                r#"{ scheme = "douyin", client_key = "{client_key}", client_secret_env = "BENCH_DOUYIN_SECRET" }"#
            }
        };
        text.replace("{client_key}", douyin_key(app))
    }
}

static RECIPIENTS: AtomicU64 = AtomicU64::new(0);

fn next_recipient() -> u64 {
    RECIPIENTS.fetch_add(1, Ordering::Relaxed)
}

/// The Douyin app every client uses unless it needs its own (see [`Adapter::settings`]).
const DOUYIN_APP: &str = "tt-demo-app";

/// The client key of a Douyin app: the demo seed's, or (for the benchmark's own apps) its id.
fn douyin_key(app: &str) -> &str {
    if app == DOUYIN_APP {
        "tt-demo-key"
    } else {
        app
    }
}

/// Where a config keeps its state.
#[derive(Debug, Clone)]
enum Backend {
    /// `state.db` in the config's directory.
    Sqlite,
    /// A schema of the PostgreSQL database at [`pg_url`].
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// The `[storage]` table's keys, for a config in `dir`.
    fn toml(&self, dir: &Path) -> String {
        match self {
            Backend::Sqlite => format!("path = {:?}", dir.join("state.db").display().to_string()),
            Backend::Postgres(schema) => {
                format!("backend = \"postgres\"\nurl_env = {PG_URL_VAR:?}\nschema = {schema:?}")
            }
        }
    }
}

/// Writes a config for `plugins` (each with extra TOML keys) against the simulator at `sim`,
/// storage in `dir`; returns its path.
fn write_config(
    dir: &Path,
    cache: &Path,
    sim: &str,
    max_instances: u32,
    plugins: &[(Adapter, &str, &str)],
) -> PathBuf {
    write_config_for(
        dir,
        cache,
        sim,
        max_instances,
        plugins,
        DOUYIN_APP,
        &Backend::Sqlite,
    )
}

fn write_config_for(
    dir: &Path,
    cache: &Path,
    sim: &str,
    max_instances: u32,
    plugins: &[(Adapter, &str, &str)],
    douyin_app: &str,
    backend: &Backend,
) -> PathBuf {
    let mut toml = format!(
        "[storage]\n{}\n\n[runtime]\ncache_dir = {:?}\nmax_instances = {max_instances}\n",
        backend.toml(dir),
        cache.display().to_string(),
    );
    for (adapter, name, extra) in plugins {
        let settings: Vec<String> = adapter
            .settings(sim, douyin_app)
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}"))
            .collect();
        write!(
            toml,
            "\n[plugins.{name}]\ncomponent = {:?}\nallowed_hosts = [{sim:?}]\nauth = {}\nsettings = {{ {} }}\n{extra}\n",
            adapter.component(),
            adapter.auth(douyin_app),
            settings.join(", "),
        )
        .unwrap();
    }
    let path = dir.join("coupon-host.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

fn load_config(path: &Path) -> Config {
    Config::load_with_env(path, &env_lookup).expect("the bench config loads")
}

fn send_request(adapter: Adapter, recipients: Vec<Recipient>) -> SendRequest {
    SendRequest::new(adapter.coupon(), recipients)
}

/// `Host::send` of one new recipient; returns how many were issued.
async fn host_send(host: &Host, adapter: Adapter, n: u64) -> usize {
    let request = send_request(adapter, vec![adapter.recipient(n)]);
    match host.send(adapter.name(), request).await {
        Ok(outcome) => outcome.issued.len(),
        Err(_) => 0,
    }
}

/// The same through the sandbox alone (no journal); returns how many were issued.
async fn sandbox_send(sandbox: &Harness, adapter: Adapter, n: u64) -> usize {
    let mut request = send_request(adapter, vec![adapter.recipient(n)]);
    request.idempotency_key = Some(format!("sandbox-{n}"));
    sandbox.send(&request).await.unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The native client: the adapters' own `api` code, the host's signer, reqwest.

/// One request as it goes on the wire.
struct Wire {
    url: String,
    /// TOP: application parameters, signed before sending.
    form: Option<Vec<(String, String)>>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

#[derive(Clone)]
struct WireAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

type Answer = Result<WireAnswer, adapter_kit::HttpError>;

/// The TOP system parameters and signature, as `caps/http.rs` adds them.
fn top_signed(params: &[(String, String)], session: bool) -> Vec<(String, String)> {
    let mut signed = BTreeMap::new();
    for (name, value) in params {
        if !top::is_blank(name) && !top::is_blank(value) {
            signed.insert(name.clone(), value.clone());
        }
    }
    signed.insert("app_key".into(), "12345678".into());
    signed.insert("timestamp".into(), top::timestamp(chrono::Utc::now()));
    signed.insert("v".into(), "2.0".into());
    signed.insert("sign_method".into(), SIGN_METHOD.as_str().into());
    if session {
        signed.insert("session".into(), SESSION.into());
    }
    let sign = top::sign(&signed, APP_SECRET, SIGN_METHOD);
    signed.insert("sign".into(), sign);
    signed.into_iter().collect()
}

fn form_encode(params: &[(String, String)]) -> Vec<u8> {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish().into_bytes()
}

/// Runs the adapter's `api::send_coupon` natively. Calls are answered from `answers` in order;
/// the first call past them is stored in `next` (and fails), so the caller can make it and run
/// the logic again. Returns the number of recipients issued once no call is missing.
fn native_logic(
    adapter: Adapter,
    request: &adapter_kit::contract::SendRequest,
    settings: &dyn Fn(&str) -> Option<String>,
    answers: &[Answer],
    next: &mut Option<Wire>,
) -> usize {
    let mut served = 0;
    let mut answer = |wire: Wire| -> Answer {
        if let Some(answer) = answers.get(served) {
            served += 1;
            return answer.clone();
        }
        next.get_or_insert(wire);
        Err(adapter_kit::HttpError::Connect("pending".into()))
    };
    let top_wire = |req: &top_common::HttpRequest| Wire {
        url: req.url.clone(),
        form: Some(req.params.clone()),
        headers: Vec::new(),
        body: Vec::new(),
    };
    let top_answer = |a: Answer| {
        a.map(|a| top_common::HttpResponse {
            status: a.status,
            body: a.body,
        })
    };
    match adapter {
        Adapter::Taobao => {
            let request = taobao::api::SendRequest {
                coupon: request.coupon.clone(),
                recipients: request.recipients.clone(),
                quantity: request.quantity,
                options: request.options.clone(),
            };
            taobao::api::send_coupon(&request, settings, |req| top_answer(answer(top_wire(req))))
                .map_or(0, |o| o.issued.len())
        }
        Adapter::Tmall => {
            tmall_nrt::api::send_coupon(request, settings, |req| top_answer(answer(top_wire(req))))
                .map_or(0, |o| o.issued.len())
        }
        Adapter::Alsc => {
            alsc::api::send_coupon(request, settings, |req| top_answer(answer(top_wire(req))))
                .map_or(0, |o| o.issued.len())
        }
        Adapter::Douyin => douyin::api::send_coupon(request, settings, |req| {
            answer(Wire {
                url: req.url.clone(),
                form: None,
                headers: req.headers.clone(),
                body: req.body.clone(),
            })
            .map(|a| douyin::api::HttpResponse {
                status: a.status,
                headers: a.headers,
                body: a.body,
            })
        })
        .map_or(0, |o| o.issued.len()),
    }
}

/// A native client of one adapter: what an application without the sandbox would do.
struct Native {
    adapter: Adapter,
    client: reqwest::Client,
    settings: BTreeMap<String, String>,
    token: Option<String>,
}

impl Native {
    async fn new(adapter: Adapter, sim: &str, app: &str) -> Native {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let token = if adapter == Adapter::Douyin {
            let answer: serde_json::Value = client
                .post(format!("{sim}/oauth/client_token/"))
                .json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "client_key": douyin_key(app),
                    "client_secret": DOUYIN_SECRET,
                }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            Some(answer["data"]["access_token"].as_str().unwrap().to_owned())
        } else {
            None
        };
        Native {
            adapter,
            client,
            settings: adapter
                .settings(sim, app)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
            token,
        }
    }

    async fn send(&self, recipients: Vec<Recipient>, key: String) -> usize {
        let request = adapter_kit::contract::SendRequest {
            coupon: self.adapter.coupon().to_owned(),
            recipients: recipients.iter().map(contract_recipient).collect(),
            quantity: 1,
            idempotency_key: key,
            options: Vec::new(),
            account: "default".to_owned(),
        };
        let settings = |key: &str| self.settings.get(key).cloned();
        let mut answers = Vec::new();
        loop {
            let mut next = None;
            let issued = native_logic(self.adapter, &request, &settings, &answers, &mut next);
            match next {
                None => return issued,
                Some(wire) => answers.push(self.execute(wire).await),
            }
        }
    }

    async fn execute(&self, wire: Wire) -> Answer {
        let mut builder = self.client.post(&wire.url).timeout(Duration::from_secs(5));
        for (name, value) in &wire.headers {
            builder = builder.header(name, value);
        }
        if let Some(token) = &self.token {
            builder = builder.header("access-token", token);
        }
        builder = match &wire.form {
            Some(params) => builder
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded;charset=utf-8",
                )
                .body(form_encode(&top_signed(
                    params,
                    self.adapter != Adapter::Alsc,
                ))),
            None => builder.body(wire.body),
        };
        let response = builder
            .send()
            .await
            .map_err(|e| adapter_kit::HttpError::Other(e.to_string()))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response
            .bytes()
            .await
            .map_err(|e| adapter_kit::HttpError::Other(e.to_string()))?
            .to_vec();
        Ok(WireAnswer {
            status,
            headers,
            body,
        })
    }
}

fn contract_recipient(recipient: &Recipient) -> adapter_kit::contract::Recipient {
    use adapter_kit::contract::Recipient as C;
    match recipient {
        Recipient::Nick(v) => C::Nick(v.clone()),
        Recipient::OpenId(v) => C::OpenId(v.clone()),
        Recipient::CustomerId(v) => C::CustomerId(v.clone()),
    }
}

// ---------------------------------------------------------------------------------------------
// R1: the full stack against the native client, per adapter, end to end.

/// Runs `send` from `concurrency` tasks for `length`; returns issued recipients per second and
/// the number of sends that issued nothing.
async fn throughput<F, Fut>(concurrency: usize, length: Duration, send: F) -> (f64, usize)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    steady_throughput(concurrency, Duration::ZERO, length, send).await
}

/// Runs `send` from `concurrency` tasks until `end`, telling `issued` how many recipients each
/// send issued and when it ended; returns the number of sends that issued nothing.
async fn drive<F, Fut>(
    concurrency: usize,
    end: Instant,
    send: F,
    issued: impl Fn(usize, Instant) + Send + Sync + 'static,
) -> usize
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let (send, issued) = (Arc::new(send), Arc::new(issued));
    let misses = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (send, issued, misses) = (send.clone(), issued.clone(), misses.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    match send(next_recipient()).await {
                        0 => {
                            misses.fetch_add(1, Ordering::Relaxed);
                        }
                        n => issued(n, Instant::now()),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    misses.load(Ordering::Relaxed)
}

/// Issued recipients per second from `warmup` to `warmup + length`, as the least-squares slope of
/// the count of issued recipients against time. A limiter that lets a second's worth through at
/// once every second makes a staircase; its slope is the pace, where counting what fell between
/// two instants would be off by up to a whole step. Also returns the sends that issued nothing.
async fn paced_throughput<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    length: Duration,
    send: F,
) -> (f64, usize)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let (times, misses) = issue_times(concurrency, warmup, length, send).await;
    (slope(&times), misses)
}

/// Drives `send` as [`paced_throughput`] does; returns when (seconds from the start) each
/// recipient issued from `warmup` to `warmup + length` was, and the sends that issued nothing.
async fn issue_times<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    length: Duration,
    send: F,
) -> (Vec<f64>, usize)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let times = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let recorded = times.clone();
    let misses = drive(
        concurrency,
        started + warmup + length,
        send,
        move |n, now| {
            let at = now - started;
            if at >= warmup && at < warmup + length {
                recorded
                    .lock()
                    .unwrap()
                    .extend(std::iter::repeat_n(at.as_secs_f64(), n));
            }
        },
    )
    .await;
    let times = std::mem::take(&mut *times.lock().unwrap());
    (times, misses)
}

/// Issued recipients per second: the least-squares slope of their count against `times`.
fn slope(times: &[f64]) -> f64 {
    let times = sorted(times);
    let n = times.len() as f64;
    let mean_t = times.iter().sum::<f64>() / n;
    let mean_i = (n - 1.0) / 2.0;
    let (mut cov, mut var) = (0.0, 0.0);
    for (i, t) in times.iter().enumerate() {
        cov += (t - mean_t) * (i as f64 - mean_i);
        var += (t - mean_t) * (t - mean_t);
    }
    cov / var
}

/// [`throughput`], counting only sends that end after `warmup` (and the time after it).
async fn steady_throughput<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    length: Duration,
    send: F,
) -> (f64, usize)
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let issued = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let counted_from = started + warmup;
    let counter = issued.clone();
    let misses = drive(
        concurrency,
        started + warmup + length,
        send,
        move |n, now| {
            if now >= counted_from {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        },
    )
    .await;
    let elapsed = started.elapsed().saturating_sub(warmup).as_secs_f64();
    (issued.load(Ordering::Relaxed) as f64 / elapsed, misses)
}

async fn r1(work: &Work, sizes: &Sizes, args: &Args, report: &mut Report) {
    println!("\n== R1: Host::send end to end vs a native client ==");
    let mut table = String::from(
        "Sends of one recipient each, from the same number of concurrent tasks, against one \
         in-process simulator on loopback (2 tokio workers shared by client and simulator). \
         *native*: the adapter's own `api` code compiled natively, the host's signer, reqwest. \
         *sandbox*: a fresh component instance per call through the host's signed-http (policy, \
         signing, reqwest, redaction), no journal. *Host::send*: the whole public path (journal \
         in SQLite on disk, retries). *tmpfs*: the same with the SQLite file on /dev/shm.\n\n\
         | adapter | native sends/s | sandbox ÷ native | Host::send ÷ native | Host::send (tmpfs) ÷ native | journal's share of Host::send time | misses |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for adapter in ADAPTERS {
        if !Args::picks(&args.adapters, adapter.name()) {
            continue;
        }
        let mut sim_config = SimConfig::demo();
        // The Douyin simulator allows 100 sends a second by default; R1 is not about that.
        sim_config.douyin.qps = 10_000_000;
        for mode in ["native", "sandbox", "host", "tmpfs"] {
            sim_config.douyin.apps.push(coupon_sim::DouyinApp {
                client_key: format!("tt-bench-{mode}"),
                client_secret: DOUYIN_SECRET.into(),
                app_id: format!("tt-bench-{mode}"),
            });
        }
        let sim = Sim::start(sim_config).await.unwrap();
        let base = sim.base_url();
        let plugin = [(
            adapter,
            adapter.name(),
            "limits = { http_timeout_ms = 5000 }",
        )];
        let disk = work.fresh("r1", false);
        let tmpfs = work.fresh("r1", true);
        let host = Host::new(load_config(&write_config_for(
            &disk,
            &work.cache,
            &base,
            64,
            &plugin,
            "tt-bench-host",
            &Backend::Sqlite,
        )))
        .await
        .unwrap();
        let host_tmpfs = Host::new(load_config(&write_config_for(
            &tmpfs,
            &work.cache,
            &base,
            64,
            &plugin,
            "tt-bench-tmpfs",
            &Backend::Sqlite,
        )))
        .await
        .unwrap();
        let sandbox_dir = work.fresh("r1-sandbox", true);
        let sandbox = Arc::new(
            Harness::new(
                &load_config(&write_config_for(
                    &sandbox_dir,
                    &work.cache,
                    &base,
                    64,
                    &plugin,
                    "tt-bench-sandbox",
                    &Backend::Sqlite,
                )),
                adapter.name(),
                true,
                None,
            )
            .await
            .unwrap(),
        );
        let native = Arc::new(Native::new(adapter, &base, "tt-bench-native").await);

        let mut modes: Vec<&str> = ["native", "sandbox", "host", "tmpfs"]
            .into_iter()
            .filter(|m| Args::picks(&args.modes, m))
            .collect();
        let mut results: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut misses = 0;
        for round in 0..sizes.rounds {
            for &mode in &modes {
                let (rate, missed) = match mode {
                    "native" => {
                        let native = native.clone();
                        throughput(sizes.concurrency, sizes.round, move |n| {
                            let native = native.clone();
                            async move {
                                native
                                    .send(vec![adapter.recipient(n)], format!("native-{n}"))
                                    .await
                            }
                        })
                        .await
                    }
                    "sandbox" => {
                        let sandbox = sandbox.clone();
                        throughput(sizes.concurrency, sizes.round, move |n| {
                            let sandbox = sandbox.clone();
                            async move { sandbox_send(&sandbox, adapter, n).await }
                        })
                        .await
                    }
                    _ => {
                        let host = if mode == "host" {
                            host.clone()
                        } else {
                            host_tmpfs.clone()
                        };
                        throughput(sizes.concurrency, sizes.round, move |n| {
                            let host = host.clone();
                            async move { host_send(&host, adapter, n).await }
                        })
                        .await
                    }
                };
                misses += missed;
                println!(
                    "  {} round {round} {mode}: {rate:.0} sends/s",
                    adapter.name()
                );
                results.entry(mode).or_default().push(rate);
            }
            modes.rotate_left(1);
        }
        if modes.len() < 4 {
            continue;
        }
        let native_rates = &results["native"];
        let sandbox = ratios(&results["sandbox"], native_rates);
        let host_ratio = ratios(&results["host"], native_rates);
        let tmpfs_ratio = ratios(&results["tmpfs"], native_rates);
        // Time per send: 1/rate. The journal's share is what Host::send adds over the sandbox.
        let share: Vec<f64> = results["host"]
            .iter()
            .zip(&results["sandbox"])
            .map(|(h, s)| (1.0 / h - 1.0 / s) / (1.0 / h))
            .collect();
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {misses} |",
            adapter.name(),
            spread(native_rates, 0),
            spread(&sandbox, 2),
            spread(&host_ratio, 2),
            spread(&tmpfs_ratio, 2),
            spread(&share.iter().map(|s| s * 100.0).collect::<Vec<_>>(), 0) + " %",
        )
        .unwrap();
        // The issue's R1 is the sandbox column (config → component → signing → HTTP → parse);
        // the goal is shown against Host::send too, so the journal's cost is not hidden.
        report.goal(
            &format!("R1 {}: Host::send ÷ native sends/s", adapter.name()),
            spread(&host_ratio, 2),
            "≥ 0.60 (stretch 0.75)",
            Some(median(&host_ratio) >= 0.60),
        );
        report.goal(
            &format!("R1 {}: sandbox (no journal) ÷ native", adapter.name()),
            spread(&sandbox, 2),
            "≥ 0.75",
            Some(median(&sandbox) >= 0.75),
        );
        drop((host, host_tmpfs));
        sim.shutdown().await;
    }
    report.section("R1: full stack ÷ native client, per adapter", &table);
}

// ---------------------------------------------------------------------------------------------
// R2 and the micro benchmarks: CPU time with a canned transport, no network.

/// A taobao answer for `nicks`, as the canned transport gives it.
fn canned_taobao(nicks: &[String]) -> Vec<u8> {
    let results: Vec<serde_json::Value> = nicks
        .iter()
        .enumerate()
        .map(|(i, nick)| serde_json::json!({"coupon_number": 122_345_456 + i, "buyer_nick": nick}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "promotion_coupon_sns_send_response": {
            "coupon_results": {"coupon_result": results},
            "is_success": true,
            "request_id": "bench-canned-1",
        }
    }))
    .unwrap()
}

/// The micro benchmarks' send: 10 nicks, answered by a canned 10-coupon taobao answer.
struct CannedSend {
    body: Vec<u8>,
    canned: Canned,
    recipients: Vec<Recipient>,
    request: SendRequest,
}

impl CannedSend {
    fn new() -> CannedSend {
        let nicks: Vec<String> = (0..10).map(|i| format!("买家{i:03}")).collect();
        let body = canned_taobao(&nicks);
        let canned_body = body.clone();
        let canned: Canned = Arc::new(move |_body| (200, canned_body.clone()));
        let recipients: Vec<Recipient> = nicks.iter().map(|n| Recipient::Nick(n.clone())).collect();
        let request = send_request(Adapter::Taobao, recipients.clone());
        CannedSend {
            body,
            canned,
            recipients,
            request,
        }
    }
}

/// The gateway of canned configs: nothing listens there, the canned transport answers.
const CANNED_SIM: &str = "http://127.0.0.1:9";

/// A config of the taobao plugin for a canned harness, in a fresh directory on tmpfs.
fn canned_config(work: &Work, name: &str) -> PathBuf {
    write_config(
        &work.fresh(name, true),
        &work.cache,
        CANNED_SIM,
        64,
        &[(Adapter::Taobao, "taobao", "")],
    )
}

/// `calls` fresh-instance sends of `request`, one after another; returns this thread's CPU
/// seconds for them.
async fn fresh_sends(harness: &Harness, request: &SendRequest, calls: usize) -> f64 {
    let before = thread_cpu();
    for _ in 0..calls {
        harness.send(request).await.unwrap();
    }
    (thread_cpu() - before).as_secs_f64()
}

/// The `coupon-host` binary (package `coupon-host-cli`), built in this bench's profile beside it.
fn coupon_host_bin() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status =
                std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
                    .args(["build", "--release", "--quiet", "-p", "coupon-host-cli"])
                    .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
                    .status()
                    .expect("cargo runs");
            assert!(status.success(), "building coupon-host failed");
            let exe = std::env::current_exe().unwrap();
            // target/release/deps/sandbox-… → target/release/coupon-host
            exe.parent().unwrap().parent().unwrap().join("coupon-host")
        })
        .clone()
}

/// Runs `f` on a fresh single-threaded runtime on this thread.
fn local<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// CPU time per call since `before`, over `calls` calls.
fn per_call(before: Duration, calls: usize) -> f64 {
    (thread_cpu() - before).as_secs_f64() / calls as f64
}

fn micro(work: &Work, sizes: &Sizes, report: &mut Report) {
    println!("\n== R2 and micro: canned transport, no network ==");
    let CannedSend {
        body,
        canned,
        recipients,
        request,
    } = CannedSend::new();
    let sim = CANNED_SIM;
    let config = load_config(&canned_config(work, "micro"));
    let harness =
        Arc::new(local(Harness::new(&config, "taobao", true, Some(canned.clone()))).unwrap());
    let no_epoch = local(Harness::new(&config, "taobao", false, Some(canned.clone()))).unwrap();
    let guest_config = load_config(&{
        let dir = work.fresh("micro-guest", true);
        let path = write_config(&dir, &work.cache, sim, 16, &[]);
        let mut text = std::fs::read_to_string(&path).unwrap();
        write!(
            text,
            "\n[plugins.calls]\ncomponent = {:?}\n",
            coupon_host_tests::GUEST_HOST_CALLS
        )
        .unwrap();
        std::fs::write(&path, text).unwrap();
        path
    });
    let guest = local(Harness::new(&guest_config, "calls", true, None)).unwrap();

    // The native adapter: the same api code, signing and form encoding, the canned answer.
    let settings = |key: &str| (key == "gateway").then(|| format!("{sim}/router/rest"));
    let contract_request = adapter_kit::contract::SendRequest {
        coupon: "48552".into(),
        recipients: recipients.iter().map(contract_recipient).collect(),
        quantity: 1,
        idempotency_key: "k".into(),
        options: Vec::new(),
        account: "default".into(),
    };
    let native_once = || {
        let request = taobao::api::SendRequest {
            coupon: contract_request.coupon.clone(),
            recipients: contract_request.recipients.clone(),
            quantity: 1,
            options: Vec::new(),
        };
        let outcome = taobao::api::send_coupon(&request, &settings, |req| {
            let form = std::hint::black_box(form_encode(&top_signed(&req.params, true)));
            drop(form);
            Ok(top_common::HttpResponse {
                status: 200,
                body: body.clone(),
            })
        })
        .unwrap();
        assert_eq!(outcome.issued.len(), 10);
    };

    let calls = sizes.micro_calls;
    let mut native = Vec::new();
    let mut reused = Vec::new();
    let mut reused_off = Vec::new();
    let mut fresh = Vec::new();
    let mut fresh_latency = Vec::new();
    let mut bare_latency = Vec::new();
    let mut export = Vec::new();
    let mut import = Vec::new();
    local(async {
        let mut instance = harness.instance().await.unwrap();
        let mut instance_off = no_epoch.instance().await.unwrap();
        let mut guest_instance = guest.instance().await.unwrap();
        // Warm up every path once.
        assert_eq!(instance.send(&request).await.unwrap(), 10);
        assert_eq!(instance_off.send(&request).await.unwrap(), 10);
        assert_eq!(harness.send(&request).await.unwrap(), 10);
        let query = QueryRequest::new(Recipient::Nick(String::new()));
        let one_import = {
            let mut request = send_request(Adapter::Taobao, vec![Recipient::Nick("x".into())]);
            request.quantity = 1;
            request
        };
        let mut import_request = send_request(Adapter::Taobao, vec![Recipient::Nick("x".into())]);
        // `COUPON_BENCH_PROFILE=native|reused|fresh|export`: only that loop, 100 000 calls
        // (1 000 000 export calls), for a profiler (`threads1|threads2`: the fresh-instance
        // scaling run, further down).
        let profile = std::env::var("COUPON_BENCH_PROFILE").unwrap_or_default();
        if profile == "export" {
            for _ in 0..1_000_000 {
                guest_instance.query(&query).await.unwrap();
            }
            std::process::exit(0);
        }
        if ["native", "reused", "fresh"].contains(&profile.as_str()) {
            for _ in 0..100_000 {
                match profile.as_str() {
                    "native" => native_once(),
                    "reused" => drop(instance.send(&request).await.unwrap()),
                    _ => drop(harness.send(&request).await.unwrap()),
                }
            }
            std::process::exit(0);
        }
        for round in 0..sizes.rounds {
            let before = thread_cpu();
            for _ in 0..calls {
                native_once();
            }
            native.push(per_call(before, calls));
            let before = thread_cpu();
            for _ in 0..calls {
                instance.send(&request).await.unwrap();
            }
            reused.push(per_call(before, calls));
            let before = thread_cpu();
            for _ in 0..calls {
                instance_off.send(&request).await.unwrap();
            }
            reused_off.push(per_call(before, calls));
            let before = thread_cpu();
            for _ in 0..calls {
                let started = Instant::now();
                harness.send(&request).await.unwrap();
                fresh_latency.push(started.elapsed().as_secs_f64());
            }
            fresh.push(per_call(before, calls));
            // The sandbox alone: a fresh instance, one export call, one host import.
            for _ in 0..calls {
                let started = Instant::now();
                let _ = guest.send(&one_import).await;
                bare_latency.push(started.elapsed().as_secs_f64());
            }
            let before = thread_cpu();
            for _ in 0..calls * 50 {
                guest_instance.query(&query).await.unwrap();
            }
            export.push(per_call(before, calls * 50));
            // One call making 100 000 imports, less one making none.
            import_request.quantity = 100_000;
            let before = thread_cpu();
            for _ in 0..3 {
                let _ = guest_instance.send(&import_request).await;
            }
            let with = per_call(before, 3);
            import_request.quantity = 0;
            let before = thread_cpu();
            for _ in 0..3 {
                let _ = guest_instance.send(&import_request).await;
            }
            let without = per_call(before, 3);
            import.push((with - without) / 100_000.0);
            println!(
                "  round {round}: native {:.2} µs, reused {:.2} µs, reused epoch-off {:.2} µs, fresh {:.2} µs, export {:.0} ns, import {:.0} ns",
                native[round] * 1e6,
                reused[round] * 1e6,
                reused_off[round] * 1e6,
                fresh[round] * 1e6,
                export[round] * 1e9,
                import[round] * 1e9
            );
        }
    });

    // Fresh-instance throughput from one thread, then from two at once (wall time).
    let mut scaling = Vec::new();
    let mut cpu_scaling = Vec::new();
    let per_thread = calls;
    for _ in 0..sizes.rounds {
        // Returns (calls per second of wall time, CPU seconds per call).
        let run = |threads: usize| {
            let started = Instant::now();
            let cpu: f64 = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        let harness = harness.clone();
                        let request = request.clone();
                        scope.spawn(move || local(fresh_sends(&harness, &request, per_thread)))
                    })
                    .collect();
                workers.into_iter().map(|w| w.join().unwrap()).sum()
            });
            let calls = (threads * per_thread) as f64;
            (calls / started.elapsed().as_secs_f64(), cpu / calls)
        };
        if let Some(threads) = std::env::var("COUPON_BENCH_PROFILE")
            .ok()
            .and_then(|p| p.strip_prefix("threads")?.parse().ok())
        {
            for _ in 0..50 {
                run(threads);
            }
            std::process::exit(0);
        }
        let (one, one_cpu) = run(1);
        let (two, two_cpu) = run(2);
        println!(
            "  fresh throughput: 1 thread {one:.0}/s ({:.1} µs CPU/call), 2 threads {two:.0}/s ({:.1} µs CPU/call)",
            one_cpu * 1e6,
            two_cpu * 1e6
        );
        scaling.push(two / one);
        // What two free cores would give: twice the calls per CPU-second of one thread, less
        // whatever contention made each call cost more CPU.
        cpu_scaling.push(2.0 * one_cpu / two_cpu);
    }

    // RSS of live instances, each after one send, in a pool of their own.
    let big_pool = load_config(&write_config(
        &work.fresh("micro-rss", true),
        &work.cache,
        sim,
        1100,
        &[(Adapter::Taobao, "taobao", "")],
    ));
    let rss_harness = local(Harness::new(
        &big_pool,
        "taobao",
        true,
        Some(canned.clone()),
    ))
    .unwrap();
    let live = 1000;
    let per_instance = local(async {
        // One instance first, so the engine's own pages are not counted.
        let mut first = rss_harness.instance().await.unwrap();
        first.send(&request).await.unwrap();
        let before = (
            status_kib("self", "VmRSS").unwrap(),
            status_kib("self", "RssAnon").unwrap(),
        );
        // For a profile of where the pages are: `COUPON_BENCH_SMAPS=DIR` keeps the process's
        // smaps before and after the live instances (diff them by mapping).
        let smaps_dir = std::env::var_os("COUPON_BENCH_SMAPS").map(PathBuf::from);
        let keep_smaps = |name: &str| {
            if let Some(dir) = &smaps_dir {
                std::fs::create_dir_all(dir).unwrap();
                std::fs::copy("/proc/self/smaps", dir.join(name)).unwrap();
            }
        };
        keep_smaps("before");
        let mut instances = Vec::new();
        for _ in 0..live {
            let mut instance = rss_harness.instance().await.unwrap();
            instance.send(&request).await.unwrap();
            instances.push(instance);
        }
        let after = (
            status_kib("self", "VmRSS").unwrap(),
            status_kib("self", "RssAnon").unwrap(),
        );
        keep_smaps("after");
        drop(instances);
        (
            after.0.saturating_sub(before.0) as f64 / live as f64,
            after.1.saturating_sub(before.1) as f64 / live as f64,
        )
    });
    let (per_instance_rss, per_instance) = per_instance;

    let host_overhead = ratios(&reused, &native);
    let r2 = ratios(&reused, &fresh);
    let epoch = ratios(&reused, &reused_off);
    let us = |v: &[f64]| v.iter().map(|x| x * 1e6).collect::<Vec<_>>();
    let ns = |v: &[f64]| v.iter().map(|x| x * 1e9).collect::<Vec<_>>();
    report.goal(
        "R2 fresh instance ÷ reused instance, throughput (canned)",
        spread(&r2, 2),
        "≥ 0.80",
        Some(median(&r2) >= 0.80),
    );
    let p50 = percentile(&fresh_latency, 0.5) * 1e6;
    let p99 = percentile(&fresh_latency, 0.99) * 1e6;
    let bare50 = percentile(&bare_latency, 0.5) * 1e6;
    let bare99 = percentile(&bare_latency, 0.99) * 1e6;
    report.goal(
        "R2 per-call host overhead: fresh instance + export call + one import, no adapter logic, p50 / p99",
        format!("{bare50:.1} µs / {bare99:.1} µs"),
        "—",
        None,
    );
    report.goal(
        "Micro: fresh-instance taobao send (10 nicks, canned signed-http), p50 / p99",
        format!("{p50:.1} µs / {p99:.1} µs"),
        "p50 ≤ 25 µs",
        Some(p50 <= 25.0),
    );
    let overhead = median(&host_overhead);
    report.goal(
        "Micro: component send (reused instance) ÷ native adapter logic, CPU",
        spread(&host_overhead, 2),
        "≤ 2×",
        Some(overhead <= 2.0),
    );
    let export_ns = median(&export) * 1e9;
    report.goal(
        "Micro: export call (`query-coupons` of an empty nick, noop guest, reused instance)",
        format!("{} ns", spread(&ns(&export), 0)),
        "≤ 250 ns",
        Some(export_ns <= 250.0),
    );
    report.goal(
        "Micro: import call (`settings.get`, from the guest)",
        format!("{} ns", spread(&ns(&import), 0)),
        "—",
        None,
    );
    let epoch_tax = median(&epoch);
    report.goal(
        "Micro: epoch on ÷ epoch off, reused-instance send CPU",
        spread(&epoch, 2),
        "≤ 1.2×",
        Some(epoch_tax <= 1.2),
    );
    report.goal(
        "Micro: memory per live instance (1000 instances, each after one send): private (RssAnon) / VmRSS",
        format!("{per_instance:.0} KiB / {per_instance_rss:.0} KiB"),
        "≤ 64 KiB",
        Some(per_instance <= 64.0),
    );
    let scale = median(&scaling);
    report.goal(
        "Micro: 2-thread ÷ 1-thread fresh-instance throughput, wall time",
        spread(&scaling, 2),
        "≥ 1.8×",
        Some(scale >= 1.8),
    );
    report.goal(
        "Micro: the same, from CPU time per call (2 × CPU/call at 1 thread ÷ at 2 threads)",
        spread(&cpu_scaling, 2),
        "≥ 1.8×",
        Some(median(&cpu_scaling) >= 1.8),
    );
    let text = format!(
        "CPU time of this thread per call, a send of 10 nicks whose signed request is answered by a \
         canned 10-coupon taobao answer ({} B) instead of the network; {calls} calls per round, \
         {} rounds.\n\n\
         | per call | CPU µs, median [range] |\n|---|---|\n\
         | native adapter logic (api + sign + form-encode + parse) | {} |\n\
         | component send, reused instance | {} |\n\
         | component send, reused instance, epoch off | {} |\n\
         | component send, fresh instance (`Runtime::call`, as `Host::send` does) | {} |\n\n\
         Fresh-instance send wall latency over {} calls: p50 {p50:.1} µs, p99 {p99:.1} µs.\n",
        body.len(),
        sizes.rounds,
        spread(&us(&native), 2),
        spread(&us(&reused), 2),
        spread(&us(&reused_off), 2),
        spread(&us(&fresh), 2),
        fresh_latency.len(),
    );
    report.section("R2 and micro: the sandbox's CPU cost per call", &text);
}

// ---------------------------------------------------------------------------------------------
// R3: the rate limiter under overload.

/// R3's configured rate, on the host and on the simulator.
const PACED_QPS: u32 = 100;
/// R3's concurrent sends (per process).
const PACED_CONCURRENCY: usize = 200;
/// R3 counts after this, which holds the limiter's initial burst.
const PACED_WARMUP: Duration = Duration::from_secs(2);

/// R3's simulator: [`PACED_QPS`] a second per app over a sliding window, for TOP and Douyin.
fn paced_sim() -> SimConfig {
    let mut sim_config = SimConfig::demo();
    sim_config.douyin.qps = PACED_QPS;
    sim_config.qps_per_app = Some(PACED_QPS);
    sim_config
}

/// R3's plugin limits: `qps = burst =` [`PACED_QPS`].
fn paced_limits() -> String {
    format!("limits = {{ qps = {PACED_QPS}, burst = {PACED_QPS}, timeout_ms = 60000 }}")
}

/// The simulator's "too frequent" answers so far (error `code`).
fn rejections(sim: &Sim, code: &str) -> usize {
    sim.calls()
        .iter()
        .filter(|c| c.error_code.as_deref() == Some(code))
        .count()
}

async fn r3(work: &Work, sizes: &Sizes, report: &mut Report) {
    println!("\n== R3: achieved ÷ configured QPS under overload ==");
    let mut table = String::from(
        "| plugin | configured | driven by | achieved QPS | ratio | \"too frequent\" answers |\n|---|---|---|---|---|---|\n",
    );
    for (adapter, code) in [(Adapter::Douyin, "29005012"), (Adapter::Taobao, "7")] {
        let sim = Arc::new(Sim::start(paced_sim()).await.unwrap());
        let dir = work.fresh("r3", false);
        let limits = paced_limits();
        let host = Host::new(load_config(&write_config(
            &dir,
            &work.cache,
            &sim.base_url(),
            256,
            &[(adapter, adapter.name(), &limits)],
        )))
        .await
        .unwrap();
        let (qps, concurrency) = (PACED_QPS, PACED_CONCURRENCY);
        let (rate, misses) =
            paced_throughput(concurrency, PACED_WARMUP, sizes.overload, move |n| {
                let host = host.clone();
                async move { host_send(&host, adapter, n).await }
            })
            .await;
        let rejected = rejections(&sim, code);
        let ratio = rate / f64::from(qps);
        println!(
            "  {}: {rate:.1} sends/s of {qps}, {rejected} rejected, {misses} misses",
            adapter.name()
        );
        writeln!(
            table,
            "| {} | qps = burst = {qps}, simulator {qps}/s | {concurrency} concurrent sends for {} s | {rate:.1} | {ratio:.3} | {rejected} (code {code}) |",
            adapter.name(),
            sizes.overload.as_secs()
        )
        .unwrap();
        report.goal(
            &format!(
                "R3 {}: achieved ÷ configured QPS; rejections",
                adapter.name()
            ),
            format!("{ratio:.3}; {rejected}"),
            "≥ 0.95; 0",
            Some(ratio >= 0.95 && rejected == 0),
        );
    }
    report.section(
        "R3: the rate limiter overloaded",
        &format!(
            "Achieved = the least-squares slope of recipients issued against time, after a 2 s \
             warm-up (which holds the limiter's initial burst). With burst = qps the limiter lets \
             a second's worth through at each window boundary, so issued-over-time is a \
             staircase; its slope is the pace. Rejections are counted over the whole run.\n\n{table}"
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// R4: a big campaign against the ideal its QPS sets.

fn recipients_file(dir: &Path, count: usize, prefix: &str) -> PathBuf {
    use std::io::Write as _;
    let path = dir.join(format!("{prefix}-{count}.txt"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..count {
        writeln!(out, "nick:{prefix}{i}").unwrap();
    }
    out.flush().unwrap();
    path
}

async fn r4(work: &Work, sizes: &Sizes, report: &mut Report) {
    println!("\n== R4: campaign wall time ÷ ideal ==");
    let qps = 500u32;
    let count = sizes.campaign;
    let sim = Sim::start(SimConfig::demo()).await.unwrap();
    let dir = work.fresh("r4", false);
    let limits = format!("limits = {{ qps = {qps} }}");
    let host = Host::new(load_config(&write_config(
        &dir,
        &work.cache,
        &sim.base_url(),
        64,
        &[(Adapter::Taobao, "taobao", &limits)],
    )))
    .await
    .unwrap();
    let file = recipients_file(&dir, count, "r4买家");
    let mut spec = CampaignSpec::new("taobao", "48552", file);
    spec.concurrency = 16;
    let started = Instant::now();
    let status = host.campaign(spec, |_| {}).await.unwrap();
    let wall = started.elapsed().as_secs_f64();
    let calls = count.div_ceil(100);
    let ideal = calls as f64 / f64::from(qps);
    let ratio = wall / ideal;
    println!(
        "  {count} recipients: {wall:.1} s, ideal {ideal:.1} s, issued {}, failed {}",
        status.issued, status.failed
    );
    report.goal(
        &format!("R4 campaign of {count} (100 per call, qps {qps}): wall ÷ ideal"),
        format!("{ratio:.3} ({wall:.1} s ÷ {ideal:.1} s)"),
        "≤ 1.05",
        Some(ratio <= 1.05 && status.issued == count as u64),
    );
    report.section(
        "R4: campaign wall time",
        &format!(
            "`Host::campaign` of {count} distinct nicks (file on disk, 100 per call, 16 batches in \
             flight, `limits.qps = {qps}`): {wall:.1} s against the ideal {calls} calls ÷ {qps}/s = \
             {ideal:.1} s, ratio {ratio:.3}; issued {}, failed {}, unknown {}.\n",
            status.issued, status.failed, status.unknown
        ),
    );
    drop(host);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// M1: peak RSS of the CLI running a campaign, big against small.

/// The last lines of a child's stderr, kept in `path`.
fn stderr_tail(path: &Path) -> String {
    let stderr = std::fs::read_to_string(path).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Runs `coupon-host campaign run` on `count` lines in a child process, against a simulator of
/// its own (a coupon's stock is the demo's 1 000 000, which runs after runs would use up: the
/// campaign then stops, as it should); returns its peak RSS (KiB) and wall time.
async fn campaign_child(work: &Work, count: usize, concurrency: usize, tag: &str) -> (u64, f64) {
    let sim = Sim::start(SimConfig::demo()).await.unwrap();
    let dir = work.fresh("m1", false);
    let config = write_config(
        &dir,
        &work.cache,
        &sim.base_url(),
        64,
        &[(Adapter::Taobao, "taobao", "")],
    );
    let file = recipients_file(&dir, count, &format!("m1{tag}买家"));
    let mut command = tokio::process::Command::new(coupon_host_bin());
    command
        .arg("--config")
        .arg(&config)
        .args(["campaign", "run", "taobao", "--coupon", "48552", "--json"])
        .arg("--recipients")
        .arg(&file)
        .arg("--concurrency")
        .arg(concurrency.to_string())
        .env_remove("COUPON_HOST_LOG")
        .envs(SECRETS)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap());
    let started = Instant::now();
    let mut child = command.spawn().unwrap();
    let pid = child.id().unwrap().to_string();
    let mut peak = 0;
    loop {
        if let Some(hwm) = status_kib(&pid, "VmHWM") {
            peak = peak.max(hwm);
        }
        if let Ok(Some(status)) = child.try_wait() {
            assert!(
                status.success(),
                "coupon-host campaign run failed: {status}; its stderr ends:\n{}",
                stderr_tail(&dir.join("stderr"))
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    sim.shutdown().await;
    (peak, wall)
}

async fn m1(work: &Work, sizes: &Sizes, report: &mut Report) {
    println!("\n== M1: peak RSS, big campaign ÷ small ==");
    let big = sizes.campaign;
    let (small_kib, small_s) = campaign_child(work, 1_000, 4, "s").await;
    println!("  1000 lines: {small_kib} KiB in {small_s:.1} s");
    let (big_kib, big_s) = campaign_child(work, big, 4, "b").await;
    println!("  {big} lines: {big_kib} KiB in {big_s:.1} s");
    let (one_kib, _) = campaign_child(work, 20_000, 1, "c1").await;
    let (many_kib, _) = campaign_child(work, 20_000, 64, "c64").await;
    let per_call = (many_kib as f64 - one_kib as f64) / 63.0;
    println!("  concurrency 1: {one_kib} KiB, 64: {many_kib} KiB");
    let ratio = big_kib as f64 / small_kib as f64;
    report.goal(
        &format!("M1 peak RSS, {big}-line ÷ 1000-line campaign (CLI)"),
        format!("{ratio:.2} ({big_kib} ÷ {small_kib} KiB)"),
        "≤ 1.5",
        Some(ratio <= 1.5),
    );
    report.goal(
        "M1 RSS per in-flight call (100 recipients each)",
        format!("{per_call:.0} KiB"),
        "—",
        None,
    );
    report.section(
        "M1: campaign memory",
        &format!(
            "`coupon-host campaign run` in a child process, `VmHWM` polled every 20 ms.\n\n\
             | run | peak RSS | wall |\n|---|---|---|\n\
             | 1 000 lines, 4 in flight | {small_kib} KiB | {small_s:.1} s |\n\
             | {big} lines, 4 in flight | {big_kib} KiB | {big_s:.1} s |\n\
             | 20 000 lines, 1 in flight | {one_kib} KiB | |\n\
             | 20 000 lines, 64 in flight | {many_kib} KiB | |\n\n\
             RSS per in-flight call ≈ (64 in flight − 1 in flight) ÷ 63 = {per_call:.0} KiB.\n"
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// R5: a cached precompiled component against a cold compile.

fn r5(work: &Work, sizes: &Sizes, report: &mut Report) {
    println!("\n== R5: cached load ÷ cold compile ==");
    let mut cold = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..sizes.rounds {
        let cache = work.fresh("r5-cache", false);
        cold.push(
            coupon_host::bench::load_time(Adapter::Taobao.component().as_ref(), &cache)
                .unwrap()
                .as_secs_f64(),
        );
        cached.push(
            coupon_host::bench::load_time(Adapter::Taobao.component().as_ref(), &cache)
                .unwrap()
                .as_secs_f64(),
        );
    }
    let ratio = ratios(&cached, &cold);
    let ms = |v: &[f64]| v.iter().map(|x| x * 1e3).collect::<Vec<_>>();
    println!(
        "  cold {} ms, cached {} ms",
        spread(&ms(&cold), 1),
        spread(&ms(&cached), 2)
    );
    report.goal(
        "R5 cached precompiled load ÷ cold compile (taobao)",
        spread(&ratio, 3),
        "≤ 0.05",
        Some(median(&ratio) <= 0.05),
    );
    report.section(
        "R5: component load",
        &format!(
            "`Runtime::load` of the taobao component in a new engine: cold (empty `cache_dir`: \
             compile, write the artifact, load it) {} ms; cached (mmap the artifact) {} ms.\n",
            spread(&ms(&cold), 1),
            spread(&ms(&cached), 2)
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// Fleets: this bench re-run as several processes sharing one storage, and one worker process per
// core.

/// The PostgreSQL server of the fleet sections: this variable's URL, else this machine kind's
/// (the variable the integration tests read too).
const PG_URL_VAR: &str = "COUPON_TEST_POSTGRES_URL";

fn pg_url() -> String {
    std::env::var(PG_URL_VAR)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema of the bench's own: fresh when made, created by the first host that opens it, and
/// dropped by [`PgSchema::drop_schema`] (a run that panics leaves it: `bench_…` schemas are
/// leftovers).
struct PgSchema {
    name: String,
}

impl PgSchema {
    async fn connect() -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config: tokio_postgres::Config = pg_url().parse()?;
        config.connect_timeout(Duration::from_secs(5));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// A schema for `section`, or `None` (said in one line) when the server does not answer.
    async fn reach(section: &str) -> Option<PgSchema> {
        let name = format!(
            "bench_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let reached = match PgSchema::connect().await {
            Ok(client) => {
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                    .await
            }
            Err(error) => Err(error),
        };
        match reached {
            Ok(()) => Some(PgSchema { name }),
            Err(error) => {
                // The error names what failed, never the URL (which may hold a password).
                println!(
                    "  {section}: skipped: PostgreSQL unreachable ({error}; {PG_URL_VAR} names another server)"
                );
                None
            }
        }
    }

    fn backend(&self) -> Backend {
        Backend::Postgres(self.name.clone())
    }

    async fn drop_schema(self) {
        let client = PgSchema::connect().await.expect("PostgreSQL still answers");
        client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name))
            .await
            .expect("the bench's schema drops");
    }

    /// The mean time of a `SELECT 1` (prepared) through a connection pool as the host's
    /// (deadpool-postgres, fast recycling), one after another: a round trip to the server.
    async fn round_trip(calls: usize) -> f64 {
        use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
        let config: tokio_postgres::Config = pg_url().parse().unwrap();
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager).max_size(4).build().unwrap();
        let select = async || {
            let conn = pool.get().await.unwrap();
            let statement = conn.prepare_cached("SELECT 1").await.unwrap();
            conn.query_one(&statement, &[]).await.unwrap();
        };
        select().await;
        let started = Instant::now();
        for _ in 0..calls {
            select().await;
        }
        started.elapsed().as_secs_f64() / calls as f64
    }
}

/// The taobao component compiled into the cache, so that the children only load it.
fn warm_cache(work: &Work) {
    coupon_host::bench::load_time(Adapter::Taobao.component().as_ref(), &work.cache).unwrap();
}

/// Gives each child a range of recipients of its own (see [`child`]).
static CHILD_BASES: AtomicU64 = AtomicU64::new(1);

/// Runs this bench binary once per spec (`--child SPEC`, see [`child`]), each given its own
/// `base`; once every one is ready, tells them all to go, and returns each one's answer.
async fn run_children(dir: &Path, specs: &[serde_json::Value]) -> Vec<serde_json::Value> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for spec in specs {
        let mut spec = spec.clone();
        spec["base"] = (CHILD_BASES.fetch_add(1, Ordering::Relaxed) << 40).into();
        let stderr = dir.join(format!(
            "child-{}.stderr",
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut child = tokio::process::Command::new(&exe)
            .arg("--child")
            .arg(spec.to_string())
            .env_remove("COUPON_HOST_LOG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        children.push((child, lines, stderr));
    }
    for (_, lines, stderr) in &mut children {
        let line = lines.next_line().await.unwrap();
        assert_eq!(
            line.as_deref(),
            Some("ready"),
            "a child did not get ready; its stderr ends:\n{}",
            stderr_tail(stderr)
        );
    }
    for (child, ..) in &mut children {
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").await.unwrap();
        stdin.flush().await.unwrap();
    }
    let mut answers = Vec::new();
    for (mut child, mut lines, stderr) in children {
        let line = lines.next_line().await.unwrap();
        let status = child.wait().await.unwrap();
        let answer = line.filter(|_| status.success()).unwrap_or_else(|| {
            panic!(
                "a child failed ({status}); its stderr ends:\n{}",
                stderr_tail(&stderr)
            )
        });
        answers.push(serde_json::from_str(&answer).unwrap());
    }
    answers
}

/// One process of a fleet (`--child SPEC`, SPEC a JSON object): gets ready, says `ready`, waits
/// for a line on stdin, runs, prints its answer as one JSON line and exits.
///
/// - `{"run": "send", "config", "mode": "host"|"sandbox", "concurrency", "warmup_ms",
///   "length_ms", "paced", "base"}`: one-recipient taobao sends (`Host::send`, or the sandbox
///   without the journal) from `concurrency` tasks, recipients numbered from `base`. Answers
///   `{"rate", "misses"}` ([`steady_throughput`]), or with `paced` `{"times", "misses"}`
///   ([`issue_times`]: seconds from the go).
/// - `{"run": "fresh", "config", "calls"}`: [`fresh_sends`] of the micro section's canned send on
///   one thread. Answers `{"seconds", "cpu"}` (wall and CPU time).
fn child(spec: &str) -> ! {
    let spec: serde_json::Value = serde_json::from_str(spec).expect("a JSON child spec");
    let config = load_config(Path::new(spec["config"].as_str().expect("config")));
    let number = |key: &str| spec[key].as_u64().unwrap_or_else(|| panic!("{key}"));
    let ready = || {
        println!("ready");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).expect("a go");
    };
    let answer = match spec["run"].as_str() {
        Some("fresh") => {
            let canned = CannedSend::new();
            local(async {
                let harness = Harness::new(&config, "taobao", true, Some(canned.canned))
                    .await
                    .unwrap();
                // The first sends fault in the pool's pages; the micro section's are warm too.
                fresh_sends(&harness, &canned.request, 200).await;
                ready();
                let started = Instant::now();
                let cpu = fresh_sends(&harness, &canned.request, number("calls") as usize).await;
                serde_json::json!({"seconds": started.elapsed().as_secs_f64(), "cpu": cpu})
            })
        }
        Some("send") => {
            RECIPIENTS.store(number("base"), Ordering::Relaxed);
            let concurrency = number("concurrency") as usize;
            let warmup = Duration::from_millis(number("warmup_ms"));
            let length = Duration::from_millis(number("length_ms"));
            let paced = spec["paced"].as_bool() == Some(true);
            let adapter = Adapter::Taobao;
            let run = async |send: Sender| {
                if paced {
                    ready();
                    let (times, misses) = issue_times(concurrency, warmup, length, send).await;
                    return serde_json::json!({"times": times, "misses": misses});
                }
                // Every recipient issued, for CPU per send; the pool's connections opened first.
                let send = Arc::new(send);
                let issued = Arc::new(AtomicUsize::new(0));
                let counted: Arc<dyn Fn(u64) -> SendFuture + Send + Sync> = {
                    let issued = issued.clone();
                    Arc::new(move |n| -> SendFuture {
                        let (sent, issued) = (send(n), issued.clone());
                        Box::pin(async move {
                            let n = sent.await;
                            issued.fetch_add(n, Ordering::Relaxed);
                            n
                        })
                    })
                };
                let each = || {
                    let counted = counted.clone();
                    move |n| counted(n)
                };
                throughput(concurrency, warmup, each()).await;
                ready();
                let (cpu, pg_cpu) = (process_cpu(), postgres_cpu());
                issued.store(0, Ordering::Relaxed);
                let (rate, misses) = steady_throughput(concurrency, warmup, length, each()).await;
                serde_json::json!({
                    "rate": rate, "misses": misses,
                    "issued": issued.load(Ordering::Relaxed),
                    "cpu": (process_cpu() - cpu).as_secs_f64(),
                    "pg_cpu": postgres_cpu() - pg_cpu,
                })
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    match spec["mode"].as_str() {
                        Some("host") => {
                            let host = Host::new(config).await.unwrap();
                            run(Box::new(move |n| -> SendFuture {
                                let host = host.clone();
                                Box::pin(async move { host_send(&host, adapter, n).await })
                            }))
                            .await
                        }
                        Some("sandbox") => {
                            let sandbox = Arc::new(
                                Harness::new(&config, "taobao", true, None).await.unwrap(),
                            );
                            run(Box::new(move |n| -> SendFuture {
                                let sandbox = sandbox.clone();
                                Box::pin(async move { sandbox_send(&sandbox, adapter, n).await })
                            }))
                            .await
                        }
                        other => panic!("no child send mode {other:?}"),
                    }
                })
        }
        other => panic!("no child run {other:?}"),
    };
    println!("{answer}");
    std::process::exit(0)
}

/// A child's send, boxed, so that its two kinds of sender are one type.
type SendFuture = std::pin::Pin<Box<dyn std::future::Future<Output = usize> + Send>>;
type Sender = Box<dyn Fn(u64) -> SendFuture + Send + Sync>;

/// What a section prints and reports where PostgreSQL does not answer.
const PG_SKIPPED: &str = "skipped: PostgreSQL unreachable";

/// Child processes' sends counted from this long after the go (their pools fill, connections open).
const FLEET_WARMUP: Duration = Duration::from_millis(250);

/// What children sending at once did together.
struct FleetRun {
    /// Recipients issued per second, summed.
    rate: f64,
    misses: u64,
    /// CPU seconds per issued recipient: of the children, and of the PostgreSQL server (which
    /// each child measures over the same window; their mean).
    cpu: f64,
    pg_cpu: f64,
}

/// `count` children running `spec` (a `send` that is not paced) at once.
async fn fleet_run(dir: &Path, spec: &serde_json::Value, count: usize) -> FleetRun {
    let answers = run_children(dir, &vec![spec.clone(); count]).await;
    let sum = |key: &str| {
        answers
            .iter()
            .map(|a| a[key].as_f64().unwrap())
            .sum::<f64>()
    };
    let issued = sum("issued");
    FleetRun {
        rate: sum("rate"),
        misses: answers.iter().map(|a| a["misses"].as_u64().unwrap()).sum(),
        cpu: sum("cpu") / issued,
        pg_cpu: sum("pg_cpu") / count as f64 / issued,
    }
}

// S1: Host::send on PostgreSQL beside SQLite, one process and three.

async fn s1(work: &Work, sizes: &Sizes, report: &mut Report) {
    println!("\n== S1: Host::send on PostgreSQL beside SQLite, one process and three ==");
    warm_cache(work);
    let pg = PgSchema::reach("S1").await;
    let sim = Sim::start(SimConfig::demo()).await.unwrap();
    let plugin = [(
        Adapter::Taobao,
        "taobao",
        "limits = { http_timeout_ms = 5000 }",
    )];
    let config = |backend: &Backend| {
        write_config_for(
            &work.fresh("s1", false),
            &work.cache,
            &sim.base_url(),
            64,
            &plugin,
            DOUYIN_APP,
            backend,
        )
    };
    let sqlite = config(&Backend::Sqlite);
    // (label, config, mode): the sandbox without the journal, for the journal's share.
    let mut kinds = vec![
        ("SQLite", sqlite.clone(), "host"),
        ("sandbox", sqlite, "sandbox"),
    ];
    if let Some(pg) = &pg {
        kinds.push(("PostgreSQL", config(&pg.backend()), "host"));
    }
    let mut runs: Vec<(usize, usize)> = (0..kinds.len())
        .flat_map(|kind| [(kind, 1), (kind, 3)])
        .collect();
    let dir = work.fresh("s1-children", false);
    let mut rates: BTreeMap<(&str, usize), Vec<f64>> = BTreeMap::new();
    let mut cpu: BTreeMap<(&str, usize), Vec<f64>> = BTreeMap::new();
    let mut pg_cpu: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut misses = 0;
    for round in 0..sizes.rounds {
        for &(kind, processes) in &runs {
            let (label, config, mode) = &kinds[kind];
            let spec = serde_json::json!({
                "run": "send", "config": config, "mode": mode, "paced": false,
                "concurrency": sizes.concurrency,
                "warmup_ms": FLEET_WARMUP.as_millis() as u64,
                "length_ms": sizes.round.as_millis() as u64,
            });
            let run = fleet_run(&dir, &spec, processes).await;
            misses += run.misses;
            println!(
                "  round {round} {label} × {processes}: {:.0} sends/s; CPU per send {:.0} µs in the hosts, {:.0} µs in PostgreSQL",
                run.rate,
                run.cpu * 1e6,
                run.pg_cpu * 1e6
            );
            rates.entry((*label, processes)).or_default().push(run.rate);
            cpu.entry((*label, processes))
                .or_default()
                .push(run.cpu * 1e6);
            if *label == "PostgreSQL" {
                pg_cpu.entry(processes).or_default().push(run.pg_cpu * 1e6);
            }
        }
        runs.rotate_left(1);
    }
    let round_trip = match &pg {
        Some(_) => Some(PgSchema::round_trip(if sizes.rounds > 3 { 5_000 } else { 1_000 }).await),
        None => None,
    };
    sim.shutdown().await;
    if let Some(pg) = pg {
        pg.drop_schema().await;
    }

    let mut table = String::from(
        "| storage | processes | Host::send sends/s | ÷ SQLite | ÷ itself at 1 process | journal's share of a send's time | CPU µs per send: hosts | CPU µs per send: PostgreSQL server |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for backend in ["SQLite", "PostgreSQL"] {
        for processes in [1, 3] {
            let metric = format!(
                "S1 taobao Host::send sends/s on {backend}, {processes} process{} ({} tasks each)",
                if processes == 1 { "" } else { "es" },
                sizes.concurrency
            );
            let Some(host) = rates.get(&(backend, processes)) else {
                report.goal(&metric, PG_SKIPPED.to_owned(), "—", None);
                writeln!(
                    table,
                    "| {backend} | {processes} | {PG_SKIPPED} | | | | | |"
                )
                .unwrap();
                continue;
            };
            report.goal(&metric, spread(host, 0), "—", None);
            // Time per send: 1/rate. The journal's share is what Host::send adds over the sandbox.
            let share: Vec<f64> = host
                .iter()
                .zip(&rates[&("sandbox", processes)])
                .map(|(h, s)| 100.0 * (1.0 / h - 1.0 / s) / (1.0 / h))
                .collect();
            writeln!(
                table,
                "| {backend} | {processes} | {} | {} | {} | {} % | {} | {} |",
                spread(host, 0),
                spread(&ratios(host, &rates[&("SQLite", processes)]), 2),
                spread(&ratios(host, &rates[&(backend, 1)]), 2),
                spread(&share, 0),
                spread(&cpu[&(backend, processes)], 0),
                pg_cpu
                    .get(&processes)
                    .filter(|_| backend == "PostgreSQL")
                    .map_or("—".to_owned(), |v| spread(v, 0)),
            )
            .unwrap();
        }
    }
    for processes in [1, 3] {
        let metric = format!(
            "S1 PostgreSQL ÷ SQLite Host::send sends/s, {processes} process{}",
            if processes == 1 { "" } else { "es" }
        );
        match rates.get(&("PostgreSQL", processes)) {
            Some(pg) => {
                let ratio = ratios(pg, &rates[&("SQLite", processes)]);
                report.goal(&metric, spread(&ratio, 2), "—", None);
            }
            None => report.goal(&metric, PG_SKIPPED.to_owned(), "—", None),
        }
    }
    for processes in [1, 3] {
        writeln!(
            table,
            "| sandbox alone (no journal) | {processes} | {} | | {} | | {} | — |",
            spread(&rates[&("sandbox", processes)], 0),
            spread(
                &ratios(&rates[&("sandbox", processes)], &rates[&("sandbox", 1)]),
                2
            ),
            spread(&cpu[&("sandbox", processes)], 0),
        )
        .unwrap();
    }
    let round_trips = "S1 PostgreSQL: round trips per send; `SELECT 1` round trip through a pool";
    let time_goes = match round_trip {
        Some(rtt) => {
            let us = rtt * 1e6;
            report.goal(
                round_trips,
                format!("2 (7 statements); {us:.0} µs"),
                "—",
                None,
            );
            format!(
                "Where PostgreSQL's time goes: a one-call send is **2 round trips** in 2 \
                 transactions (`journal_begin`: one statement that inserts the send and its rows; \
                 `journal_record` with the finish: `BEGIN`, check and extend the lease, update the \
                 rows, finish the send, read its rows, `COMMIT`, pipelined) = 7 statements. A \
                 prepared `SELECT 1` through a deadpool pool, one after another once the runs \
                 are over, takes **{us:.0} µs** (pg_stat_statements is not enabled here), so a \
                 send waits at least {:.0} µs on the server's answers. The server runs on the \
                 same 2 cores: its CPU per send (the processes named `postgres`, read from \
                 `/proc` at the start and end of each child's counted run, so other clients of \
                 the server count too) is CPU the hosts do not get.\n",
                2.0 * us
            )
        }
        None => {
            report.goal(round_trips, PG_SKIPPED.to_owned(), "—", None);
            format!("Where PostgreSQL's time goes: {PG_SKIPPED}.\n")
        }
    };
    report.section(
        "S1: Host::send on PostgreSQL beside SQLite, one process and three",
        &format!(
            "One-recipient taobao sends from {} concurrent tasks per process (`Host::send`, no \
             `qps`), against one simulator in the bench's process on loopback (no limit), for \
             {:.1} s after a {} ms warm-up; the processes are this bench re-run as children \
             (`--child`), each with its own `Host` and 2 tokio workers, started together once all \
             are ready (each first sends for as long as the warm-up, so its pool's connections \
             are open). CPU per send is each child's process CPU time over its counted run ÷ \
             what it issued. SQLite: the processes share one file on disk; PostgreSQL: one fresh \
             schema (default `pool_size` 16 per process), dropped after. Sends/s of 3 processes \
             is their sum. The journal's share compares with the sandbox alone (the same sends \
             without the journal, in as many processes). {} rounds, the order rotating; {misses} \
             sends issued nothing.\n\n{table}\n{time_goes}",
            sizes.concurrency,
            sizes.round.as_secs_f64(),
            FLEET_WARMUP.as_millis(),
            sizes.rounds,
        ),
    );
}

// R3 with a fleet: three hosts, one platform window.

async fn r3_fleet(work: &Work, sizes: &Sizes, report: &mut Report) {
    println!("\n== R3 fleet: three processes on one storage, overloaded ==");
    warm_cache(work);
    let processes = 3;
    let pg = PgSchema::reach("R3 fleet").await;
    let (qps, concurrency) = (PACED_QPS, PACED_CONCURRENCY);
    let mut table = String::from(
        "| storage | configured | driven by | achieved QPS, all hosts | ratio | \"too frequent\" answers | misses |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for backend in [Some(Backend::Sqlite), pg.as_ref().map(PgSchema::backend)] {
        let name = backend.as_ref().map_or("PostgreSQL", Backend::name);
        let metric = format!(
            "R3 fleet taobao, {processes} processes on {name}: achieved ÷ configured QPS; rejections"
        );
        let Some(backend) = backend else {
            report.goal(&metric, PG_SKIPPED.to_owned(), "≥ 0.95; 0", None);
            writeln!(table, "| {name} | | | {PG_SKIPPED} | | | |").unwrap();
            continue;
        };
        let sim = Sim::start(paced_sim()).await.unwrap();
        let dir = work.fresh("r3-fleet", false);
        let config = write_config_for(
            &dir,
            &work.cache,
            &sim.base_url(),
            256,
            &[(Adapter::Taobao, "taobao", &paced_limits())],
            DOUYIN_APP,
            &backend,
        );
        let spec = serde_json::json!({
            "run": "send", "config": config, "mode": "host", "paced": true,
            "concurrency": concurrency,
            "warmup_ms": PACED_WARMUP.as_millis() as u64,
            "length_ms": sizes.overload.as_millis() as u64,
        });
        let answers = run_children(&dir, &vec![spec; processes]).await;
        let times: Vec<f64> = answers
            .iter()
            .flat_map(|a| a["times"].as_array().unwrap())
            .map(|t| t.as_f64().unwrap())
            .collect();
        let misses: u64 = answers.iter().map(|a| a["misses"].as_u64().unwrap()).sum();
        let rate = slope(&times);
        let rejected = rejections(&sim, "7");
        sim.shutdown().await;
        let ratio = rate / f64::from(qps);
        println!("  {name}: {rate:.1} sends/s of {qps}, {rejected} rejected, {misses} misses");
        writeln!(
            table,
            "| {name} | qps = burst = {qps}, simulator {qps}/s | {processes} × {concurrency} concurrent sends for {} s | {rate:.1} | {ratio:.3} | {rejected} (code 7) | {misses} |",
            sizes.overload.as_secs()
        )
        .unwrap();
        report.goal(
            &metric,
            format!("{ratio:.3}; {rejected}"),
            "≥ 0.95; 0",
            Some(ratio >= 0.95 && rejected == 0),
        );
    }
    if let Some(pg) = pg {
        pg.drop_schema().await;
    }
    report.section(
        "R3 fleet: three hosts, one platform window",
        &format!(
            "R3 with {processes} processes (this bench re-run as children, `--child`) sharing one \
             storage — one SQLite file, or one fresh PostgreSQL schema — and so one request window \
             for the app key; each host has `limits.qps = burst = {qps}` and is driven by \
             {concurrency} concurrent `Host::send`s, against one simulator enforcing a sliding \
             {qps}/s window on the app. Achieved is R3's slope, of the issue times of all three \
             hosts together (seconds from the common start), after the same {} s warm-up; \
             rejections are counted over the whole run.\n\n{table}",
            PACED_WARMUP.as_secs()
        ),
    );
}

// One worker process per core: the micro section's fresh-instance loop in two processes.

async fn procs(work: &Work, sizes: &Sizes, report: &mut Report) {
    println!("\n== Processes: 2 processes ÷ 1, fresh-instance throughput ==");
    warm_cache(work);
    let dir = work.fresh("procs", false);
    // Five times the micro section's calls: a process's run should outlast starting it.
    let calls = 5 * sizes.micro_calls;
    let spec =
        serde_json::json!({"run": "fresh", "config": canned_config(work, "procs"), "calls": calls});
    let mut order = [1, 2];
    let mut rates: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut cpu: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for round in 0..sizes.rounds {
        for processes in order {
            let answers = run_children(&dir, &vec![spec.clone(); processes]).await;
            // As the threads of the micro section: all the calls over the slower one's time.
            let wall = answers
                .iter()
                .map(|a| a["seconds"].as_f64().unwrap())
                .fold(0.0, f64::max);
            let total = (processes * calls) as f64;
            let seconds: f64 = answers.iter().map(|a| a["cpu"].as_f64().unwrap()).sum();
            println!(
                "  round {round}: {processes} process(es) {:.0}/s ({:.1} µs CPU/call)",
                total / wall,
                seconds / total * 1e6
            );
            rates.entry(processes).or_default().push(total / wall);
            cpu.entry(processes).or_default().push(seconds / total);
        }
        order.rotate_left(1);
    }
    let scaling = ratios(&rates[&2], &rates[&1]);
    let cpu_scaling: Vec<f64> = ratios(&cpu[&1], &cpu[&2]).iter().map(|r| 2.0 * r).collect();
    report.goal(
        "Processes: 2 processes ÷ 1 process fresh-instance throughput, wall time",
        spread(&scaling, 2),
        "≥ 1.8×",
        Some(median(&scaling) >= 1.8),
    );
    report.goal(
        "Processes: the same, from CPU time per call",
        spread(&cpu_scaling, 2),
        "≥ 1.8×",
        Some(median(&cpu_scaling) >= 1.8),
    );
    let us = |v: &[f64]| v.iter().map(|x| x * 1e6).collect::<Vec<_>>();
    report.section(
        "Processes: one worker process per core",
        &format!(
            "The micro section's fresh-instance loop ({calls} canned sends of 10 nicks, one after \
             another) in child processes of this bench (`--child`), each with its own engine and \
             instance pool, as `coupon-host worker` processes, one per core, would run: one \
             process alone, then two at once (started together once both are ready), \
             interleaved, {} rounds. Throughput = all calls ÷ the slower process's wall time.\n\n\
             | processes | sends/s | CPU µs per call |\n|---|---|---|\n\
             | 1 | {} | {} |\n| 2 | {} | {} |\n",
            sizes.rounds,
            spread(&rates[&1], 0),
            spread(&us(&cpu[&1]), 1),
            spread(&rates[&2], 0),
            spread(&us(&cpu[&2]), 1),
        ),
    );
}
