//! Property tests over the public surface: the config parser never panics and always says where
//! it failed, and the host's TOP signer agrees with the simulator's independent verifier.

use std::collections::BTreeMap;
use std::path::Path;

use coupon_host::Config;
use coupon_host::signing::top::{SignMethod, sign};
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

/// Parameter names: TOP's usual ones, anything printable, blanks by Java's or Rust's idea of
/// whitespace (they differ), and characters on both sides of the UTF-16 surrogate range (UTF-16
/// and UTF-8 order them differently).
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,10}",
        "\\PC{0,4}",
        "[ \t\n\u{0b}\u{0c}\u{1c}\u{1f}\u{85}\u{a0}\u{2007}\u{202f}\u{3000}]{0,3}",
        "[a-z]{0,2}[\u{e000}-\u{ffff}\u{10000}-\u{10ffff}]{1,2}",
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![name(), "\\PC{0,24}", "[张三李四,]{0,6}", any::<String>()]
}

proptest! {
    #![proptest_config(cases(256))]

    /// Whatever the parameters, the gateway accepts what the host signs, and only with its secret.
    #[test]
    fn the_top_signer_agrees_with_the_simulated_gateway(
        params in prop::collection::btree_map(name(), value(), 0..10),
        secret in "\\PC{0,16}",
        other_secret in "\\PC{0,16}",
        method in select(&[SignMethod::Md5, SignMethod::Hmac, SignMethod::HmacSha256][..]),
    ) {
        let signature = sign(&params, &secret, method);
        let received: Vec<(String, String)> = params.clone().into_iter().collect();
        prop_assert!(
            coupon_sim::top_signature_valid(&received, &secret, method.as_str(), &signature),
            "{method:?} over {params:?}"
        );
        if other_secret != secret {
            prop_assert!(!coupon_sim::top_signature_valid(
                &received,
                &other_secret,
                method.as_str(),
                &signature
            ));
        }
    }
}

/// Found by the property above: Java counts U+001C..U+001F as whitespace and Rust does not, so
/// a value of U+001F was signed by the host and skipped by the gateway.
#[test]
fn a_separator_character_is_blank_as_java_sees_it() {
    let params = BTreeMap::from([
        ("method".to_owned(), "m".to_owned()),
        ("x".to_owned(), "\u{1f}".to_owned()),
    ]);
    let received: Vec<_> = params.clone().into_iter().collect();
    let signature = sign(&params, "s", SignMethod::Md5);
    assert!(coupon_sim::top_signature_valid(
        &received, "s", "md5", &signature
    ));
}

/// Found by the property above: names are ordered as Java orders strings, by UTF-16 code units.
#[test]
fn names_sort_by_utf16_code_units() {
    let params = BTreeMap::from([
        ("k\u{ff5e}".to_owned(), "2".to_owned()),
        ("k\u{1f600}".to_owned(), "1".to_owned()),
    ]);
    let received: Vec<_> = params.clone().into_iter().collect();
    let signature = sign(&params, "s", SignMethod::Hmac);
    assert!(coupon_sim::top_signature_valid(
        &received, "s", "hmac", &signature
    ));
}
