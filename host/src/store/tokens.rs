//! Platform tokens the host fetched (the Douyin client_token), shared by every process on the
//! backend, and the lock that lets one of them refresh a token for all.
//!
//! A token is stored sealed (see `auth::seal`): a backend never holds one in clear.

use async_trait::async_trait;

use super::Scope;
use crate::error::Result;

/// A sealed token and when to refresh it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredToken {
    /// The token, sealed; only the scheme that fetched it can open it.
    pub(crate) sealed: Vec<u8>,
    /// When to refresh it, unix ms.
    pub(crate) refresh_at_ms: i64,
}

/// Cached platform tokens per (scope, credential).
#[async_trait]
pub(crate) trait Tokens: Send + Sync {
    /// The stored token, if any.
    async fn token_get(&self, scope: &Scope, credential: &str) -> Result<Option<StoredToken>>;

    /// Stores a token (replacing the one before).
    async fn token_put(&self, scope: &Scope, credential: &str, token: &StoredToken) -> Result<()>;

    /// Takes the refresh lock of (scope, credential) for `holder` until `until_ms`, if no other
    /// holder has it now; `true` when taken (or already held by `holder`, whose lease is then
    /// extended).
    async fn token_lock(
        &self,
        scope: &Scope,
        credential: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool>;

    /// Releases the refresh lock, if `holder` still has it.
    async fn token_unlock(&self, scope: &Scope, credential: &str, holder: &str) -> Result<()>;
}
