//! The `coupon-host` binary: a thin CLI over the library. `anyhow`, clap, indicatif and the
//! tracing subscriber live here, not in the library an engine embeds.

mod accounts;
mod campaign;
mod check;
mod cli;
mod failure;

fn main() -> std::process::ExitCode {
    cli::main()
}
