//! What the README and docs/ tell a newcomer holds: the simulator's coupons and recipients, its
//! port apart from `serve`'s, one name for the PostgreSQL URL's variable, and no citation of a
//! file the repository does not have.

use std::path::Path;

use coupon_host::{Recipient, SendRequest};
use coupon_sim::SimConfig;

use crate::support::{Options, TestEnv};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap()
}

/// The `backticked` words of a Markdown table cell, in order.
fn ticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Every row of the README's table of the simulator's demo seed: its first coupon goes to the
/// first recipient said to get it, and the first said to be refused is refused.
#[tokio::test(flavor = "multi_thread")]
async fn the_readme_simulator_table_is_what_the_simulator_does() {
    let readme = read("README.md");
    let header = "| plugin | `--coupon` | recipients that get it | refused |";
    let start = readme
        .find(header)
        .expect("the README lists the simulator's seed");
    let rows: Vec<&str> = readme[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .collect();
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let loaded: Vec<String> = host.plugins().into_iter().map(|p| p.name).collect();
    let mut checked = 0;
    for row in &rows {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (plugins, coupon, gets, refused) = (
            ticked(cells[1]),
            ticked(cells[2])[0],
            ticked(cells[3])[0],
            ticked(cells[4]).first().copied(),
        );
        // douyin-js is the same platform as douyin; the tests load it only where it is about it.
        for plugin in plugins.iter().filter(|p| loaded.iter().any(|l| l == *p)) {
            let mut to: Vec<Recipient> = vec![gets.parse().unwrap()];
            to.extend(refused.map(|r| r.parse::<Recipient>().unwrap()));
            let outcome = host
                .send(plugin, SendRequest::new(coupon, to))
                .await
                .unwrap_or_else(|e| panic!("{row}: {e}"));
            let issued: Vec<String> = outcome
                .issued
                .iter()
                .map(|i| i.recipient.to_string())
                .collect();
            assert_eq!(issued, [gets], "{row}: {outcome:?}");
            assert_eq!(
                outcome.failed.len(),
                refused.iter().count(),
                "{row}: {outcome:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(
        checked, 4,
        "every plugin the tests load has a row: {rows:?}"
    );
}

/// The simulator's default address is where `examples/sandbox.toml` points, and not
/// `coupon-host serve`'s default: both run at once as the README shows.
#[test]
fn the_simulator_and_serve_default_to_different_ports() {
    let default = |source: &str, anchor: &str| -> String {
        let at = source.find(anchor).unwrap();
        let rest = &source[at..];
        let start = rest.find("default_value = \"").unwrap() + "default_value = \"".len();
        rest[start..start + rest[start..].find('"').unwrap()].to_owned()
    };
    let sim = default(&read("sim/src/main.rs"), "struct Args");
    let serve = default(&read("cli/src/cli.rs"), "struct ServeArgs");
    assert_ne!(sim, serve);
    assert!(
        read("examples/sandbox.toml").contains(&format!("\"http://{sim}\"")),
        "{sim}"
    );
    assert!(
        read("README.md").contains(&format!("`{sim}` (its default")),
        "{sim}"
    );
    assert!(
        read("README.md").contains(&format!("(default `{serve}`")),
        "{serve}"
    );
}

/// The fleet section and the config reference name one variable for the PostgreSQL URL.
#[test]
fn the_readme_names_one_url_env() {
    let readme = read("README.md");
    let names: std::collections::BTreeSet<&str> = readme
        .match_indices("url_env = \"")
        .map(|(at, found)| {
            let rest = &readme[at + found.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

/// The documents cite only files a clone has: no `../shared`, and every `NAME.md` they name
/// exists in the repository.
#[test]
fn the_docs_cite_only_files_in_the_repository() {
    // docs/BENCHMARKS.md still cites the design's PERFORMANCE.md, which is not here either.
    let documents = [
        "README.md",
        "ARCHITECTURE.md",
        "docs/PLATFORMS.md",
        "docs/WRITING_AN_ADAPTER.md",
    ];
    let mut markdown = Vec::new();
    collect_markdown(root(), &mut markdown);
    for document in documents {
        let text = read(document);
        assert!(!text.contains("../shared"), "{document} cites ../shared");
        for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || "_.-".contains(c))) {
            let Some(stem) = word.strip_suffix(".md") else {
                continue;
            };
            if stem.is_empty() || !stem.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                continue;
            }
            assert!(
                markdown.iter().any(|name| name == word),
                "{document} cites {word}, which the repository does not have"
            );
        }
    }
}

fn collect_markdown(dir: &Path, names: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" && name != "node_modules" {
                collect_markdown(&path, names);
            }
        } else if name.ends_with(".md") {
            names.push(name);
        }
    }
}
