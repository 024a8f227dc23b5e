//! `coupon-host serve`: the embedding API over HTTP/JSON, for an engine that is not written in
//! Rust. The answers have the shapes the CLI prints with `--json`; `GET /openapi.json` describes
//! every route.
//!
//! - `POST /v1/plugins/{name}/send`, `POST /v1/plugins/{name}/query`: bounded by
//!   [`ServeOptions::max_in_flight`]; one more is answered `429` with `Retry-After` at once
//!   instead of queueing, so an engine's backpressure sees the host's real capacity.
//! - `GET /v1/plugins`, `GET /healthz` (the process answers), `GET /readyz` (it takes calls:
//!   `503` once draining), `GET /metrics` (Prometheus text, when a handle is given),
//!   `GET /openapi.json`.
//! - Every failure is `{"error":{"kind":"…","message":"…"}}` with a fitting status; see
//!   [`ApiError`] for the table.
//!
//! An embedder can mount [`router`] in its own axum app, or run [`serve`] on a listener.
//!
//! ```no_run
//! # async fn demo(host: coupon_host::Host) -> std::io::Result<()> {
//! use coupon_host::serve::{ServeOptions, serve};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let stop = async { tokio::signal::ctrl_c().await.ok(); };
//! serve(listener, host, ServeOptions::default(), None, stop).await
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::error::{Error, SandboxKill};
use crate::types::{ErrorClass, QueryRequest, Recipient, SendRequest};
use crate::{Host, metrics};

/// How the server limits what it takes in.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Send and query requests handled at once; one more is answered `429` (default 64).
    pub max_in_flight: usize,
    /// The largest request body, in bytes; a larger one is answered `413` (default 1 MiB).
    pub max_body_bytes: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_in_flight: 64,
            max_body_bytes: 1 << 20,
        }
    }
}

impl ServeOptions {
    /// Options with these limits (each at least 1).
    pub fn new(max_in_flight: usize, max_body_bytes: usize) -> ServeOptions {
        ServeOptions {
            max_in_flight: max_in_flight.max(1),
            max_body_bytes: max_body_bytes.max(1),
        }
    }
}

/// Seconds an overloaded or draining server asks a client to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 1;

/// The OpenAPI 3.1 document served at `GET /openapi.json`, campaign routes included.
pub const OPENAPI: &str = include_str!("serve/openapi.json");

/// Routes, shared by the router and the test that holds `openapi.json` to them.
const SEND: &str = "/v1/plugins/{name}/send";
const QUERY: &str = "/v1/plugins/{name}/query";
const PLUGINS: &str = "/v1/plugins";
const CAMPAIGNS: &str = "/v1/campaigns";
const CAMPAIGN: &str = "/v1/campaigns/{id}";

#[derive(Clone)]
struct AppState {
    host: Host,
    /// Campaigns running in this process, and how the last run of each ended if it failed.
    campaigns: Arc<std::sync::Mutex<Campaigns>>,
    permits: Arc<Semaphore>,
    max_body_bytes: usize,
    metrics: Option<PrometheusHandle>,
    draining: Arc<AtomicBool>,
}

/// The whole HTTP API as an axum [`Router`], ready to serve or to nest in another app.
/// `metrics`: the handle `GET /metrics` renders; `None` answers it `404`.
pub fn router(host: Host, options: &ServeOptions, metrics: Option<PrometheusHandle>) -> Router {
    app(state(host, options, metrics))
}

fn state(host: Host, options: &ServeOptions, metrics: Option<PrometheusHandle>) -> AppState {
    AppState {
        host,
        campaigns: Arc::default(),
        permits: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
        max_body_bytes: options.max_body_bytes.max(1),
        metrics,
        draining: Arc::new(AtomicBool::new(false)),
    }
}

/// The calls that do work on a platform, all behind the in-flight limit. (A campaign runs in
/// the background: only starting it counts against the limit.)
fn calls(state: &AppState) -> Router<AppState> {
    Router::new()
        .route(SEND, post(send))
        .route(QUERY, post(query))
        .route(CAMPAIGNS, post(campaign_start))
        .route_layer(middleware::from_fn_with_state(state.clone(), limit))
}

