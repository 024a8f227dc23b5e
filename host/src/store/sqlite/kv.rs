//! [`Kv`] on SQLite: reads on a read connection, writes through the group-commit writer.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::Sqlite;
use crate::store::kv::incremented;
use crate::store::{Kv, KvError, KvQuota, Scope, now_ms};

fn other(e: impl std::fmt::Display) -> KvError {
    KvError::Other(e.to_string())
}

fn live_value(conn: &Connection, scope: &Scope, key: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached(
        "SELECT value FROM kv WHERE plugin = ?1 AND account = ?2 AND key = ?3
         AND (expires_at_ms IS NULL OR expires_at_ms > ?4)",
    )?
    .query_row(params![scope.plugin, scope.account, key, now_ms()], |row| {
        row.get(0)
    })
    .optional()
}

/// Writes one key inside the open transaction, within `quota` (expired keys do not count).
fn write_kv(
    conn: &Connection,
    scope: &Scope,
    key: &str,
    value: &[u8],
    ttl_ms: Option<u64>,
    quota: &KvQuota,
) -> rusqlite::Result<Result<(), KvError>> {
    if let Err(refused) = quota.check_sizes(key, value) {
        return Ok(Err(refused));
    }
    let now = now_ms();
    let expires = ttl_ms.map(|ttl| now.saturating_add(ttl.min(i64::MAX as u64) as i64));
    conn.prepare_cached(
        "DELETE FROM kv WHERE plugin = ?1 AND account = ?2
         AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?3",
    )?
    .execute(params![scope.plugin, scope.account, now])?;
    let exists: bool = conn
        .prepare_cached(
            "SELECT EXISTS(SELECT 1 FROM kv WHERE plugin = ?1 AND account = ?2 AND key = ?3)",
        )?
        .query_row(params![scope.plugin, scope.account, key], |row| row.get(0))?;
    if !exists {
        let count: u64 = conn
            .prepare_cached("SELECT COUNT(*) FROM kv WHERE plugin = ?1 AND account = ?2")?
            .query_row(params![scope.plugin, scope.account], |row| row.get(0))?;
        if count >= quota.max_keys {
            return Ok(Err(KvError::QuotaExceeded));
        }
    }
    conn.prepare_cached(
        "INSERT INTO kv (plugin, account, key, value, expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (plugin, account, key) DO UPDATE SET value = ?4, expires_at_ms = ?5",
    )?
    .execute(params![scope.plugin, scope.account, key, value, expires])?;
    Ok(Ok(()))
}

impl Sqlite {
    /// Runs a kv write through the writer; a refusal or a failure comes back as a [`KvError`].
    async fn kv_write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<Result<T, KvError>> + Send + 'static,
    ) -> Result<T, KvError> {
        match self
            .write(move |conn| {
                work(conn).map_err(|e| crate::error::Error::storage_from("kv write", e))
            })
            .await
        {
            Ok(result) => result,
            Err(e) => Err(other(crate::error::full_message(&e))),
        }
    }
}

#[async_trait]
impl Kv for Sqlite {
    async fn kv_get(&self, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.read(move |conn| {
            live_value(conn, &scope, &key)
                .map_err(|e| crate::error::Error::storage_from("kv read", e))
        })
        .await
        .map_err(|e| other(crate::error::full_message(&e)))
    }

    async fn kv_set(
        &self,
        scope: &Scope,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        quota.check_sizes(key, value)?;
        let (scope, key, value, quota) = (scope.clone(), key.to_owned(), value.to_vec(), *quota);
        self.kv_write(move |conn| write_kv(conn, &scope, &key, &value, ttl_ms, &quota))
            .await
    }

    async fn kv_delete(&self, scope: &Scope, key: &str) -> Result<(), KvError> {
        let (scope, key) = (scope.clone(), key.to_owned());
        self.kv_write(move |conn| {
            conn.prepare_cached("DELETE FROM kv WHERE plugin = ?1 AND account = ?2 AND key = ?3")?
                .execute(params![scope.plugin, scope.account, key])?;
            Ok(Ok(()))
        })
        .await
    }

    async fn kv_increment(
        &self,
        scope: &Scope,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> Result<i64, KvError> {
        let (scope, key, quota) = (scope.clone(), key.to_owned(), *quota);
        // The read and the write are one savepoint of one transaction: no increment is lost.
        self.kv_write(move |conn| {
            let stored = live_value(conn, &scope, &key)?;
            let next = match incremented(stored.as_deref(), delta) {
                Ok(next) => next,
                Err(refused) => return Ok(Err(refused)),
            };
            Ok(write_kv(
                conn,
                &scope,
                &key,
                next.to_string().as_bytes(),
                None,
                &quota,
            )?
            .map(|()| next))
        })
        .await
    }
}
