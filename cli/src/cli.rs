//! Command-line interface. The command and flag names are a contract: users script against them.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use coupon_host::{Coupon, Host, QueryRequest, Recipient, SendOutcome, SendRequest};

use crate::campaign;

/// Send and query coupons on Chinese e-commerce platforms through sandboxed adapters.
#[derive(Parser)]
#[command(name = "coupon-host", version, about)]
struct Cli {
    /// The host config (TOML).
    #[arg(long, global = true, env = "COUPON_HOST_CONFIG")]
    config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// List the loaded plugins and what each adapter says about itself.
    Plugins {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Send a coupon to recipients.
    Send {
        /// The plugin (a `[plugins.NAME]` of the config).
        plugin: String,
        /// The platform's coupon reference.
        #[arg(long)]
        coupon: String,
        /// A recipient, `KIND:ID` with KIND nick, open-id or customer-id; repeat for more.
        #[arg(long = "to", value_name = "KIND:ID", required = true)]
        to: Vec<String>,
        /// Coupons per recipient.
        #[arg(long, default_value_t = 1)]
        quantity: u32,
        /// Reuse the key of an earlier send to make a retry safe; generated when absent.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Override a plugin setting for this call, `KEY=VALUE`; repeatable.
        #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_option)]
        options: Vec<(String, String)>,
        /// The account (merchant) to send for; needed when the plugin has several.
        #[arg(long)]
        account: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the coupons a recipient holds or can claim.
    Query {
        /// The plugin.
        plugin: String,
        /// Whose coupons, `KIND:ID`.
        #[arg(long, value_name = "KIND:ID")]
        recipient: String,
        /// Override a plugin setting for this call, `KEY=VALUE`; repeatable.
        #[arg(long = "option", value_name = "KEY=VALUE", value_parser = parse_option)]
        options: Vec<(String, String)>,
        /// The account (merchant) whose view to ask; needed when the plugin has several.
        #[arg(long)]
        account: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Send one coupon to every recipient of a file, resumably; see its status and report.
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
    /// Merchants' authorizations kept by the host: add, list, show, remove, authorize, rekey.
    #[command(subcommand)]
    Accounts(crate::accounts::AccountsCommand),
    /// Serve the API over HTTP until SIGTERM or SIGINT, then drain and exit 0.
    Serve(ServeArgs),
    /// Hold an adapter component to the contract against a scripted platform: its contract
    /// version, imports and exports, `describe`, then send-coupon and query-coupons under 5xx,
    /// timeouts, garbage and partial answers. Needs no config; exits 1 on a violation.
    Check(crate::check::CheckArgs),
    /// Work the batches of every running campaign on the storage until SIGTERM or SIGINT, then
    /// finish the batches in flight and exit 0. Run any number, on any machines sharing the
    /// storage: each batch is sent by one of them.
    Worker {
        /// Batches in flight at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
        concurrency: u32,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on (port 0: any free port; the line on stdout says which).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Send and query requests handled at once; one more is answered 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_in_flight: u32,
    /// The largest request body in KiB; a larger one is answered 413.
    #[arg(long, value_name = "KIB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    max_body_kib: u32,
    /// Serve on an address other than loopback with no API key configured: anyone who reaches
    /// the port may send coupons. Configured keys are still required.
    #[arg(long)]
    insecure_no_auth: bool,
}

impl ServeArgs {
    /// Refuses to expose an open API: without `[serve.keys]`, only a loopback address is served
    /// unless `--insecure-no-auth` says so.
    fn check_exposure(&self, serve: &coupon_host::config::ServeConfig) -> anyhow::Result<()> {
        if serve.keys.is_empty() && !self.listen.ip().is_loopback() {
            if !self.insecure_no_auth {
                anyhow::bail!(
                    "refusing to serve on {} without API keys: anyone who reaches it could send \
                     coupons; add a [serve.keys.NAME] table to the config (see the README), \
                     listen on a loopback address, or pass --insecure-no-auth",
                    self.listen
                );
            }
            tracing::warn!(listen = %self.listen, "serving without API keys on a non-loopback address (--insecure-no-auth)");
        }
        Ok(())
    }
}

pub(crate) fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {:?}", truncate(text, 40))),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        text.chars().take(max).chain(std::iter::once('…')).collect()
    }
}

impl Command {
    /// Whether the command was given `--json`: its failure is then one JSON object on stdout too.
    fn json(&self) -> bool {
        match self {
            Command::Plugins { json }
            | Command::Send { json, .. }
            | Command::Query { json, .. } => *json,
            Command::Campaign(command) => command.json(),
            Command::Accounts(command) => command.json(),
            Command::Serve(_) | Command::Check(_) | Command::Worker { .. } => false,
        }
    }

    /// Whether it runs until stopped (`serve`, `worker`): its own lifecycle (serving, reloads,
    /// stopping) is logged at `info` by default, where a one-shot command logs warnings only.
    fn long_running(&self) -> bool {
        matches!(self, Command::Serve(_) | Command::Worker { .. })
    }
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.command.json();
    crate::failure::init(cli.log_format);
    init_tracing(cli.log_format, cli.command.long_running());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let error = anyhow::Error::new(e).context("cannot start the async runtime");
            crate::failure::report(&error, json);
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Blocking tasks still running (a recipients file being read for a request the drain cut)
    // must not hold the exit: the journal is safe to leave at any point.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of stdout went away (`… | head`): it has what it wanted.
        Err(error) if crate::failure::is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            crate::failure::report(&error, json);
            ExitCode::FAILURE
        }
    }
}

