//! The settings every TOP adapter reads, the same way: `gateway` and `simplify`, through
//! adapter-kit's [`Lookup`] (`--option KEY=VALUE` overrides the plugin's `settings`).

use crate::{Lookup, TopError, config_error};

/// The settings every TOP adapter has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopConfig {
    /// `gateway`: the TOP gateway URL, e.g. `https://eco.taobao.com/router/rest`. Required.
    pub gateway: String,
    /// `simplify`: ask TOP for the simplified JSON shape. Default false.
    pub simplify: bool,
}

impl TopConfig {
    /// Reads `gateway` (an http(s) URL) and `simplify` (`true` or `false`, any case).
    pub fn resolve(lookup: &Lookup<'_>) -> Result<Self, TopError> {
        let gateway = lookup.get("gateway").ok_or_else(|| {
            config_error(
                "settings.gateway is missing: set it to the TOP gateway URL, e.g. https://eco.taobao.com/router/rest",
            )
        })?;
        if !(gateway.starts_with("https://") || gateway.starts_with("http://")) {
            return Err(config_error(format!(
                "settings.gateway must be an http(s) URL, got {gateway:?}"
            )));
        }
        let simplify = match lookup.get("simplify").map(|s| s.to_ascii_lowercase()) {
            None => false,
            Some(text) if text == "false" => false,
            Some(text) if text == "true" => true,
            Some(text) => {
                return Err(config_error(format!(
                    "settings.simplify must be \"true\" or \"false\", got {text:?}"
                )));
            }
        };
        Ok(Self { gateway, simplify })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapter_kit::test_support::pairs as options;

    fn settings(key: &str) -> Option<String> {
        match key {
            "gateway" => Some("https://eco.taobao.com/router/rest".to_owned()),
            "blank" => Some("  ".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn resolves_gateway_and_simplify() {
        let config = TopConfig::resolve(&Lookup::new(&[], &settings)).unwrap();
        assert_eq!(
            config,
            TopConfig {
                gateway: "https://eco.taobao.com/router/rest".to_owned(),
                simplify: false
            }
        );
        let opts = options(&[("simplify", "TRUE")]);
        assert!(
            TopConfig::resolve(&Lookup::new(&opts, &settings))
                .unwrap()
                .simplify
        );
        let opts = options(&[("simplify", "yes")]);
        let error = TopConfig::resolve(&Lookup::new(&opts, &settings)).unwrap_err();
        assert_eq!(error.code, "config");
        let opts = options(&[("gateway", "ftp://x")]);
        let error = TopConfig::resolve(&Lookup::new(&opts, &settings)).unwrap_err();
        assert!(error.message.contains("http(s) URL"), "{}", error.message);
        let none = |_: &str| None;
        let error = TopConfig::resolve(&Lookup::new(&[], &none)).unwrap_err();
        assert!(error.message.starts_with("settings.gateway is missing"));
    }
}
