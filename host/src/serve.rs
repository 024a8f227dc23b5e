//! `coupon-host serve`: the embedding API over HTTP/JSON, for an engine that is not written in
//! Rust. The answers have the shapes the CLI prints with `--json`; `GET /openapi.json` describes
//! every route.
//!
//! - `POST /v1/plugins/{name}/send`, `POST /v1/plugins/{name}/query`, `POST /v1/campaigns`:
//!   bounded by [`ServeOptions::max_in_flight`]; one more is answered `429` with `Retry-After`
//!   at once instead of queueing, so an engine's backpressure sees the host's real capacity.
//! - `GET`, `PUT`, `DELETE /v1/plugins/{name}/accounts/{account}`, `GET …/accounts`, `POST
//!   …/accounts/{account}/authorize`: the plugin's accounts, under the `accounts` scope; see
//!   [`accounts`].
//! - `GET /v1/plugins`, `GET /v1/campaigns/{id}`, `GET /healthz` (the process answers),
//!   `GET /readyz` (it takes calls: `503` once draining), `GET /metrics` (Prometheus text, when
//!   a handle is given), `GET /openapi.json`.
//! - With API keys configured ([`ServeOptions::keys`]), every route but the probes and the
//!   OpenAPI document needs `Authorization: Bearer <key>` with the route's scope (`401` without
//!   a valid key, `403` without the scope); see [`auth`].
//! - Every failure is `{"error":{"kind":"…","message":"…"}}` with a fitting status; see
//!   [`ApiError`] for the table.
//!
//! Nothing a client does is unbounded: a request's head and body must arrive within
//! [`ServeOptions::read_timeout`], a body within [`ServeOptions::max_body_bytes`], a campaign
//! file within [`ServeOptions::max_campaign_file_bytes`], running campaigns are capped
//! ([`ServeOptions::max_campaigns`]), and [`serve`] drains for at most
//! [`ServeOptions::drain_timeout`] before it cancels what is left.
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

mod accounts;
pub mod auth;
mod files;
mod listen;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use crate::config::{Scope, ServeConfig};
use crate::error::{Error, SandboxKill};
use crate::types::{ErrorClass, QueryRequest, Recipient, SendRequest};
use crate::{Host, metrics};

pub use auth::ApiKeys;
pub use listen::serve;

use auth::{Access, Guard};

/// How the server admits clients and bounds what they ask of it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Send, query and campaign-start requests handled at once; one more is answered `429`
    /// (default 64).
    pub max_in_flight: usize,
    /// The largest request body, in bytes; a larger one is answered `413` (default 1 MiB).
    pub max_body_bytes: usize,
    /// Who may call what; empty (the default): anyone who reaches the server may call anything.
    pub keys: ApiKeys,
    /// The folder `recipients_file` is resolved in (canonical); `None` (the default) refuses
    /// `recipients_file`.
    pub campaigns_dir: Option<PathBuf>,
    /// The largest `recipients_file`, in bytes (default 256 MiB).
    pub max_campaign_file_bytes: u64,
    /// Campaigns run at once; one more is answered `429` (default 16).
    pub max_campaigns: usize,
    /// How long a client may take to send a request's head, and again its body (default 10 s).
    pub read_timeout: Duration,
    /// How long [`serve`] drains after its shutdown signal before it cancels what is left
    /// (default 30 s).
    pub drain_timeout: Duration,
    /// Whether [`serve`] also works every unfinished campaign on the storage, like
    /// `coupon-host worker` ([`WORK_CONCURRENCY`] batches at a time; default `true`).
    pub work_campaigns: bool,
}

/// Batches [`serve`] works at once when it works campaigns ([`ServeOptions::work_campaigns`]).
pub const WORK_CONCURRENCY: usize = 4;

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions::new(64, 1 << 20).with_config(&ServeConfig::default())
    }
}

