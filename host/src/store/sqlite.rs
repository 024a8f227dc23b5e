//! The embedded backend: one SQLite file in WAL mode, the default.
//!
//! Writes go through one writer thread that commits every write queued meanwhile in one
//! transaction (a savepoint each, so one failing write does not undo the others): concurrent
//! sends share a commit instead of queueing for one each. Reads run on a small pool of
//! connections of their own, on tokio's blocking threads, so no async worker ever waits on the
//! writer. A checkpoint thread folds the WAL into the file every [`CHECKPOINT_EVERY`].
//!
//! Several processes may open one file: SQLite's locks order their transactions, and the leases
//! the journal and the ledger keep decide who sends what.

mod accounts;
mod journal;
mod kv;
mod ledger;
mod pacing;
mod processes;
mod schema;
mod tokens;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use rusqlite::Connection;

use super::{BackendKind, Options, Storage};
use crate::error::{Error, Result};

/// The registry entry for `backend = "sqlite"`.
pub(crate) const KIND: BackendKind = BackendKind {
    name: "sqlite",
    check,
    open: |options| async move { Sqlite::open(&options).map(|s| Arc::new(s) as Storage) }.boxed(),
};

/// The file when `path` is not given.
pub(crate) const DEFAULT_PATH: &str = "coupon-host.db";

fn check(table: &toml::Table) -> std::result::Result<(), (String, String)> {
    for (key, value) in table {
        match key.as_str() {
            "path" if value.is_str() => {}
            "path" => return Err((key.clone(), "must be a string (a file path)".to_owned())),
            _ => {
                return Err((
                    key.clone(),
                    "unknown key for the sqlite backend (it takes `path`)".to_owned(),
                ));
            }
        }
    }
    Ok(())
}

/// The SQLite file.
pub(crate) struct Sqlite {
    path: PathBuf,
    /// The group-commit writer's queue (see [`Sqlite::write`]); dropping it stops the writer.
    writes: std::sync::mpsc::Sender<Job>,
    /// Idle read connections.
    readers: Arc<Mutex<Vec<Connection>>>,
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

/// Most idle read connections kept.
const MAX_READERS: usize = 8;

/// A read connection's page cache, in KiB, as SQLite's `cache_size` takes it (negative: KiB).
const READER_CACHE_KIB: i64 = -256;

/// How often the WAL is checkpointed into the database file (and both are synced): the most
/// recent commits a power failure can lose. (`synchronous = NORMAL` syncs only at checkpoints;
/// SQLite's own checkpoint every 1000 pages ran inside a commit, with an fsync, several times a
/// second under load, holding the connection every send waits for.)
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// How long a statement waits for another process's lock before failing.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn storage(doing: &str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
    move |e| Error::storage_from(doing.to_owned(), e)
}

/// A connection with the settings every connection of the file shares.
fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| Error::storage_from(format!("cannot open {}", path.display()), e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(storage("cannot configure the connection"))?;
    // Statements are prepared once per connection and reused: parsing SQL again on each of a
    // send's journal writes cost more than running it.
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Puts the file in WAL mode (which it keeps). A new file opened by several processes at once
/// (a fleet's first start) can answer `SQLITE_BUSY` at once, without the busy handler, while
/// another connection switches it or migrates it: that is waited out, up to [`BUSY_TIMEOUT`].
fn switch_to_wal(conn: &Connection) -> Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let switched = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0));
        match switched {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(Error::storage(format!(
                    "cannot switch to WAL: the file stays in {mode} mode"
                )));
            }
            Err(rusqlite::Error::SqliteFailure(error, _))
                if error.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => return Err(storage("cannot switch to WAL")(error)),
        }
    }
}

/// A read connection: [`connect`], with a smaller page cache than the writer's. Reads are point
/// lookups and the range scans of campaign status and reports; the file's pages stay in the OS's
/// cache anyway, and with up to [`MAX_READERS`] idle readers, SQLite's default 2 MB each was most
/// of a long campaign's growth in memory (M1 in docs/BENCHMARKS.md).
fn reader(path: &Path) -> Result<Connection> {
    let conn = connect(path)?;
    conn.pragma_update(None, "cache_size", READER_CACHE_KIB)
        .map_err(storage("cannot configure the connection"))?;
    Ok(conn)
}

impl Sqlite {
    /// Opens (creating and migrating if needed) the file named by `options`.
    pub(crate) fn open(options: &Options) -> Result<Sqlite> {
        let path = options
            .path("path")
            .unwrap_or_else(|| options.base.join(DEFAULT_PATH));
        Sqlite::open_path(&path)
    }