fn app(state: AppState) -> Router {
    Router::new()
        .merge(calls(&state))
        .route(PLUGINS, get(plugins))
        .route(CAMPAIGN, get(campaign_status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn(count))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then drains: no new connections,
/// requests in flight finish, and [`Host::shutdown`] waits for any call still running.
/// With a metrics handle, runs the recorder's upkeep every few seconds.
pub async fn serve(
    listener: tokio::net::TcpListener,
    host: Host,
    options: ServeOptions,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = state(host.clone(), &options, metrics.clone());
    let draining = state.draining.clone();
    let upkeep = metrics.map(|handle| {
        tokio::spawn(async move {
            // Without upkeep, histogram samples between two scrapes pile up in memory.
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        })
    });
    let signal = async move {
        shutdown.await;
        draining.store(true, Ordering::SeqCst);
        tracing::info!("draining: no new connections; finishing requests in flight");
    };
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(signal)
        .await;
    host.shutdown().await;
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    tracing::info!("drained");
    served
}

/// Answers `429` at once when `max_in_flight` calls are already running.
async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.permits.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "overloaded",
            "too many requests in flight; retry after the Retry-After delay",
        )
        .retry_after(RETRY_AFTER_SECS)
        .into_response(),
    }
}

/// Counts every request by route and status, and the requests in flight.
async fn count(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let _in_flight = metrics::HttpInFlight::enter();
    let response = next.run(request).await;
    metrics::http_request(&route, response.status().as_u16());
    response
}

/// `POST /v1/plugins/{name}/send`: the body of a send.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    coupon: String,
    recipients: Vec<Recipient>,
    #[serde(default = "one")]
    quantity: u32,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    account: Option<String>,
}

fn one() -> u32 {
    1
}

/// Campaigns this server runs.
#[derive(Default)]
struct Campaigns {
    running: BTreeSet<String>,
    /// The error the last run of a campaign ended with (cleared when a run finishes).
    errors: BTreeMap<String, String>,
}

/// `POST /v1/campaigns`: the body of a campaign.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignBody {
    plugin: String,
    coupon: String,
    #[serde(default)]
    recipients: Option<Vec<Recipient>>,
    #[serde(default)]
    recipients_file: Option<std::path::PathBuf>,
    #[serde(default = "one")]
    quantity: u32,
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    account: Option<String>,
}

/// Checks and registers a campaign, starts it in the background and answers `202` with its id.
/// Posting the same campaign again (while it runs, or after an interruption) answers the same
/// id; a campaign that is not running is resumed.
async fn campaign_start(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body: CampaignBody = parse(body, state.max_body_bytes)?;
    state.known(&body.plugin)?;
    let file = match (body.recipients, body.recipients_file) {
        (Some(list), None) if list.is_empty() => {
            return Err(Error::InvalidRequest("no recipients".to_owned()).into());
        }
        (Some(list), None) => state.host.campaign_file(&list)?,
        (None, Some(path)) => path,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "give either recipients or recipients_file",
            ));
        }
    };
    let mut spec = crate::campaign::CampaignSpec::new(body.plugin, body.coupon, file);
    spec.quantity = body.quantity;
    spec.id = body.id;
    spec.account = body.account;
    spec.options = body.options.into_iter().collect();
    if let Some(concurrency) = body.concurrency {
        spec.concurrency = concurrency;
    }
    let prepared = state.host.campaign_prepare(spec).await?;
    let id = prepared.id().to_owned();
    let start = {
        let mut campaigns = state.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        campaigns.errors.remove(&id);
        campaigns.running.insert(id.clone())
    };
    if start {
        let campaigns = state.campaigns.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            let result = prepared.run(|_| {}).await;
            let mut campaigns = campaigns.lock().unwrap_or_else(|p| p.into_inner());
            campaigns.running.remove(&run_id);
            if let Err(error) = result {
                tracing::error!(campaign = %run_id, %error, "campaign ended early");
                campaigns.errors.insert(run_id, error.to_string());
            }
        });
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

/// `GET /v1/campaigns/{id}`: the CLI's `campaign status --json`, plus whether this server is
/// running it and how its last run ended if it failed.
async fn campaign_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let status = state.host.campaign_status(&id).await?;
    let mut value = serde_json::to_value(status).expect("a status serializes");
    let campaigns = state.campaigns.lock().unwrap_or_else(|p| p.into_inner());
    value["running"] = json!(campaigns.running.contains(&id));
    if let Some(error) = campaigns.errors.get(&id) {
        value["error"] = json!(error);
    }
    Ok(Json(value))
}

/// `POST /v1/plugins/{name}/query`: the body of a query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    recipient: Recipient,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    account: Option<String>,
}

