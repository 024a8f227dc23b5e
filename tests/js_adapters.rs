//! Finding and building the JavaScript adapters under `plugins/`: a folder with a
//! `package.json` and the `build.mjs` that builds its component with its own pinned
//! componentize-js. `tests/build.rs` and `cargo xtask` both include this file (`#[path]`), so the
//! tests and the demo build them the same way.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether `dir` holds a JavaScript adapter: a `package.json` and the `build.mjs` that builds it.
pub fn is_js_adapter(dir: &Path) -> bool {
    dir.join("package.json").is_file() && dir.join("build.mjs").is_file()
}

/// The JavaScript adapters in `dir`, sorted: (folder name, folder).
pub fn js_adapters_in(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<_> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| is_js_adapter(path))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, path)
        })
        .collect();
    found.sort();
    found
}

/// The component file of adapter `name` in `dir`, named like a Rust crate's (`douyin_js.wasm`).
pub fn js_artifact(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// Installs the adapter's pinned tools if needed and builds its component into `out`.
///
/// `npm ci` runs only when `node_modules` is missing or was installed from another lockfile;
/// then `node build.mjs OUT`. A missing `node` or `npm` fails with what to install.
pub fn build_js_adapter(dir: &Path, out: &Path) -> Result<(), String> {
    let lockfile = dir.join("package-lock.json");
    let lock = std::fs::read(&lockfile).map_err(|error| {
        format!(
            "{}: {error}; a JavaScript adapter commits its lockfile (run `npm install` there once)",
            lockfile.display()
        )
    })?;
    // `npm ci` empties node_modules first, so this copy of the lockfile it was installed from
    // disappears with it: a stale or half-done install is never taken for a good one.
    let stamp = dir.join("node_modules/.coupon-host-installed-lock");
    if std::fs::read(&stamp).ok().as_deref() != Some(lock.as_slice()) {
        run(
            "npm",
            &["ci", "--no-audit", "--no-fund", "--prefer-offline"],
            dir,
        )?;
        std::fs::write(&stamp, &lock).map_err(|error| format!("{}: {error}", stamp.display()))?;
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|error| format!("{}: {error}", parent.display()))?;
    }
    // Written beside the target and renamed, so an interrupted build leaves no half component.
    let partial = out.with_extension("wasm.partial");
    let partial_arg = partial
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", partial.display()))?;
    run("node", &["build.mjs", partial_arg], dir)?;
    std::fs::rename(&partial, out).map_err(|error| format!("{}: {error}", out.display()))
}

/// Runs `program args` in `dir`, its output going to our stderr: a build script's stdout is read
/// by cargo as instructions.
fn run(program: &str, args: &[&str], dir: &Path) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdout(std::io::stderr())
        .status()
        .map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "`{program}` was not found, and {} is a JavaScript adapter: install Node.js 18 or later with npm (Debian: `apt-get install nodejs npm`), then build again",
                    dir.display()
                )
            } else {
                format!("cannot run `{program}` in {}: {error}", dir.display())
            }
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed in {} ({status})",
            args.join(" "),
            dir.display()
        ))
    }
}
