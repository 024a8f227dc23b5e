//! [`Tokens`] on SQLite.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Context, Sqlite};
use crate::error::Result;
use crate::store::{Scope, StoredToken, Tokens};

#[async_trait]
impl Tokens for Sqlite {
    async fn token_get(&self, scope: &Scope, credential: &str) -> Result<Option<StoredToken>> {
        let (scope, credential) = (scope.clone(), credential.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(
                "SELECT sealed, refresh_at_ms FROM tokens
                 WHERE plugin = ?1 AND account = ?2 AND credential = ?3 AND sealed IS NOT NULL",
            )
            .and_then(|mut select| {
                select
                    .query_row(params![scope.plugin, scope.account, credential], |row| {
                        Ok(StoredToken {
                            sealed: row.get(0)?,
                            refresh_at_ms: row.get(1)?,
                        })
                    })
                    .optional()
            })
            .doing("cannot read a cached token")
        })
        .await
    }

    async fn token_put(&self, scope: &Scope, credential: &str, token: &StoredToken) -> Result<()> {
        let (scope, credential, token) = (scope.clone(), credential.to_owned(), token.clone());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO tokens (plugin, account, credential, sealed, refresh_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (plugin, account, credential)
                 DO UPDATE SET sealed = ?4, refresh_at_ms = ?5",
            )
            .and_then(|mut upsert| {
                upsert.execute(params![
                    scope.plugin,
                    scope.account,
                    credential,
                    token.sealed,
                    token.refresh_at_ms
                ])
            })
            .map(drop)
            .doing("cannot cache a token")
        })
        .await
    }

    async fn token_lock(
        &self,
        scope: &Scope,
        credential: &str,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool> {
        let (scope, credential, holder) = (scope.clone(), credential.to_owned(), holder.to_owned());
        self.write(move |conn| {
            // One statement: the row is created unlocked if missing, then taken only if free,
            // expired, or already ours.
            conn.prepare_cached(
                "INSERT INTO tokens (plugin, account, credential) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut insert| insert.execute(params![scope.plugin, scope.account, credential]))
            .doing("cannot take the token lock")?;
            let taken = conn
                .prepare_cached(
                    "UPDATE tokens SET lock_holder = ?4, lock_until_ms = ?5
                     WHERE plugin = ?1 AND account = ?2 AND credential = ?3
                     AND (lock_holder IS NULL OR lock_holder = ?4 OR lock_until_ms <= ?6)",
                )
                .and_then(|mut update| {
                    update.execute(params![
                        scope.plugin,
                        scope.account,
                        credential,
                        holder,
                        until_ms,
                        crate::store::now_ms()
                    ])
                })
                .doing("cannot take the token lock")?;
            Ok(taken == 1)
        })
        .await
    }

    async fn token_unlock(&self, scope: &Scope, credential: &str, holder: &str) -> Result<()> {
        let (scope, credential, holder) = (scope.clone(), credential.to_owned(), holder.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE tokens SET lock_holder = NULL, lock_until_ms = 0
                 WHERE plugin = ?1 AND account = ?2 AND credential = ?3 AND lock_holder = ?4",
            )
            .and_then(|mut update| {
                update.execute(params![scope.plugin, scope.account, credential, holder])
            })
            .map(drop)
            .doing("cannot release the token lock")
        })
        .await
    }
}
