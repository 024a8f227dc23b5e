//! Host state on disk: plugin key-value data, platform tokens, the idempotency journal and
//! campaign progress.
//!
//! One SQLite file in WAL mode. Every plugin's keys live under its own name: a plugin cannot name
//! another plugin's namespace, because the namespace is supplied by the host, not the guest.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// The embedded store.
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    /// The group-commit writer's queue (see [`Store::write`]); dropping it stops the writer.
    writes: std::sync::mpsc::Sender<Job>,
    /// Dropping it stops the checkpoint thread.
    _checkpoints: std::sync::mpsc::Sender<()>,
}

/// One write for the group-commit writer: run inside the group's transaction (or, given `None`,
/// told the transaction could not begin), it returns what to do once the group has committed.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;
/// Told whether the group's commit succeeded.
type Reply = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

/// Most writes committed together.
const MAX_GROUP: usize = 256;

/// Starts the group-commit writer: it takes every write queued while the previous group was
/// committing and commits them all in one transaction on the shared connection, each in a
/// savepoint of its own so one failing write does not undo the others. Concurrent sends thus share
/// a commit (and the WAL pages it writes) instead of queueing for one each; it ends when the
/// sender is dropped.
fn writer(conn: Arc<Mutex<Connection>>) -> Result<std::sync::mpsc::Sender<Job>> {
    let (writes, queue) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("coupon-host-journal".into())
        .spawn(move || {
            while let Ok(first) = queue.recv() {
                let mut group = vec![first];
                group.extend(queue.try_iter().take(MAX_GROUP - 1));
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                    let message = format!("cannot begin a transaction: {e}");
                    for job in group {
                        job(None)(Err(message.clone()));
                    }
                    continue;
                }
                let replies: Vec<Reply> = group.into_iter().map(|job| job(Some(&conn))).collect();
                let committed = conn.execute_batch("COMMIT").map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
                    format!("cannot commit: {e}")
                });
                drop(conn);
                for reply in replies {
                    reply(committed.clone());
                }
            }
        })
        .map_err(|e| Error::Storage(format!("cannot start the journal writer: {e}")))?;
    Ok(writes)
}

/// Runs `work` in a savepoint of the open transaction: kept if it succeeds, undone if it fails or
/// panics.
fn in_savepoint<T>(
    conn: &Connection,
    work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> Result<T> {
    // Cached like every other statement: these run twice per write, on the writer's hot path.
    let run = |sql: &str| conn.prepare_cached(sql)?.execute([]).map(drop);
    run("SAVEPOINT write").map_err(storage)?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)));
    let result = match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(storage(e)),
        Err(_) => Err(Error::Storage("a journal write panicked".to_owned())),
    };
    if result.is_err() {
        run("ROLLBACK TO write").map_err(storage)?;
    }
    run("RELEASE write").map_err(storage)?;
    result
}

/// How often the WAL is checkpointed into the database file (and both are synced): the most
/// recent commits a power failure can lose. (`synchronous = NORMAL` syncs only at checkpoints;
/// SQLite's own checkpoint every 1000 pages ran inside a commit, with an fsync, several times a
/// second under load, holding the connection every send waits for.)
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts the thread that checkpoints `path` every [`CHECKPOINT_EVERY`] through a connection of
/// its own; it ends when the returned sender is dropped.
fn checkpointer(path: &Path) -> Result<std::sync::mpsc::Sender<()>> {
    let conn = Connection::open(path)
        .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(storage)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("coupon-host-checkpoint".into())
        .spawn(move || {
            // A final checkpoint on the way out, so a closed store leaves a short WAL.
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
            }
            let _ = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        })
        .map_err(|e| Error::Storage(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(stop)
}

/// Why a kv operation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvError {
    /// The plugin's quota would be exceeded.
    QuotaExceeded,
    /// Key or value too large.
    TooLarge,
    /// `increment` on a value that is not a decimal integer.
    NotANumber,
    /// The store failed.
    Other(String),
}

