//! `cargo xtask loadtest` — how `coupon-host serve` holds up under concurrent sends.
//!
//! Builds the adapters, `coupon-host` and `coupon-sim`; starts the simulator and then
//! `coupon-host serve` as two processes on loopback; drives the server from this process with
//! `--concurrency` workers, each sending one coupon to one new buyer after another, for
//! `--duration` seconds (and at most `--max-requests` sends); samples the server's VmRSS from
//! /proc while it runs; stops the server with SIGTERM (it must drain and exit 0); prints the
//! numbers and writes them into the `## Load test` section of docs/BENCHMARKS.md.
//!
//! Only loopback is touched, and every loop is bounded in time and count.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{DEMO_SECRETS, KillOnDrop, build_components, cargo, root, run as run_command};

const USAGE: &str = "usage: cargo xtask loadtest [--duration SECS] [--concurrency N] \
[--max-in-flight N] [--max-requests N] [--release] [--no-write]";

struct Args {
    duration: Duration,
    concurrency: usize,
    max_in_flight: usize,
    max_requests: u64,
    release: bool,
    write: bool,
}

fn parse(args: &[String]) -> anyhow::Result<Args> {
    let mut parsed = Args {
        duration: Duration::from_secs(20),
        concurrency: 32,
        max_in_flight: 64,
        max_requests: 1_000_000,
        release: false,
        write: true,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || -> anyhow::Result<u64> {
            let text = args
                .next()
                .with_context(|| format!("{flag} needs a value"))?;
            text.parse()
                .with_context(|| format!("{flag}: {text:?} is not a number"))
        };
        match flag.as_str() {
            "--duration" => parsed.duration = Duration::from_secs(value()?.clamp(1, 3600)),
            "--concurrency" => parsed.concurrency = value()?.clamp(1, 4096) as usize,
            "--max-in-flight" => parsed.max_in_flight = value()?.clamp(1, 100_000) as usize,
            "--max-requests" => parsed.max_requests = value()?.max(1),
            "--release" => parsed.release = true,
            "--no-write" => parsed.write = false,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown flag {other:?}\n{USAGE}"),
        }
    }
    Ok(parsed)
}

/// Reads a line like `<name> listening on http://ADDR` from a child's stdout.
fn listening(child: &mut std::process::Child, name: &str) -> anyhow::Result<String> {
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let prefix = format!("{name} listening on ");
    match line.trim().strip_prefix(&prefix) {
        Some(url) => Ok(url.to_owned()),
        None => bail!("{name} did not start: {line:?}"),
    }
}

