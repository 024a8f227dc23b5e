//! Checks on the repository itself that a reviewer would otherwise have to remember.

use std::path::Path;

use sha2::{Digest, Sha256};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn folder_digest(dir: &Path) -> String {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    for name in names {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(dir.join(&name)).unwrap());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

#[test]
fn released_wit_folders_are_frozen() {
    let released = std::fs::read_to_string(root().join("wit/RELEASED.toml")).unwrap();
    let released: toml::Table = toml::from_str(&released).unwrap();
    assert!(!released.is_empty());
    for (folder, digest) in released {
        let actual = folder_digest(&root().join("wit").join(&folder));
        assert_eq!(
            Some(actual.as_str()),
            digest.as_str(),
            "wit/{folder} changed after release: add a new version folder instead (wit/README.md)"
        );
    }
}

/// The adapter templates build outside this repository, so each carries a copy of the contract
/// it is built against: it must be the released `wit/adapter@0.2.0`, byte for byte, or authors
/// would copy a contract the host does not speak.
#[test]
fn template_wit_is_the_released_contract() {
    let released = folder_digest(&root().join("wit/adapter@0.2.0"));
    for copy in ["templates/rust-adapter/wit", "templates/js-adapter/wit"] {
        assert_eq!(
            folder_digest(&root().join(copy)),
            released,
            "{copy} differs from wit/adapter@0.2.0: copy it again (`cp wit/adapter@0.2.0/* {copy}/`)"
        );
    }
}

/// The JavaScript template pins exactly what plugins/douyin-js pins: the same devDependencies,
/// and the same lockfile but for the package's name. So the template is built with the
/// componentize-js the repository tests, and its `npm ci` in the tests finds every package in
/// the npm cache that douyin-js's install filled, with no second download.
#[test]
fn the_javascript_template_pins_what_douyin_js_pins() {
    let read = |path: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(root().join(path)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let package = read("templates/js-adapter/package.json");
    let douyin_package = read("plugins/douyin-js/package.json");
    assert_eq!(
        package["devDependencies"], douyin_package["devDependencies"],
        "templates/js-adapter/package.json must pin what plugins/douyin-js/package.json pins"
    );
    let mut lock = read("templates/js-adapter/package-lock.json");
    let mut douyin_lock = read("plugins/douyin-js/package-lock.json");
    for lock in [&mut lock, &mut douyin_lock] {
        lock["name"] = serde_json::Value::Null;
        lock["packages"][""]["name"] = serde_json::Value::Null;
    }
    assert!(
        lock == douyin_lock,
        "templates/js-adapter/package-lock.json differs from plugins/douyin-js's beyond the package \
         name: copy that lockfile and change its two `name`s"
    );
}

#[test]
fn no_compiled_wasm_is_committed() {
    // Tests build every component from source; a committed .wasm would go stale.
    let output = std::process::Command::new("git")
        .args(["ls-files", "*.wasm"])
        .current_dir(root())
        .output();
    if let Ok(output) = output {
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "");
    }
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The first path segment of every `crate::…` path in `code` (comments skipped), including each
/// item of a `crate::{a, b::c}` group.
fn crate_roots(code: &str) -> Vec<String> {
    let mut roots = Vec::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            // `$crate::` in macros is the same crate.
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        roots.push(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                roots.push(name);
            }
        }
    }
    roots
}