/// Bounds of one plugin's kv namespace.
#[derive(Debug, Clone, Copy)]
pub struct KvQuota {
    /// Most live keys.
    pub max_keys: u64,
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
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

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn storage(e: rusqlite::Error) -> Error {
    Error::Storage(e.to_string())
}

impl Store {
    /// Opens (creating if needed) the SQLite file at `path`.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Storage(format!("cannot create {}: {e}", parent.display())))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(storage)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(storage)?;
        // Every journal and campaign statement is prepared once per connection and reused:
        // parsing SQL again on each of a send's journal writes cost more than running it.
        conn.set_prepared_statement_cache_capacity(64);
        // Checkpoints (which fsync) run on a thread of their own, not inside a send's commit
        // while every other send waits for the connection: see `checkpointer`.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(storage)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (
                plugin TEXT NOT NULL,
                key TEXT NOT NULL,
                value BLOB NOT NULL,
                expires_at_ms INTEGER,
                PRIMARY KEY (plugin, key)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS tokens (
                plugin TEXT NOT NULL,
                client_key TEXT NOT NULL,
                token TEXT NOT NULL,
                refresh_at_ms INTEGER NOT NULL,
                PRIMARY KEY (plugin, client_key)
            ) WITHOUT ROWID;",
        )
        .map_err(storage)?;
        conn.execute_batch(crate::journal::SCHEMA)
            .map_err(storage)?;
        conn.execute_batch(crate::campaign::SCHEMA)
            .map_err(storage)?;
        let checkpoints = checkpointer(path)?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(Store {
            writes: writer(conn.clone())?,
            conn,
            _checkpoints: checkpoints,
        })
    }

    /// Runs `work` in the writer's next group commit, and returns its result once that group has
    /// committed (so an `Ok` is as durable as any commit of this store).
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, result) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let outcome = match conn {
                Some(conn) => in_savepoint(conn, work).map(Some),
                None => Ok(None),
            };
            Box::new(move |committed| {
                let _ = done.send(match committed {
                    Err(e) => Err(Error::Storage(e)),
                    Ok(()) => outcome.and_then(|value| {
                        value.ok_or_else(|| Error::Storage("the write did not run".to_owned()))
                    }),
                });
            })
        });
        let stopped = || Error::Storage("the journal writer has stopped".to_owned());
        self.writes.send(job).map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }

    pub(crate) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite is transactional.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A cached platform token and when to refresh it (unix ms), so separate processes share it.
    pub fn token_get(&self, plugin: &str, client_key: &str) -> Result<Option<(Secret, i64)>> {
        self.conn()
            .query_row(
                "SELECT token, refresh_at_ms FROM tokens WHERE plugin = ?1 AND client_key = ?2",
                params![plugin, client_key],
                |row| Ok((Secret::new(row.get::<_, String>(0)?), row.get(1)?)),
            )
            .optional()
            .map_err(storage)
    }

    /// Stores a platform token.
    pub fn token_put(
        &self,
        plugin: &str,
        client_key: &str,
        token: &Secret,
        refresh_at_ms: i64,
    ) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO tokens (plugin, client_key, token, refresh_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (plugin, client_key) DO UPDATE SET token = ?3, refresh_at_ms = ?4",
                params![plugin, client_key, token.expose(), refresh_at_ms],
            )
            .map(|_| ())
            .map_err(storage)
    }

    /// A live value.
    pub fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.conn()
            .query_row(
                "SELECT value FROM kv WHERE plugin = ?1 AND key = ?2
                 AND (expires_at_ms IS NULL OR expires_at_ms > ?3)",
                params![plugin, key, now_ms()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| KvError::Other(e.to_string()))
    }

    /// Stores a value, within `quota`.
    pub fn kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
        quota: &KvQuota,
    ) -> Result<(), KvError> {
        self.transact(|tx| write_kv(tx, plugin, key, value, ttl_ms, quota))
    }

    /// Runs `f` in one transaction: it commits only when `f` answers `Ok(Ok(_))`.
    fn transact<R>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<Result<R, KvError>>,
    ) -> Result<R, KvError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(|e| KvError::Other(e.to_string()))?;
        match f(&tx) {
            Ok(Ok(value)) => tx
                .commit()
                .map(|()| value)
                .map_err(|e| KvError::Other(e.to_string())),
            Ok(Err(refused)) => Err(refused),
            Err(e) => Err(KvError::Other(e.to_string())),
        }
    }

    /// Removes a key.
    pub fn kv_delete(&self, plugin: &str, key: &str) -> Result<(), KvError> {
        self.conn()
            .execute(
                "DELETE FROM kv WHERE plugin = ?1 AND key = ?2",
                params![plugin, key],
            )
            .map(|_| ())
            .map_err(|e| KvError::Other(e.to_string()))
    }

    /// Adds `delta` to a decimal integer value (missing counts as 0). The read and the write
    /// are one transaction, so concurrent increments are never lost.
    pub fn kv_increment(
        &self,
        plugin: &str,
        key: &str,
        delta: i64,
        quota: &KvQuota,
    ) -> Result<i64, KvError> {
        self.transact(|tx| {
            let stored: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM kv WHERE plugin = ?1 AND key = ?2
                     AND (expires_at_ms IS NULL OR expires_at_ms > ?3)",
                    params![plugin, key, now_ms()],
                    |row| row.get(0),
                )
                .optional()?;
            let current = match stored {
                None => 0,
                Some(bytes) => match std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                {
                    Some(n) => n,
                    None => return Ok(Err(KvError::NotANumber)),
                },
            };
            let Some(next) = current.checked_add(delta) else {
                return Ok(Err(KvError::NotANumber));
            };
            Ok(write_kv(tx, plugin, key, next.to_string().as_bytes(), None, quota)?.map(|()| next))
        })
    }
}

