//! Builds every adapter under `plugins/` and every test guest under `tests/guests/` for
//! `wasm32-wasip2`, from source, on every test run that needs it (cargo reruns this when their
//! sources change), and writes `artifacts.rs` with one path constant per component.
//!
//! The nested cargo uses its own target dir under `OUT_DIR`, because the outer cargo holds the
//! lock on the workspace's.
//!
//! JavaScript adapters (a folder under `plugins/` with a `package.json` and a `build.mjs`) are
//! built with their own pinned componentize-js: `npm ci` when `node_modules` is missing or the
//! lockfile changed since it was installed, then `node build.mjs OUT.wasm` (js_adapters.rs).
//!
//! The adapter templates (`templates/`, what docs/WRITING_AN_ADAPTER.md has authors copy) are
//! built the way an author builds them, so a template that stops building fails the tests:
//! `templates/rust-adapter` as a standalone crate (`cargo build --release --locked` with its own
//! manifest and lockfile), `templates/js-adapter` like the JavaScript adapters above. The
//! JavaScript template pins the same packages as `plugins/douyin-js` (the tidy test holds the
//! lockfiles equal), so its `npm ci` finds every package in the npm cache that douyin-js's filled.

#[path = "js_adapters.rs"]
mod js_adapters;
#[path = "wasm_build.rs"]
mod wasm_build;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use js_adapters::{build_js_adapter, is_js_adapter, js_adapters_in, js_artifact};
use wasm_build::wasm_build;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_owned();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());

    for dir in ["tests/guests", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    for path in watched_plugin_paths(&root.join("plugins")) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    for path in template_paths(&root.join("templates")) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    // A new plugin crate shows in the lockfile (the workspace's members are a glob).
    for file in ["Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }

    let mut plugins = components_in(&root.join("plugins"));
    plugins.sort();
    let js_plugins = js_adapters_in(&root.join("plugins"));
    let mut guests = components_in(&root.join("tests/guests"));
    guests.sort();

    let target_dir = out_dir.join("wasm");
    let mut command = wasm_build(
        &root,
        &target_dir,
        plugins.iter().chain(&guests).map(|(name, _)| name.as_str()),
    );
    let status = command
        .status()
        .expect("cannot run cargo for the wasm components");
    if !status.success() {
        panic!(
            "building the wasm components failed; is the target installed? run `rustup target add wasm32-wasip2`"
        );
    }

    let js_dir = out_dir.join("js");
    for (name, dir) in &js_plugins {
        if let Err(error) = build_js_adapter(dir, &js_artifact(&js_dir, name)) {
            panic!("building the JavaScript adapter {name} failed: {error}");
        }
    }

    // After douyin-js: the JavaScript template's `npm ci` takes the packages from the cache.
    let template_js = js_artifact(&js_dir, "template-js");
    if let Err(error) = build_js_adapter(&root.join("templates/js-adapter"), &template_js) {
        panic!("building the JavaScript adapter template failed: {error}");
    }
    let template_rust = build_rust_template(&root.join("templates/rust-adapter"), &out_dir);
    let templates = vec![
        ("template-rust".to_owned(), template_rust),
        ("template-js".to_owned(), template_js),
    ];

    let artifact = |crate_name: &str| {
        if let Some((_, path)) = templates.iter().find(|(name, _)| name == crate_name) {
            return path.clone();
        }
        if js_plugins.iter().any(|(name, _)| name == crate_name) {
            return js_artifact(&js_dir, crate_name);
        }
        target_dir
            .join("wasm32-wasip2/wasm")
            .join(format!("{}.wasm", crate_name.replace('-', "_")))
    };
    let mut code = String::new();
    let mut list = |title: &str, items: &[(String, PathBuf)]| {
        writeln!(
            code,
            "/// Every {title}: (crate or JavaScript adapter folder name, component path)."
        )
        .unwrap();
        writeln!(
            code,
            "pub const {}: &[(&str, &str)] = &[",
            title.to_uppercase()
        )
        .unwrap();
        for (name, _) in items {
            let path = artifact(name);
            assert!(path.is_file(), "{} was not built", path.display());
            writeln!(code, "    ({name:?}, {:?}),", path.display().to_string()).unwrap();
        }
        writeln!(code, "];").unwrap();
        for (name, _) in items {
            writeln!(
                code,
                "/// The `{name}` component.\npub const {}: &str = {:?};",
                name.to_uppercase().replace('-', "_"),
                artifact(name).display().to_string()
            )
            .unwrap();
        }
    };
    let mut every_plugin = plugins.clone();
    every_plugin.extend(js_plugins.iter().cloned());
    every_plugin.sort();
    list("plugins", &every_plugin);
    list("guests", &guests);
    list("templates", &templates);
    std::fs::write(out_dir.join("artifacts.rs"), code).unwrap();
}

/// Builds the Rust adapter template as its author would, outside the workspace: its own
/// manifest, lockfile (`--locked`: a stale one fails) and release profile, in its own target dir
/// under `OUT_DIR`. Returns the component's path.
fn build_rust_template(dir: &Path, out_dir: &Path) -> PathBuf {
    let target_dir = out_dir.join("template-rust");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .status()
        .expect("cannot run cargo for the Rust adapter template");
    assert!(
        status.success(),
        "building {} failed (`cargo build --release --locked --target wasm32-wasip2` there)",
        dir.display()
    );
    let name = std::fs::read_to_string(dir.join("Cargo.toml"))
        .ok()
        .and_then(|text| package_name(&text))
        .expect("the template's [package] name");
    target_dir
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// What a change under `templates/` must rebuild from: their sources, manifests, lockfiles and
/// WIT, not what building them in place leaves (`target/`, `node_modules/`, `*.wasm`).
fn template_paths(dir: &Path) -> Vec<PathBuf> {
    let rust = dir.join("rust-adapter");
    let js = dir.join("js-adapter");
    let mut paths: Vec<PathBuf> = ["Cargo.toml", "Cargo.lock", "src", "wit"]
        .iter()
        .map(|file| rust.join(file))
        .collect();
    for file in [
        "package.json",
        "package-lock.json",
        "build.mjs",
        "src",
        "wit",
    ] {
        paths.push(js.join(file));
    }
    paths
}

/// The `name = "…"` of a manifest's `[package]` (its first `name` line).
fn package_name(manifest: &str) -> Option<String> {
    manifest.lines().find_map(|line| {
        let line = line.trim();
        line.strip_prefix("name")
            .map(|rest| rest.trim_start())
            .and_then(|rest| rest.strip_prefix('='))
            .map(|rest| rest.trim().trim_matches('"').to_owned())
    })
}

/// Crates in `dir` that build a component (their crate type includes `cdylib`).
fn components_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        if !text.contains("cdylib") {
            continue;
        }
        let name = package_name(&text).expect("a [package] name");
        found.push((name, entry.path()));
    }
    found
}

/// What a change under `plugins/` must rebuild from: every entry, except that a JavaScript
/// adapter is watched by its sources and lockfile only. Its `node_modules` (thousands of files,
/// rewritten by `npm ci` during this very build) would otherwise make every later build rerun.
/// A new JavaScript adapter folder is noticed once anything else watched changes.
fn watched_plugin_paths(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![dir.to_owned()];
    };
    let mut paths = Vec::new();
    for path in entries.flatten().map(|entry| entry.path()) {
        if is_js_adapter(&path) {
            for file in ["package.json", "package-lock.json", "build.mjs", "src"] {
                paths.push(path.join(file));
            }
        } else {
            paths.push(path);
        }
    }
    paths
}