async fn send(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    state.known(&name)?;
    let body: SendBody = parse(body, state.max_body_bytes)?;
    let request = SendRequest {
        coupon: body.coupon,
        recipients: body.recipients,
        quantity: body.quantity,
        idempotency_key: body.idempotency_key,
        options: body.options.into_iter().collect(),
        account: body.account,
    };
    let outcome = state.host.send(&name, request).await?;
    Ok(Json(outcome).into_response())
}

async fn query(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    state.known(&name)?;
    let body: QueryBody = parse(body, state.max_body_bytes)?;
    let request = QueryRequest {
        recipient: body.recipient,
        options: body.options.into_iter().collect(),
        account: body.account,
    };
    let coupons = state.host.query(&name, request).await?;
    Ok(Json(json!({ "coupons": coupons })).into_response())
}

async fn plugins(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "plugins": state.host.plugins() }))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::SeqCst) || state.host.is_shutting_down() {
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        )
            .into_response();
        set_retry_after(&mut response, RETRY_AFTER_SECS);
        return response;
    }
    Json(json!({ "status": "ready", "plugins": state.host.plugins().len() })).into_response()
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "no metrics recorder is installed in this server",
        )
        .into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such route; GET /openapi.json lists them",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not take that method; GET /openapi.json lists them",
    )
}

impl AppState {
    fn known(&self, plugin: &str) -> Result<(), ApiError> {
        // Asked each time: a reload may add or remove plugins.
        if self.host.plugins().iter().any(|p| p.name == plugin) {
            Ok(())
        } else {
            Err(Error::UnknownPlugin(plugin.chars().take(64).collect()).into())
        }
    }
}

/// Reads a JSON body: `413` over the size limit, `400` when it is not JSON, `422` when it is
/// JSON of the wrong shape (a wrong type, an unknown or missing field, a bad `KIND:ID`).
fn parse<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    max_body_bytes: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!("the body is larger than {max_body_bytes} bytes"),
            )
        } else {
            ApiError::new(rejection.status(), "bad-body", rejection.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|error| {
        use serde_json::error::Category;
        match error.classify() {
            Category::Data => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                error.to_string(),
            ),
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                format!("the body is not valid JSON: {error}"),
            ),
        }
    })
}

