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
