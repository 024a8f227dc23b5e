//! [`Kv`] on PostgreSQL. A write takes its namespace's advisory lock first, so the quota count
//! and the write it allows are not interleaved with another write of the namespace.

use async_trait::async_trait;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{LOCK, LockClass, Postgres, Tx, Wrap, pipeline, prepare};
use crate::error::full_message;
use crate::store::kv::incremented;
use crate::store::{Kv, KvError, KvQuota, Scope, now_ms};

const GET: &str = "SELECT value FROM kv WHERE plugin = $1 AND account = $2 AND key = $3
    AND (expires_at_ms IS NULL OR expires_at_ms > $4)";

/// Drops the namespace's expired keys: they do not count against the quota.
const PRUNE: &str = "DELETE FROM kv WHERE plugin = $1 AND account = $2
    AND expires_at_ms IS NOT NULL AND expires_at_ms <= $3";

/// Writes a key if it exists already or the namespace has fewer than `$6` keys: a row back when
/// written, none when the quota refused it.
const PUT: &str = "INSERT INTO kv (plugin, account, key, value, expires_at_ms)
    SELECT $1::text, $2::text, $3::text, $4::bytea, $5::int8
    WHERE EXISTS (SELECT 1 FROM kv WHERE plugin = $1 AND account = $2 AND key = $3)
       OR (SELECT COUNT(*) FROM kv WHERE plugin = $1 AND account = $2) < $6::int8
    ON CONFLICT (plugin, account, key)
    DO UPDATE SET value = EXCLUDED.value, expires_at_ms = EXCLUDED.expires_at_ms
    RETURNING 1";

const DELETE: &str = "DELETE FROM kv WHERE plugin = $1 AND account = $2 AND key = $3";

fn other(e: &crate::error::Error) -> KvError {
    KvError::Other(full_message(e))
}

impl Postgres {
    fn namespace_lock(&self, scope: &Scope) -> String {
        self.lock_key(&[&scope.plugin, &scope.account])
    }
}

/// A write's parameters: the scope and key, the value, when it expires, the most keys.
struct Put<'a> {
    scope: &'a Scope,
    key: &'a str,
    value: &'a [u8],
    expires: Option<i64>,
    max_keys: i64,
    now: i64,
}

impl<'a> Put<'a> {
    fn new(
        scope: &'a Scope,
        key: &'a str,
        value: &'a [u8],
        ttl_ms: Option<u64>,
        quota: &KvQuota,
    ) -> Put<'a> {
        let now = now_ms();
        Put {
            scope,
            key,
            value,
            expires: ttl_ms.map(|ttl| now.saturating_add(ttl.min(i64::MAX as u64) as i64)),
            max_keys: quota.max_keys.min(i64::MAX as u64) as i64,
            now,
        }
    }

    fn prune_params(&self) -> [&(dyn ToSql + Sync); 3] {
        [&self.scope.plugin, &self.scope.account, &self.now]
    }

    fn put_params(&self) -> [&(dyn ToSql + Sync); 6] {
        [
            &self.scope.plugin,
            &self.scope.account,
            &self.key,
            &self.value,
            &self.expires,
            &self.max_keys,
        ]
    }
}

/// What [`PUT`] answered: a row when written, none when the quota refused it.
fn written(rows: &[Row]) -> Result<(), KvError> {
    if rows.is_empty() {
        Err(KvError::QuotaExceeded)
    } else {
        Ok(())
    }
}

#[async_trait]
impl Kv for Postgres {
    async fn kv_get(&self, scope: &Scope, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let conn = self.conn().await.map_err(|e| other(&e))?;
        let [get] = prepare(&conn, [GET]).await.map_err(|e| other(&e))?;
        let rows = pipeline(
            &conn,
            Wrap::None,
            "cannot read a kv key",
            &[(&get, &[&scope.plugin, &scope.account, &key, &now_ms()])],
        )
        .await
        .map_err(|e| other(&e))?;
        Ok(rows[0].first().map(|row| row.get(0)))
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
        let conn = self.conn().await.map_err(|e| other(&e))?;
        let [lock, prune, put] = prepare(&conn, [LOCK, PRUNE, PUT])
            .await
            .map_err(|e| other(&e))?;
        let namespace = self.namespace_lock(scope);
        let write = Put::new(scope, key, value, ttl_ms, quota);
        let rows = pipeline(
            &conn,
            Wrap::Atomic,
            "cannot write a kv key",
            &[
                (&lock, &[&(LockClass::KvNamespace as i32), &namespace]),
                (&prune, &write.prune_params()),
                (&put, &write.put_params()),
            ],
        )
        .await
        .map_err(|e| other(&e))?;
        written(&rows[2])
    }

    async fn kv_delete(&self, scope: &Scope, key: &str) -> Result<(), KvError> {
        let conn = self.conn().await.map_err(|e| other(&e))?;
        let [delete] = prepare(&conn, [DELETE]).await.map_err(|e| other(&e))?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot delete a kv key",
            &[(&delete, &[&scope.plugin, &scope.account, &key])],
        )
        .await
        .map_err(|e| other(&e))?;
        Ok(())
    }

    async fn kv_increment(
        &self,
        scope: &Scope,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> Result<i64, KvError> {
        let conn = self.conn().await.map_err(|e| other(&e))?;
        let [lock, get, prune, put] = prepare(&conn, [LOCK, GET, PRUNE, PUT])
            .await
            .map_err(|e| other(&e))?;
        let namespace = self.namespace_lock(scope);
        // The read and the write are one transaction under the namespace's lock: no increment
        // is lost. Two round trips: the new value is computed here, as SQLite's backend does.
        let (tx, rows) = Tx::begin(
            conn,
            "cannot read a kv counter",
            &[
                (&lock, &[&(LockClass::KvNamespace as i32), &namespace]),
                (&get, &[&scope.plugin, &scope.account, &key, &now_ms()]),
            ],
        )
        .await
        .map_err(|e| other(&e))?;
        let stored: Option<Vec<u8>> = rows[1].first().map(|row| row.get(0));
        let next = incremented(stored.as_deref(), delta).and_then(|next| {
            quota
                .check_sizes(key, next.to_string().as_bytes())
                .map(|()| next)
        });
        let next = match next {
            Ok(next) => next,
            Err(refused) => {
                tx.rollback().await.map_err(|e| other(&e))?;
                return Err(refused);
            }
        };
        let text = next.to_string();
        let write = Put::new(scope, key, text.as_bytes(), None, quota);
        let rows = tx
            .commit(
                "cannot write a kv counter",
                &[(&prune, &write.prune_params()), (&put, &write.put_params())],
            )
            .await
            .map_err(|e| other(&e))?;
        written(&rows[1]).map(|()| next)
    }
}
