//! The library's error type. Messages are one line, lower case, and never contain a secret.

use std::path::PathBuf;

use crate::config::ConfigError;
use crate::types::AdapterError;

/// Everything the embedding API can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// No plugin of that name is loaded.
    #[error("unknown plugin {0:?}")]
    UnknownPlugin(String),

    /// The plugin's component could not be read, compiled or linked.
    #[error("plugin {plugin:?}: cannot load component {}: {reason}", path.display())]
    Load {
        /// The plugin.
        plugin: String,
        /// Its component file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// The component does not match its `sha256` pin.
    #[error("plugin {plugin:?}: component {} has sha256 {actual}, but the config pins {expected}", path.display())]
    Integrity {
        /// The plugin.
        plugin: String,
        /// Its component file.
        path: PathBuf,
        /// The pin in the config.
        expected: String,
        /// The file's digest.
        actual: String,
    },

    /// The request is invalid before any adapter sees it.
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The adapter answered with a classified platform error.
    #[error("plugin {plugin:?}: {error}")]
    Adapter {
        /// The plugin.
        plugin: String,
        /// The classified error.
        error: AdapterError,
    },

    /// The adapter was stopped by the sandbox or crashed.
    #[error("plugin {plugin:?}: {kind}: {message}")]
    Sandbox {
        /// The plugin.
        plugin: String,
        /// Why it was stopped.
        kind: SandboxKill,
        /// Details (the trap, without secrets).
        message: String,
    },

    /// A campaign stopped because its platform refused a whole batch for a reason every later
    /// batch would meet too (credentials, session, the coupon itself, e.g. out of stock).
    /// Nothing of that batch was recorded: fix the cause and run the campaign again to resume.
    #[error(
        "campaign {id} stopped: {error}; {pending} recipients not sent yet — fix the cause and run the same campaign again to resume"
    )]
    CampaignStopped {
        /// The campaign.
        id: String,
        /// What the platform said.
        error: AdapterError,
        /// Recipients not finished.
        pending: u64,
    },

    /// No campaign has this id.
    #[error("no campaign {0:?}")]
    UnknownCampaign(String),

    /// The host's storage failed.
    #[error("storage: {0}")]
    Storage(String),

    /// The host could not start (runtime, cache dir, …).
    #[error("{0}")]
    Runtime(String),

    /// [`Host::shutdown`](crate::Host::shutdown) was called: the host takes no new calls.
    /// Calls already running finish normally.
    #[error("the host is shutting down and takes no new calls")]
    ShuttingDown,
}

impl Error {
    /// A short, stable, kebab-case name for the error's kind, for metrics labels, log fields and
    /// the HTTP API's `error.kind`. An adapter error is named by its [`ErrorClass`]
    /// (`unauthorized`, `transient`, …), so one field says what a caller may do next.
    ///
    /// [`ErrorClass`]: crate::ErrorClass
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Config(_) => "config",
            Error::UnknownPlugin(_) => "unknown-plugin",
            Error::Load { .. } => "load",
            Error::Integrity { .. } => "integrity",
            Error::InvalidRequest(_) => "invalid-request",
            Error::Adapter { error, .. } => error.class.as_str(),
            Error::Sandbox { .. } => "sandbox",
            Error::Storage(_) => "storage",
            Error::Runtime(_) => "runtime",
            Error::ShuttingDown => "shutting-down",
            Error::CampaignStopped { .. } => "campaign-stopped",
            Error::UnknownCampaign(_) => "unknown-campaign",
        }
    }
}

/// Why the sandbox stopped an adapter call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum SandboxKill {
    /// It ran past its wall-clock deadline (`limits.timeout_ms`).
    Deadline,
    /// It asked for more memory than `limits.memory_mib`.
    Memory,
    /// It trapped (panic, unreachable, stack overflow, out-of-bounds access …).
    Trap,
    /// It broke the contract (too many host calls, an oversized answer, …).
    Contract,
}

impl SandboxKill {
    /// The kebab-case name used in JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxKill::Deadline => "deadline",
            SandboxKill::Memory => "memory",
            SandboxKill::Trap => "trap",
            SandboxKill::Contract => "contract",
        }
    }
}

impl std::fmt::Display for SandboxKill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SandboxKill::Deadline => "deadline exceeded",
            SandboxKill::Memory => "memory limit exceeded",
            SandboxKill::Trap => "adapter trapped",
            SandboxKill::Contract => "adapter broke the contract",
        })
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
