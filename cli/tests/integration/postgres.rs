//! PostgreSQL for the tests that need one: this machine kind runs it at 127.0.0.1:5432 with trust
//! auth (`$COUPON_TEST_POSTGRES_URL` overrides). Each test gets a schema of its own, dropped at
//! its end ([`Schema`]). A test that cannot reach the server fails under CI (`CI` set), and
//! elsewhere says in one line that it skipped.

use std::time::Duration;

const URL_VAR: &str = "COUPON_TEST_POSTGRES_URL";

/// The server's URL, or `None` (said on one line) when it cannot be reached outside CI.
pub(crate) async fn url() -> Option<String> {
    let url = std::env::var(URL_VAR)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let mut config: tokio_postgres::Config = url.parse().expect("the test URL parses");
    config.connect_timeout(Duration::from_secs(5));
    match config.connect(tokio_postgres::NoTls).await {
        Ok(_) => Some(url),
        Err(error) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL is not reachable ({error}), and CI needs it (set {URL_VAR} to use another server)"
            );
            eprintln!("skipped: PostgreSQL not reachable ({error}; set {URL_VAR} to use another)");
            None
        }
    }
}

/// A schema no other test uses, which the host creates on first open and which is dropped,
/// with everything in it, when this is dropped (a failed test's too).
pub(crate) struct Schema {
    url: String,
    pub(crate) name: String,
}

impl Schema {
    pub(crate) fn new(url: &str) -> Schema {
        Schema {
            url: url.to_owned(),
            name: format!("t_{}_{:08x}", std::process::id(), rand_u32()),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on: a thread with a
        // runtime of its own drops the schema. The hosts of the test have ended by now (children
        // are killed on drop, before the env); the lock timeout bounds a wait on anything else.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {name} CASCADE"
                    ))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(why)) = dropped {
            eprintln!("could not drop the test schema {}: {why}", self.name);
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    hasher.finish() as u32
}
