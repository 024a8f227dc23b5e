//! Property tests over the public surface: the config parser never panics and always says where
//! it failed. (The TOP signer's property test against the simulator's verifier is a unit test of
//! `auth/top.rs`, since the signer is not public.)

use std::path::Path;

use coupon_host::Config;
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// Modest case counts keep the suite fast; no regression files are written into the tree
/// (a failure prints its minimal input, which belongs in a named unit test).
fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const GOOD: &str = r#"[storage]
path = "state.db"

[runtime]
max_instances = 4

[plugins.taobao]
component = "a.wasm"
allowed_hosts = ["https://eco.taobao.com", "http://127.0.0.1:8080"]
auth = { scheme = "top", app_key = "123", app_secret_env = "SECRET", session_env = "SESSION", sign_method = "md5" }
limits = { timeout_ms = 2000, memory_mib = 32, kv_max_keys = 10 }
settings = { gateway = "https://eco.taobao.com/router/rest" }

[plugins.douyin]
component = "a.wasm"
allowed_hosts = ["https://open.douyin.com"]
allow_private_addresses = false
auth = { scheme = "douyin", client_key = "tt", client_secret_env = "SECRET" }
settings = { app_id = "tt-app" }
"#;

/// Pieces of TOML (and of things that are not TOML) that the mutations splice in.
const SNIPPETS: &[&str] = &[
    "=",
    "\"",
    "'",
    "'''",
    "[",
    "]",
    "[[plugins]]\n",
    "{",
    "}",
    ",",
    "\n",
    "#",
    ".",
    "0",
    "-1",
    "99999999999999999999",
    "1e3",
    "true",
    "中",
    "\u{0}",
    "\r",
    "\t",
    "[plugins.x]\n",
    "[plugins.\"\"]\n",
    "[plugins.Bad]\ncomponent = \"a.wasm\"\n",
    "component = \"missing.wasm\"\n",
    "limits = { timeout_ms = 0 }\n",
    "kv_max_keys = 0",
    "memory_mib = 100000",
    "allowed_hosts = [\"http://x/path\"]\n",
    "allowed_hosts = [\"\"]\n",
    "auth = { scheme = \"douyin\" }\n",
    "auth = { scheme = \"top\", app_key = \"\", app_secret_env = \"NOPE\" }\n",
    "sha256 = \"zz\"\n",
    "backend = \"redis\"\n",
    "settings = { base_url = \"ftp://x\" }\n",
    "app_secret = \"plain\"",
];

/// `GOOD` after a few random insertions, deletions and duplications.
fn mutated_config() -> impl Strategy<Value = String> {
    prop::collection::vec((any::<Index>(), 0u8..3, select(SNIPPETS), 1usize..12), 1..6).prop_map(
        |edits| {
            let mut text = GOOD.to_owned();
            for (at, op, snippet, len) in edits {
                let mut pos = at.index(text.len() + 1);
                while !text.is_char_boundary(pos) {
                    pos -= 1;
                }
                match op {
                    0 => text.insert_str(pos, snippet),
                    1 => {
                        let mut end = (pos + len).min(text.len());
                        while !text.is_char_boundary(end) {
                            end += 1;
                        }
                        text.replace_range(pos..end, "");
                    }
                    _ => {
                        let start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
                        let end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
                        let line = text[start..end].to_owned();
                        text.insert_str(start, &line);
                    }
                }
            }
            text
        },
    )
}

fn parse(text: &str) -> Result<Config, coupon_host::ConfigError> {
    let dir = std::env::temp_dir().join("coupon-host-config-properties");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.wasm"), b"not really").unwrap();
    let env = |name: &str| match name {
        "SECRET" => Some("config-prop-secret".to_owned()),
        "SESSION" => Some("config-prop-session".to_owned()),
        _ => None,
    };
    Config::parse(text, Path::new("c.toml"), &dir, &env)
}

/// Every error names the file and a line, is one line, and never shows a secret.
fn check_error(text: &str) -> Result<(), TestCaseError> {
    if let Err(error) = parse(text) {
        let shown = error.to_string();
        prop_assert!(
            error.line.is_some(),
            "no line: {shown}\n--- config ---\n{text}"
        );
        prop_assert!(shown.starts_with("c.toml:"), "{shown}");
        prop_assert!(!shown.contains('\n'), "{shown:?}");
        prop_assert!(!shown.contains("config-prop-s"), "a secret in {shown}");
    }
    Ok(())
}

#[test]
fn the_unmutated_config_loads() {
    let config = parse(GOOD).unwrap();
    assert_eq!(config.plugins["taobao"].limits.kv_max_keys, 10);
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_mutated_config_never_panics_and_errors_name_file_and_line(text in mutated_config()) {
        check_error(&text)?;
    }

    #[test]
    fn arbitrary_text_never_panics_and_errors_name_file_and_line(text in "\\PC{0,200}") {
        check_error(&text)?;
    }
}
