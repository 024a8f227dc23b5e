//! The shared backend: PostgreSQL, for a fleet of hosts and workers that keep one state.
//!
//! ```toml
//! [storage]
//! backend = "postgres"
//! url_env = "COUPON_HOST_DATABASE_URL" # the variable holding the URL, password included
//! pool_size = 16                       # optional, 1..=256
//! schema = "public"                    # optional; created if missing
//! tls_ca_file = "ca.pem"               # optional; the CA for `sslmode=verify-ca|verify-full`
//! ```
//!
//! The URL and its password are read from the environment when the config loads and are never
//! printed: not in errors (a failed connection names the variable and what failed), not in logs,
//! not in `Debug`.
//!
//! The client is `tokio-postgres` with a `deadpool-postgres` pool: a lean async driver that
//! pipelines requests on a connection and runs the SQL written here as written, which is what
//! the one-round-trip writes below need (sqlx's compile-time checks, own pool and migrations
//! would add layers without serving them).
//!
//! TLS: the URL's `sslmode` and `sslrootcert` (or `tls_ca_file`) mean what they mean to libpq,
//! default `prefer`; see [`tls`]. The host logs at start whether its connection is encrypted and
//! what was verified.
//!
//! **Round trips.** A trait call is one round trip: its statements go out together on one
//! connection ([`pipeline`]), wrapped in `BEGIN` … `COMMIT` when they must be one transaction,
//! and the server runs them in order. What the Rust side would decide between two statements is
//! said in SQL instead: a row is written only while the send's lease holds, a batch is claimed
//! only if one is free. The exceptions read, decide in Rust, then write: a kv increment and a
//! campaign's accept (two round trips in one transaction, [`Tx`]), and the rarer paths of a
//! journal begin on a key already there and of a campaign registered again (a second round trip
//! once the first statement found the key taken).
//!
//! **Concurrency.** PostgreSQL runs each statement of a transaction on a snapshot taken when the
//! statement starts (`READ COMMITTED`). So where a count decides a write (a kv namespace's
//! quota, a credential's request window), the transaction first takes an advisory lock
//! (`pg_advisory_xact_lock`) in a statement of its own: the statements after it see whatever the
//! previous holder committed. Campaign batches are claimed with `FOR UPDATE SKIP LOCKED`, a
//! campaign's row is locked while its end is decided, and the journal's writes check the send's
//! lease in the same transaction as they write. Advisory locks are per database, so their keys
//! start with the schema: two fleets (or two tests) in two schemas never wait for each other.

mod accounts;
mod journal;
mod kv;
mod ledger;
mod pacing;
mod processes;
mod schema;
mod tls;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use futures::FutureExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use super::{BackendKind, Options, Storage};
use crate::error::{Error, Result};

/// The registry entry for `backend = "postgres"`.
pub(crate) const KIND: BackendKind = BackendKind {
    name: "postgres",
    check,
    open: |options| {
        async move {
            Postgres::open(&options)
                .await
                .map(|p| Arc::new(p) as Storage)
        }
        .boxed()
    },
};

/// Connections per host when `pool_size` is not given.
const DEFAULT_POOL_SIZE: i64 = 16;

/// The schema when `schema` is not given.
const DEFAULT_SCHEMA: &str = "public";

