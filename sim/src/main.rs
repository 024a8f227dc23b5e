//! `coupon-sim`: the simulator as a process, for the demo and for trying a host by hand.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use coupon_sim::{Sim, SimConfig};

/// Simulates the TOP gateway (/router/rest), TOP's OAuth token endpoint (/token) and the Douyin
/// open API (/oauth/client_token/, /oauth/stable_client_token/, /api/promotion/v1/coupon/...)
/// on loopback, with the demo seed or a seed file.
///
/// Prints `coupon-sim listening on http://ADDR` once it accepts connections, then serves until
/// Ctrl-C. Admin endpoints: GET /_sim/ledger, GET /_sim/calls, GET /_sim/stats,
/// POST /_sim/fault, POST /_sim/clock_skew, POST /_sim/douyin/expire_tokens,
/// GET /_sim/top/sessions, POST /_sim/top/code, POST /_sim/top/expire_session,
/// POST /_sim/top/revoke_session.
#[derive(Parser)]
#[command(name = "coupon-sim", version, about)]
struct Args {
    /// Address to listen on. The default is where `examples/sandbox.toml` and
    /// `templates/simulator.toml` expect the simulator, apart from `coupon-host serve`'s 8080.
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    /// A seed file shaped like `SimConfig` (`.toml` for TOML, anything else JSON); without it,
    /// the demo seed (`SimConfig::demo()`).
    #[arg(long)]
    config: Option<PathBuf>,
}

fn load(path: &Path) -> Result<SimConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    if path
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("toml"))
    {
        toml::from_str(&text).map_err(|e| e.to_string())
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match &args.config {
        None => SimConfig::demo(),
        Some(path) => match load(path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: {}: {}", path.display(), e.trim());
                return ExitCode::FAILURE;
            }
        },
    };
    let sim = match Sim::start_on(config, args.listen).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: cannot serve on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    // One line, flushed, so a parent process reading our stdout knows we are up.
    println!("coupon-sim listening on {}", sim.base_url());
    let _ = std::io::stdout().flush();
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("error: cannot wait for Ctrl-C: {e}");
    }
    sim.shutdown().await;
    ExitCode::SUCCESS
}
