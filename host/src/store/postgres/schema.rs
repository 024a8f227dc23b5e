//! The schema, as numbered migrations applied at open in one transaction each, under an advisory
//! lock, so hosts starting together migrate once, one after another. `schema_version` holds a
//! row per migration applied; a schema written by a newer host (a version this one does not
//! know) is refused rather than misread.
//!
//! Text columns that key or order rows are `COLLATE "C"`: bytewise, as SQLite compares, whatever
//! the database's locale (a campaign's batches are found by key range, `CAMPAIGN/` to
//! `CAMPAIGN/~`, which a linguistic collation would not keep together). Times are unix ms.

use deadpool_postgres::Object;

use super::{Context, LOCK, LockClass};
use crate::error::{Error, Result};

/// Migration `n` (1-based) brings a schema from version `n - 1` to `n`. The tables are those of
/// SQLite's (see `store/sqlite/schema.rs`), in PostgreSQL's types.
const MIGRATIONS: &[&str] = &[
    // 1: every table of the first release.
    r#"
    CREATE TABLE kv (
        plugin TEXT COLLATE "C" NOT NULL, account TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL, value BYTEA NOT NULL, expires_at_ms BIGINT,
        PRIMARY KEY (plugin, account, key));

    CREATE TABLE tokens (
        plugin TEXT COLLATE "C" NOT NULL, account TEXT COLLATE "C" NOT NULL,
        credential TEXT COLLATE "C" NOT NULL, sealed BYTEA,
        refresh_at_ms BIGINT NOT NULL DEFAULT 0,
        lock_holder TEXT, lock_until_ms BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (plugin, account, credential));

    CREATE TABLE sends (
        plugin TEXT COLLATE "C" NOT NULL, account TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
        request_ids TEXT[] NOT NULL DEFAULT '{}',
        holder TEXT NOT NULL DEFAULT '', lease_until_ms BIGINT NOT NULL DEFAULT 0,
        created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL,
        PRIMARY KEY (plugin, account, key));

    CREATE TABLE send_recipients (
        plugin TEXT COLLATE "C" NOT NULL, account TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL, position BIGINT NOT NULL, recipient TEXT NOT NULL,
        state TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0, detail TEXT,
        PRIMARY KEY (plugin, account, key, position));

    CREATE TABLE campaigns (
        id TEXT COLLATE "C" PRIMARY KEY, plugin TEXT COLLATE "C" NOT NULL,
        account TEXT COLLATE "C" NOT NULL, coupon TEXT NOT NULL, quantity BIGINT NOT NULL,
        options TEXT NOT NULL, source TEXT NOT NULL, source_sha256 TEXT NOT NULL,
        total_lines BIGINT NOT NULL, batch_size BIGINT NOT NULL, state TEXT NOT NULL,
        enqueued BOOLEAN NOT NULL DEFAULT false, stopped TEXT,
        created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL);

    CREATE TABLE campaign_lines (
        campaign TEXT COLLATE "C" NOT NULL, recipient TEXT COLLATE "C" NOT NULL,
        line BIGINT NOT NULL, batch BIGINT NOT NULL, position BIGINT NOT NULL,
        PRIMARY KEY (campaign, recipient));
    CREATE INDEX campaign_lines_by_batch ON campaign_lines (campaign, batch, position);
    -- A report pages through a campaign in file order.
    CREATE INDEX campaign_lines_by_line ON campaign_lines (campaign, line);

    CREATE TABLE campaign_rejects (
        campaign TEXT COLLATE "C" NOT NULL, line BIGINT NOT NULL, text TEXT NOT NULL,
        state TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (campaign, line));

    CREATE TABLE campaign_batches (
        campaign TEXT COLLATE "C" NOT NULL, batch BIGINT NOT NULL, state TEXT NOT NULL,
        holder TEXT COLLATE "C" NOT NULL DEFAULT '', lease_until_ms BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (campaign, batch));
    -- Claims look only at batches not done.
    CREATE INDEX campaign_batches_open ON campaign_batches (campaign, batch)
        WHERE state <> 'done';

    CREATE TABLE workers (
        holder TEXT COLLATE "C" NOT NULL, campaign TEXT COLLATE "C" NOT NULL,
        seen_ms BIGINT NOT NULL, batches BIGINT NOT NULL DEFAULT 0,
        recipients BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (holder, campaign));
    CREATE TABLE worker_seen (holder TEXT COLLATE "C" PRIMARY KEY, seen_ms BIGINT NOT NULL);

    -- Ids come from a sequence and are never reused, so a late release cannot end another
    -- request.
    CREATE TABLE pace (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        credential TEXT COLLATE "C" NOT NULL, holder TEXT NOT NULL,
        started_ms BIGINT NOT NULL, finished_ms BIGINT, lease_until_ms BIGINT NOT NULL);
    CREATE INDEX pace_by_credential ON pace (credential);
    CREATE TABLE bans (credential TEXT COLLATE "C" PRIMARY KEY, until_ms BIGINT NOT NULL);
    "#,
    // 2: accounts (secrets sealed by the host: `sealed` is a JSON map of field to hex), and the
    // check value that tells a right master key from a wrong one.
    r#"
    CREATE TABLE accounts (
        plugin TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, state TEXT NOT NULL,
        reason TEXT, settings TEXT NOT NULL DEFAULT '{}', sealed TEXT NOT NULL DEFAULT '{}',
        client_key TEXT, qps BIGINT, expires_at_ms BIGINT, refresh_expires_at_ms BIGINT,
        seller TEXT, updated_ms BIGINT NOT NULL,
        PRIMARY KEY (plugin, name));
    CREATE TABLE master_check (id INTEGER PRIMARY KEY CHECK (id = 1), sealed BYTEA NOT NULL);
    "#,
    // 3: every process's heartbeat (`store/processes.rs`): a dead process is noticed in
    // seconds, and its leases given back, instead of after they expire.
    r#"
    CREATE TABLE processes (
        holder TEXT COLLATE "C" PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL,
        works TEXT NOT NULL DEFAULT '', beat_ms BIGINT NOT NULL, ended_ms BIGINT);
    "#,
];