/// `VmRSS` / `VmHWM` of a process, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The 1-minute load average, as /proc/loadavg says.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// One send as the driver saw it.
struct Sample {
    latency: Duration,
    /// HTTP status, or 0 for a transport failure.
    status: u16,
}

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let args = parse(args)?;
    let components = build_components()?;
    let profile = if args.release { "release" } else { "debug" };
    eprintln!("==> building coupon-host and the simulator ({profile})");
    let mut build = cargo();
    build.args([
        "build",
        "--quiet",
        "-p",
        "coupon-host-cli",
        "-p",
        "coupon-sim",
    ]);
    if args.release {
        build.arg("--release");
    }
    run_command(&mut build)?;
    let bin = root().join("target").join(profile);

    let dir = root().join("target/loadtest");
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(dir.join("state.db"));

    eprintln!("==> starting the simulator");
    let mut sim = Command::new(bin.join("coupon-sim"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting coupon-sim")?;
    let sim_url = listening(&mut sim, "coupon-sim");
    let _sim = KillOnDrop(sim);
    let sim_url = sim_url?;

    let config = dir.join("coupon-host.toml");
    std::fs::write(
        &config,
        format!(
            r#"# Written by `cargo xtask loadtest`.
[storage]
path = "state.db"

[runtime]
cache_dir = "cache"

[plugins.taobao]
component = {component:?}
allowed_hosts = ["{sim_url}"]
auth = {{ scheme = "top", app_key = "12345678", app_secret_env = "TAOBAO_APP_SECRET", session_env = "TAOBAO_SESSION", sign_method = "hmac-sha256" }}
settings = {{ gateway = "{sim_url}/router/rest" }}
"#,
            component = components.join("taobao.wasm").display().to_string(),
        ),
    )?;

    eprintln!("==> starting coupon-host serve");
    let mut server = Command::new(bin.join("coupon-host"))
        .arg("--config")
        .arg(&config)
        .args(["serve", "--listen", "127.0.0.1:0", "--max-in-flight"])
        .arg(args.max_in_flight.to_string())
        .envs(DEMO_SECRETS.iter().copied())
        .env_remove("COUPON_HOST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting coupon-host serve")?;
    let pid = server.id();
    let base = listening(&mut server, "coupon-host");
    let mut server = KillOnDrop(server);
    let base = base?;
    let rss_at_start = proc_status_kib(pid, "VmRSS").unwrap_or(0);
    let load_at_start = load_average();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    eprintln!(
        "==> {} workers sending for {} s",
        args.concurrency,
        args.duration.as_secs()
    );
    let (samples, elapsed, rss) = runtime.block_on(drive(&base, pid, &args))?;
    let metrics =
        runtime.block_on(async { reqwest::get(format!("{base}/metrics")).await?.text().await })?;
    let hwm = proc_status_kib(pid, "VmHWM").unwrap_or(0);
    let load = (load_at_start, load_average());

    eprintln!("==> SIGTERM to the server");
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    if !kill.success() {
        bail!("cannot signal the server");
    }
    let exit = server.0.wait()?;

    let report = Report {
        args: &args,
        profile,
        samples,
        elapsed,
        rss_at_start,
        rss,
        hwm,
        metrics,
        load,
        exit: exit.code(),
    };
    let text = report.markdown();
    println!("{text}");
    if args.write {
        write_section(&root().join("docs/BENCHMARKS.md"), &text)?;
        eprintln!("==> wrote docs/BENCHMARKS.md");
    }
    if !exit.success() {
        bail!("the server did not exit 0 after SIGTERM: {exit}");
    }
    Ok(())
}

/// Runs the workers and the RSS sampler; returns every send, the wall time, and the RSS
/// samples (seconds since start, KiB).
async fn drive(
    base: &str,
    pid: u32,
    args: &Args,
) -> anyhow::Result<(Vec<Sample>, Duration, Vec<(f64, u64)>)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let url = format!("{base}/v1/plugins/taobao/send");

    // Warm up: the first calls compile nothing (the cache is warm after load) but fill pools.
    for i in 0..4 {
        let response = client
            .post(&url)
            .json(
                &serde_json::json!({"coupon": "48552", "recipients": [format!("nick:warmup-{i}")]}),
            )
            .send()
            .await?;
        if !response.status().is_success() {
            bail!(
                "warm-up send failed: {} {}",
                response.status(),
                response.text().await?
            );
        }
    }

    let started = Instant::now();
    let deadline = started + args.duration;
    let sent = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                if let Some(rss) = proc_status_kib(pid, "VmRSS") {
                    samples.push((started.elapsed().as_secs_f64(), rss));
                }
            }
            samples
        }
    });

    let mut workers = Vec::new();
    for worker in 0..args.concurrency {
        let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
        let max_requests = args.max_requests;
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut i = 0u64;
            while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < max_requests {
                let body = serde_json::json!({
                    "coupon": "48552",
                    "recipients": [format!("nick:load-{worker}-{i}")],
                });
                i += 1;
                let begin = Instant::now();
                let status = match client.post(&url).json(&body).send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Read the whole answer: the latency is the client's.
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                samples.push(Sample {
                    latency: begin.elapsed(),
                    status,
                });
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await?);
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let rss = sampler.await?;
    Ok((samples, elapsed, rss))
}

struct Report<'a> {
    args: &'a Args,
    profile: &'a str,
    samples: Vec<Sample>,
    elapsed: Duration,
    rss_at_start: u64,
    rss: Vec<(f64, u64)>,
    hwm: u64,
    metrics: String,
    /// The machine's 1-minute load average before and after the run (other builds add to it).
    load: (String, String),
    exit: Option<i32>,
}

