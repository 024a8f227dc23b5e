//! `coupon-sim`: the simulator as a process, for the demo and for manual testing.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use coupon_sim::{Sim, SimConfig};

/// Simulates the TOP gateway on loopback, with the demo seed or a JSON seed file.
#[derive(Parser)]
#[command(name = "coupon-sim", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A JSON seed (the shape of `SimConfig`); the demo seed when absent.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = match &args.config {
        None => SimConfig::demo(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
        {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    let sim = match Sim::start_on(config, args.listen).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("coupon-sim listening on {}", sim.base_url());
    let _ = tokio::signal::ctrl_c().await;
    sim.shutdown().await;
    std::process::ExitCode::SUCCESS
}