/// The log level when `COUPON_HOST_LOG` does not say: warnings; for `serve` and `worker` also
/// this binary's own `info` lines (listening, a SIGHUP reload, stopping), not every call's.
fn default_log_filter(long_running: bool) -> &'static str {
    // The binary's crate is `coupon_host` too (its name is the binary's): `coupon_host::cli`
    // is this module, which the library does not have.
    if long_running {
        "warn,coupon_host::cli=info"
    } else {
        "warn"
    }
}

fn init_tracing(format: LogFormat, long_running: bool) {
    use std::io::IsTerminal;

    let filter = tracing_subscriber::EnvFilter::try_from_env("COUPON_HOST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log_filter(long_running)));
    // A span's close event carries its fields (plugin, idempotency key, outcome, latency):
    // one line per send, query and platform call at `info`.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        // Colours only for a person at a terminal: a log file or a collector gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // `check` needs no config: it runs before one is looked for.
    if let Command::Check(args) = &cli.command {
        return crate::check::run(args).await;
    }
    let config = cli
        .config
        .context("no config: pass --config FILE (or set COUPON_HOST_CONFIG)")?;
    let loaded = coupon_host::Config::load(&config)?;
    // `[serve]` is checked by `serve` alone: another command runs where the server's folders
    // are not.
    let serve_config = match &cli.command {
        Command::Serve(args) => {
            let serve_config = loaded.serve()?;
            args.check_exposure(&serve_config)?;
            serve_config
        }
        _ => Default::default(),
    };
    let host = Host::new(loaded).await?;
    match cli.command {
        Command::Plugins { json } => {
            let plugins = host.plugins();
            if json {
                print_json(&serde_json::json!({ "plugins": plugins }))?;
            } else {
                for plugin in plugins {
                    let d = &plugin.describe;
                    let kinds: Vec<_> = d.recipient_kinds.iter().map(|k| k.as_str()).collect();
                    println!(
                        "{}\t{} {}\t{} per call\tidempotent send: {}\trecipients: {}\tsha256 {}",
                        plugin.name,
                        d.platform,
                        d.version,
                        d.max_recipients_per_call,
                        if d.idempotent_send { "yes" } else { "no" },
                        kinds.join(","),
                        plugin.sha256
                    );
                }
            }
        }
        Command::Send {
            plugin,
            coupon,
            to,
            quantity,
            idempotency_key,
            options,
            account,
            json,
        } => {
            let recipients = to
                .iter()
                .map(|r| r.parse::<Recipient>())
                .collect::<Result<Vec<_>, _>>()?;
            let mut request = SendRequest {
                coupon,
                recipients,
                quantity,
                idempotency_key,
                options,
                account,
            };
            // Known before the send, so that a failure as a whole names it: resent under the
            // same key, nobody gets the coupon twice.
            let key = request.idempotency_key_or_generate().to_owned();
            let outcome = host
                .send(&plugin, request)
                .await
                .map_err(|error| crate::failure::SendFailed { key, error })?;
            if json {
                print_json(&outcome)?;
            } else {
                print_outcome(&outcome);
            }
        }
        Command::Query {
            plugin,
            recipient,
            options,
            account,
            json,
        } => {
            let recipient = recipient.parse::<Recipient>()?;
            let request = QueryRequest {
                recipient,
                options,
                account,
            };
            let coupons = host.query(&plugin, request).await?;
            if json {
                print_json(&serde_json::json!({ "coupons": coupons }))?;
            } else {
                print_coupons(&coupons);
            }
        }
        Command::Campaign(command) => campaign::run(&host, command).await?,
        Command::Accounts(command) => crate::accounts::run(&host, command).await?,
        Command::Serve(args) => serve(host, args, config, &serve_config).await?,
        // Ran above, without a config.
        Command::Check(_) => {}
        Command::Worker { concurrency } => {
            let report = host.work(concurrency as usize, shutdown_signal()).await?;
            host.shutdown().await;
            tracing::info!(
                batches = report.batches,
                issued = report.issued,
                failed = report.failed,
                "worker stopped"
            );
        }
    }
    Ok(())
}

/// `serve`: installs the Prometheus recorder, binds, says where on stdout, serves until
/// SIGTERM or SIGINT, drains.
async fn serve(
    host: Host,
    args: ServeArgs,
    config: PathBuf,
    serve_config: &coupon_host::config::ServeConfig,
) -> anyhow::Result<()> {
    use std::io::Write;

    reload_on_hangup(host.clone(), config);
    // Before "listening" is printed: a script may signal as soon as it reads it.
    let stop = shutdown_signal();
    let metrics = coupon_host::metrics::prometheus_builder()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    coupon_host::metrics::describe();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Scripts and tests read this line to learn the port.
    println!("coupon-host listening on http://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, plugins = host.plugins().len(), keys = serve_config.keys.len(), "serving");
    let options = coupon_host::serve::ServeOptions::new(
        args.max_in_flight as usize,
        args.max_body_kib as usize * 1024,
    )
    .with_config(serve_config);
    let served = coupon_host::serve::serve(listener, host, options, Some(metrics), stop)
        .await
        .context("serving");
    if served.is_ok() {
        tracing::info!("stopped: drained, exiting");
    }
    served
}

/// On SIGHUP, reloads the config file: plugins change while calls run (see `Host::reload`); a
/// file that does not load changes nothing, and says why in the log.
fn reload_on_hangup(host: Host, config: PathBuf) {
    // The handler is installed here, before "listening" is printed, not in the task: SIGHUP's
    // default action would end the process.
    #[cfg(unix)]
    let Ok(mut hangup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::warn!("cannot listen for SIGHUP; reload is off");
        return;
    };
    #[cfg(unix)]
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match host.reload_from_file(&config).await {
                Ok(report) => tracing::info!(
                    loaded = ?report.loaded,
                    removed = ?report.removed,
                    failed = ?report.failed.iter().map(|(name, e)| format!("{name}: {e}")).collect::<Vec<_>>(),
                    "reloaded the config on SIGHUP"
                ),
                Err(error) => {
                    tracing::error!(%error, "SIGHUP: the config does not load; nothing changed")
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (host, config);
}

/// Resolves on the first SIGTERM or SIGINT, and from then on exits the process at once on the
/// next one: an operator who signals twice does not want to wait for the drain.
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// signal that arrives between "listening" on stdout and the server's first poll must not meet
/// the default action, which ends the process without a drain.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let first = termination();
    async move {
        first.await;
        // The handlers stay installed for the process's life, so this one misses nothing.
        let second = termination();
        tokio::spawn(async move {
            second.await;
            tracing::warn!(
                "second signal: exiting now; unfinished sends stay in flight in the journal, to be reconciled by the next run"
            );
            crate::failure::line("interrupted while draining", None);
            std::process::exit(130);
        });
    }
}

/// Installs SIGTERM and SIGINT handlers now, and resolves on the next of either.
fn termination() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (Err(error), Ok(mut interrupt)) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                    interrupt.recv().await;
                }
                (Ok(mut terminate), Err(error)) => {
                    tracing::warn!(%error, "cannot listen for SIGINT; only SIGTERM stops the server");
                    terminate.recv().await;
                }
                (Err(error), Err(_)) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM or SIGINT");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        tokio::signal::ctrl_c().await.ok();
    }
}

pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write;

    // Not `println!`, which panics when stdout is a closed pipe.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(value)?)?;
    stdout.flush()?;
    Ok(())
}

/// `1 coupon`, `2 coupons`.
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn yuan(fen: Option<i64>) -> String {
    match fen {
        Some(fen) => format!("¥{}.{:02}", fen / 100, (fen % 100).abs()),
        None => "-".to_owned(),
    }
}

fn print_outcome(outcome: &SendOutcome) {
    for issued in &outcome.issued {
        println!(
            "issued\t{}\t{}",
            issued.recipient,
            issued.coupon_id.as_deref().unwrap_or("-")
        );
    }
    for failed in &outcome.failed {
        println!(
            "failed\t{}\t{} ({}: {})",
            failed.recipient, failed.error.class, failed.error.code, failed.error.message
        );
    }
    println!(
        "{} issued, {} failed (idempotency key {})",
        outcome.issued.len(),
        outcome.failed.len(),
        outcome.idempotency_key
    );
}

fn print_coupons(coupons: &[Coupon]) {
    for coupon in coupons {
        let state = serde_json::to_value(coupon.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{} off, min {}",
            coupon.id,
            state,
            coupon.title.as_deref().unwrap_or("-"),
            yuan(coupon.amount_fen),
            yuan(coupon.threshold_fen)
        );
    }
    println!("{}", count(coupons.len(), "coupon"));
}
