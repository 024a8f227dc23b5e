//! Embedding coupon-host in a Rust program: load a config, list the plugins, send a coupon,
//! query what the recipient holds, shut down.
//!
//! Against the bundled simulator, with the adapters built by `cargo xtask plugins`:
//!
//! ```sh
//! cargo run -p coupon-sim -- --listen 127.0.0.1:18080 &
//! TAOBAO_APP_SECRET=sim-app-secret TAOBAO_SESSION=sim-session DOUYIN_CLIENT_SECRET=sim-douyin-secret \
//! COUPON_HOST_MASTER_KEY=636f75706f6e2d686f73742064656d6f206b65793a206e6f7420736563726574 \
//!   cargo run -p coupon-host --example embed -- examples/sandbox.toml taobao 48552 nick:张三 default
//! ```
//!
//! (`default` names the plugin's own account; a plugin with several accounts needs one named.)
//!
//! The integration test
//! `embed::the_embedding_example_runs_against_the_simulator` runs [`run`] on every
//! `cargo test --workspace`.

use coupon_host::{Coupon, Host, QueryRequest, Recipient, SendOutcome, SendRequest};

/// What the example did, for the caller (and the test) to check.
pub struct Report {
    /// The loaded plugins' names.
    pub plugins: Vec<String>,
    /// The send's outcome.
    pub outcome: SendOutcome,
    /// The recipient's coupons after the send.
    pub coupons: Vec<Coupon>,
}

/// The embedding itself: every call an engine makes, on a host it already has.
pub async fn run(
    host: &Host,
    plugin: &str,
    coupon: &str,
    recipient: Recipient,
    account: Option<&str>,
) -> Result<Report, coupon_host::Error> {
    let plugins: Vec<String> = host.plugins().into_iter().map(|p| p.name).collect();
    println!("plugins: {}", plugins.join(", "));

    // A stable key makes a retry of this same send safe; without one the host generates it.
    let mut request = SendRequest::new(coupon, vec![recipient.clone()]);
    request.idempotency_key = Some(format!("embed-example-{coupon}-{recipient}"));
    request.account = account.map(str::to_owned);
    let outcome = host.send(plugin, request).await?;
    for issued in &outcome.issued {
        println!(
            "issued {} coupon {}",
            issued.recipient,
            issued.coupon_id.as_deref().unwrap_or("-")
        );
    }
    for failed in &outcome.failed {
        // A per-recipient failure is not an error of the call: decide by its class.
        println!("failed {}: {}", failed.recipient, failed.error);
    }

    let coupons = host
        .query(
            plugin,
            QueryRequest {
                recipient,
                options: Vec::new(),
                account: account.map(str::to_owned),
            },
        )
        .await?;
    for coupon in &coupons {
        println!("holds {} ({:?})", coupon.id, coupon.state);
    }

    // Refuse new calls and wait for running ones, as an engine does before it exits.
    host.shutdown().await;
    Ok(Report {
        plugins,
        outcome,
        coupons,
    })
}

// The integration test includes this file as a module and calls `run`; only the binary has a
// `main`.
#[cfg(not(test))]
#[tokio::main]
async fn main() -> std::process::ExitCode {
    use std::path::PathBuf;
    use std::process::ExitCode;

    let mut args = std::env::args().skip(1);
    let config = args
        .next()
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("COUPON_HOST_CONFIG").map(PathBuf::from));
    let Some(config) = config else {
        eprintln!("usage: embed CONFIG [PLUGIN COUPON KIND:ID [ACCOUNT]]");
        return ExitCode::from(2);
    };
    let plugin = args.next().unwrap_or_else(|| "taobao".to_owned());
    let coupon = args.next().unwrap_or_else(|| "48552".to_owned());
    let recipient = args.next().unwrap_or_else(|| "nick:张三".to_owned());
    let account = args.next();

    let result = async {
        let recipient: Recipient = recipient
            .parse()
            .map_err(|e: coupon_host::ParseRecipientError| e.to_string())?;
        // Secrets come from the environment variables the config names.
        let host = Host::from_config_file(&config)
            .await
            .map_err(|e| e.to_string())?;
        run(&host, &plugin, &coupon, recipient, account.as_deref())
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(report) => {
            println!(
                "{} plugins; {} issued, {} failed; the recipient holds {} coupons",
                report.plugins.len(),
                report.outcome.issued.len(),
                report.outcome.failed.len(),
                report.coupons.len()
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