impl ServeOptions {
    /// Options with these limits (each at least 1), and the defaults of `[serve]`.
    pub fn new(max_in_flight: usize, max_body_bytes: usize) -> ServeOptions {
        let config = ServeConfig::default();
        ServeOptions {
            max_in_flight: max_in_flight.max(1),
            max_body_bytes: max_body_bytes.max(1),
            keys: ApiKeys::default(),
            campaigns_dir: None,
            max_campaign_file_bytes: u64::from(config.max_campaign_file_mib) << 20,
            max_campaigns: config.max_campaigns as usize,
            read_timeout: Duration::from_secs(config.read_timeout_s),
            drain_timeout: Duration::from_secs(config.drain_timeout_s),
            work_campaigns: config.work_campaigns,
        }
    }

    /// These options with the keys, campaign folder, caps and timeouts of a `[serve]` table.
    pub fn with_config(mut self, config: &ServeConfig) -> ServeOptions {
        self.keys = ApiKeys::new(config.keys.clone());
        self.campaigns_dir = config.campaigns_dir.clone();
        self.max_campaign_file_bytes = u64::from(config.max_campaign_file_mib) << 20;
        self.max_campaigns = (config.max_campaigns as usize).max(1);
        self.read_timeout = Duration::from_secs(config.read_timeout_s.max(1));
        self.drain_timeout = Duration::from_secs(config.drain_timeout_s);
        self.work_campaigns = config.work_campaigns;
        self
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
const ACCOUNTS: &str = "/v1/plugins/{name}/accounts";
const ACCOUNT: &str = "/v1/plugins/{name}/accounts/{account}";
const AUTHORIZE: &str = "/v1/plugins/{name}/accounts/{account}/authorize";

#[derive(Clone)]
struct AppState {
    host: Host,
    /// Campaigns running in this process, and how the last run of each ended if it failed.
    campaigns: Arc<std::sync::Mutex<Campaigns>>,
    /// Told whenever a campaign run ends, so a drain can wait for the last one.
    campaign_ended: Arc<Notify>,
    permits: Arc<Semaphore>,
    options: Arc<ServeOptions>,
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
        campaign_ended: Arc::default(),
        permits: Arc::new(Semaphore::new(options.max_in_flight.max(1))),
        options: Arc::new(options.clone()),
        metrics,
        draining: Arc::new(AtomicBool::new(false)),
    }
}

/// A route's methods behind the key check for `access`, and, for calls that do work on a
/// platform, the in-flight limit. The key is checked first, so a caller without one takes no
/// permit and has nothing of its request read.
fn guarded(
    state: &AppState,
    access: Access,
    limited: bool,
    route: MethodRouter<AppState>,
) -> MethodRouter<AppState> {
    let route = if limited {
        route.route_layer(middleware::from_fn_with_state(state.clone(), limit))
    } else {
        route
    };
    let guard = Guard {
        keys: state.options.keys.clone(),
        access,
    };
    route.route_layer(middleware::from_fn_with_state(guard, auth::authorize))
}

fn app(state: AppState) -> Router {
    let scope = Access::Scope;
    Router::new()
        .route(SEND, guarded(&state, scope(Scope::Send), true, post(send)))
        .route(
            QUERY,
            guarded(&state, scope(Scope::Query), true, post(query)),
        )
        .route(
            CAMPAIGNS,
            guarded(&state, scope(Scope::Campaigns), true, post(campaign_start)),
        )
        .route(
            CAMPAIGN,
            guarded(&state, scope(Scope::Campaigns), false, get(campaign_status)),
        )
        .route(
            PLUGINS,
            guarded(&state, Access::AnyKey, false, get(plugins)),
        )
        .route(
            ACCOUNTS,
            guarded(&state, scope(Scope::Accounts), false, get(accounts::list)),
        )
        .route(
            ACCOUNT,
            guarded(
                &state,
                scope(Scope::Accounts),
                false,
                get(accounts::show)
                    .put(accounts::put)
                    .delete(accounts::remove),
            ),
        )
        // An authorization calls the platform's OAuth endpoint: it counts against the limit.
        .route(
            AUTHORIZE,
            guarded(
                &state,
                scope(Scope::Accounts),
                true,
                post(accounts::authorize),
            ),
        )
        .route(
            "/metrics",
            guarded(&state, scope(Scope::Metrics), false, get(render_metrics)),
        )
        // Probes and the API's description stay open: a load balancer has no key.
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.options.max_body_bytes.max(1),
        ))
        .layer(middleware::from_fn(count))
        .with_state(state)
}

