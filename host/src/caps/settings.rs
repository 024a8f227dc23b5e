//! `settings`: the plugin's non-secret `settings` table from the config.

use crate::caps::HostState;
use crate::runtime::bindings::latest::coupon::adapter::settings;

impl settings::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.plugin.config.settings.get(&key).cloned())
    }
}