/// How long a call waits for a free connection, and for a new one to be made, before failing.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// How long making a connection may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn check(table: &toml::Table) -> std::result::Result<(), (String, String)> {
    for (key, value) in table {
        match key.as_str() {
            "url_env" => match value.as_str() {
                Some(var) if !var.trim().is_empty() => {}
                _ => {
                    return Err((
                        key.clone(),
                        "must name the environment variable that holds the PostgreSQL URL"
                            .to_owned(),
                    ));
                }
            },
            "pool_size" => match value.as_integer() {
                Some(1..=256) => {}
                _ => return Err((key.clone(), "must be an integer from 1 to 256".to_owned())),
            },
            "tls_ca_file" => match value.as_str() {
                Some(path) if !path.trim().is_empty() => {}
                _ => {
                    return Err((
                        key.clone(),
                        "must be the path of a PEM file holding the CA that signed the server's \
                         certificate"
                            .to_owned(),
                    ));
                }
            },
            "schema" => {
                if let Err(why) = value
                    .as_str()
                    .ok_or_else(|| "must be a string".to_owned())
                    .and_then(check_schema)
                {
                    return Err((key.clone(), why));
                }
            }
            _ => {
                return Err((
                    key.clone(),
                    "unknown key for the postgres backend (it takes `url_env`, `pool_size`, \
                     `schema` and `tls_ca_file`)"
                        .to_owned(),
                ));
            }
        }
    }
    if !table.contains_key("url_env") {
        return Err((
            "url_env".to_owned(),
            "is required by the postgres backend: the environment variable that holds the URL"
                .to_owned(),
        ));
    }
    Ok(())
}

/// A schema name the host can use unquoted everywhere (in `search_path` too): lowercase ASCII
/// letters, digits and `_`, not starting with a digit or `pg_` (PostgreSQL's own).
fn check_schema(name: &str) -> std::result::Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.starts_with("pg_")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a schema name this host takes: 1 to 63 lowercase letters, digits \
             and `_`, not starting with a digit or `pg_`"
        ))
    }
}

/// The PostgreSQL database (one schema of it), through a pool of connections.
pub(crate) struct Postgres {
    pool: Pool,
    /// The schema every connection uses (its `search_path`).
    schema: String,
    /// Whether the connection is encrypted and what was verified, as logged at start.
    security: String,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pool's config holds the URL's parts: only the schema is shown.
        f.debug_struct("Postgres")
            .field("schema", &self.schema)
            .field("security", &self.security)
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Connects to the database `options` name and brings the schema to this host's version.
    pub(crate) async fn open(options: &Options) -> Result<Postgres> {
        let var = options.string("url_env").unwrap_or("url_env");
        let url = options.secret("url_env").ok_or_else(|| {
            Error::storage(format!(
                "storage.url_env: no PostgreSQL URL was read from {var}"
            ))
        })?;
        // The parser's own message may quote the URL: only the variable is named.
        let unparsed = || {
            Error::storage(format!(
                "the PostgreSQL URL in {var} does not parse (expected \
                 postgres://USER:PASSWORD@HOST:PORT/DATABASE)"
            ))
        };
        // tokio-postgres knows neither `sslrootcert` nor the verify modes: they are the host's.
        let (url, params) = tls::split_url(url.expose()).ok_or_else(unparsed)?;
        let mut config: tokio_postgres::Config = url.parse().map_err(|_| unparsed())?;
        let tls = tls::Tls::new(&params, options.path("tls_ca_file"))
            .map_err(|why| Error::storage(format!("PostgreSQL TLS (the URL in {var}): {why}")))?;
        config.ssl_mode(tls.driver_mode());
        let schema = options
            .string("schema")
            .unwrap_or(DEFAULT_SCHEMA)
            .to_owned();
        check_schema(&schema).map_err(|why| Error::storage(format!("storage.schema: {why}")))?;
        // Every connection starts in the schema: no statement names it.
        let startup = match config.get_options() {
            Some(given) => format!("{given} -c search_path={schema}"),
            None => format!("-c search_path={schema}"),
        };
        config.options(startup);
        if config.get_application_name().is_none() {
            config.application_name("coupon-host");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let pool_size = options
            .table
            .get("pool_size")
            .and_then(toml::Value::as_integer)
            .unwrap_or(DEFAULT_POOL_SIZE);
        let manager = Manager::from_config(
            config,
            tls.connector(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.clamp(1, 256) as usize)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| Error::storage_from("cannot make the PostgreSQL pool", e))?;
        let mut postgres = Postgres {
            pool,
            schema,
            security: String::new(),
        };
        let mut conn = postgres.pool.get().await.map_err(|e| {
            pool_error(
                &format!("cannot connect to PostgreSQL (the URL in {var})"),
                e,
            )
        })?;
        // Once, at start: whether what travels to the database is encrypted, and what was checked.
        postgres.security = tls.describe();
        if tls.as_asked() {
            tracing::info!("PostgreSQL connection: {}", postgres.security);
        } else {
            tracing::warn!("PostgreSQL connection: {}", postgres.security);
        }
        schema::migrate(&mut conn, &postgres.schema).await?;
        Ok(postgres)
    }

    /// A connection from the pool.
    async fn conn(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| pool_error("cannot get a PostgreSQL connection", e))
    }

