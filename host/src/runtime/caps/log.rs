//! `log`: guest log lines into the host's `tracing`, under the plugin's span, secrets redacted.
//!
//! One adapter call may write at most [`MAX_LINES`] lines and [`MAX_BYTES`] bytes; what comes
//! after is dropped, with one warning that says so, so that a guest cannot flood the host's logs.

use crate::runtime::bindings::latest::coupon::adapter::log::{self, Level};
use crate::runtime::caps::HostState;
use crate::secret::redact_str;

/// Longest guest log line kept; the rest is cut.
const MAX_LINE_BYTES: usize = 4096;
/// Most lines one adapter call may log.
pub(crate) const MAX_LINES: u32 = 1000;
/// Most bytes (after cutting long lines) one adapter call may log.
pub(crate) const MAX_BYTES: usize = 256 * 1024;

impl log::Host for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let plugin = self.plugin.name.as_str();
        if self.log_lines >= MAX_LINES || self.log_bytes >= MAX_BYTES {
            if self.log_lines != u32::MAX {
                // Said once per call; `u32::MAX` marks that it was said.
                self.log_lines = u32::MAX;
                tracing::warn!(
                    target: "coupon_host::guest",
                    plugin,
                    "log truncated: the adapter wrote more than {MAX_LINES} lines or {} KiB in one call; the rest is dropped",
                    MAX_BYTES / 1024
                );
            }
            return Ok(());
        }
        let kept = crate::text::prefix(&message, MAX_LINE_BYTES);
        self.log_lines += 1;
        self.log_bytes += kept.len();
        let line = redact_str(kept, &self.secrets());
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