/// Answers `429` at once when `max_in_flight` calls are already running.
async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match state.permits.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => overloaded("too many requests in flight; retry after the Retry-After delay"),
    }
}

fn overloaded(message: &str) -> Response {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message)
        .retry_after(RETRY_AFTER_SECS)
        .into_response()
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
    #[serde(default = "one", deserialize_with = "whole")]
    quantity: u32,
    #[serde(default, deserialize_with = "present")]
    idempotency_key: Option<String>,
    #[serde(default, deserialize_with = "unique_keys")]
    options: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "present")]
    account: Option<String>,
}

/// A JSON object whose keys are each given once: a repeated key is refused (like a repeated
/// field of the body), not silently the last one.
fn unique_keys<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Unique;
    impl<'de> serde::de::Visitor<'de> for Unique {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of strings, each key once")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            use serde::de::Error as _;
            let mut out = BTreeMap::new();
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if out.contains_key(&key) {
                    let shown: String = key.chars().take(64).collect();
                    return Err(A::Error::custom(format!("duplicate option `{shown}`")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Unique)
}

fn one() -> u32 {
    1
}

/// A whole number, also when written with a zero fraction (`2.0`): JSON Schema's `integer`
/// takes both, and the server takes what its description does.
fn whole<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error as _;
    let number = serde_json::Number::deserialize(deserializer)?;
    let value = match (number.as_u64(), number.as_f64()) {
        (Some(value), _) => Some(value),
        (None, Some(float)) if float.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&float) => {
            Some(float as u64)
        }
        _ => None,
    };
    value
        .and_then(|value| T::try_from(value).ok())
        .ok_or_else(|| {
            D::Error::custom(format!(
                "invalid value: {number}, expected a whole number in range"
            ))
        })
}

/// An optional field that, when present, holds a value: `null` is refused like any other value
/// of the wrong type, as the description says (only absence means "not given").
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// [`whole`], for an optional field.
fn present_whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    whole(deserializer).map(Some)
}

/// Campaigns this server runs.
#[derive(Default)]
struct Campaigns {
    /// Running campaigns, with the handle that cancels each at the end of a drain.
    running: BTreeMap<String, tokio::task::AbortHandle>,
    /// Starts admitted and not yet running or refused: they hold a place under
    /// `max_campaigns` while they are checked, so a refused start never wrote anything.
    admitted: usize,
    /// The error the last run of a campaign ended with (cleared when a run finishes).
    errors: BTreeMap<String, String>,
}

/// A place under `max_campaigns`, held from admission until the campaign runs or is refused.
struct Admission {
    campaigns: Arc<std::sync::Mutex<Campaigns>>,
}