    /// The text of an advisory lock's key: the schema, then `parts`.
    fn lock_key(&self, parts: &[&str]) -> String {
        let mut key = self.schema.clone();
        for part in parts {
            key.push('/');
            key.push_str(part);
        }
        key
    }
}

/// The kinds of advisory lock, the first half of a lock's key (`pg_advisory_xact_lock(int,
/// int)`): one per purpose, so a kv namespace and a credential never share a lock.
#[derive(Clone, Copy)]
#[repr(i32)]
enum LockClass {
    Migrations = 1,
    KvNamespace = 2,
    Credential = 3,
    CampaignAccept = 4,
}

/// Takes an advisory lock until the transaction ends: `$1` the class, `$2` the key's text.
const LOCK: &str = "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))";

fn pool_error(doing: &str, error: PoolError) -> Error {
    match error {
        // The driver's error is the cause; the pool's own wrapper would repeat it.
        PoolError::Backend(e) => Error::storage_from(doing.to_owned(), e),
        other => Error::storage_from(doing.to_owned(), other),
    }
}

/// tokio-postgres's errors as the host's, with what the host was doing.
pub(crate) trait Context<T> {
    fn doing(self, what: &str) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, tokio_postgres::Error> {
    fn doing(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::storage_from(what.to_owned(), e))
    }
}

/// A statement's parameters.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Prepares statements on `conn`, or takes them from its cache (after a connection's first use,
/// this costs nothing); on a fresh connection their preparations go out together.
async fn prepare<const N: usize>(conn: &Object, queries: [&str; N]) -> Result<[Statement; N]> {
    let statements =
        futures::future::try_join_all(queries.iter().map(|query| conn.prepare_cached(query)))
            .await
            .doing("cannot prepare a statement")?;
    Ok(statements
        .try_into()
        .unwrap_or_else(|_| unreachable!("one statement per query")))
}

/// Whether [`pipeline`] wraps its statements in a transaction, and how.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wrap {
    /// Each statement commits on its own.
    None,
    /// `BEGIN`, the statements, `COMMIT`: one transaction, one round trip.
    Atomic,
    /// `BEGIN` and the statements; the transaction stays open (see [`Tx`]).
    Open,
    /// The statements and `COMMIT`, ending a transaction [`Wrap::Open`] began.
    Commit,
}