/// The host's modules import each other one way only: no cycle among the top-level modules of
/// host/src (a file under `x/` belongs to module `x`). Names re-exported at the crate root count
/// for the module that defines them.
#[test]
fn host_modules_import_one_way() {
    use std::collections::{BTreeMap, BTreeSet};
    let src = root().join("host/src");
    // `pub use crate::host::{Host, ReloadReport};` in lib.rs: Host → host.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut defined_in = BTreeMap::new();
    for item in lib.split(';') {
        let item = item.trim();
        if let Some(path) = item.strip_prefix("pub use crate::") {
            let (module, names) = path.split_once("::").unwrap_or((path, ""));
            for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
                let name = name.trim();
                if !name.is_empty() {
                    defined_in.insert(name.to_owned(), module.to_owned());
                }
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        if relative == Path::new("lib.rs") {
            continue;
        }
        let module = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        let code = std::fs::read_to_string(&file).unwrap();
        for name in crate_roots(&code) {
            let target = defined_in.get(&name).cloned().unwrap_or(name);
            if target != module && !target.is_empty() {
                edges.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    // Depth-first search; a back edge is a cycle.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            panic!(
                "host modules import each other in a circle: {}",
                cycle.join(" → ")
            );
        }
        if !done.insert(node.to_owned()) {
            return;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done);
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
    assert!(
        edges.contains_key("host"),
        "the parser found the host's imports: {edges:?}"
    );
}

/// Storage backends are folders: nothing outside the SQLite backend's folder names rusqlite,
/// nothing outside the PostgreSQL backend's folder names its driver or pool, and nothing outside
/// `runtime/` names the generated WIT bindings.
#[test]
fn drivers_and_bindings_stay_behind_their_seams() {
    let src = root().join("host/src");
    for file in rust_files(&src) {
        let relative = file
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let code = std::fs::read_to_string(&file).unwrap();
        if code.contains("rusqlite") {
            assert!(
                relative.starts_with("store/sqlite"),
                "{relative} names rusqlite: only the SQLite backend (store/sqlite/) may"
            );
        }
        if code.contains("tokio_postgres") || code.contains("deadpool_postgres") {
            assert!(
                relative.starts_with("store/postgres"),
                "{relative} names the PostgreSQL driver: only the PostgreSQL backend (store/postgres/) may"
            );
        }
        if code.contains("bindings::") {
            assert!(
                relative.starts_with("runtime"),
                "{relative} names the WIT bindings: only runtime/ may"
            );
        }
    }
}

/// An embedder can take the library whole: without its default features it brings no CLI,
/// progress-bar or log-subscriber crates, and no web server. (anyhow comes with wasmtime.)
#[test]
fn the_library_alone_carries_no_cli_crates() {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "coupon-host",
            "--no-default-features",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(root())
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    for forbidden in ["clap ", "indicatif ", "tracing-subscriber ", "axum "] {
        assert!(
            !tree.lines().any(|line| line.starts_with(forbidden)),
            "coupon-host --no-default-features depends on {forbidden}"
        );
    }
    assert!(
        tree.lines().any(|line| line.starts_with("wasmtime ")),
        "{tree}"
    );
}

/// The README's two set-up commands (the `sh` blocks under "Two commands"): the demo, then the
/// test suite.
fn readme_setup_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split_once("## Two commands")
        .expect("the README has a section \"Two commands\"")
        .1;
    let section = section.split("\n## ").next().unwrap();
    let commands: Vec<String> = section
        .split("```sh\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_owned())
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(commands[0].ends_with("cargo xtask demo"), "{commands:?}");
    assert!(
        commands[1].ends_with("cargo test --workspace"),
        "{commands:?}"
    );
    commands
}

/// CI runs both of the README's set-up commands exactly as written, the demo after the tests
/// (so a demo that stops working fails CI, and its build is warm).
#[test]
fn ci_runs_both_readme_commands_as_written() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let line_of = |command: &str| {
        ci.lines()
            .position(|line| line.trim() == command)
            .unwrap_or_else(|| panic!(".ci/run does not run the README's command {command:?}"))
    };
    let commands = readme_setup_commands();
    let demo = line_of(&commands[0]);
    let tests = line_of(&commands[1]);
    assert!(demo > tests, ".ci/run must run the demo after the tests");
    assert!(
        ci.lines().any(|line| line.trim() == "set -euo pipefail"),
        ".ci/run must stop at the first failing command"
    );
}

#[path = "../../../xtask/src/demo_secrets.rs"]
mod demo_secrets;

/// The demo's credentials (xtask), the README's embedding commands and the example's own doc
/// set the same values: the README's are the ones a user copies, and the embedding test runs
/// with them.
#[test]
fn the_readme_and_the_example_set_the_demo_credentials() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let example = std::fs::read_to_string(root().join("host/examples/embed.rs")).unwrap();
    for (name, value) in demo_secrets::DEMO_SECRETS {
        let assignment = format!("{name}={value}");
        assert!(
            readme.contains(&assignment),
            "README.md does not set {name} as the demo does"
        );
        assert!(
            example.contains(&assignment),
            "host/examples/embed.rs does not set {name} as the demo does"
        );
    }
}
