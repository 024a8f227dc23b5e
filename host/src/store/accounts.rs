//! Accounts: one merchant's authorization on one plugin, kept by the host. Secrets are stored
//! sealed (the host seals them with its master key before they reach a backend, bound to plugin,
//! account and field); settings and state are plain.

use std::collections::BTreeMap;

use async_trait::async_trait;

use crate::error::Result;

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct StoredAccount {
    pub(crate) plugin: String,
    pub(crate) name: String,
    /// `active` or `needs-reauth`.
    pub(crate) state: String,
    /// Why it needs re-authorization, for people.
    pub(crate) reason: Option<String>,
    /// Settings that override the plugin's for this merchant.
    pub(crate) settings: BTreeMap<String, String>,
    /// Sealed secrets by field (`session`, `refresh_token`, `client_secret`).
    pub(crate) sealed: BTreeMap<String, Vec<u8>>,
    /// The merchant's own client key (Douyin), not secret.
    pub(crate) client_key: Option<String>,
    /// Requests per second for this account alone, under the app's own limit.
    pub(crate) qps: Option<u32>,
    /// When the session expires, unix ms (unknown: `None`).
    pub(crate) expires_at_ms: Option<i64>,
    /// When the refresh token expires, unix ms (`None`: it cannot be refreshed).
    pub(crate) refresh_expires_at_ms: Option<i64>,
    /// The seller the platform named when the account was authorized.
    pub(crate) seller: Option<String>,
    pub(crate) updated_ms: i64,
}

/// The kept accounts, and the check value that tells whether a master key is the right one.
#[async_trait]
pub(crate) trait Accounts: Send + Sync {
    /// Creates or replaces an account.
    async fn account_put(&self, account: &StoredAccount) -> Result<()>;

    /// One account.
    async fn account_get(&self, plugin: &str, name: &str) -> Result<Option<StoredAccount>>;

    /// The accounts of a plugin (of every plugin when `None`), by plugin and name.
    async fn account_list(&self, plugin: Option<&str>) -> Result<Vec<StoredAccount>>;

    /// Removes an account; `false` when there was none.
    async fn account_remove(&self, plugin: &str, name: &str) -> Result<bool>;

    /// Marks an account `active` or `needs-reauth` (with why).
    async fn account_set_state(
        &self,
        plugin: &str,
        name: &str,
        state: &str,
        reason: Option<&str>,
    ) -> Result<()>;

    /// The master key's check value (a known text sealed with it), if one was stored.
    async fn master_check_get(&self) -> Result<Option<Vec<u8>>>;

    /// Stores the master key's check value.
    async fn master_check_put(&self, sealed: &[u8]) -> Result<()>;
}
