//! Metric names, and the one-line helpers the rest of the crate records them with.
//!
//! The crate records through the [`metrics`](https://docs.rs/metrics) facade: nothing is kept
//! unless a recorder is installed. `coupon-host serve` installs a Prometheus recorder
//! ([`prometheus_builder`]) and renders it at `GET /metrics`; an embedder may install its own
//! recorder (any `metrics`-compatible exporter) and gets the same series.
//!
//! Labels are bounded: plugin names come from the config, never from a request (a call to an
//! unknown plugin records nothing), and classes and kinds are fixed vocabularies.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `coupon_host_calls_total` | counter | `plugin`, `op` (`send`/`query`), `outcome` (`ok`/`error`), `class` (`none` or [`Error::kind`]) |
//! | `coupon_host_recipients_total` | counter | `plugin`, `outcome` (`issued`/`failed`), `class` (`none` or the failure's error class) |
//! | `coupon_host_call_duration_seconds` | histogram | `plugin`, `op` — a whole library call |
//! | `coupon_host_overhead_seconds` | histogram | `plugin`, `op` — one adapter call minus its time waiting on the platform |
//! | `coupon_host_platform_requests_total` | counter | `plugin`, `status` (HTTP status, or `timeout`/`connect`/`too-large`/`denied`/`unauthorized`/`other`) |
//! | `coupon_host_platform_request_duration_seconds` | histogram | `plugin` |
//! | `coupon_host_sandbox_kills_total` | counter | `plugin`, `kind` (`deadline`/`memory`/`trap`/`contract`) |
//! | `coupon_host_instances_in_use` | gauge | — adapter instances live now (pool slots taken) |
//! | `coupon_host_retries_total` | counter | `plugin`, `class` |
//! | `coupon_host_rate_limiter_wait_seconds` | histogram | `plugin` |
//! | `coupon_host_account_state` | gauge | `plugin`, `account`, `state` (`active`/`needs-reauth`): 1 for the account's state as this process last saw it, 0 for the other |
//! | `coupon_host_http_requests_total` | counter | `route`, `status` — `serve` only |
//! | `coupon_host_http_in_flight` | gauge | — `serve` only |

use std::time::Duration;

use ::metrics::histogram;
use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

use crate::error::{Result, SandboxKill};
use crate::types::{Coupon, SendOutcome};

/// Library calls by plugin, operation, outcome and error class.
pub const CALLS: &str = "coupon_host_calls_total";
/// Recipients of sends by plugin, outcome (`issued`/`failed`) and failure class.
pub const RECIPIENTS: &str = "coupon_host_recipients_total";
/// Duration of a whole library call (`send` / `query`), seconds.
pub const CALL_SECONDS: &str = "coupon_host_call_duration_seconds";
/// What one adapter call cost beyond waiting on the platform (instantiation, guest code,
/// signing, host calls), seconds.
pub const OVERHEAD_SECONDS: &str = "coupon_host_overhead_seconds";
/// Outgoing platform requests by plugin and status.
pub const PLATFORM_REQUESTS: &str = "coupon_host_platform_requests_total";
/// Duration of one outgoing platform request, seconds.
pub const PLATFORM_SECONDS: &str = "coupon_host_platform_request_duration_seconds";
/// Adapter calls the sandbox stopped, by plugin and kind.
pub const SANDBOX_KILLS: &str = "coupon_host_sandbox_kills_total";
/// Adapter instances live now.
pub const INSTANCES_IN_USE: &str = "coupon_host_instances_in_use";
/// Retries of a platform call, by plugin and the class that caused them.
pub const RETRIES: &str = "coupon_host_retries_total";
/// Time a call waited for the rate limiter, seconds.
pub const LIMITER_WAIT_SECONDS: &str = "coupon_host_rate_limiter_wait_seconds";
/// Kept accounts by state: 1 for the state an account is in, 0 for the other.
pub const ACCOUNT_STATE: &str = "coupon_host_account_state";
/// HTTP requests `serve` answered, by route and status.
pub const HTTP_REQUESTS: &str = "coupon_host_http_requests_total";
/// HTTP requests `serve` is handling now.
pub const HTTP_IN_FLIGHT: &str = "coupon_host_http_in_flight";

