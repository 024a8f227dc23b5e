//! Each (plugin, account)'s key-value namespace. The namespace is the host's choice, never the
//! guest's: a guest names keys only.

use async_trait::async_trait;

use super::Scope;

/// Why a kv operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KvError {
    /// The namespace's key quota would be exceeded.
    QuotaExceeded,
    /// Key or value too large.
    TooLarge,
    /// `increment` on a value that is not a decimal integer (or that would overflow).
    NotANumber,
    /// The backend failed.
    Other(String),
}

/// Bounds of one namespace.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KvQuota {
    /// Most live keys.
    pub(crate) max_keys: u64,
    /// Longest key, in bytes.
    pub(crate) max_key_bytes: usize,
    /// Largest value, in bytes.
    pub(crate) max_value_bytes: usize,
}

impl Default for KvQuota {
    fn default() -> Self {
        KvQuota {
            max_keys: 10_000,
            max_key_bytes: 512,
            max_value_bytes: 64 * 1024,
        }
    }
}

impl KvQuota {
    /// Refuses a key or value over the size bounds, before any storage is touched.
    pub(crate) fn check_sizes(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        if key.len() > self.max_key_bytes || value.len() > self.max_value_bytes {
            return Err(KvError::TooLarge);
        }
        Ok(())
    }
}

/// Parses a stored counter (missing counts as 0) and adds `delta`.
pub(crate) fn incremented(stored: Option<&[u8]>, delta: i64) -> Result<i64, KvError> {
    let current = match stored {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .ok_or(KvError::NotANumber)?,
    };
    current.checked_add(delta).ok_or(KvError::NotANumber)
}

/// A plugin's key-value data, per scope. Expired keys are invisible and do not count against
/// the quota.
#[async_trait]
pub(crate) trait Kv: Send + Sync {
    /// A live value.
    async fn kv_get(&self, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>, KvError>;

    /// Stores a value (expiring after `ttl_ms` when given), within `quota`.
    async fn kv_set(
        &self,
        scope: &Scope,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
        quota: &KvQuota,
    ) -> Result<(), KvError>;

    /// Removes a key.
    async fn kv_delete(&self, scope: &Scope, key: &str) -> Result<(), KvError>;

    /// Adds `delta` to a decimal integer value (missing counts as 0) in one atomic step, so
    /// concurrent increments are never lost; returns the new value.
    async fn kv_increment(
        &self,
        scope: &Scope,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> Result<i64, KvError>;
}