    pub(crate) fn open_path(path: &Path) -> Result<Sqlite> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::storage_from(format!("cannot create {}", parent.display()), e)
            })?;
        }
        let mut conn = connect(path)?;
        switch_to_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(storage("cannot configure the file"))?;
        // Checkpoints (which fsync) run on a thread of their own, not inside a send's commit
        // while every other send waits for the writer: see `checkpointer`.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(storage("cannot configure the file"))?;
        schema::migrate(&mut conn, path)?;
        let checkpoints = checkpointer(path)?;
        Ok(Sqlite {
            path: path.to_owned(),
            writes: writer(conn)?,
            readers: Arc::default(),
            _checkpoints: checkpoints,
        })
    }

    /// Runs `work` in the writer's next group commit, and returns its result once that group has
    /// committed (so an `Ok` is as durable as any commit of this file). `work` runs in a
    /// savepoint: kept when it returns `Ok`, undone when it fails.
    pub(crate) async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (done, result) = tokio::sync::oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            let outcome = match conn {
                Some(conn) => in_savepoint(conn, work).map(Some),
                None => Ok(None),
            };
            Box::new(move |committed| {
                let _ = done.send(match committed {
                    Err(e) => Err(Error::storage(e)),
                    Ok(()) => outcome.and_then(|value| {
                        value.ok_or_else(|| Error::storage("the write did not run"))
                    }),
                });
            })
        });
        let stopped = || Error::storage("the SQLite writer has stopped");
        self.writes.send(job).map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }

    /// Runs `work` on a read connection, on a blocking thread.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let idle = readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => reader(&path)?,
            };
            let result = work(&conn);
            let mut idle = readers.lock().unwrap_or_else(|p| p.into_inner());
            if idle.len() < MAX_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| Error::storage_from("a storage read failed", e))?
    }
}

/// Starts the group-commit writer on `conn`: it takes every write queued while the previous
/// group was committing and commits them all in one transaction, each in a savepoint of its own.
/// It ends when the sender is dropped.
fn writer(conn: Connection) -> Result<std::sync::mpsc::Sender<Job>> {
    let (writes, queue) = std::sync::mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("coupon-host-sqlite".into())
        .spawn(move || {
            while let Ok(first) = queue.recv() {
                let mut group = vec![first];
                group.extend(queue.try_iter().take(MAX_GROUP - 1));
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
                for reply in replies {
                    reply(committed.clone());
                }
            }
        })
        .map_err(|e| Error::storage_from("cannot start the SQLite writer", e))?;
    Ok(writes)
}

/// Runs `work` in a savepoint of the open transaction: kept if it succeeds, undone if it fails or
/// panics.
fn in_savepoint<T>(conn: &Connection, work: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    // Cached like every other statement: these run twice per write, on the writer's hot path.
    let run = |sql: &str| conn.prepare_cached(sql)?.execute([]).map(drop);
    run("SAVEPOINT write").map_err(storage("cannot open a savepoint"))?;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn)));
    let result = match result {
        Ok(result) => result,
        Err(_) => Err(Error::storage("a storage write panicked")),
    };
    if result.is_err() {
        run("ROLLBACK TO write").map_err(storage("cannot roll back a savepoint"))?;
    }
    run("RELEASE write").map_err(storage("cannot release a savepoint"))?;
    result
}

/// Starts the thread that checkpoints `path` every [`CHECKPOINT_EVERY`] through a connection of
/// its own; it ends when the returned sender is dropped.
fn checkpointer(path: &Path) -> Result<std::sync::mpsc::Sender<()>> {
    let conn = connect(path)?;
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
        .map_err(|e| Error::storage_from("cannot start the checkpoint thread", e))?;
    Ok(stop)
}

/// rusqlite's errors as the host's, with what the host was doing.
pub(crate) trait Context<T> {
    fn doing(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn doing(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::storage_from(what.to_owned(), e))
    }
}

#[cfg(test)]
mod tests {
    crate::store::suite::storage_suite!(async {
        let dir = tempfile::tempdir().unwrap();
        let storage = super::Sqlite::open_path(&dir.path().join("state.db")).unwrap();
        Some(Fixture {
            storage: std::sync::Arc::new(storage),
            _guard: Box::new(dir),
        })
    });

    /// A file written before migrations were numbered (version 0, the first schema's tables):
    /// its rows survive, under the default account.
    #[tokio::test]
    async fn migrates_a_file_of_the_first_schema_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.execute_batch(super::schema::FIRST).unwrap();
            conn.execute_batch(
                "INSERT INTO kv VALUES ('p', 'k', X'31', NULL);
                 INSERT INTO sends VALUES ('p', 'key', 'fp', 'done', '[\"r1\"]', 1, 1);
                 INSERT INTO send_recipients VALUES ('p', 'key', 0, 'nick:a', 'issued', 1, NULL);",
            )
            .unwrap();
        }
        let storage = super::Sqlite::open_path(&path).unwrap();
        let scope = Scope::new("p", DEFAULT_ACCOUNT);
        assert_eq!(
            storage.kv_get(&scope, "k").await.unwrap(),
            Some(b"1".to_vec())
        );
        let send = SendKey {
            scope,
            key: "key".into(),
        };
        let (state, outcome) = storage.journal_outcome(&send).await.unwrap().unwrap();
        assert_eq!(state, "done");
        assert_eq!(outcome.issued.len(), 1);
        assert_eq!(outcome.platform_request_ids, vec!["r1"]);
    }

    #[tokio::test]
    async fn refuses_a_file_of_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        drop(super::Sqlite::open_path(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", super::schema::VERSION + 1)
            .unwrap();
        drop(conn);
        let error = match super::Sqlite::open_path(&path) {
            Err(error) => error.to_string(),
            Ok(_) => panic!("a newer schema was opened"),
        };
        assert!(error.contains("newer than this host knows"), "{error}");
    }
}