/// Histogram buckets (seconds) for every `*_seconds` metric: 1 ms to 30 s.
pub const BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A Prometheus recorder builder with this crate's histogram buckets (feature `serve`). `serve` calls
/// `.install_recorder()` on it; an embedder may add its own settings first.
#[cfg(feature = "serve")]
pub fn prometheus_builder() -> metrics_exporter_prometheus::PrometheusBuilder {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".to_owned()),
            BUCKETS_SECONDS,
        )
        .expect("the bucket list is not empty")
}

/// Gives every metric its help text and unit on the installed recorder. Call once after
/// installing a recorder (`serve` does).
pub fn describe() {
    describe_gauge!(
        ACCOUNT_STATE,
        "Kept accounts by state: 1 for the state each is in (needs-reauth: its calls fail until accounts authorize)"
    );
    describe_counter!(
        CALLS,
        "Library calls by plugin, operation, outcome and error class"
    );
    describe_counter!(
        RECIPIENTS,
        "Send recipients by plugin, outcome and failure class"
    );
    describe_histogram!(
        CALL_SECONDS,
        Unit::Seconds,
        "Duration of a whole send or query"
    );
    describe_histogram!(
        OVERHEAD_SECONDS,
        Unit::Seconds,
        "One adapter call's time not spent waiting on the platform"
    );
    describe_counter!(PLATFORM_REQUESTS, "Outgoing platform requests by status");
    describe_histogram!(
        PLATFORM_SECONDS,
        Unit::Seconds,
        "Duration of one outgoing platform request"
    );
    describe_counter!(
        SANDBOX_KILLS,
        "Adapter calls stopped by the sandbox, by kind"
    );
    describe_gauge!(INSTANCES_IN_USE, "Adapter instances live now");
    describe_counter!(RETRIES, "Retried platform calls by error class");
    describe_histogram!(
        LIMITER_WAIT_SECONDS,
        Unit::Seconds,
        "Time a call waited for the rate limiter"
    );
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered by route and status");
    describe_gauge!(HTTP_IN_FLIGHT, "HTTP requests being handled");
}

/// The `class` label of a failed call: its [`Error::kind`].
fn error_label<T>(result: &Result<T>) -> (&'static str, &'static str) {
    match result {
        Ok(_) => ("ok", "none"),
        Err(error) => ("error", error.kind()),
    }
}

/// A `send` finished: one call, its recipients by outcome and class, its duration.
pub(crate) fn send_finished(plugin: &str, result: &Result<SendOutcome>, elapsed: Duration) {
    let (outcome, class) = error_label(result);
    counter!(CALLS, "plugin" => plugin.to_owned(), "op" => "send", "outcome" => outcome, "class" => class)
        .increment(1);
    histogram!(CALL_SECONDS, "plugin" => plugin.to_owned(), "op" => "send").record(elapsed);
    if let Ok(send) = result {
        if !send.issued.is_empty() {
            counter!(RECIPIENTS, "plugin" => plugin.to_owned(), "outcome" => "issued", "class" => "none")
                .increment(send.issued.len() as u64);
        }
        for failure in &send.failed {
            counter!(RECIPIENTS, "plugin" => plugin.to_owned(), "outcome" => "failed", "class" => failure.error.class.as_str())
                .increment(1);
        }
    }
}

/// A `query` finished.
pub(crate) fn query_finished(plugin: &str, result: &Result<Vec<Coupon>>, elapsed: Duration) {
    let (outcome, class) = error_label(result);
    counter!(CALLS, "plugin" => plugin.to_owned(), "op" => "query", "outcome" => outcome, "class" => class)
        .increment(1);
    histogram!(CALL_SECONDS, "plugin" => plugin.to_owned(), "op" => "query").record(elapsed);
}

/// One adapter call ended (`op`: `describe`/`send`/`query`); what it did not spend waiting on
/// the platform is the host's (and the guest's) overhead.
pub(crate) fn adapter_call(plugin: &str, op: &'static str, total: Duration, platform: Duration) {
    histogram!(OVERHEAD_SECONDS, "plugin" => plugin.to_owned(), "op" => op)
        .record(total.saturating_sub(platform));
}