/// An HTTP error answer: `{"error":{"kind":"…","message":"…", …}}`.
///
/// | status | `kind` | when |
/// |---|---|---|
/// | 400 | `malformed-json` | the body is not JSON |
/// | 404 | `unknown-plugin`, `not-found` | no such plugin; no such route |
/// | 405 | `method-not-allowed` | |
/// | 413 | `payload-too-large` | the body is over `--max-body-kib` |
/// | 422 | `invalid-body` | wrong types, unknown or missing fields, a bad `KIND:ID` |
/// | 422 | `invalid-request` | the host refused it (empty coupon, duplicate or unsupported recipient, …) |
/// | 422 | `adapter` | the platform refused it: `class` `invalid-request`, `coupon-unavailable`, `recipient-limit`, `recipient-invalid` — do not retry |
/// | 429 | `adapter` | `class` `rate-limited`: the platform says slow down (`Retry-After`) |
/// | 429 | `overloaded` | over `--max-in-flight`; retry after `Retry-After` |
/// | 502 | `adapter` | `class` `unauthorized`, `auth-expired`, `transient`, `unknown` — the host's credentials or the platform failed |
/// | 502 | `sandbox` | the adapter trapped, ran out of memory or broke the contract (`kill`) |
/// | 503 | `shutting-down` | the server is draining |
/// | 504 | `sandbox` | the adapter ran past `limits.timeout_ms` (`kill: deadline`) |
/// | 500 | `storage`, `internal` | the host itself failed |
///
/// An adapter error carries `class`, `code` (the platform's) and, when the platform said so,
/// `retry_after_ms`. After a `5xx` on a send the platform may have issued some coupons: resend
/// with the same `idempotency_key`, or query, before sending anew.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: serde_json::Map<String, Value>,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiError {
        let mut body = serde_json::Map::new();
        body.insert("kind".into(), kind.into());
        body.insert("message".into(), message.into().into());
        ApiError {
            status,
            body,
            retry_after_secs: None,
        }
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.body.insert(key.into(), value.into());
        self
    }

    fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_secs = Some(secs.max(1));
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        let message = crate::error::full_message(&error);
        match &error {
            Error::InvalidRequest(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", message)
            }
            Error::UnknownPlugin(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown-plugin", message)
            }
            Error::Adapter { error, .. } => {
                let status = match error.class {
                    ErrorClass::InvalidRequest
                    | ErrorClass::CouponUnavailable
                    | ErrorClass::RecipientLimit
                    | ErrorClass::RecipientInvalid => StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                    ErrorClass::Unauthorized
                    | ErrorClass::AuthExpired
                    | ErrorClass::Transient
                    | ErrorClass::Unknown => StatusCode::BAD_GATEWAY,
                };
                let mut api = ApiError::new(status, "adapter", message)
                    .with("class", error.class.as_str())
                    .with("code", error.code.clone());
                if let Some(ms) = error.retry_after_ms {
                    api = api
                        .with("retry_after_ms", ms)
                        .retry_after(u64::from(ms).div_ceil(1000));
                } else if error.class == ErrorClass::RateLimited {
                    api = api.retry_after(RETRY_AFTER_SECS);
                }
                api
            }
            Error::Sandbox { kind, .. } => {
                let status = if *kind == SandboxKill::Deadline {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                ApiError::new(status, "sandbox", message).with("kill", kind.as_str())
            }
            Error::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting-down", message)
                    .retry_after(RETRY_AFTER_SECS)
            }
            Error::UnknownCampaign(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown-campaign", message)
            }
            Error::CampaignStopped { id, error, pending } => {
                ApiError::new(StatusCode::CONFLICT, "campaign-stopped", message)
                    .with("id", id.clone())
                    .with("class", error.class.as_str())
                    .with("code", error.code.clone())
                    .with("pending", *pending)
            }
            Error::Storage { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", message)
            }
            Error::InProgress { key } => {
                ApiError::new(StatusCode::CONFLICT, "in-progress", message)
                    .with("idempotency_key", key.clone())
                    .retry_after(RETRY_AFTER_SECS)
            }
            Error::LeaseLost { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "lease-lost", message)
                    .retry_after(RETRY_AFTER_SECS)
            }
            // Load-time failures cannot happen once a host serves; a new variant lands here
            // until it is given its own status.
            Error::Config(_)
            | Error::Load { .. }
            | Error::Integrity { .. }
            | Error::Runtime { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.body }))).into_response();
        if let Some(secs) = self.retry_after_secs {
            set_retry_after(&mut response, secs);
        }
        response
    }
}

fn set_retry_after(response: &mut Response, secs: u64) {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::AdapterError;

    #[test]
    fn openapi_is_json_and_describes_every_route_and_the_campaigns() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for (path, method) in [
            (SEND, "post"),
            (QUERY, "post"),
            (PLUGINS, "get"),
            ("/healthz", "get"),
            ("/readyz", "get"),
            ("/metrics", "get"),
            ("/openapi.json", "get"),
            ("/v1/campaigns", "post"),
            ("/v1/campaigns/{id}", "get"),
        ] {
            assert!(
                paths.get(path).and_then(|p| p.get(method)).is_some(),
                "openapi.json lacks {method} {path}"
            );
        }
        // Every `$ref` points at a schema that exists.
        let text = OPENAPI;
        for reference in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }

    #[test]
    fn adapter_errors_map_to_statuses_by_class() {
        let adapter = |class, retry_after_ms| Error::Adapter {
            plugin: "taobao".into(),
            error: AdapterError {
                retry_after_ms,
                ..AdapterError::new(class, "15", "x")
            },
        };
        let cases = [
            (adapter(ErrorClass::CouponUnavailable, None), 422, None),
            (adapter(ErrorClass::RateLimited, Some(2500)), 429, Some("3")),
            (adapter(ErrorClass::RateLimited, None), 429, Some("1")),
            (adapter(ErrorClass::Transient, None), 502, None),
            (adapter(ErrorClass::Unauthorized, None), 502, None),
            (
                Error::Sandbox {
                    plugin: "taobao".into(),
                    kind: SandboxKill::Deadline,
                    message: "slow".into(),
                },
                504,
                None,
            ),
            (Error::ShuttingDown, 503, Some("1")),
            (Error::InvalidRequest("no".into()), 422, None),
        ];
        for (error, status, retry_after) in cases {
            let text = error.to_string();
            let response = ApiError::from(error).into_response();
            assert_eq!(response.status().as_u16(), status, "{text}");
            assert_eq!(
                response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap()),
                retry_after,
                "{text}"
            );
        }
    }
}
