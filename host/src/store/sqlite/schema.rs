//! The file's schema, as numbered migrations applied at open in one transaction each.
//! `PRAGMA user_version` says which have run; a file written by a newer host (a version this one
//! does not know) is refused rather than misread.

use std::path::Path;

use rusqlite::Connection;

use super::Context;
use crate::error::{Error, Result};

/// The first schema. `IF NOT EXISTS`, because files written before migrations were numbered are
/// at version 0 with these tables already in place.
pub(crate) const FIRST: &str = "
    CREATE TABLE IF NOT EXISTS kv (
        plugin TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, expires_at_ms INTEGER,
        PRIMARY KEY (plugin, key)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS tokens (
        plugin TEXT NOT NULL, client_key TEXT NOT NULL, token TEXT NOT NULL,
        refresh_at_ms INTEGER NOT NULL, PRIMARY KEY (plugin, client_key)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS sends (
        plugin TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
        request_ids TEXT NOT NULL DEFAULT '[]', created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL, PRIMARY KEY (plugin, key)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS send_recipients (
        plugin TEXT NOT NULL, key TEXT NOT NULL, position INTEGER NOT NULL,
        recipient TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        detail TEXT, PRIMARY KEY (plugin, key, position)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS campaigns (
        id TEXT PRIMARY KEY, plugin TEXT NOT NULL, coupon TEXT NOT NULL,
        quantity INTEGER NOT NULL, options TEXT NOT NULL, source TEXT NOT NULL,
        source_sha256 TEXT NOT NULL, total_lines INTEGER NOT NULL, batch_size INTEGER NOT NULL,
        state TEXT NOT NULL, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS campaign_lines (
        campaign TEXT NOT NULL, recipient TEXT NOT NULL, line INTEGER NOT NULL,
        batch INTEGER NOT NULL, position INTEGER NOT NULL,
        PRIMARY KEY (campaign, recipient)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS campaign_rejects (
        campaign TEXT NOT NULL, line INTEGER NOT NULL, text TEXT NOT NULL, state TEXT NOT NULL,
        reason TEXT NOT NULL, PRIMARY KEY (campaign, line)) WITHOUT ROWID;
    ";

/// Migration `n` (1-based) brings a file from version `n - 1` to `n`.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema (see [`FIRST`]).
    FIRST,
    // 2: accounts (every keyed row gains the account it belongs to; what was there belongs to
    // the default account), leases on sends, sealed tokens, campaign batches as a work queue,
    // workers, and the fleet-wide request window and bans.
    "
    CREATE TABLE kv2 (
        plugin TEXT NOT NULL, account TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,
        expires_at_ms INTEGER, PRIMARY KEY (plugin, account, key)) WITHOUT ROWID;
    INSERT INTO kv2 SELECT plugin, 'default', key, value, expires_at_ms FROM kv;
    DROP TABLE kv;
    ALTER TABLE kv2 RENAME TO kv;

    -- Tokens were kept in clear: they are a cache, so they are dropped, not carried over.
    DROP TABLE tokens;
    CREATE TABLE tokens (
        plugin TEXT NOT NULL, account TEXT NOT NULL, credential TEXT NOT NULL,
        sealed BLOB, refresh_at_ms INTEGER NOT NULL DEFAULT 0,
        lock_holder TEXT, lock_until_ms INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (plugin, account, credential)) WITHOUT ROWID;

    CREATE TABLE sends2 (
        plugin TEXT NOT NULL, account TEXT NOT NULL, key TEXT NOT NULL,
        fingerprint TEXT NOT NULL, state TEXT NOT NULL, request_ids TEXT NOT NULL DEFAULT '[]',
        holder TEXT NOT NULL DEFAULT '', lease_until_ms INTEGER NOT NULL DEFAULT 0,
        created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
        PRIMARY KEY (plugin, account, key)) WITHOUT ROWID;
    INSERT INTO sends2 (plugin, account, key, fingerprint, state, request_ids, created_ms, updated_ms)
        SELECT plugin, 'default', key, fingerprint, state, request_ids, created_ms, updated_ms FROM sends;
    DROP TABLE sends;
    ALTER TABLE sends2 RENAME TO sends;

    CREATE TABLE send_recipients2 (
        plugin TEXT NOT NULL, account TEXT NOT NULL, key TEXT NOT NULL,
        position INTEGER NOT NULL, recipient TEXT NOT NULL, state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, detail TEXT,
        PRIMARY KEY (plugin, account, key, position)) WITHOUT ROWID;
    INSERT INTO send_recipients2
        SELECT plugin, 'default', key, position, recipient, state, attempts, detail FROM send_recipients;
    DROP TABLE send_recipients;
    ALTER TABLE send_recipients2 RENAME TO send_recipients;

    ALTER TABLE campaigns ADD COLUMN account TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE campaigns ADD COLUMN enqueued INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE campaigns ADD COLUMN stopped TEXT;
    CREATE INDEX campaign_lines_by_batch ON campaign_lines (campaign, batch, position);
    CREATE TABLE campaign_batches (
        campaign TEXT NOT NULL, batch INTEGER NOT NULL, state TEXT NOT NULL,
        holder TEXT NOT NULL DEFAULT '', lease_until_ms INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (campaign, batch)) WITHOUT ROWID;
    CREATE INDEX campaign_batches_open ON campaign_batches (state, campaign, batch);
    CREATE TABLE workers (
        holder TEXT NOT NULL, campaign TEXT NOT NULL, seen_ms INTEGER NOT NULL,
        batches INTEGER NOT NULL DEFAULT 0, recipients INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (holder, campaign)) WITHOUT ROWID;
    CREATE TABLE worker_seen (holder TEXT PRIMARY KEY, seen_ms INTEGER NOT NULL) WITHOUT ROWID;

    CREATE TABLE pace (
        id INTEGER PRIMARY KEY AUTOINCREMENT, credential TEXT NOT NULL, holder TEXT NOT NULL,
        started_ms INTEGER NOT NULL, finished_ms INTEGER, lease_until_ms INTEGER NOT NULL);
    CREATE INDEX pace_by_credential ON pace (credential);
    CREATE TABLE bans (credential TEXT PRIMARY KEY, until_ms INTEGER NOT NULL) WITHOUT ROWID;
    ",
    // 3: accounts (secrets sealed by the host: `sealed` is a JSON map of field to hex), and the
    // check value that tells a right master key from a wrong one.
    "
    CREATE TABLE accounts (
        plugin TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL, reason TEXT,
        settings TEXT NOT NULL DEFAULT '{}', sealed TEXT NOT NULL DEFAULT '{}',
        client_key TEXT, qps INTEGER, expires_at_ms INTEGER, refresh_expires_at_ms INTEGER,
        seller TEXT, updated_ms INTEGER NOT NULL,
        PRIMARY KEY (plugin, name)) WITHOUT ROWID;
    CREATE TABLE master_check (id INTEGER PRIMARY KEY CHECK (id = 1), sealed BLOB NOT NULL);
    ",
    // 4: every process's heartbeat (`store/processes.rs`): a dead process is noticed in
    // seconds, and its leases given back, instead of after they expire.
    "
    CREATE TABLE processes (
        holder TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,
        works TEXT NOT NULL DEFAULT '', beat_ms INTEGER NOT NULL, ended_ms INTEGER)
        WITHOUT ROWID;
    ",
];

/// The newest schema version this host knows.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the file to [`VERSION`], one migration per transaction; refuses a newer file.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .doing("cannot begin the schema migration")?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .doing("cannot read the schema version")?;
        if version > VERSION {
            return Err(Error::storage(format!(
                "{} has schema version {version}, newer than this host knows ({VERSION}): \
                 upgrade coupon-host to use it",
                path.display()
            )));
        }
        if version == VERSION {
            return Ok(());
        }
        tx.execute_batch(MIGRATIONS[version as usize])
            .doing(&format!(
                "cannot migrate the schema to version {}",
                version + 1
            ))?;
        tx.pragma_update(None, "user_version", version + 1)
            .doing("cannot record the schema version")?;
        tx.commit().doing("cannot commit the schema migration")?;
        tracing::info!(file = %path.display(), version = version + 1, "migrated the storage schema");
    }
}
