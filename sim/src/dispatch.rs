//! What every route does before and around its platform logic: take an injected fault, act it
//! out, or answer the call for real with panics contained.
//!
//! Both protocols (the TOP gateway and OAuth endpoint, the Douyin API) go through [`serve`], so a
//! [`Fault`] means the same on every route. A route describes itself with [`Endpoint`]: how to
//! answer for real, how to record a call, and how its platform words an injected error.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Fault;
use crate::server::{ResetHandle, error_page};
use crate::state::{Shared, State, lock};

/// How one call is recorded: the parts of a [`crate::CallRecord`] that depend on how it went.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) ok: bool,
    pub(crate) error_code: Option<String>,
    pub(crate) sub_code: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) detail: Option<String>,
    /// The TOP seller the call acted for, once its session or grant was resolved.
    pub(crate) seller: Option<String>,
}

impl Outcome {
    /// A call that failed with `error_code`, nothing else known.
    pub(crate) fn failed(error_code: impl Into<String>) -> Outcome {
        Outcome {
            error_code: Some(error_code.into()),
            ..Outcome::default()
        }
    }
}

/// An injected platform error ([`Fault::TopError`]), for the route to word as its platform does.
pub(crate) struct InjectedError {
    pub(crate) code: i64,
    pub(crate) msg: String,
    pub(crate) sub_code: Option<String>,
    pub(crate) sub_msg: Option<String>,
}

/// One call on one route, as [`serve`] needs to see it.
pub(crate) trait Endpoint: Sync {
    /// The name faults match and the call is recorded under.
    fn api(&self) -> &str;

    /// Answers the call for real: the checks, the effect, the record, under one lock so the
    /// call is atomic.
    fn answer(&self, shared: &Shared) -> Response;

    /// Records the call with `outcome`, for a call a fault or a panic answered.
    fn record(&self, state: &mut State, outcome: Outcome);

    /// Answers and records an injected platform error the way the platform words errors.
    fn injected_error(&self, state: &mut State, error: InjectedError) -> Response;

    /// The `content-type` the platform answers with, for a [`Fault::Body`].
    fn content_type(&self) -> &'static str;
}

/// Takes the first queued (or chaos) fault that matches the endpoint and acts it out; without
/// one, answers the call. `reset` is the connection's handle, absent when the request did not
/// come through [`crate::server::Server`] (then a reset fault answers normally).
pub(crate) async fn serve(
    shared: &Shared,
    endpoint: &impl Endpoint,
    reset: Option<&ResetHandle>,
) -> Response {
    let fault = lock(shared).take_fault(endpoint.api());
    let Some(fault) = fault else {
        return answer_catching_panics(shared, endpoint);
    };
    match fault {
        Fault::Status { status, .. } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let outcome = Outcome::failed(format!("http-{}", status.as_u16()));
            endpoint.record(&mut lock(shared), outcome);
            error_page(status)
        }
        Fault::Body { body, .. } => {
            endpoint.record(&mut lock(shared), Outcome::failed("bad-body"));
            ([(header::CONTENT_TYPE, endpoint.content_type())], body).into_response()
        }
        Fault::TopError {
            code,
            msg,
            sub_code,
            sub_msg,
            ..
        } => {
            let error = InjectedError {
                code,
                msg,
                sub_code,
                sub_msg,
            };
            endpoint.injected_error(&mut lock(shared), error)
        }
        Fault::Delay {
            millis,
            apply: true,
            ..
        } => {
            let response = answer_catching_panics(shared, endpoint);
            tokio::time::sleep(Duration::from_millis(millis)).await;
            response
        }
        Fault::Delay {
            millis,
            apply: false,
            ..
        } => {
            // If the client gives up meanwhile, hyper notices the closed connection and drops
            // this future, so the call never takes effect.
            tokio::time::sleep(Duration::from_millis(millis)).await;
            answer_catching_panics(shared, endpoint)
        }
        Fault::ResetConnection { .. } => match reset {
            Some(reset) => {
                endpoint.record(&mut lock(shared), Outcome::failed("reset"));
                reset.reset();
                // The connection task drops this future together with the connection.
                std::future::pending().await
            }
            None => answer_catching_panics(shared, endpoint),
        },
    }
}

/// Answers the call, turning a panic into an HTTP 500 so one bad call cannot take the simulator
/// down (and so the test that caused it sees a clear failure).
pub(crate) fn answer_catching_panics(shared: &Shared, endpoint: &impl Endpoint) -> Response {
    match std::panic::catch_unwind(AssertUnwindSafe(|| endpoint.answer(shared))) {
        Ok(response) => response,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            let mut outcome = Outcome::failed("panic");
            outcome.detail = Some(message.clone());
            endpoint.record(&mut lock(shared), outcome);
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("coupon-sim: the handler panicked: {message}"),
            )
                .into_response()
        }
    }
}
