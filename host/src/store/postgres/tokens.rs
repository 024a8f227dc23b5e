//! [`Tokens`] on PostgreSQL: one row per (scope, credential), holding the sealed token and the
//! refresh lock. Each call is one statement; the lock is taken by one upsert whose condition
//! runs under the row's lock, so two hosts never both take it.

use async_trait::async_trait;

use super::{Postgres, Wrap, pipeline, prepare};
use crate::error::Result;
use crate::store::{Scope, StoredToken, Tokens, now_ms};

const GET: &str = "SELECT sealed, refresh_at_ms FROM tokens
    WHERE plugin = $1 AND account = $2 AND credential = $3 AND sealed IS NOT NULL";

const PUT: &str = "INSERT INTO tokens (plugin, account, credential, sealed, refresh_at_ms)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (plugin, account, credential)
    DO UPDATE SET sealed = EXCLUDED.sealed, refresh_at_ms = EXCLUDED.refresh_at_ms";

/// Creates the row, lock taken, if missing; else takes the lock only if it is free,
/// expired (at `$6`) or already `$4`'s: a row back when taken.
const LOCK: &str =
    "INSERT INTO tokens AS t (plugin, account, credential, lock_holder, lock_until_ms)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (plugin, account, credential)
    DO UPDATE SET lock_holder = EXCLUDED.lock_holder, lock_until_ms = EXCLUDED.lock_until_ms
    WHERE t.lock_holder IS NULL OR t.lock_holder = EXCLUDED.lock_holder OR t.lock_until_ms <= $6
    RETURNING 1";

const UNLOCK: &str = "UPDATE tokens SET lock_holder = NULL, lock_until_ms = 0
    WHERE plugin = $1 AND account = $2 AND credential = $3 AND lock_holder = $4";

#[async_trait]
impl Tokens for Postgres {
    async fn token_get(&self, scope: &Scope, credential: &str) -> Result<Option<StoredToken>> {
        let conn = self.conn().await?;
        let [get] = prepare(&conn, [GET]).await?;
        let rows = pipeline(
            &conn,
            Wrap::None,
            "cannot read a cached token",
            &[(&get, &[&scope.plugin, &scope.account, &credential])],
        )
        .await?;
        Ok(rows[0].first().map(|row| StoredToken {
            sealed: row.get(0),
            refresh_at_ms: row.get(1),
        }))
    }

    async fn token_put(&self, scope: &Scope, credential: &str, token: &StoredToken) -> Result<()> {
        let conn = self.conn().await?;
        let [put] = prepare(&conn, [PUT]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot cache a token",
            &[(
                &put,
                &[
                    &scope.plugin,
                    &scope.account,
                    &credential,
                    &token.sealed,
                    &token.refresh_at_ms,
                ],
            )],
        )
        .await?;
        Ok(())
    }

    async fn token_lock(
        &self,
        scope: &Scope,
        credential: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool> {
        let conn = self.conn().await?;
        let [lock] = prepare(&conn, [LOCK]).await?;
        let rows = pipeline(
            &conn,
            Wrap::None,
            "cannot take the token lock",
            &[(
                &lock,
                &[
                    &scope.plugin,
                    &scope.account,
                    &credential,
                    &holder,
                    &until_ms,
                    &now_ms(),
                ],
            )],
        )
        .await?;
        Ok(!rows[0].is_empty())
    }

    async fn token_unlock(&self, scope: &Scope, credential: &str, holder: &str) -> Result<()> {
        let conn = self.conn().await?;
        let [unlock] = prepare(&conn, [UNLOCK]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot release the token lock",
            &[(
                &unlock,
                &[&scope.plugin, &scope.account, &credential, &holder],
            )],
        )
        .await?;
        Ok(())
    }
}