/// One outgoing platform request ended with `status` (an HTTP status or a transport failure).
pub(crate) fn platform_call(plugin: &str, status: String, elapsed: Duration) {
    counter!(PLATFORM_REQUESTS, "plugin" => plugin.to_owned(), "status" => status).increment(1);
    histogram!(PLATFORM_SECONDS, "plugin" => plugin.to_owned()).record(elapsed);
}

/// The sandbox stopped an adapter call.
pub(crate) fn sandbox_kill(plugin: &str, kind: SandboxKill) {
    counter!(SANDBOX_KILLS, "plugin" => plugin.to_owned(), "kind" => kind.as_str()).increment(1);
}

/// A platform call is retried because of `class`.
pub(crate) fn retry(plugin: &str, class: crate::ErrorClass) {
    counter!(RETRIES, "plugin" => plugin.to_owned(), "class" => class.as_str()).increment(1);
}

/// A call waited `waited` for the rate limiter.
pub(crate) fn limiter_wait(plugin: &str, waited: Duration) {
    histogram!(LIMITER_WAIT_SECONDS, "plugin" => plugin.to_owned()).record(waited);
}

/// An account is seen in `state` (`active` or `needs-reauth`). Account names come from the
/// operator (`accounts add`), so the label stays bounded.
pub(crate) fn account_state(plugin: &str, account: &str, state: &str) {
    for candidate in ["active", "needs-reauth"] {
        gauge!(ACCOUNT_STATE, "plugin" => plugin.to_owned(), "account" => account.to_owned(), "state" => candidate)
            .set(if candidate == state { 1.0 } else { 0.0 });
    }
}

/// Counts one live adapter instance (a pool slot) until dropped.
pub(crate) struct InstanceInUse(());

impl InstanceInUse {
    pub(crate) fn enter() -> InstanceInUse {
        gauge!(INSTANCES_IN_USE).increment(1.0);
        InstanceInUse(())
    }
}

impl Drop for InstanceInUse {
    fn drop(&mut self) {
        gauge!(INSTANCES_IN_USE).decrement(1.0);
    }
}

/// `serve`: one HTTP request answered.
#[cfg(feature = "serve")]
pub(crate) fn http_request(route: &str, status: u16) {
    counter!(HTTP_REQUESTS, "route" => route.to_owned(), "status" => status.to_string())
        .increment(1);
}

/// `serve`: counts one HTTP request in flight until dropped.
#[cfg(feature = "serve")]
pub(crate) struct HttpInFlight(());

#[cfg(feature = "serve")]
impl HttpInFlight {
    pub(crate) fn enter() -> HttpInFlight {
        gauge!(HTTP_IN_FLIGHT).increment(1.0);
        HttpInFlight(())
    }
}

#[cfg(feature = "serve")]
impl Drop for HttpInFlight {
    fn drop(&mut self) {
        gauge!(HTTP_IN_FLIGHT).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::types::{AdapterError, ErrorClass, IssuedCoupon, RecipientFailure};
    use ::metrics::with_local_recorder;

    #[test]
    fn a_send_counts_the_call_and_each_recipient_by_class() {
        let recorder = prometheus_builder().build_recorder();
        let handle = recorder.handle();
        let outcome = SendOutcome {
            issued: vec![IssuedCoupon::new("nick:a".parse().unwrap())],
            failed: vec![RecipientFailure {
                recipient: "nick:b".parse().unwrap(),
                error: AdapterError::new(ErrorClass::RecipientLimit, "x", "y"),
            }],
            ..SendOutcome::default()
        };
        with_local_recorder(&recorder, || {
            send_finished("taobao", &Ok(outcome), Duration::from_millis(3));
            send_finished(
                "taobao",
                &Err(Error::ShuttingDown),
                Duration::from_millis(1),
            );
        });
        let text = handle.render();
        for line in [
            r#"coupon_host_calls_total{plugin="taobao",op="send",outcome="ok",class="none"} 1"#,
            r#"coupon_host_calls_total{plugin="taobao",op="send",outcome="error",class="shutting-down"} 1"#,
            r#"coupon_host_recipients_total{plugin="taobao",outcome="issued",class="none"} 1"#,
            r#"coupon_host_recipients_total{plugin="taobao",outcome="failed",class="recipient-limit"} 1"#,
            r#"coupon_host_call_duration_seconds_bucket{plugin="taobao",op="send",le="0.005"} 2"#,
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
    }
}
