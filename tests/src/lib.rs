//! Paths of the wasm components built from this workspace's sources by `build.rs`.
//!
//! `PLUGINS` lists every platform adapter (`plugins/*`: Rust crates and JavaScript adapters),
//! `GUESTS` every test guest (`tests/guests/*`), `TEMPLATES` the adapter templates
//! (`templates/rust-adapter` as `template-rust`, `templates/js-adapter` as `template-js`); each
//! also has its own constant, e.g. [`TAOBAO`], [`DOUYIN_JS`] or [`TEMPLATE_JS`].
//!
//! [`postgres`]: the test PostgreSQL server and a schema per test, for every test crate;
//! [`cluster`]: a PostgreSQL cluster of a test's own (its own port, TLS with a CA it makes, a
//! restart), for what the shared server must not be put through.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

pub mod cluster;
pub mod postgres;

#[cfg(test)]
#[path = "../wasm_build.rs"]
mod wasm_build;

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    /// The JavaScript adapters' own unit tests (`node --test`), which hold their platform mapping
    /// to the Rust adapters' fixtures, and the JavaScript template's. `build.rs` has installed
    /// their tools already, and cannot have succeeded without `node`.
    #[test]
    fn javascript_adapters_pass_their_unit_tests() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let plugins = root.join("plugins");
        let mut ran = 0;
        let dirs = std::fs::read_dir(&plugins)
            .unwrap()
            .flatten()
            .map(|e| e.path());
        for dir in dirs.chain([root.join("templates/js-adapter")]) {
            if !dir.join("package.json").is_file() || !dir.join("test").is_dir() {
                continue;
            }
            let output = Command::new("node")
                .args(["--test", "test/"])
                .current_dir(&dir)
                .output()
                .expect("node runs");
            assert!(
                output.status.success(),
                "node --test failed in {}:\n{}{}",
                dir.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            ran += 1;
        }
        assert!(
            ran > 1,
            "expected tests in templates/js-adapter and a JavaScript adapter under {}",
            plugins.display()
        );
    }

    /// Every Rust adapter builds byte for byte the same, so a config's `sha256` pin survives a
    /// rebuild: built again from the same sources into a target folder of its own (another
    /// path, as on another machine), each has the digest of the component `build.rs` made.
    /// (JavaScript adapters do not: the README says why.)
    #[test]
    fn rust_adapters_build_byte_for_byte_the_same() {
        use crate::wasm_build::wasm_build;
        use sha2::{Digest, Sha256};

        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let again = Path::new(env!("OUT_DIR")).join("wasm-again");
        let rust: Vec<(&str, &str)> = crate::PLUGINS
            .iter()
            .copied()
            .filter(|(_, path)| path.contains("wasm32-wasip2"))
            .collect();
        assert!(rust.len() >= 4, "{rust:?}");
        let mut command = wasm_build(&root, &again, rust.iter().map(|(name, _)| *name));
        command.arg("--quiet");
        let output = command.output().expect("cargo runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let digest = |path: &Path| hex::encode(Sha256::digest(std::fs::read(path).unwrap()));
        for (name, path) in rust {
            let rebuilt = again
                .join("wasm32-wasip2/wasm")
                .join(format!("{}.wasm", name.replace('-', "_")));
            assert_eq!(
                digest(Path::new(path)),
                digest(&rebuilt),
                "{name} built twice from the same source differs"
            );
        }
    }
}