impl Admission {
    /// Takes a place, or refuses with `429` when every place is taken.
    fn take(state: &AppState) -> Result<Admission, ApiError> {
        let mut campaigns = state.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        if campaigns.running.len() + campaigns.admitted >= state.options.max_campaigns {
            return Err(too_many_campaigns(state.options.max_campaigns));
        }
        campaigns.admitted += 1;
        Ok(Admission {
            campaigns: state.campaigns.clone(),
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut campaigns = self.campaigns.lock().unwrap_or_else(|p| p.into_inner());
        campaigns.admitted -= 1;
    }
}

/// An inline list's campaign file, written by this request: removed again unless the campaign
/// it belongs to was registered.
struct NewFile(Option<PathBuf>);

impl NewFile {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `POST /v1/campaigns`: the body of a campaign.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignBody {
    plugin: String,
    coupon: String,
    #[serde(default, deserialize_with = "present")]
    recipients: Option<Vec<Recipient>>,
    #[serde(default, deserialize_with = "present")]
    recipients_file: Option<String>,
    #[serde(default = "one", deserialize_with = "whole")]
    quantity: u32,
    #[serde(default, deserialize_with = "present_whole")]
    concurrency: Option<usize>,
    #[serde(default, deserialize_with = "present")]
    id: Option<String>,
    #[serde(default, deserialize_with = "unique_keys")]
    options: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "present")]
    account: Option<String>,
    /// The text encoding of a `recipients_file` (inline recipients are JSON text): utf-8 (the
    /// default), gb18030, gbk.
    #[serde(default, deserialize_with = "present")]
    encoding: Option<String>,
}

/// Checks and registers a campaign, starts it in the background and answers `202` with its id.
/// Posting the same campaign again (while it runs, or after an interruption) answers the same
/// id; a campaign that is not running is resumed. A `recipients_file` must be inside
/// `campaigns_dir` ([`files`]); at most `max_campaigns` run at once.
async fn campaign_start(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let body: CampaignBody = parse(read_body(request, &state).await?)?;
    state.known(&body.plugin)?;
    if state.draining.load(Ordering::SeqCst) {
        return Err(Error::ShuttingDown.into());
    }
    // Validated, then admitted, before anything is written: a refused start (422, 429) leaves
    // no file and no campaign behind.
    let mut spec = crate::campaign::CampaignSpec::new(body.plugin, body.coupon, PathBuf::new());
    spec.quantity = body.quantity;
    spec.id = body.id;
    spec.account = body.account;
    spec.options = body.options.into_iter().collect();
    if let Some(concurrency) = body.concurrency {
        spec.concurrency = concurrency;
    }
    let encoding = match &body.encoding {
        None => crate::campaign::Encoding::Utf8,
        Some(name) => name.parse().map_err(|message: String| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", message)
        })?,
    };
    spec.check()?;
    let admission = Admission::take(&state)?;
    let mut written = NewFile(None);
    let (file, opened) = match (body.recipients, body.recipients_file) {
        (Some(list), None) if list.is_empty() => {
            return Err(Error::InvalidRequest("no recipients".to_owned()).into());
        }
        (Some(list), None) => {
            let (path, new) = state.host.campaign_file_written(&list)?;
            if new {
                written = NewFile(Some(path.clone()));
            }
            (path, None)
        }
        (None, Some(name)) => {
            let (path, file) = files::resolve(
                state.options.campaigns_dir.as_deref(),
                &name,
                state.options.max_campaign_file_bytes,
            )?;
            (path, Some(Arc::new(file)))
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "give either recipients or recipients_file",
            ));
        }
    };
    spec.recipients = file;
    if opened.is_some() {
        // Inline recipients are JSON text, kept as UTF-8.
        spec.encoding = encoding;
    }
    spec.max_file_bytes = state.options.max_campaign_file_bytes;
    spec.opened = opened;
    let prepared = state.host.campaign_prepare(spec).await?;
    written.keep();
    let id = prepared.id().to_owned();
    let mut campaigns = state.campaigns.lock().unwrap_or_else(|p| p.into_inner());
    if !campaigns.running.contains_key(&id) {
        campaigns.errors.remove(&id);
        let registry = state.campaigns.clone();
        let ended = state.campaign_ended.clone();
        let run_id = id.clone();
        let task = tokio::spawn(async move {
            let result = prepared.run(|_| {}).await;
            let mut campaigns = registry.lock().unwrap_or_else(|p| p.into_inner());
            campaigns.running.remove(&run_id);
            match result {
                Ok(_) => {}
                // A drain pauses it: the next process that works campaigns resumes it.
                Err(Error::ShuttingDown) => {
                    tracing::info!(campaign = %run_id, "campaign paused by the drain; it resumes where campaigns are worked");
                }
                // Its status says why (state `stopped`, with the platform's refusal).
                Err(error @ Error::CampaignStopped { .. }) => {
                    tracing::warn!(campaign = %run_id, %error, "campaign stopped");
                }
                Err(error) => {
                    tracing::error!(campaign = %run_id, %error, "campaign ended early");
                    campaigns.errors.insert(run_id, error.to_string());
                }
            }
            drop(campaigns);
            ended.notify_waiters();
        });
        campaigns.running.insert(id.clone(), task.abort_handle());
        tracing::info!(campaign = %id, "campaign started");
    }
    // The place it held is now the running campaign's (or was never needed: it ran already).
    drop(campaigns);
    drop(admission);
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response())
}

