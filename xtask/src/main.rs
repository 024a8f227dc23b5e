//! `cargo xtask demo` — builds the adapters, starts the simulator, sends and queries through
//! every adapter with `examples/sandbox.toml`, and prints what happened.
//! `cargo xtask plugins` — builds release components (the JavaScript adapters too, which need
//! Node.js and npm) and prints their sha256 for config pins.
//! `cargo xtask loadtest` — drives `coupon-host serve` with concurrent sends against the
//! simulator and writes the numbers into docs/BENCHMARKS.md (see loadtest.rs).

// The same JavaScript adapter build the tests run (tests/build.rs includes it too).
#[path = "../../tests/js_adapters.rs"]
mod js_adapters;
mod loadtest;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};

/// The adapters and what the demo sends through each: (plugin, coupon, recipients, query recipient).
const DEMO: &[(&str, &str, &[&str], &str)] = &[
    (
        "taobao",
        "48552",
        &["nick:张三", "nick:李四", "nick:不存在的买家"],
        "nick:张三",
    ),
    (
        "tmall-nrt",
        "nrt-demo-uuid",
        &["open-id:AAHk5d-demo-1", "open-id:AAHk5d-demo-2"],
        "open-id:AAHk5d-demo-1",
    ),
    (
        "alsc",
        "3243421",
        &["customer-id:5757", "customer-id:ghost-customer"],
        "customer-id:5757",
    ),
    (
        "douyin",
        "7218070000005644204",
        &["open-id:ba253642-0590-40bc-demo", "open-id:inactive-user"],
        "open-id:ba253642-0590-40bc-demo",
    ),
    // The same platform through the adapter written in JavaScript (plugins/douyin-js).
    (
        "douyin-js",
        "7218070000005644204",
        &["open-id:js-demo-user", "open-id:inactive-user"],
        "open-id:js-demo-user",
    ),
];

mod demo_secrets;
pub(crate) use demo_secrets::DEMO_SECRETS;

/// The address `examples/sandbox.toml` expects the simulator on.
const SIM_ADDR: &str = "127.0.0.1:18080";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(),
        Some("plugins") => plugins(),
        Some("loadtest") => loadtest::run(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask demo | plugins | loadtest [--help]");
            std::process::exit(2);
        }
    }
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

pub(crate) fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

pub(crate) fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// The demo's adapters that are Rust crates (the others are JavaScript adapter folders).
fn adapter_crates() -> Vec<&'static str> {
    let js = js_adapters::js_adapters_in(&root().join("plugins"));
    DEMO.iter()
        .map(|(plugin, ..)| *plugin)
        .filter(|plugin| !js.iter().any(|(name, _)| name == plugin))
        .collect()
}

/// Pads to `width` terminal columns, counting CJK characters as two.
fn pad(text: &str, width: usize) -> String {
    let columns: usize = text
        .chars()
        .map(|c| if c >= '\u{1100}' { 2 } else { 1 })
        .sum();
    format!("{text}{}", " ".repeat(width.saturating_sub(columns)))
}

pub(crate) fn build_components() -> anyhow::Result<PathBuf> {
    eprintln!("==> building the adapters for wasm32-wasip2");
    let mut command = cargo();
    command.args(["build", "--target", "wasm32-wasip2", "--profile", "wasm"]);
    for name in adapter_crates() {
        command.args(["-p", name]);
    }
    run(&mut command)?;
    Ok(root().join("target/wasm32-wasip2/wasm"))
}

/// Builds every JavaScript adapter under `plugins/` into `target/js/` (where
/// `examples/sandbox.toml` looks); returns (name, component path) of each.
fn build_js_components() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let out = root().join("target/js");
    let mut built = Vec::new();
    for (name, dir) in js_adapters::js_adapters_in(&root().join("plugins")) {
        eprintln!("==> building the JavaScript adapter {name} (componentize-js)");
        let path = js_adapters::js_artifact(&out, &name);
        js_adapters::build_js_adapter(&dir, &path).map_err(anyhow::Error::msg)?;
        built.push((name, path));
    }
    Ok(built)
}

fn plugins() -> anyhow::Result<()> {
    let dir = build_components()?;
    let mut components: Vec<(String, PathBuf)> = adapter_crates()
        .into_iter()
        .map(|name| {
            let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
            (name.to_owned(), path)
        })
        .collect();
    components.extend(build_js_components()?);
    for (name, path) in components {
        let bytes = std::fs::read(&path)?;
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        println!("{name}\t{}\tsha256 = \"{digest}\"", path.display());
    }
    Ok(())
}

pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn demo() -> anyhow::Result<()> {
    build_components()?;
    build_js_components()?;
    eprintln!("==> building coupon-host and the simulator");
    run(cargo().args([
        "build",
        "--quiet",
        "-p",
        "coupon-host-cli",
        "-p",
        "coupon-sim",
    ]))?;
    let bin = root().join("target/debug");

    eprintln!("==> starting the simulator on {SIM_ADDR}");
    let mut sim = Command::new(bin.join("coupon-sim"))
        .args(["--listen", SIM_ADDR])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting coupon-sim")?;
    let stdout = sim.stdout.take().unwrap();
    let sim = KillOnDrop(sim);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first)?;
    if !first.contains("listening") {
        bail!("the simulator did not start: {first}");
    }

    // Each demo starts from a fresh state file: it shows every step, including the accounts.
    let state = root().join("target/demo");
    for name in ["coupon-host.db", "coupon-host.db-wal", "coupon-host.db-shm"] {
        let _ = std::fs::remove_file(state.join(name));
    }
    let config = root().join("examples/sandbox.toml");
    let host = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let output = Command::new(bin.join("coupon-host"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .envs(DEMO_SECRETS.iter().copied())
            .output()?;
        if !output.status.success() {
            bail!("{}", String::from_utf8_lossy(&output.stderr).trim());
        }
        if output.stdout.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    // One entry per failed step: the demo runs every step it can, then exits non-zero naming
    // them.
    let mut failures: Vec<String> = Vec::new();

    println!();
    println!(
        "{:<10} {:<6} {} {:<10} detail",
        "platform",
        "op",
        pad("recipient", 34),
        "result"
    );
    println!("{}", "-".repeat(100));
    for (plugin, coupon, recipients, query_recipient) in DEMO {
        let mut args = vec!["send", plugin, "--coupon", coupon, "--json"];
        for recipient in *recipients {
            args.extend(["--to", recipient]);
        }
        match host(&args) {
            Ok(outcome) => {
                let issued = outcome["issued"].as_array().map(Vec::as_slice);
                for issued in issued.unwrap_or_default() {
                    println!(
                        "{:<10} {:<6} {} {:<10} coupon {}",
                        plugin,
                        "send",
                        pad(issued["recipient"].as_str().unwrap_or("?"), 34),
                        "issued",
                        issued["coupon_id"].as_str().unwrap_or("-")
                    );
                }
                for failed in outcome["failed"].as_array().into_iter().flatten() {
                    let error = &failed["error"];
                    println!(
                        "{:<10} {:<6} {} {:<10} {} ({}: {})",
                        plugin,
                        "send",
                        pad(failed["recipient"].as_str().unwrap_or("?"), 34),
                        "failed",
                        error["class"].as_str().unwrap_or("?"),
                        error["code"].as_str().unwrap_or("?"),
                        error["message"].as_str().unwrap_or("")
                    );
                }
                // Some recipients are there to show a per-recipient failure; the first is
                // always one the platform accepts.
                if issued.is_none_or(|issued| issued.is_empty()) {
                    failures.push(format!("{plugin} send: nobody was issued a coupon"));
                }
            }
            Err(e) => {
                println!(
                    "{plugin:<10} {:<6} {} {:<10} {e}",
                    "send",
                    pad("-", 34),
                    "error"
                );
                failures.push(format!("{plugin} send"));
            }
        }
        match host(&["query", plugin, "--recipient", query_recipient, "--json"]) {
            Ok(result) => {
                let coupons = result["coupons"].as_array().map(Vec::as_slice);
                for coupon in coupons.unwrap_or_default() {
                    let fen = coupon["amount_fen"].as_i64();
                    println!(
                        "{:<10} {:<6} {} {:<10} {} {}",
                        plugin,
                        "query",
                        pad(query_recipient, 34),
                        coupon["state"].as_str().unwrap_or("?"),
                        coupon["title"].as_str().unwrap_or("-"),
                        fen.map(|f| format!("¥{}.{:02} off", f / 100, f % 100))
                            .unwrap_or_default()
                    );
                }
                // The query recipient was just sent a coupon: it must show.
                if coupons.is_none_or(|coupons| coupons.is_empty()) {
                    println!(
                        "{plugin:<10} {:<6} {} {:<10} no coupon held",
                        "query",
                        pad(query_recipient, 34),
                        "error"
                    );
                    failures.push(format!("{plugin} query: {query_recipient} holds nothing"));
                }
            }
            Err(e) => {
                println!(
                    "{plugin:<10} {:<6} {} {:<10} {e}",
                    "query",
                    pad(query_recipient, 34),
                    "error"
                );
                failures.push(format!("{plugin} query"));
            }
        }
    }

    if let Err(e) = demo_campaign(&host) {
        println!("campaign: error: {e:#}");
        failures.push("the campaign".to_owned());
    }
    if let Err(e) = demo_accounts(&host) {
        println!("two merchants: error: {e:#}");
        failures.push("two merchants through one plugin".to_owned());
    }
    drop(sim);

    println!();
    if failures.is_empty() {
        println!("demo: every step succeeded");
        Ok(())
    } else {
        println!(
            "demo: {} step(s) failed: {}",
            failures.len(),
            failures.join("; ")
        );
        std::process::exit(1);
    }
}

/// A campaign: a file of recipients streamed in batches, with a report per line. It must end
/// `done` with every valid recipient issued.
fn demo_campaign(
    host: &dyn Fn(&[&str]) -> anyhow::Result<serde_json::Value>,
) -> anyhow::Result<()> {
    let file = root().join("target/demo/recipients.txt");
    std::fs::create_dir_all(file.parent().unwrap())?;
    let recipients = 2_000;
    let mut lines: Vec<String> = (0..recipients)
        .map(|i| format!("nick:演示买家{i:05}"))
        .collect();
    lines.push("nick:演示买家00007".to_owned()); // listed twice: sent once
    lines.push("not a recipient".to_owned());
    std::fs::write(&file, lines.join("\n"))?;
    let id = format!(
        "demo-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
    );
    println!();
    println!(
        "==> campaign {id}: taobao coupon 48552 to {} lines",
        lines.len()
    );
    let started = std::time::Instant::now();
    let file_arg = file.to_string_lossy().into_owned();
    let status = host(&[
        "campaign",
        "run",
        "taobao",
        "--coupon",
        "48552",
        "--recipients",
        &file_arg,
        "--concurrency",
        "4",
        "--id",
        &id,
        "--json",
    ])?;
    println!(
        "{} issued, {} failed, {} unknown, {} rejected, {} skipped, {} pending — {:.1} s",
        status["issued"],
        status["failed"],
        status["unknown"],
        status["rejected"],
        status["skipped"],
        status["pending"],
        started.elapsed().as_secs_f64()
    );
    // The report of every line, as `campaign report` writes it.
    let report = root().join(format!("target/demo/{id}.csv"));
    let report_arg = report.to_string_lossy().into_owned();
    host(&["campaign", "report", &id, "--output", &report_arg])?;
    let rows = std::fs::read_to_string(&report)?
        .lines()
        .count()
        .saturating_sub(1);
    println!("report: target/demo/{id}.csv, one row per line of the file ({rows} rows)");
    if status["issued"].as_u64() != Some(recipients) || status["pending"].as_u64() != Some(0) {
        bail!("the campaign did not issue a coupon to each of its {recipients} recipients");
    }
    Ok(())
}

/// Two merchants through one taobao plugin: the plugin's own session (account `default`,
/// seller sim-seller) and a second seller who authorizes the app (account `shop-2`).
fn demo_accounts(
    host: &dyn Fn(&[&str]) -> anyhow::Result<serde_json::Value>,
) -> anyhow::Result<()> {
    println!();
    println!("==> two merchants through one taobao plugin");
    let code = mint_code("sim-seller-2")?;
    let shop = host(&[
        "accounts",
        "authorize",
        "taobao",
        "shop-2",
        "--code",
        &code,
        "--json",
    ])?;
    println!(
        "authorized account shop-2 for seller {} (session until {})",
        shop["seller"].as_str().unwrap_or("?"),
        shop["expires_at"]
    );
    for (account, coupon) in [("default", "48552"), ("shop-2", "48560")] {
        let sent = host(&[
            "send",
            "taobao",
            "--account",
            account,
            "--coupon",
            coupon,
            "--to",
            "nick:王五",
            "--json",
        ])?;
        let issued = sent["issued"].as_array().map(Vec::len).unwrap_or(0);
        println!("{account:<8} send coupon {coupon} to nick:王五: {issued} issued");
        if issued != 1 {
            bail!("{account} could not send its own coupon {coupon}");
        }
    }
    match host(&[
        "send",
        "taobao",
        "--account",
        "shop-2",
        "--coupon",
        "48552",
        "--to",
        "nick:赵六",
        "--json",
    ]) {
        Ok(sent) => println!(
            "shop-2   send the other shop's coupon 48552: {}",
            sent["failed"][0]["error"]["class"].as_str().unwrap_or("?")
        ),
        Err(e) => println!("shop-2   send the other shop's coupon 48552: refused ({e})"),
    }
    for account in ["default", "shop-2"] {
        let coupons = host(&[
            "query",
            "taobao",
            "--account",
            account,
            "--recipient",
            "nick:王五",
            "--json",
        ])?;
        let titles: Vec<&str> = coupons["coupons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["title"].as_str())
            .collect();
        println!("{account:<8} sees nick:王五 holding: {}", titles.join(", "));
    }
    Ok(())
}

/// An OAuth code for `seller` from the simulator's authorize stand-in (`POST /_sim/top/code`),
/// as TOP's authorize page gives one when the seller agrees.
fn mint_code(seller: &str) -> anyhow::Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let answer: serde_json::Value = reqwest::Client::new()
            .post(format!("http://{SIM_ADDR}/_sim/top/code"))
            .json(&serde_json::json!({ "app_key": "12345678", "seller": seller }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        answer["code"]
            .as_str()
            .map(str::to_owned)
            .context("the simulator gave no code")
    })
}
