//! PostgreSQL for the tests that need one: this machine kind runs it at 127.0.0.1:5432 with trust
//! auth (`$COUPON_TEST_POSTGRES_URL` overrides). Each test gets a schema of its own. A test that
//! cannot reach it fails under CI (`CI` set), and elsewhere says in one line that it skipped.

/// The server's URL, or `None` (said on one line) when it cannot be reached outside CI.
pub(crate) fn url() -> Option<String> {
    let url = std::env::var("COUPON_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let reachable = std::net::TcpStream::connect_timeout(
        &"127.0.0.1:5432".parse().unwrap(),
        std::time::Duration::from_secs(2),
    )
    .is_ok()
        || std::env::var("COUPON_TEST_POSTGRES_URL").is_ok();
    if reachable {
        return Some(url);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "PostgreSQL is not reachable at 127.0.0.1:5432, and CI needs it"
    );
    eprintln!("skipped: PostgreSQL not reachable at 127.0.0.1:5432");
    None
}

/// A schema name no other test uses (the host creates it; the server is a test server).
pub(crate) fn fresh_schema() -> String {
    format!("t_{}_{:08x}", std::process::id(), rand_u32())
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