fn too_many_campaigns(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "overloaded",
        format!("{max} campaigns are running, the most this server runs at once; retry later"),
    )
    .retry_after(RETRY_AFTER_SECS)
}

/// `GET /v1/campaigns/{id}`: the CLI's `campaign status --json`, plus whether this server is
/// running it and how its last run ended if it failed.
async fn campaign_status(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(id) = id.map_err(bad_path)?;
    let status = state.host.campaign_status(&id).await?;
    let running = status.state == "running";
    let mut value = serde_json::to_value(status).expect("a status serializes");
    // `running` says what `state` says: a live process (this one or another) works it.
    value["running"] = json!(running);
    let campaigns = state.campaigns.lock().unwrap_or_else(|p| p.into_inner());
    if value.get("error").is_none()
        && let Some(error) = campaigns.errors.get(&id)
    {
        value["error"] = json!({ "class": "unknown", "code": "host", "message": error });
    }
    Ok(Json(value))
}

/// `POST /v1/plugins/{name}/query`: the body of a query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    recipient: Recipient,
    #[serde(default, deserialize_with = "unique_keys")]
    options: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "present")]
    account: Option<String>,
}

async fn send(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(bad_path)?;
    state.known(&name)?;
    let body: SendBody = parse(read_body(request, &state).await?)?;
    let mut request = SendRequest {
        coupon: body.coupon,
        recipients: body.recipients,
        quantity: body.quantity,
        idempotency_key: body.idempotency_key,
        options: body.options.into_iter().collect(),
        account: body.account,
    };
    // Known before the send, so that a failure names it: a `5xx` is resent under this key.
    let key = request.idempotency_key_or_generate().to_owned();
    match state.host.send(&name, request).await {
        Ok(outcome) => Ok(Json(outcome).into_response()),
        Err(error) => Err(ApiError::from(error).with("idempotency_key", key)),
    }
}

async fn query(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(name) = name.map_err(bad_path)?;
    state.known(&name)?;
    let body: QueryBody = parse(read_body(request, &state).await?)?;
    let request = QueryRequest {
        recipient: body.recipient,
        options: body.options.into_iter().collect(),
        account: body.account,
    };
    let coupons = state.host.query(&name, request).await?;
    Ok(Json(json!({ "coupons": coupons })).into_response())
}