/// The newest schema version this host knows.
pub(crate) const VERSION: i64 = MIGRATIONS.len() as i64;

/// Creates `schema` if missing and brings it to [`VERSION`], one migration per transaction,
/// each under the schema's migration lock; refuses a newer schema.
pub(crate) async fn migrate(conn: &mut Object, schema: &str) -> Result<()> {
    let key = format!("{schema}/migrations");
    loop {
        let tx = conn
            .transaction()
            .await
            .doing("cannot begin the schema migration")?;
        tx.execute(LOCK, &[&(LockClass::Migrations as i32), &key])
            .await
            .doing("cannot take the migration lock")?;
        // Created only when missing: a host whose role may not create anything opens a schema
        // already migrated. (`schema` is checked: lowercase letters, digits and `_`, so it can
        // stand in the SQL.)
        let found = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                        to_regclass($2) IS NOT NULL",
                &[&schema, &format!("{schema}.schema_version")],
            )
            .await
            .doing("cannot read the schema version")?;
        let (has_schema, has_versions): (bool, bool) = (found.get(0), found.get(1));
        if !has_schema {
            tx.batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .doing(&format!("cannot create the schema {schema}"))?;
        }
        if !has_versions {
            tx.batch_execute(&format!(
                "CREATE TABLE {schema}.schema_version (
                     version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)"
            ))
            .await
            .doing("cannot create the schema_version table")?;
        }
        let version: i64 = tx
            .query_one(
                &format!("SELECT COALESCE(MAX(version), 0) FROM {schema}.schema_version"),
                &[],
            )
            .await
            .doing("cannot read the schema version")?
            .get(0);
        if version > VERSION {
            // Rolled back here, not when dropped: the connection's session ends clean at once.
            tx.rollback()
                .await
                .doing("cannot end the schema migration")?;
            return Err(Error::storage(format!(
                "the PostgreSQL schema {schema} has version {version}, newer than this host \
                 knows ({VERSION}): upgrade coupon-host to use it"
            )));
        }
        if version == VERSION {
            return tx.commit().await.doing("cannot end the schema migration");
        }
        tx.batch_execute(MIGRATIONS[version as usize])
            .await
            .doing(&format!(
                "cannot migrate the schema to version {}",
                version + 1
            ))?;
        tx.execute(
            &format!("INSERT INTO {schema}.schema_version (version, applied_ms) VALUES ($1, $2)"),
            &[&(version + 1), &crate::store::now_ms()],
        )
        .await
        .doing("cannot record the schema version")?;
        tx.commit()
            .await
            .doing("cannot commit the schema migration")?;
        tracing::info!(
            schema,
            version = version + 1,
            "migrated the PostgreSQL schema"
        );
    }
}