/// The value of an unlabelled-or-labelled series line that starts with `prefix`, summed.
fn metric_sum(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl Report<'_> {
    fn markdown(&self) -> String {
        let total = self.samples.len();
        let ok: Vec<Duration> = {
            let mut ok: Vec<_> = self
                .samples
                .iter()
                .filter(|s| (200..300).contains(&s.status))
                .map(|s| s.latency)
                .collect();
            ok.sort();
            ok
        };
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        for sample in self
            .samples
            .iter()
            .filter(|s| !(200..300).contains(&s.status))
        {
            let key = match sample.status {
                0 => "transport error".to_owned(),
                status => status.to_string(),
            };
            *failures.entry(key).or_default() += 1;
        }
        let seconds = self.elapsed.as_secs_f64();
        let mean = |sum: &str, count: &str| {
            let count = metric_sum(&self.metrics, count);
            if count == 0.0 {
                "-".to_owned()
            } else {
                format!("{:.2} ms", 1000.0 * metric_sum(&self.metrics, sum) / count)
            }
        };
        let overhead = mean(
            "coupon_host_overhead_seconds_sum{plugin=\"taobao\",op=\"send\"}",
            "coupon_host_overhead_seconds_count{plugin=\"taobao\",op=\"send\"}",
        );
        let platform = mean(
            "coupon_host_platform_request_duration_seconds_sum{plugin=\"taobao\"}",
            "coupon_host_platform_request_duration_seconds_count{plugin=\"taobao\"}",
        );
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());

        let rss_values: Vec<u64> = self.rss.iter().map(|(_, kib)| *kib).collect();
        let (rss_min, rss_max) = (
            rss_values.iter().copied().min().unwrap_or(0),
            rss_values.iter().copied().max().unwrap_or(0),
        );
        // Ten evenly spaced samples show the shape over the run.
        let step = (self.rss.len() / 10).max(1);
        let timeline: Vec<String> = self
            .rss
            .iter()
            .step_by(step)
            .map(|(t, kib)| format!("{t:.1} s: {}", mib(*kib)))
            .collect();
        // Compare the two halves of the run: flat memory means no growth per request.
        let half = rss_values.len() / 2;
        let avg = |values: &[u64]| {
            if values.is_empty() {
                0
            } else {
                values.iter().sum::<u64>() / values.len() as u64
            }
        };
        let (first_half, second_half) = (avg(&rss_values[..half]), avg(&rss_values[half..]));

        let failures_text = if failures.is_empty() {
            "none".to_owned()
        } else {
            failures
                .iter()
                .map(|(status, count)| format!("{status}: {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "## Load test (`cargo xtask loadtest`)\n\
\n\
<!-- Written by `cargo xtask loadtest`; rerun it to refresh this section. -->\n\
\n\
Setup: `coupon-host serve` ({profile} build) with the Taobao adapter against `coupon-sim`, both on\n\
loopback on the same {cores}-core machine as the load generator (the xtask process). {concurrency}\n\
workers each send one coupon to one new buyer after another for {duration} s;\n\
`--max-in-flight {max_in_flight}`. Every send is a full round: HTTP in, a fresh wasm instance,\n\
the adapter, a signed TOP call to the simulator, its answer parsed, HTTP out.\n\
\n\
| measure | value |\n\
|---|---|\n\
| sends | {total} in {seconds:.1} s |\n\
| throughput | {throughput:.0} sends/s |\n\
| latency p50 / p90 / p99 / max (2xx, client side) | {p50} / {p90} / {p99} / {max} |\n\
| non-2xx by status | {failures_text} |\n\
| mean host overhead per adapter call (`coupon_host_overhead_seconds`) | {overhead} |\n\
| mean platform request (`coupon_host_platform_request_duration_seconds`) | {platform} |\n\
| server RSS after start-up | {rss_start} |\n\
| server RSS during the run, min / max | {rss_min} / {rss_max} |\n\
| server RSS mean, first half / second half of the run | {first_half} / {second_half} |\n\
| server peak RSS (VmHWM) | {hwm} |\n\
| exit code after SIGTERM | {exit} |\n\
| machine load average (1 min) before / after | {load_before} / {load_after} |\n\
\n\
RSS over the run: {timeline}.\n\
\n\
RSS rises while the instance pool's slots and the allocator's arenas are first touched, then\n\
levels off; a leak would show as a steady climb through the second half. Latency is the\n\
client's (the xtask process shares the cores with both servers); the simulator's own time is\n\
most of the platform request.\n",
            profile = self.profile,
            concurrency = self.args.concurrency,
            duration = self.args.duration.as_secs(),
            max_in_flight = self.args.max_in_flight,
            throughput = total as f64 / seconds,
            p50 = ms(percentile(&ok, 50.0)),
            p90 = ms(percentile(&ok, 90.0)),
            p99 = ms(percentile(&ok, 99.0)),
            max = ms(ok.last().copied().unwrap_or_default()),
            rss_start = mib(self.rss_at_start),
            rss_min = mib(rss_min),
            rss_max = mib(rss_max),
            first_half = mib(first_half),
            second_half = mib(second_half),
            hwm = mib(self.hwm),
            exit = self
                .exit
                .map_or_else(|| "killed by a signal".to_owned(), |c| c.to_string()),
            timeline = timeline.join(", "),
            load_before = self.load.0,
            load_after = self.load.1,
        )
    }
}

/// Replaces the `## Load test` section of `path` (up to the next `## ` heading), or appends it.
fn write_section(path: &Path, section: &str) -> anyhow::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nEach section is written by the command in its heading.\n".to_owned()
    });
    let heading = "## Load test (`cargo xtask loadtest`)";
    let updated = match existing.find(heading) {
        Some(start) => {
            let after = start + heading.len();
            let end = existing[after..]
                .find("\n## ")
                .map_or(existing.len(), |i| after + i + 1);
            match &existing[end..] {
                "" => format!("{}{}\n", &existing[..start], section.trim_end()),
                tail => format!("{}{}\n\n{tail}", &existing[..start], section.trim_end()),
            }
        }
        None => format!("{}\n\n{}\n", existing.trim_end(), section.trim_end()),
    };
    std::fs::write(path, updated)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_in_place_and_other_sections_are_kept() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("BENCHMARKS.md");
        std::fs::write(
            &file,
            "# Benchmarks\n\n## Startup\n\nfast\n\n## Load test (`cargo xtask loadtest`)\n\nold\n\n## Later\n\nkept\n",
        )
        .unwrap();
        write_section(&file, "## Load test (`cargo xtask loadtest`)\n\nnew\n").unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            text,
            "# Benchmarks\n\n## Startup\n\nfast\n\n## Load test (`cargo xtask loadtest`)\n\nnew\n\n## Later\n\nkept\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&sorted, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&sorted[..1], 99.0), Duration::from_millis(1));
    }
}