/// The plugins, each component named by its file name only: where the server keeps its files
/// is not a client's business (any valid key may call this route).
async fn plugins(State(state): State<AppState>) -> Json<Value> {
    let mut plugins = state.host.plugins();
    for plugin in &mut plugins {
        if let Some(name) = plugin.component.file_name() {
            plugin.component = name.into();
        }
    }
    Json(json!({ "plugins": plugins }))
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

/// A path parameter that is not text (percent-encoded bytes that are not UTF-8).
fn bad_path(rejection: PathRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad-path",
        format!("the path is not valid: {}", rejection.body_text()),
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

/// Reads a request's body: `413` over `max_body_bytes` (at once when `Content-Length` says
/// so), `408` when it has not all arrived within `read_timeout`.
async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    let max = state.options.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!("the body is larger than {max} bytes"),
        )
    };
    // A length over the limit is refused before a byte of the body is waited for.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > max as u64) {
        return Err(too_large());
    }
    // The body limit comes from the `DefaultBodyLimit` layer of `app`.
    let read = tokio::time::timeout(
        state.options.read_timeout,
        Bytes::from_request(request, &()),
    );
    match read.await {
        Err(_elapsed) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request-timeout",
            format!(
                "the body did not arrive within {} s",
                state.options.read_timeout.as_secs()
            ),
        )),
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(too_large())
        }
        Ok(Err(rejection)) => Err(ApiError::new(
            rejection.status(),
            "bad-body",
            rejection.body_text(),
        )),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Parses a JSON body: `400` when it is not JSON, `422` when it is JSON of the wrong shape (a
/// wrong type, an unknown or missing field, a bad `KIND:ID`).
fn parse<T: DeserializeOwned>(bytes: Bytes) -> Result<T, ApiError> {
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
/// | 400 | `malformed-json`, `bad-path`, `bad-request` | the body is not JSON; a path parameter is not UTF-8; two `Authorization` headers |
/// | 401 | `unauthorized` | no API key, or not a valid one (`WWW-Authenticate: Bearer`) |
/// | 403 | `forbidden` | the key lacks the route's scope |
/// | 404 | `unknown-plugin`, `unknown-account`, `unknown-campaign`, `not-found` | no such plugin, account (of the account routes), campaign, route |
/// | 405 | `method-not-allowed` | |
/// | 408 | `request-timeout` | the body did not arrive within `[serve] read_timeout_s` |
/// | 409 | `campaign-stopped` | |
/// | 413 | `payload-too-large` | the body is over `--max-body-kib`, a `recipients_file` over `[serve] max_campaign_file_mib` |
/// | 422 | `invalid-body` | wrong types, unknown or missing fields, a bad `KIND:ID` |
/// | 422 | `invalid-recipients-file` | a `recipients_file` that is not a regular file inside `[serve] campaigns_dir` |
/// | 422 | `invalid-request` | the host refused it (empty coupon, duplicate or unsupported recipient, an account a call names that the plugin does not have, …) |
/// | 422 | `authorization-refused` | the platform's OAuth endpoint refused the code (used, expired, another app's), or the plugin has no OAuth; `class`, `code` as for `adapter` |
/// | 422 | `adapter` | the platform refused it: `class` `invalid-request`, `coupon-unavailable`, `recipient-limit`, `recipient-invalid` — do not retry |
/// | 429 | `adapter` | `class` `rate-limited`: the platform says slow down (`Retry-After`) |
/// | 429 | `overloaded` | over `--max-in-flight` or `[serve] max_campaigns`; retry after `Retry-After` |
/// | 502 | `adapter` | `class` `unauthorized`, `auth-expired`, `transient`, `unknown` — the host's credentials or the platform failed |
/// | 502 | `sandbox` | the adapter trapped, ran out of memory or broke the contract (`kill`) |
/// | 503 | `shutting-down` | the server is draining |
/// | 504 | `sandbox` | the adapter ran past `limits.timeout_ms` (`kill: deadline`) |
/// | 500 | `storage`, `internal` | the host itself failed |
///
/// An adapter error carries `class`, `code` (the platform's) and, when the platform said so,
/// `retry_after_ms`. Every failure of a send carries the `idempotency_key` it ran under (the
/// generated one when the request had none). After a `5xx` on a send the platform may have
/// issued some coupons: resend with that `idempotency_key`, or query, before sending anew.
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
            (ACCOUNTS, "get"),
            (ACCOUNT, "get"),
            (ACCOUNT, "put"),
            (ACCOUNT, "delete"),
            (AUTHORIZE, "post"),
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

    /// The document is as strict as the server where the host itself judges a body: a blank
    /// coupon, a recipient listed twice, a key past 128 characters are invalid in both.
    #[test]
    fn openapi_holds_bodies_to_what_the_server_takes_and_declares_the_keys() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let schemas = &doc["components"]["schemas"];
        for request in ["SendRequest", "CampaignRequest"] {
            let coupon = &schemas[request]["properties"]["coupon"];
            assert_eq!(coupon["minLength"], 1, "{request}");
            assert_eq!(coupon["pattern"], "\\S", "{request}");
            assert_eq!(
                schemas[request]["properties"]["quantity"]["maximum"],
                u32::MAX,
                "{request}"
            );
        }
        let send = &schemas["SendRequest"]["properties"];
        assert_eq!(send["recipients"]["uniqueItems"], true);
        assert_eq!(send["idempotency_key"]["maxLength"], 128);
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["security"], json!([{"bearer": []}]));
        for open in ["/healthz", "/readyz", "/openapi.json"] {
            assert_eq!(doc["paths"][open]["get"]["security"], json!([]), "{open}");
        }
        for (path, method) in [
            (SEND, "post"),
            (QUERY, "post"),
            (PLUGINS, "get"),
            (CAMPAIGN, "get"),
        ] {
            let responses = &doc["paths"][path][method]["responses"];
            assert!(responses["401"].is_object(), "{method} {path}");
        }
    }

    /// Every call names its account as the host checks account names, and the account routes
    /// declare the `accounts` scope, their refusals, and bodies whose secrets are write-only.
    #[test]
    fn openapi_declares_the_account_field_and_the_account_routes() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        let schemas = &doc["components"]["schemas"];
        let name = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";
        for request in ["SendRequest", "QueryRequest", "CampaignRequest"] {
            let account = &schemas[request]["properties"]["account"];
            assert_eq!(account["type"], "string", "{request}");
            assert_eq!(account["pattern"], name, "{request}");
        }
        for (path, method, ok) in [
            (ACCOUNTS, "get", "200"),
            (ACCOUNT, "get", "200"),
            (ACCOUNT, "put", "200"),
            (ACCOUNT, "delete", "204"),
            (AUTHORIZE, "post", "200"),
        ] {
            let operation = &doc["paths"][path][method];
            assert_eq!(operation["x-scope"], "accounts", "{method} {path}");
            for status in [ok, "400", "401", "403", "404", "500"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{method} {path} {status}"
                );
            }
            if path != ACCOUNTS {
                let account = &operation["parameters"][1];
                assert_eq!(account["name"], "account");
                assert_eq!(account["schema"]["pattern"], name, "{method} {path}");
                // `default` is the config's: it can be shown, not kept, removed or authorized.
                let kept = json!({"const": "default"});
                assert_eq!(
                    account["schema"]["not"] == kept,
                    method != "get",
                    "{method} {path}"
                );
            }
        }
        for (path, method) in [(ACCOUNT, "put"), (AUTHORIZE, "post")] {
            let responses = &doc["paths"][path][method]["responses"];
            for status in ["408", "413", "422"] {
                assert!(responses[status].is_object(), "{method} {path} {status}");
            }
        }
        assert!(doc["paths"][AUTHORIZE]["post"]["responses"]["502"].is_object());
        let put = &schemas["AccountRequest"];
        assert_eq!(put["additionalProperties"], false);
        for secret in ["session", "client_secret"] {
            assert_eq!(put["properties"][secret]["writeOnly"], true, "{secret}");
            assert_eq!(put["properties"][secret]["pattern"], "\\S", "{secret}");
        }
        assert_eq!(
            put["dependentRequired"],
            json!({"client_key": ["client_secret"], "client_secret": ["client_key"]})
        );
        assert_eq!(schemas["AuthorizeRequest"]["required"], json!(["code"]));
        let account = &schemas["Account"]["properties"];
        assert_eq!(account["session"]["type"], "boolean");
        for secret in ["refresh_token", "client_secret", "code"] {
            assert!(account.get(secret).is_none(), "{secret}");
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
