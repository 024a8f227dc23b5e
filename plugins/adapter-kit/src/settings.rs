//! Plugin settings as every adapter reads them: `--option KEY=VALUE` overrides the plugin's
//! `settings`, the last option wins, and a blank value counts as unset.

use crate::{AdapterError, ErrorClass};

/// Where an adapter reads its settings from: the request's options, then the plugin's settings.
#[derive(Clone, Copy)]
pub struct Lookup<'a> {
    options: &'a [(String, String)],
    settings: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Lookup<'a> {
    /// `options` are the request's overrides; `settings` is the `settings.get` import.
    pub fn new(
        options: &'a [(String, String)],
        settings: &'a dyn Fn(&str) -> Option<String>,
    ) -> Self {
        Self { options, settings }
    }

    /// The value of `key`, trimmed: the last option with that key, else the setting. A blank
    /// value is `None`, so `--option KEY=` clears a setting.
    ///
    /// ```
    /// let options = vec![("channel".to_owned(), " app ".to_owned())];
    /// let settings = |key: &str| (key == "biz_code").then(|| "YXX".to_owned());
    /// let lookup = adapter_kit::Lookup::new(&options, &settings);
    /// assert_eq!(lookup.get("channel").as_deref(), Some("app"));
    /// assert_eq!(lookup.get("biz_code").as_deref(), Some("YXX"));
    /// assert_eq!(lookup.get("extra"), None);
    /// ```
    pub fn get(&self, key: &str) -> Option<String> {
        let option = self.options.iter().rev().find(|(name, _)| name == key);
        let value = option
            .map(|(_, value)| value.clone())
            .or_else(|| (self.settings)(key))?;
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// The value of `key`, or a `config` error saying what to set it to (`what`, e.g. "the
    /// business code, e.g. YXX").
    pub fn required(&self, key: &str, what: &str) -> Result<String, AdapterError> {
        self.get(key)
            .ok_or_else(|| config_error(format!("settings.{key} is missing: set it to {what}")))
    }
}

/// A wrong or missing setting: `invalid-request` with code `config`.
pub fn config_error(message: impl Into<String>) -> AdapterError {
    AdapterError::new(ErrorClass::InvalidRequest, "config", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::pairs as options;

    fn settings(key: &str) -> Option<String> {
        match key {
            "gateway" => Some("https://eco.taobao.com/router/rest".to_owned()),
            "blank" => Some("  ".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn the_last_option_wins_over_the_setting() {
        let opts = options(&[("gateway", "http://a"), ("gateway", " http://b ")]);
        let lookup = Lookup::new(&opts, &settings);
        assert_eq!(lookup.get("gateway").as_deref(), Some("http://b"));
        assert_eq!(lookup.get("blank"), None);
        let opts = options(&[("gateway", "")]);
        assert_eq!(
            Lookup::new(&opts, &settings).get("gateway"),
            None,
            "a blank option clears"
        );
    }

    #[test]
    fn required_names_the_setting() {
        let lookup = Lookup::new(&[], &settings);
        let error = lookup
            .required("channel", "the channel, e.g. app")
            .unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str()),
            (ErrorClass::InvalidRequest, "config")
        );
        assert_eq!(
            error.message,
            "settings.channel is missing: set it to the channel, e.g. app"
        );
    }
}
