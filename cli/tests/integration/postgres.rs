//! PostgreSQL for the integration tests that need one: the test server and a schema per test,
//! from the shared test-support crate (`coupon_host_tests::postgres`, which the host's storage
//! suite uses too). A test that cannot reach the server fails under CI (`CI` set), and elsewhere
//! says in one line that it skipped.

pub(crate) use coupon_host_tests::postgres::SchemaGuard as Schema;

/// The server's URL, or `None` (said on one line) when it cannot be reached outside CI.
pub(crate) async fn url() -> Option<String> {
    coupon_host_tests::postgres::reachable().await
}

/// A schema no other test uses, which the host creates on first open and which is dropped,
/// with everything in it, when the returned guard is dropped (a failed test's too).
pub(crate) fn schema(url: &str) -> Schema {
    Schema::new(url, coupon_host_tests::postgres::fresh_name("t_"))
}
