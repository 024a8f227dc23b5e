//! The cargo command that builds this workspace's Rust components for `wasm32-wasip2`.
//! `build.rs` runs it to build every component the tests load, and the reproducibility test in
//! `src/lib.rs` runs it again into another target folder (both include this file, `#[path]`).

use std::path::Path;
use std::process::Command;

/// `cargo build --target wasm32-wasip2 --profile wasm -p CRATE…` in the workspace at `root`,
/// into `target_dir`: a target folder of its own, since an outer cargo may hold the lock on the
/// workspace's.
pub fn wasm_build<'a>(
    root: &Path,
    target_dir: &Path,
    crates: impl IntoIterator<Item = &'a str>,
) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "wasm"])
        .env("CARGO_TARGET_DIR", target_dir)
        // The outer build's flags are for the host target, not wasm.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS");
    for name in crates {
        command.args(["-p", name]);
    }
    command
}
