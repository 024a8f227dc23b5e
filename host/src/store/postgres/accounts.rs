//! [`Accounts`] on PostgreSQL: one row per (plugin, account). Settings are JSON; the sealed
//! secrets are `BYTEA` by field in a JSON map of hex, as the SQLite backend keeps them (the host
//! sealed them before they got here). Each call is one statement.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio_postgres::Row;

use super::{Postgres, Wrap, pipeline, prepare};
use crate::error::Result;
use crate::store::{Accounts, StoredAccount, now_ms};

const COLUMNS: &str = "plugin, name, state, reason, settings, sealed, client_key, qps, \
                       expires_at_ms, refresh_expires_at_ms, seller, updated_ms";

const PUT: &str = "INSERT INTO accounts (plugin, name, state, reason, settings, sealed, \
    client_key, qps, expires_at_ms, refresh_expires_at_ms, seller, updated_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
    ON CONFLICT (plugin, name) DO UPDATE SET state = EXCLUDED.state, reason = EXCLUDED.reason,
    settings = EXCLUDED.settings, sealed = EXCLUDED.sealed, client_key = EXCLUDED.client_key,
    qps = EXCLUDED.qps, expires_at_ms = EXCLUDED.expires_at_ms,
    refresh_expires_at_ms = EXCLUDED.refresh_expires_at_ms, seller = EXCLUDED.seller,
    updated_ms = EXCLUDED.updated_ms";

const REMOVE: &str = "DELETE FROM accounts WHERE plugin = $1 AND name = $2 RETURNING 1";

const SET_STATE: &str = "UPDATE accounts SET state = $3, reason = $4, updated_ms = $5
    WHERE plugin = $1 AND name = $2";

const CHECK_GET: &str = "SELECT sealed FROM master_check WHERE id = 1";

const CHECK_PUT: &str = "INSERT INTO master_check (id, sealed) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET sealed = EXCLUDED.sealed";

fn read(row: &Row) -> StoredAccount {
    let settings: String = row.get(4);
    let sealed: String = row.get(5);
    let sealed: BTreeMap<String, String> = serde_json::from_str(&sealed).unwrap_or_default();
    let qps: Option<i64> = row.get(7);
    StoredAccount {
        plugin: row.get(0),
        name: row.get(1),
        state: row.get(2),
        reason: row.get(3),
        settings: serde_json::from_str(&settings).unwrap_or_default(),
        sealed: sealed
            .into_iter()
            .filter_map(|(field, hex)| hex::decode(hex).ok().map(|bytes| (field, bytes)))
            .collect(),
        client_key: row.get(6),
        qps: qps.and_then(|qps| u32::try_from(qps).ok()),
        expires_at_ms: row.get(8),
        refresh_expires_at_ms: row.get(9),
        seller: row.get(10),
        updated_ms: row.get(11),
    }
}

#[async_trait]
impl Accounts for Postgres {
    async fn account_put(&self, account: &StoredAccount) -> Result<()> {
        let sealed: BTreeMap<&String, String> = account
            .sealed
            .iter()
            .map(|(field, bytes)| (field, hex::encode(bytes)))
            .collect();
        let settings = serde_json::to_string(&account.settings).expect("settings serialize");
        let sealed = serde_json::to_string(&sealed).expect("hex serializes");
        let qps = account.qps.map(i64::from);
        let conn = self.conn().await?;
        let [put] = prepare(&conn, [PUT]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot store an account",
            &[(
                &put,
                &[
                    &account.plugin,
                    &account.name,
                    &account.state,
                    &account.reason,
                    &settings,
                    &sealed,
                    &account.client_key,
                    &qps,
                    &account.expires_at_ms,
                    &account.refresh_expires_at_ms,
                    &account.seller,
                    &now_ms(),
                ],
            )],
        )
        .await?;
        Ok(())
    }

    async fn account_get(&self, plugin: &str, name: &str) -> Result<Option<StoredAccount>> {
        let conn = self.conn().await?;
        let query = format!("SELECT {COLUMNS} FROM accounts WHERE plugin = $1 AND name = $2");
        let [get] = prepare(&conn, [query.as_str()]).await?;
        let rows = pipeline(
            &conn,
            Wrap::None,
            "cannot read an account",
            &[(&get, &[&plugin, &name])],
        )
        .await?;
        Ok(rows[0].first().map(read))
    }

    async fn account_list(&self, plugin: Option<&str>) -> Result<Vec<StoredAccount>> {
        let conn = self.conn().await?;
        let query = format!(
            "SELECT {COLUMNS} FROM accounts WHERE $1::TEXT IS NULL OR plugin = $1
             ORDER BY plugin, name"
        );
        let [list] = prepare(&conn, [query.as_str()]).await?;
        let rows = pipeline(
            &conn,
            Wrap::None,
            "cannot list accounts",
            &[(&list, &[&plugin])],
        )
        .await?;
        Ok(rows[0].iter().map(read).collect())
    }

    async fn account_remove(&self, plugin: &str, name: &str) -> Result<bool> {
        let conn = self.conn().await?;
        let [remove] = prepare(&conn, [REMOVE]).await?;
        let rows = pipeline(
            &conn,
            Wrap::None,
            "cannot remove an account",
            &[(&remove, &[&plugin, &name])],
        )
        .await?;
        Ok(!rows[0].is_empty())
    }

    async fn account_set_state(
        &self,
        plugin: &str,
        name: &str,
        state: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        let conn = self.conn().await?;
        let [set] = prepare(&conn, [SET_STATE]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot change an account's state",
            &[(&set, &[&plugin, &name, &state, &reason, &now_ms()])],
        )
        .await?;
        Ok(())
    }

    async fn master_check_get(&self) -> Result<Option<Vec<u8>>> {
        let conn = self.conn().await?;
        let [get] = prepare(&conn, [CHECK_GET]).await?;
        let rows = pipeline(
            &conn,
            Wrap::None,
            "cannot read the master key check",
            &[(&get, &[])],
        )
        .await?;
        Ok(rows[0].first().map(|row| row.get(0)))
    }

    async fn master_check_put(&self, sealed: &[u8]) -> Result<()> {
        let conn = self.conn().await?;
        let [put] = prepare(&conn, [CHECK_PUT]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot store the master key check",
            &[(&put, &[&sealed])],
        )
        .await?;
        Ok(())
    }
}