/// Writes one key inside a transaction, within `quota` (expired keys do not count).
fn write_kv(
    tx: &rusqlite::Transaction<'_>,
    plugin: &str,
    key: &str,
    value: &[u8],
    ttl_ms: Option<u64>,
    quota: &KvQuota,
) -> rusqlite::Result<Result<(), KvError>> {
    if key.len() > quota.max_key_bytes || value.len() > quota.max_value_bytes {
        return Ok(Err(KvError::TooLarge));
    }
    let now = now_ms();
    let expires = ttl_ms.map(|ttl| now.saturating_add(ttl.min(i64::MAX as u64) as i64));
    tx.execute(
        "DELETE FROM kv WHERE plugin = ?1 AND expires_at_ms IS NOT NULL AND expires_at_ms <= ?2",
        params![plugin, now],
    )?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS(SELECT 1 FROM kv WHERE plugin = ?1 AND key = ?2)",
        params![plugin, key],
        |row| row.get(0),
    )?;
    if !exists {
        let count: u64 = tx.query_row(
            "SELECT COUNT(*) FROM kv WHERE plugin = ?1",
            params![plugin],
            |row| row.get(0),
        )?;
        if count >= quota.max_keys {
            return Ok(Err(KvError::QuotaExceeded));
        }
    }
    tx.execute(
        "INSERT INTO kv (plugin, key, value, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (plugin, key) DO UPDATE SET value = ?3, expires_at_ms = ?4",
        params![plugin, key, value, expires],
    )?;
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn namespaces_are_separate() {
        let (_dir, store) = store();
        let quota = KvQuota::default();
        store.kv_set("a", "k", b"1", None, &quota).unwrap();
        assert_eq!(store.kv_get("a", "k").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.kv_get("b", "k").unwrap(), None);
    }

    #[test]
    fn quota_and_sizes_are_enforced() {
        let (_dir, store) = store();
        let quota = KvQuota {
            max_keys: 2,
            max_key_bytes: 8,
            max_value_bytes: 4,
        };
        store.kv_set("a", "k1", b"1", None, &quota).unwrap();
        store.kv_set("a", "k2", b"1", None, &quota).unwrap();
        assert_eq!(
            store.kv_set("a", "k3", b"1", None, &quota),
            Err(KvError::QuotaExceeded)
        );
        // Overwriting an existing key does not count against the quota.
        store.kv_set("a", "k1", b"2", None, &quota).unwrap();
        assert_eq!(
            store.kv_set("a", "k1", b"12345", None, &quota),
            Err(KvError::TooLarge)
        );
    }

    #[test]
    fn concurrent_increments_are_never_lost() {
        let (_dir, store) = store();
        let store = std::sync::Arc::new(store);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        store
                            .kv_increment("a", "n", 1, &KvQuota::default())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(store.kv_get("a", "n").unwrap(), Some(b"400".to_vec()));
    }

    #[test]
    fn ttl_expires_and_increment_counts() {
        let (_dir, store) = store();
        let quota = KvQuota::default();
        store.kv_set("a", "t", b"x", Some(0), &quota).unwrap();
        assert_eq!(store.kv_get("a", "t").unwrap(), None);
        assert_eq!(store.kv_increment("a", "n", 5, &quota).unwrap(), 5);
        assert_eq!(store.kv_increment("a", "n", -2, &quota).unwrap(), 3);
        store.kv_set("a", "s", b"abc", None, &quota).unwrap();
        assert_eq!(
            store.kv_increment("a", "s", 1, &quota),
            Err(KvError::NotANumber)
        );
    }
}
