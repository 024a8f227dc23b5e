//! `settings`: the plugin's non-secret `settings` table from the config, with the call's
//! account's settings over it.

use crate::runtime::bindings::latest::coupon::adapter::settings;
use crate::runtime::caps::HostState;

impl settings::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self
            .account
            .settings
            .get(&key)
            .or_else(|| self.plugin.config.settings.get(&key))
            .cloned())
    }
}
