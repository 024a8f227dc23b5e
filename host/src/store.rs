//! What the host keeps, behind one async trait per concern, and the registry of the backends
//! that keep it.
//!
//! | trait | what |
//! |---|---|
//! | [`Kv`] | each (plugin, account)'s key-value namespace, quota'd |
//! | [`Tokens`] | platform tokens the host fetched (sealed), and the lock that makes one refresh |
//! | [`Journal`] | the idempotency journal: a send's rows, written before and after each platform call, under a lease |
//! | [`Ledger`] | campaigns: their lines, rejects, batches (a work queue, leased) and workers |
//! | [`Pacing`] | the platform's window of requests per credential, and its bans |
//! | [`Accounts`] | merchants' authorizations per plugin, their secrets sealed |
//! | [`Processes`] | every process's heartbeat, and the reaping of dead ones' leases |
//!
//! A backend implements them all ([`Backend`]) and is chosen by `[storage] backend = "…"` through
//! [`BACKENDS`] (Spin's `MakeKeyValueStore` shape): a new backend is a new folder under `store/`
//! and one line in that list. Every backend passes the same test suite (`store/suite.rs`).
//! Nothing outside a backend's folder names its driver.

pub(crate) mod accounts;
pub(crate) mod journal;
pub(crate) mod kv;
pub(crate) mod ledger;
pub(crate) mod pacing;
pub(crate) mod postgres;
pub(crate) mod processes;
pub(crate) mod sqlite;
#[cfg(test)]
mod suite;
pub(crate) mod tokens;

use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;

pub(crate) use self::accounts::{Accounts, StoredAccount};
pub(crate) use self::journal::{Begin, Detail, Journal, Lease, Row, RowState, RowUpdate, SendKey};
pub(crate) use self::kv::{Kv, KvError, KvQuota};
pub(crate) use self::ledger::{Batch, CampaignRecord, Claim, Ledger, Reject};
pub(crate) use self::pacing::{Admission, Pacing};
pub(crate) use self::processes::{Process, Processes, Reaped};
pub(crate) use self::tokens::{StoredToken, Tokens};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Whose data: one plugin, and the account (merchant) a call is made for. Kv namespaces,
/// idempotency keys, tokens and campaigns are all kept per scope, so one merchant's data never
/// reaches another's calls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Scope {
    pub(crate) plugin: String,
    pub(crate) account: String,
}

/// The account a plugin's own credentials (`auth.session_env`, …) stand for.
pub(crate) const DEFAULT_ACCOUNT: &str = "default";

impl Scope {
    pub(crate) fn new(plugin: impl Into<String>, account: impl Into<String>) -> Scope {
        Scope {
            plugin: plugin.into(),
            account: account.into(),
        }
    }
}

/// Everything a backend keeps.
pub(crate) trait Backend:
    Kv + Tokens + Journal + Ledger + Pacing + Accounts + Processes + Send + Sync
{
}

impl<T: Kv + Tokens + Journal + Ledger + Pacing + Accounts + Processes + Send + Sync> Backend
    for T
{
}

/// An open backend, shared by every part of the host.
pub(crate) type Storage = Arc<dyn Backend>;

/// A backend `[storage] backend = "…"` can name.
pub(crate) struct BackendKind {
    /// The name in the config.
    pub(crate) name: &'static str,
    /// Checks the `[storage]` table's other keys: `Err((key, why))` names the offending key.
    pub(crate) check: fn(&toml::Table) -> std::result::Result<(), (String, String)>,
    /// Opens the backend (creating or migrating its schema).
    pub(crate) open: fn(Options) -> BoxFuture<'static, Result<Storage>>,
}

/// What a backend is opened with: the `[storage]` table as written (checked by
/// [`BackendKind::check`]), relative paths resolved against `base`, and the secrets its `*_env`
/// keys name, read when the config was loaded.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) table: toml::Table,
    pub(crate) base: std::path::PathBuf,
    /// The value of the environment variable each `*_env` key names, by key (`url_env` → the
    /// URL). Read at config time, through the same lookup as the plugins' secrets, so a config
    /// that names a variable not set fails to load; [`Secret`] keeps the values out of `Debug`.
    pub(crate) secrets: std::collections::BTreeMap<String, Secret>,
}

impl Options {
    /// The secret a `*_env` key named.
    pub(crate) fn secret(&self, key: &str) -> Option<&Secret> {
        self.secrets.get(key)
    }

    /// A string option.
    pub(crate) fn string(&self, key: &str) -> Option<&str> {
        self.table.get(key).and_then(|v| v.as_str())
    }

    /// A path option, resolved against the config file's folder.
    pub(crate) fn path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.string(key).map(|p| self.base.join(p))
    }
}

/// Every backend this host can use. A new backend: a folder under `store/` and one line here.
pub(crate) const BACKENDS: &[BackendKind] = &[sqlite::KIND, postgres::KIND];

/// The backend of that name.
pub(crate) fn backend(name: &str) -> Option<&'static BackendKind> {
    BACKENDS.iter().find(|kind| kind.name == name)
}

/// Opens the configured backend.
pub(crate) async fn open(backend_name: &str, options: Options) -> Result<Storage> {
    let kind = backend(backend_name)
        .ok_or_else(|| Error::storage(format!("unknown storage backend {backend_name:?}")))?;
    (kind.open)(options).await
}

/// The folder where files the host writes beside its state belong (inline campaign lists):
/// beside the SQLite file, else under the component cache.
pub(crate) fn data_dir(options: &Options, cache_dir: &Path) -> std::path::PathBuf {
    match options.path("path") {
        Some(file) => file.parent().map(Path::to_path_buf).unwrap_or_default(),
        None => cache_dir.join("data"),
    }
}

pub(crate) use crate::types::now_ms;
