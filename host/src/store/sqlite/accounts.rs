//! [`Accounts`] on SQLite.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Context, Sqlite};
use crate::error::Result;
use crate::store::{Accounts, StoredAccount, now_ms};

const COLUMNS: &str = "plugin, name, state, reason, settings, sealed, client_key, qps, \
                       expires_at_ms, refresh_expires_at_ms, seller, updated_ms";

fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAccount> {
    let settings: String = row.get(4)?;
    let sealed: String = row.get(5)?;
    let sealed: BTreeMap<String, String> = serde_json::from_str(&sealed).unwrap_or_default();
    Ok(StoredAccount {
        plugin: row.get(0)?,
        name: row.get(1)?,
        state: row.get(2)?,
        reason: row.get(3)?,
        settings: serde_json::from_str(&settings).unwrap_or_default(),
        sealed: sealed
            .into_iter()
            .filter_map(|(field, hex)| hex::decode(hex).ok().map(|bytes| (field, bytes)))
            .collect(),
        client_key: row.get(6)?,
        qps: row.get(7)?,
        expires_at_ms: row.get(8)?,
        refresh_expires_at_ms: row.get(9)?,
        seller: row.get(10)?,
        updated_ms: row.get(11)?,
    })
}

fn put(conn: &Connection, account: &StoredAccount) -> rusqlite::Result<()> {
    let sealed: BTreeMap<&String, String> = account
        .sealed
        .iter()
        .map(|(field, bytes)| (field, hex::encode(bytes)))
        .collect();
    conn.prepare_cached(&format!(
        "INSERT INTO accounts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (plugin, name) DO UPDATE SET state = ?3, reason = ?4, settings = ?5,
         sealed = ?6, client_key = ?7, qps = ?8, expires_at_ms = ?9, refresh_expires_at_ms = ?10,
         seller = ?11, updated_ms = ?12"
    ))?
    .execute(params![
        account.plugin,
        account.name,
        account.state,
        account.reason,
        serde_json::to_string(&account.settings).expect("settings serialize"),
        serde_json::to_string(&sealed).expect("hex serializes"),
        account.client_key,
        account.qps,
        account.expires_at_ms,
        account.refresh_expires_at_ms,
        account.seller,
        now_ms()
    ])
    .map(drop)
}

#[async_trait]
impl Accounts for Sqlite {
    async fn account_put(&self, account: &StoredAccount) -> Result<()> {
        let account = account.clone();
        self.write(move |conn| put(conn, &account).doing("cannot store an account"))
            .await
    }

    async fn account_get(&self, plugin: &str, name: &str) -> Result<Option<StoredAccount>> {
        let (plugin, name) = (plugin.to_owned(), name.to_owned());
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM accounts WHERE plugin = ?1 AND name = ?2"
            ))
            .and_then(|mut select| select.query_row(params![plugin, name], read).optional())
            .doing("cannot read an account")
        })
        .await
    }

    async fn account_list(&self, plugin: Option<&str>) -> Result<Vec<StoredAccount>> {
        let plugin = plugin.map(str::to_owned);
        self.read(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM accounts WHERE ?1 IS NULL OR plugin = ?1 ORDER BY plugin, name"
            ))
            .and_then(|mut select| select.query_map(params![plugin], read)?.collect())
            .doing("cannot list accounts")
        })
        .await
    }

    async fn account_remove(&self, plugin: &str, name: &str) -> Result<bool> {
        let (plugin, name) = (plugin.to_owned(), name.to_owned());
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM accounts WHERE plugin = ?1 AND name = ?2")
                .and_then(|mut delete| delete.execute(params![plugin, name]))
                .map(|removed| removed == 1)
                .doing("cannot remove an account")
        })
        .await
    }

    async fn account_set_state(
        &self,
        plugin: &str,
        name: &str,
        state: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        let (plugin, name, state, reason) = (
            plugin.to_owned(),
            name.to_owned(),
            state.to_owned(),
            reason.map(str::to_owned),
        );
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE accounts SET state = ?3, reason = ?4, updated_ms = ?5
                 WHERE plugin = ?1 AND name = ?2",
            )
            .and_then(|mut update| update.execute(params![plugin, name, state, reason, now_ms()]))
            .map(drop)
            .doing("cannot change an account's state")
        })
        .await
    }

    async fn master_check_get(&self) -> Result<Option<Vec<u8>>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT sealed FROM master_check WHERE id = 1")
                .and_then(|mut select| select.query_row([], |row| row.get(0)).optional())
                .doing("cannot read the master key check")
        })
        .await
    }

    async fn master_check_put(&self, sealed: &[u8]) -> Result<()> {
        let sealed = sealed.to_vec();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO master_check (id, sealed) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET sealed = ?1",
            )
            .and_then(|mut upsert| upsert.execute(params![sealed]))
            .map(drop)
            .doing("cannot store the master key check")
        })
        .await
    }
}
