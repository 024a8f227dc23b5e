//! PostgreSQL for the tests that need one, shared by the host's storage suite and the CLI's
//! integration tests: this machine kind runs it at 127.0.0.1:5432 with trust auth
//! (`$COUPON_TEST_POSTGRES_URL` overrides). Each test works in a schema of its own, dropped at
//! its end by a [`SchemaGuard`]. A test that cannot reach the server fails under CI (`CI` set),
//! and elsewhere says in one line that it skipped.

use std::time::Duration;

/// The variable that may point the tests at another server.
pub const URL_VAR: &str = "COUPON_TEST_POSTGRES_URL";

/// The server the tests use: `$COUPON_TEST_POSTGRES_URL`, else the local one (trust auth).
pub fn test_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The test server's URL once it has answered; `None` when it cannot be reached, after one line
/// saying the test is skipped — unless `CI` is set, where a test that cannot reach its server
/// fails.
pub async fn reachable() -> Option<String> {
    let url = test_url();
    let mut config: tokio_postgres::Config = url.parse().expect("the test URL parses");
    config.connect_timeout(Duration::from_secs(5));
    match config.connect(tokio_postgres::NoTls).await {
        Ok(_) => Some(url),
        Err(error) => {
            let why = full_message(&error);
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL not reachable at {} (CI is set: tests that need it fail): {why}",
                place(&url)
            );
            eprintln!(
                "skipped: PostgreSQL not reachable at {} ({why}; set {URL_VAR} to use another)",
                place(&url)
            );
            None
        }
    }
}

/// Where a URL points, without its user or password: for messages.
pub fn place(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(config) => {
            let hosts: Vec<String> = config
                .get_hosts()
                .iter()
                .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
                .map(|(host, port)| match host {
                    tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .collect();
            format!("{}/{}", hosts.join(","), config.get_dbname().unwrap_or(""))
        }
        Err(_) => format!("the URL in {URL_VAR}, which does not parse"),
    }
}

/// `url` with a connection parameter added (a later one wins over one the URL has).
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    match (url.contains("://"), url.contains('?')) {
        (true, true) => format!("{url}&{key}={value}"),
        (true, false) => format!("{url}?{key}={value}"),
        (false, _) => format!("{url} {key}={value}"),
    }
}

/// A schema name no other test (or test process) uses: `prefix` and 16 hex digits.
pub fn fresh_name(prefix: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{prefix}{:016x}", hasher.finish())
}

/// Drops its schema, and everything in it, when dropped (a test that fails too), then the roles
/// a test made.
pub struct SchemaGuard {
    url: String,
    /// The schema's name.
    pub schema: String,
    /// Roles the test created, dropped after the schema.
    pub roles: Vec<String>,
}

impl SchemaGuard {
    /// A guard for `schema` on the server at `url`.
    pub fn new(url: &str, schema: String) -> SchemaGuard {
        SchemaGuard {
            url: url.to_owned(),
            schema,
            roles: Vec::new(),
        }
    }
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let roles: String = self
            .roles
            .iter()
            .map(|role| format!("; DROP ROLE IF EXISTS {role}"))
            .collect();
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread of its own,
        // with a runtime of its own, drops the schema. Sessions tagged with the schema's name
        // (`application_name`, see [`with_param`]) are ended first: blocked here, the test's
        // runtime cannot close them, and one left in a transaction by a failed test would hold
        // locks the drop waits for. The lock timeout bounds the wait on anything else.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| full_message(&e))?;
                tokio::spawn(connection);
                client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                         WHERE application_name = $1 AND pid <> pg_backend_pid()",
                        &[&schema],
                    )
                    .await
                    .map_err(|e| full_message(&e))?;
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {schema} CASCADE{roles}"
                    ))
                    .await
                    .map_err(|e| full_message(&e))
            })
        })
        .join();
        if let Ok(Err(why)) = dropped {
            eprintln!("could not drop the test schema {}: {why}", self.schema);
        }
    }
}

/// An error and its sources, one after another (tokio-postgres puts the server's message in a
/// source).
fn full_message(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}
