//! `log`: guest log lines into the host's `tracing`, under the plugin's span, secrets redacted.

use crate::caps::HostState;
use crate::runtime::bindings::latest::coupon::adapter::log::{self, Level};
use crate::secret::redact_str;

/// Longest guest log line kept; the rest is cut.
const MAX_LINE_BYTES: usize = 4096;

impl log::Host for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut end = message.len().min(MAX_LINE_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let line = redact_str(&message[..end], &self.plugin.secrets());
        let plugin = self.plugin.name.as_str();
        match level {
            Level::Trace => tracing::trace!(target: "coupon_host::guest", plugin, "{line}"),
            Level::Debug => tracing::debug!(target: "coupon_host::guest", plugin, "{line}"),
            Level::Info => tracing::info!(target: "coupon_host::guest", plugin, "{line}"),
            Level::Warn => tracing::warn!(target: "coupon_host::guest", plugin, "{line}"),
            Level::Error => tracing::error!(target: "coupon_host::guest", plugin, "{line}"),
        }
        Ok(())
    }
}
