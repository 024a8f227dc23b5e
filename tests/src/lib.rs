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
}