/// Runs `steps` on `conn` in one round trip and returns each one's rows, or the first failure
/// (as a failure of `doing`).
///
/// tokio-postgres queues a request on its connection when its future is first polled, and the
/// server runs requests in the order they arrive: so every future is polled once, in order,
/// before any is awaited. A statement that fails aborts the transaction it is in, and the
/// `COMMIT` after it then rolls the whole transaction back.
async fn pipeline(
    conn: &Object,
    wrap: Wrap,
    doing: &str,
    steps: &[(&Statement, Params<'_>)],
) -> Result<Vec<Vec<Row>>> {
    type Reply = std::result::Result<Vec<Row>, tokio_postgres::Error>;
    check_params(steps)?;
    let begins = matches!(wrap, Wrap::Atomic | Wrap::Open);
    let commits = matches!(wrap, Wrap::Atomic | Wrap::Commit);
    let mut futures: Vec<futures::future::BoxFuture<'_, Reply>> = Vec::new();
    if begins {
        futures.push(Box::pin(control(conn, "BEGIN")));
    }
    for (statement, params) in steps {
        futures.push(Box::pin(conn.query(*statement, params)));
    }
    if commits {
        futures.push(Box::pin(control(conn, "COMMIT")));
    }
    let mut replies: Vec<Option<Reply>> = futures.iter().map(|_| None).collect();
    for (future, reply) in futures.iter_mut().zip(replies.iter_mut()) {
        if let std::task::Poll::Ready(done) = futures::poll!(future.as_mut()) {
            *reply = Some(done);
        }
    }
    for (future, reply) in futures.iter_mut().zip(replies.iter_mut()) {
        if reply.is_none() {
            *reply = Some(future.await);
        }
    }
    let statements = usize::from(begins)..usize::from(begins) + steps.len();
    let mut rows = Vec::with_capacity(steps.len());
    for (i, reply) in replies.into_iter().flatten().enumerate() {
        // The first failure is the cause; those after it only say the transaction was aborted.
        let found = reply.doing(doing)?;
        if statements.contains(&i) {
            rows.push(found);
        }
    }
    Ok(rows)
}

/// A transaction-control statement, as a pipeline step with no rows.
async fn control(conn: &Object, sql: &str) -> std::result::Result<Vec<Row>, tokio_postgres::Error> {
    conn.batch_execute(sql).await.map(|()| Vec::new())
}

/// Encodes every parameter into a scratch buffer first. A parameter that does not encode fails
/// its statement on the client, without sending it, while the statements after it (the
/// `COMMIT`) still go: checked here, no statement is sent unless all of them can be.
fn check_params(steps: &[(&Statement, Params<'_>)]) -> Result<()> {
    let mut scratch = bytes::BytesMut::new();
    for (statement, params) in steps {
        let types = statement.params();
        if types.len() != params.len() {
            return Err(Error::storage(format!(
                "a statement takes {} parameters, was given {}",
                types.len(),
                params.len()
            )));
        }
        for (ty, param) in types.iter().zip(params.iter()) {
            scratch.clear();
            param
                .to_sql_checked(ty, &mut scratch)
                .map_err(|e| Error::storage_from("a statement's parameter does not encode", e))?;
        }
    }
    Ok(())
}

/// A transaction open across round trips, for a step that reads, decides in Rust, then writes.
/// Dropped unfinished (an error returned early, the caller's future cancelled), it takes its
/// connection out of the pool and closes it, so the server rolls the transaction back and no
/// other call inherits it or its locks.
struct Tx {
    conn: Option<Object>,
}

impl Tx {
    /// Begins a transaction with `steps`, in one round trip.
    async fn begin(
        conn: Object,
        doing: &str,
        steps: &[(&Statement, Params<'_>)],
    ) -> Result<(Tx, Vec<Vec<Row>>)> {
        let rows = pipeline(&conn, Wrap::Open, doing, steps).await;
        // On failure the transaction is dropped here, and its connection with it.
        let tx = Tx { conn: Some(conn) };
        Ok((tx, rows?))
    }

    /// The connection the transaction runs on.
    fn conn(&self) -> &Object {
        self.conn
            .as_ref()
            .expect("an open transaction has its connection")
    }

    /// Runs `steps` and commits, in one round trip.
    async fn commit(
        mut self,
        doing: &str,
        steps: &[(&Statement, Params<'_>)],
    ) -> Result<Vec<Vec<Row>>> {
        let rows = pipeline(self.conn(), Wrap::Commit, doing, steps).await?;
        // Committed: the connection goes back to the pool. (On failure, `self` is dropped with
        // it: whether the COMMIT went out or not, the connection is closed.)
        drop(self.conn.take());
        Ok(rows)
    }

    /// Rolls back.
    async fn rollback(mut self) -> Result<()> {
        let conn = self
            .conn
            .take()
            .expect("an open transaction has its connection");
        conn.batch_execute("ROLLBACK")
            .await
            .doing("cannot roll back a transaction")
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::secret::Secret;
    use crate::store::Options;
    use crate::store::postgres::{Postgres, schema};

    use coupon_host_tests::cluster::{Cluster, TestCa, Validity};
    use coupon_host_tests::postgres::{SchemaGuard, URL_VAR, fresh_name, test_url, with_param};

    /// Options for a fresh schema on the test server, and the guard that drops it; `None` when
    /// the server cannot be reached, after one line saying the test is skipped — unless `CI` is
    /// set, where a test that cannot reach its server fails.
    pub(super) async fn scratch() -> Option<(Options, SchemaGuard)> {
        let url = coupon_host_tests::postgres::reachable().await?;
        let schema = fresh_name("coupon_test_");
        // The backend's sessions carry the schema's name, for the guard to find them.
        let tagged = with_param(&url, "application_name", &schema);
        let mut options = options_for(tagged, None);
        options.table.insert("schema".into(), schema.clone().into());
        Some((options, SchemaGuard::new(&url, schema)))
    }

    /// Options for the database at `url` (in `$COUPON_TEST_POSTGRES_URL`), with `tls_ca_file`
    /// when given.
    fn options_for(url: String, tls_ca_file: Option<&std::path::Path>) -> Options {
        let mut table = toml::Table::new();
        table.insert("url_env".into(), URL_VAR.into());
        table.insert("pool_size".into(), 8_i64.into());
        if let Some(path) = tls_ca_file {
            table.insert("tls_ca_file".into(), path.to_str().unwrap().into());
        }
        Options {
            table,
            base: std::env::temp_dir(),
            secrets: [("url_env".to_owned(), Secret::new(url))].into(),
        }
    }

    crate::store::suite::storage_suite!(async {
        let (options, guard) = scratch().await?;
        let storage = Postgres::open(&options)
            .await
            .expect("the backend opens on a fresh schema");
        Some(Fixture {
            storage: Arc::new(storage),
            _guard: Box::new(guard),
        })
    });

    /// A direct connection to the test server, in `schema`.
    async fn client(schema: &str) -> tokio_postgres::Client {
        let mut config: tokio_postgres::Config = test_url().parse().unwrap();
        config.options(format!("-c search_path={schema}"));
        let (client, connection) = config.connect(tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        client
    }

    #[tokio::test]
    async fn refuses_a_schema_newer_than_it_knows() {
        let Some((options, guard)) = scratch().await else {
            return;
        };
        drop(Postgres::open(&options).await.unwrap());
        client(&guard.schema)
            .await
            .execute(
                "INSERT INTO schema_version (version, applied_ms) VALUES ($1, 0)",
                &[&(schema::VERSION + 1)],
            )
            .await
            .unwrap();
        let error = match Postgres::open(&options).await {
            Err(error) => error.to_string(),
            Ok(_) => panic!("a newer schema was opened"),
        };
        let newer = schema::VERSION + 1;
        let known = schema::VERSION;
        assert!(
            error.contains(&format!(
                "has version {newer}, newer than this host knows ({known})"
            )),
            "{error}"
        );
    }

    /// Hosts starting together on a new schema: each migration runs once, under the lock, and
    /// every host opens.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hosts_starting_together_migrate_once() {
        let Some((options, guard)) = scratch().await else {
            return;
        };
        let opened = futures::future::join_all((0..4).map(|_| Postgres::open(&options))).await;
        for open in opened {
            open.expect("every host opens");
        }
        let versions: Vec<i64> = client(&guard.schema)
            .await
            .query("SELECT version FROM schema_version ORDER BY version", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(versions, (1..=schema::VERSION).collect::<Vec<_>>());
    }

    /// Once migrated, a schema opens and works for a role that may only use its rows: a host
    /// needs no right to create anything unless a migration is due.
    #[tokio::test]
    async fn a_role_that_may_not_create_opens_a_migrated_schema() {
        let Some((mut options, mut guard)) = scratch().await else {
            return;
        };
        drop(Postgres::open(&options).await.unwrap());
        let (schema, role) = (guard.schema.clone(), format!("{}_rw", guard.schema));
        guard.roles.push(role.clone());
        client(&schema)
            .await
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN;
                 GRANT USAGE ON SCHEMA {schema} TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}"
            ))
            .await
            .unwrap();
        let url = options.secret("url_env").unwrap().expose().to_owned();
        options.secrets.insert(
            "url_env".into(),
            Secret::new(with_param(&url, "user", &role)),
        );
        let storage = Postgres::open(&options).await.expect("the role opens it");
        let scope = Scope::new("p", DEFAULT_ACCOUNT);
        storage
            .kv_set(&scope, "k", b"v", None, &KvQuota::default())
            .await
            .unwrap();
        let now = now_ms();
        assert!(matches!(
            storage
                .pace_admit("app", 1, 1000, "h", now, now + 1000)
                .await,
            Ok(Admission::Granted(_))
        ));
        // The same role may not create: a schema it has to migrate is refused with the cause.
        let mut fresh = options.clone();
        fresh
            .table
            .insert("schema".into(), format!("{schema}_new").into());
        let refused = match Postgres::open(&fresh).await {
            Err(error) => crate::error::full_message(&error),
            Ok(_) => panic!("a role that may not create made a schema"),
        };
        assert!(refused.contains("permission denied"), "{refused}");
    }

    /// Two hosts on one schema: two backends, each with its own pool.
    async fn two_hosts() -> Option<([Arc<Postgres>; 2], SchemaGuard)> {
        let (options, guard) = scratch().await?;
        let first = Postgres::open(&options).await.unwrap();
        let second = Postgres::open(&options).await.unwrap();
        Some(([Arc::new(first), Arc::new(second)], guard))
    }

    /// Many admissions at once from two hosts: the window never holds more than `qps`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hosts_admitting_together_never_exceed_the_window() {
        let Some((hosts, _guard)) = two_hosts().await else {
            return;
        };
        let now = now_ms();
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let host = hosts[i % 2].clone();
                tokio::spawn(async move {
                    host.pace_admit("app", 10, 60_000, "h", now, now + 60_000)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut granted = Vec::new();
        for task in tasks {
            if let Admission::Granted(id) = task.await.unwrap() {
                granted.push(id);
            }
        }
        granted.sort_unstable();
        granted.dedup();
        assert_eq!(granted.len(), 10, "{granted:?}");
    }

    /// Two hosts claiming one campaign's batches at once: each batch goes to one claimer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hosts_claiming_together_get_each_batch_once() {
        let Some((hosts, _guard)) = two_hosts().await else {
            return;
        };
        let record = CampaignRecord {
            id: "c".into(),
            scope: Scope::new("p", DEFAULT_ACCOUNT),
            coupon: "1".into(),
            quantity: 1,
            options: Vec::new(),
            source: "list.txt".into(),
            source_sha256: "ab".repeat(32),
            total_lines: 40,
            batch_size: 1,
        };
        hosts[0].campaign_open(&record).await.unwrap();
        for index in 0..40 {
            hosts[1].campaign_queue("c", index).await.unwrap();
        }
        hosts[0].campaign_enqueued("c").await.unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let host = hosts[i % 2].clone();
                tokio::spawn(async move {
                    let mut claimed = Vec::new();
                    let holder = format!("w{i}");
                    let far = now_ms() + 60_000;
                    while let Claim::Batch(batch) =
                        host.campaign_claim(Some("c"), &holder, far).await.unwrap()
                    {
                        claimed.push(batch.index);
                    }
                    claimed
                })
            })
            .collect();
        let mut claimed = Vec::new();
        for task in tasks {
            claimed.extend(task.await.unwrap());
        }
        // A claimer may be told to wait while batches are left: one it picked was claimed by
        // another just before (under `READ COMMITTED`, a locking read with LIMIT may then find
        // none). A last claimer takes what is left.
        let far = now_ms() + 60_000;
        while let Claim::Batch(batch) = hosts[0]
            .campaign_claim(Some("c"), "last", far)
            .await
            .unwrap()
        {
            claimed.push(batch.index);
        }
        claimed.sort_unstable();
        assert_eq!(claimed, (0..40).collect::<Vec<u64>>());
    }

    /// Two hosts beginning one new send at once: one opens it, the others find it busy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn hosts_beginning_one_send_together_open_it_once() {
        let Some((hosts, _guard)) = two_hosts().await else {
            return;
        };
        let send = SendKey {
            scope: Scope::new("p", DEFAULT_ACCOUNT),
            key: "k".into(),
        };
        let recipients = vec![crate::types::Recipient::Nick("n".into())];
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let (host, send, recipients) =
                    (hosts[i % 2].clone(), send.clone(), recipients.clone());
                tokio::spawn(async move {
                    let lease = Lease {
                        holder: format!("h{i}"),
                        ttl_ms: 60_000,
                    };
                    host.journal_begin(&send, "fp", &recipients, 1, &lease)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let (mut new, mut busy) = (0, 0);
        for task in tasks {
            match task.await.unwrap() {
                Begin::New { .. } => new += 1,
                Begin::Busy { .. } => busy += 1,
                other => panic!("expected new or busy, got {other:?}"),
            }
        }
        assert_eq!((new, busy), (1, 9));
    }

    /// The URL (password included) never shows: not in a connection error, not in a parse
    /// error, not in `Debug`. (No server needed: nothing listens on port 1.)
    #[tokio::test]
    async fn the_url_and_its_password_are_never_printed() {
        for url in [
            "postgres://coupon:hunter2-pw@127.0.0.1:1/db",
            "postgres://coupon:hunter2-pw@127.0.0.1:1/db?sslmode=bogus",
            "postgres://coupon:hunter2-pw@127.0.0.1:no-port/db",
        ] {
            let mut table = toml::Table::new();
            table.insert("url_env".into(), "FLEET_DB_URL".into());
            let options = Options {
                table,
                base: std::env::temp_dir(),
                secrets: [("url_env".to_owned(), Secret::new(url))].into(),
            };
            assert!(!format!("{options:?}").contains("hunter2"));
            let error = match Postgres::open(&options).await {
                Err(error) => crate::error::full_message(&error),
                Ok(_) => panic!("opened {url}"),
            };
            assert!(error.contains("FLEET_DB_URL"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
            assert!(!error.contains("coupon:"), "{error}");
        }
    }

    /// Whether the backend's connections are encrypted, as the server sees them.
    async fn server_sees_tls(postgres: &Postgres) -> bool {
        let conn = postgres.conn().await.unwrap();
        conn.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
    }

    /// `sslmode=require` encrypts against the machine's server (which runs with `ssl = on`);
    /// `disable` does not.
    #[tokio::test]
    async fn require_encrypts_and_disable_does_not_on_the_machines_server() {
        let Some((options, _guard)) = scratch().await else {
            return;
        };
        let url = options.secret("url_env").unwrap().expose().to_owned();
        for (mode, encrypted) in [("require", true), ("disable", false)] {
            let mut options = options.clone();
            let url = with_param(&url, "sslmode", mode);
            options.secrets.insert("url_env".into(), Secret::new(url));
            let postgres = Postgres::open(&options).await.expect("it opens");
            assert_eq!(
                server_sees_tls(&postgres).await,
                encrypted,
                "sslmode={mode}"
            );
            let said = if encrypted {
                "encrypted (TLS), certificate not verified (sslmode=require)"
            } else {
                "not encrypted (sslmode=disable)"
            };
            assert_eq!(postgres.security, said);
        }
    }

    /// The URL on the test cluster, reached as `host`, with `sslmode` and a password that must
    /// never show (trust auth ignores it).
    fn cluster_url(cluster: &Cluster, host: &str, mode: &str) -> String {
        let url = cluster
            .url(host)
            .replacen("postgres@", "postgres:hunter2-pw@", 1);
        with_param(&url, "sslmode", mode)
    }

    /// Opening fails; the error, whole, names `cause` and never the URL or its password.
    async fn refused(options: &Options, cause: &str) {
        let error = match Postgres::open(options).await {
            Err(error) => crate::error::full_message(&error),
            Ok(_) => panic!("opened, though the certificate should be refused for {cause}"),
        };
        assert!(error.contains(cause), "{error}");
        assert!(error.contains(URL_VAR), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        assert!(!error.contains("postgres://"), "{error}");
    }

    /// `verify-full` with the CA that signed the server's certificate, and the name the
    /// certificate holds: the connection is encrypted and both are verified.
    #[tokio::test]
    async fn verify_full_connects_with_the_right_ca_and_name() {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        let url = cluster_url(&cluster, "localhost", "verify-full");
        let postgres = Postgres::open(&options_for(url, Some(cluster.ca_file().as_path())))
            .await
            .expect("verify-full opens");
        assert!(server_sees_tls(&postgres).await);
        let security = &postgres.security;
        assert!(
            security.starts_with("encrypted (TLS), certificate chain (the CA in ")
                && security.ends_with(
                    "(storage.tls_ca_file)) and host name verified (sslmode=verify-full)"
                ),
            "{security}"
        );
        // The same CA as the URL's sslrootcert.
        let ca = cluster.ca_file();
        let url = with_param(
            &cluster_url(&cluster, "localhost", "verify-full"),
            "sslrootcert",
            &ca.to_str().unwrap().replace('/', "%2F"),
        );
        let postgres = Postgres::open(&options_for(url, None)).await.unwrap();
        assert!(server_sees_tls(&postgres).await);
    }

    /// A CA other than the one that signed the server's certificate: refused as an unknown CA,
    /// by `verify-full`, by `verify-ca`, and by `require` given a CA file (as libpq).
    #[tokio::test]
    async fn a_certificate_of_another_ca_is_refused_as_unknown() {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        let other = cluster.scratch().join("other-ca.pem");
        TestCa::new("another CA").write(&other);
        for mode in ["verify-full", "verify-ca", "require"] {
            let url = cluster_url(&cluster, "localhost", mode);
            refused(&options_for(url, Some(other.as_path())), "unknown CA").await;
        }
        // Without a CA file, `require` encrypts and checks nothing.
        let url = cluster_url(&cluster, "localhost", "require");
        let postgres = Postgres::open(&options_for(url, None)).await.unwrap();
        assert!(server_sees_tls(&postgres).await);
    }

    /// The server's certificate names `localhost`; reached as 127.0.0.1, `verify-full` refuses
    /// it as a name mismatch, while `verify-ca` (the chain without the name) takes it.
    #[tokio::test]
    async fn verify_full_refuses_a_certificate_for_another_name() {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        let ca = cluster.ca_file();
        let url = cluster_url(&cluster, "127.0.0.1", "verify-full");
        refused(&options_for(url, Some(ca.as_path())), "name mismatch").await;
        let url = cluster_url(&cluster, "127.0.0.1", "verify-ca");
        let postgres = Postgres::open(&options_for(url, Some(ca.as_path())))
            .await
            .expect("verify-ca does not check the name");
        assert!(
            postgres
                .security
                .contains("host name not checked (sslmode=verify-ca)"),
            "{}",
            postgres.security
        );
    }

    /// An expired certificate from the right CA is refused as expired.
    #[tokio::test]
    async fn verify_full_refuses_an_expired_certificate() {
        let Some(cluster) = Cluster::start() else {
            return;
        };
        cluster.serve(&cluster.ca.issue(&["localhost"], Validity::Expired));
        let url = cluster_url(&cluster, "localhost", "verify-full");
        refused(
            &options_for(url, Some(cluster.ca_file().as_path())),
            "expired",
        )
        .await;
    }
}
