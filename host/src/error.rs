//! The library's error type. Messages are one line, lower case, and never contain a secret.

use std::path::PathBuf;

use std::fmt;

use crate::types::AdapterError;

/// A config that could not be loaded: where, which key, and why. Displays as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The config file (or `<inline>`).
    pub file: PathBuf,
    /// 1-based line of the offending key, when known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `plugins.taobao.limits.timeout_ms`; empty for whole-file errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// `file:line: key`, without the message.
    pub(crate) fn place(&self) -> String {
        let mut place = self.file.display().to_string();
        if let Some(line) = self.line {
            place.push_str(&format!(":{line}"));
        }
        if !self.key.is_empty() {
            place.push_str(&format!(": {}", self.key));
        }
        place
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place(), self.message)
    }
}

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
    #[error("{}plugin {plugin:?}: component {} has sha256 {actual}, but the config pins {expected}", pinned_at.as_ref().map(|at| format!("{at}: ")).unwrap_or_default(), path.display())]
    Integrity {
        /// The plugin.
        plugin: String,
        /// Its component file.
        path: PathBuf,
        /// The pin in the config.
        expected: String,
        /// The file's digest.
        actual: String,
        /// Where the pin is written, `file:line: plugins.NAME.sha256`, when known.
        pinned_at: Option<String>,
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
    #[error("storage: {message}")]
    Storage {
        /// What the host was doing, and what went wrong.
        message: String,
        /// The backend's own error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// Another process is sending under this idempotency key now (it holds the send's lease):
    /// send again later with the same key to get its outcome.
    #[error(
        "idempotency key {key:?} is being sent by another process; retry later with the same key"
    )]
    InProgress {
        /// The key.
        key: String,
    },

    /// This process lost a send's lease to another process (it stalled past the lease, and the
    /// other took the send over): it stops, and the other finishes the send.
    #[error(
        "lost the lease on idempotency key {key:?} to another process, which finishes the send"
    )]
    LeaseLost {
        /// The key.
        key: String,
    },

    /// The host failed to run something (start the engine, spawn a task, read a file, …).
    #[error("{message}")]
    Runtime {
        /// What went wrong.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

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
            Error::Storage { .. } => "storage",
            Error::InProgress { .. } => "in-progress",
            Error::LeaseLost { .. } => "lease-lost",
            Error::Runtime { .. } => "runtime",
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

/// A source error of any kind, kept for [`std::error::Error::source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl Error {
    /// A storage failure with no underlying error.
    pub(crate) fn storage(message: impl Into<String>) -> Error {
        Error::Storage {
            message: message.into(),
            source: None,
        }
    }

    /// A storage failure caused by `source`. The message says what the host was doing; the
    /// source says what went wrong ([`full_message`] joins both on one line).
    pub(crate) fn storage_from(doing: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Storage {
            message: doing.into(),
            source: Some(source.into()),
        }
    }

    /// A runtime failure with no underlying error.
    pub(crate) fn runtime(message: impl Into<String>) -> Error {
        Error::Runtime {
            message: message.into(),
            source: None,
        }
    }

    /// A runtime failure caused by `source` (see [`Error::storage_from`]).
    pub(crate) fn runtime_from(doing: impl Into<String>, source: impl Into<BoxError>) -> Error {
        Error::Runtime {
            message: doing.into(),
            source: Some(source.into()),
        }
    }
}

/// An error and its sources on one line, `outer: inner: innermost`, for people (logs, the HTTP
/// API's messages); the CLI prints the same chain.
pub fn full_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
