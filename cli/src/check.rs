//! `coupon-host check ADAPTER.wasm`: the library's check (`coupon_host::check`), printed.

use std::path::PathBuf;

use coupon_host::check::{CheckOptions, CheckReport};

/// Hold an adapter component to the contract against a scripted platform; needs no config.
#[derive(clap::Args)]
pub(crate) struct CheckArgs {
    /// The adapter component (.wasm).
    component: PathBuf,
    /// A setting for the adapter, `KEY=VALUE`, over the defaults (`gateway`, `base_url`,
    /// `app_id`, all pointing nowhere); repeatable. URL values put their origin on the
    /// allowlist.
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = crate::cli::parse_option)]
    settings: Vec<(String, String)>,
    /// The coupon every send names.
    #[arg(long, default_value = "10000001")]
    coupon: String,
    /// The deadline of one adapter call, in ms; a call past it hangs.
    #[arg(long, value_name = "MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    timeout_ms: u64,
    /// Cache compiled components in DIR (default: a temporary folder, removed afterwards).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs the check and prints its report; an error when the adapter breaks the contract.
pub(crate) async fn run(args: &CheckArgs) -> anyhow::Result<()> {
    let mut options = CheckOptions::default();
    options.settings = args.settings.clone();
    options.coupon = args.coupon.clone();
    options.timeout_ms = args.timeout_ms;
    options.cache_dir = args.cache_dir.clone();
    let report = match coupon_host::check::check(&args.component, &options).await {
        Ok(report) => report,
        Err(coupon_host::Error::Load { path, reason, .. }) => {
            anyhow::bail!("cannot check {}: {reason}", path.display())
        }
        Err(other) => return Err(other.into()),
    };
    if args.json {
        crate::cli::print_json(&report)?;
    } else {
        print_report(&report);
    }
    match report.violations.len() {
        0 => Ok(()),
        n => anyhow::bail!(
            "{} breaks the adapter contract: {n} violation{} (listed above)",
            args.component.display(),
            if n == 1 { "" } else { "s" }
        ),
    }
}

fn print_report(report: &CheckReport) {
    println!("component  {}", report.component.display());
    println!("sha256     {}", report.sha256);
    println!(
        "contract   {} (version {})",
        report.contract.export, report.contract.version
    );
    println!("imports    {}", report.imports.join(", "));
    println!("exports    {}", report.exports.join(", "));
    if let Some(d) = &report.describe {
        let kinds: Vec<_> = d.recipient_kinds.iter().map(|k| k.as_str()).collect();
        println!(
            "describe   {} {}; {} recipients per call; idempotent send: {}; recipients: {}; operations: {}",
            d.platform,
            d.version,
            d.max_recipients_per_call,
            if d.idempotent_send { "yes" } else { "no" },
            kinds.join(", "),
            d.operations.join(", ")
        );
        // Contract 0.2.0 and later.
        if let Some(scheme) = &d.auth_scheme {
            let qps = match d.limits.qps {
                Some(qps) => format!("{qps} requests a second"),
                None => "none documented".to_owned(),
            };
            println!("           auth scheme: {scheme}; platform limit: {qps}");
        }
    }
    let settings: Vec<_> = report
        .settings
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    println!("settings   {}", settings.join(" "));
    for verdict in &report.scenarios {
        println!(
            "{:<4}  {:<13}  {:<18}  {} request{}; {}",
            if verdict.passed { "ok" } else { "FAIL" },
            verdict.operation,
            verdict.scenario,
            verdict.requests,
            if verdict.requests == 1 { "" } else { "s" },
            verdict.outcome
        );
    }
    for warning in &report.warnings {
        println!("warning: {warning}");
    }
    if report.passed {
        println!(
            "passed: the adapter holds the contract in all {} scenarios",
            report.scenarios.len()
        );
    } else {
        println!("violations:");
        for violation in &report.violations {
            println!("  {violation}");
        }
    }
}
