//! # coupon-host
//!
//! Sends and queries coupons on Chinese e-commerce platforms (Taobao, Tmall, Alibaba local
//! services, Douyin) through per-platform adapters compiled to sandboxed WebAssembly components.
//!
//! The host owns everything dangerous or shared — secrets, request signing, network egress,
//! storage, limits — and lends it to adapters over the `coupon:adapter` WIT contract. An adapter
//! owns only the platform mapping.
//!
//! ```no_run
//! # async fn demo() -> Result<(), coupon_host::Error> {
//! use coupon_host::{Host, SendRequest};
//!
//! let host = Host::from_config_file("coupon-host.toml".as_ref()).await?;
//! let outcome = host
//!     .send("taobao", SendRequest::new("48552", vec!["nick:张三".parse().unwrap()]))
//!     .await?;
//! for issued in &outcome.issued {
//!     println!("{} got {:?}", issued.recipient, issued.coupon_id);
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod metrics;
pub mod secret;
pub mod serve;
pub mod signing;
pub mod store;
pub mod types;

mod caps;
mod convert;
mod drain;
mod runtime;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use tracing::Instrument;
use tracing::field::Empty;

pub use crate::config::{Config, ConfigError};
pub use crate::error::{Error, Result, SandboxKill};
pub use crate::types::*;

use crate::caps::PluginContext;
use crate::runtime::bindings::latest::coupon::adapter::types as wit;
use crate::runtime::{LoadedComponent, Op, OpResult, Runtime};
use crate::store::Store;

/// The host: loaded plugins, their sandbox, and the state they share.
///
/// Cheap to clone; clones share everything. Every call runs the adapter on a fresh instance.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    plugins: BTreeMap<String, Plugin>,
    /// Calls in flight; closed by [`Host::shutdown`].
    calls: drain::CallGate,
}

struct Plugin {
    context: Arc<PluginContext>,
    component: LoadedComponent,
    info: PluginInfo,
}

impl Host {
    /// Loads a config file (secrets from the environment) and every plugin it names.
    pub async fn from_config_file(path: &Path) -> Result<Host> {
        Host::new(Config::load(path)?).await
    }

    /// Starts a host from a validated config: opens storage, compiles (or loads cached)
    /// components, checks each is an adapter and asks it to `describe` itself.
    pub async fn new(config: Config) -> Result<Host> {
        let runtime = Runtime::new(config.runtime.max_instances, &config.runtime.cache_dir)?;
        let store = Arc::new(Store::open(&config.storage.path)?);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(5))
            .user_agent(concat!("coupon-host/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Runtime(format!("cannot build the HTTP client: {e}")))?;

        let mut plugins = BTreeMap::new();
        for (name, plugin_config) in config.plugins {
            let component = runtime.load(
                &name,
                &plugin_config.component,
                plugin_config.sha256.as_deref(),
            )?;
            let context = Arc::new(PluginContext::new(
                name.clone(),
                plugin_config,
                store.clone(),
                http.clone(),
            ));
            let OpResult::Describe(info) = runtime.call(&context, &component, Op::Describe).await?
            else {
                unreachable!("describe answers describe")
            };
            let describe = AdapterInfo::from(info);
            if describe.max_recipients_per_call == 0 || describe.recipient_kinds.is_empty() {
                return Err(Error::Load {
                    plugin: name,
                    path: context.config.component.clone(),
                    reason: "describe() must name at least one recipient kind and allow at least one recipient per call".to_owned(),
                });
            }
            let info = PluginInfo {
                name: name.clone(),
                component: context.config.component.clone(),
                sha256: component.sha256.clone(),
                contract: runtime::ADAPTER_EXPORT.to_owned(),
                describe,
            };
            tracing::info!(plugin = %name, platform = %info.describe.platform, sha256 = %info.sha256, "plugin loaded");
            plugins.insert(
                name,
                Plugin {
                    context,
                    component,
                    info,
                },
            );
        }
        Ok(Host {
            inner: Arc::new(Inner {
                runtime,
                plugins,
                calls: drain::CallGate::default(),
            }),
        })
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.inner
            .plugins
            .values()
            .map(|p| p.info.clone())
            .collect()
    }

    fn plugin(&self, name: &str) -> Result<&Plugin> {
        self.inner
            .plugins
            .get(name)
            .ok_or_else(|| Error::UnknownPlugin(name.to_owned()))
    }

    /// Sends a coupon. Every recipient ends in exactly one of `issued` / `failed`; an error is
    /// returned only when the send failed as a whole (bad request, bad credentials, sandbox kill).
    pub async fn send(&self, plugin_name: &str, request: SendRequest) -> Result<SendOutcome> {
        let _call = self.inner.calls.enter()?;
        let plugin = self.plugin(plugin_name)?;
        let key = match &request.idempotency_key {
            Some(key) if key.trim().is_empty() || key.len() > 128 => {
                return Err(Error::InvalidRequest(
                    "the idempotency key must be 1 to 128 bytes".to_owned(),
                ));
            }
            Some(key) => key.clone(),
            None => new_idempotency_key(),
        };
        let span = tracing::info_span!("send", plugin = plugin_name, idempotency_key = %key, recipients = request.recipients.len(),
            issued = Empty, failed = Empty, platform_request_ids = Empty, error_class = Empty, elapsed_ms = Empty);
        let started = std::time::Instant::now();
        let result = self
            .send_inner(plugin, request, key)
            .instrument(span.clone())
            .await;
        record_send(&span, plugin_name, &result, started.elapsed());
        result
    }

    async fn send_inner(
        &self,
        plugin: &Plugin,
        request: SendRequest,
        key: String,
    ) -> Result<SendOutcome> {
        validate_send(&request, &plugin.info.describe)?;
        let batch_size = plugin.info.describe.max_recipients_per_call as usize;
        let batches: Vec<&[Recipient]> = request.recipients.chunks(batch_size).collect();
        let mut outcome = SendOutcome {
            idempotency_key: key.clone(),
            ..SendOutcome::default()
        };
        let mut whole_failures = Vec::new();
        for batch in &batches {
            let wit_request = wit::SendRequest {
                coupon: request.coupon.clone(),
                recipients: batch.iter().map(Into::into).collect(),
                quantity: request.quantity,
                idempotency_key: key.clone(),
                options: request.options.clone(),
            };
            let started = std::time::Instant::now();
            let result = self
                .inner
                .runtime
                .call(&plugin.context, &plugin.component, Op::Send(wit_request))
                .await;
            tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "adapter call"
            );
            match result {
                Ok(OpResult::Send(Ok(batch_outcome))) => {
                    merge_batch(&mut outcome, batch, batch_outcome);
                }
                Ok(OpResult::Send(Err(error))) => {
                    let error = AdapterError::from(error);
                    tracing::debug!(class = %error.class, code = %error.code, "send failed for a batch");
                    fail_all(&mut outcome, batch, &error);
                    whole_failures.push(Error::Adapter {
                        plugin: plugin.info.name.clone(),
                        error,
                    });
                }
                Ok(_) => unreachable!("send answers send"),
                Err(error) => {
                    // The adapter died mid-call: what it had sent is not known.
                    tracing::error!(%error, "adapter stopped by the sandbox");
                    let failure =
                        AdapterError::new(ErrorClass::Unknown, "sandbox", error.to_string());
                    fail_all(&mut outcome, batch, &failure);
                    whole_failures.push(error);
                }
            }
        }
        if outcome.issued.is_empty() && whole_failures.len() == batches.len() {
            // Nothing went through and every call failed as a whole: report it as such.
            return Err(whole_failures.remove(0));
        }
        Ok(outcome)
    }

    /// Lists a recipient's coupons.
    pub async fn query(&self, plugin_name: &str, request: QueryRequest) -> Result<Vec<Coupon>> {
        let _call = self.inner.calls.enter()?;
        let plugin = self.plugin(plugin_name)?;
        if !plugin
            .info
            .describe
            .recipient_kinds
            .contains(&request.recipient.kind())
        {
            return Err(unsupported_kind(&plugin.info.describe, &request.recipient));
        }
        let span = tracing::info_span!(
            "query",
            plugin = plugin_name,
            coupons = Empty,
            error_class = Empty,
            elapsed_ms = Empty
        );
        let started = std::time::Instant::now();
        let result = self
            .query_inner(plugin_name, plugin, request)
            .instrument(span.clone())
            .await;
        record_query(&span, plugin_name, &result, started.elapsed());
        result
    }

    async fn query_inner(
        &self,
        plugin_name: &str,
        plugin: &Plugin,
        request: QueryRequest,
    ) -> Result<Vec<Coupon>> {
        let wit_request = wit::QueryRequest {
            recipient: (&request.recipient).into(),
            options: request.options,
        };
        let result = self
            .inner
            .runtime
            .call(&plugin.context, &plugin.component, Op::Query(wit_request))
            .await?;
        match result {
            OpResult::Query(Ok(coupons)) => Ok(coupons.into_iter().map(Into::into).collect()),
            OpResult::Query(Err(error)) => Err(Error::Adapter {
                plugin: plugin_name.to_owned(),
                error: error.into(),
            }),
            _ => unreachable!("query answers query"),
        }
    }
}

fn new_idempotency_key() -> String {
    format!("ch-{:032x}", rand::random::<u128>())
}

fn unsupported_kind(info: &AdapterInfo, recipient: &Recipient) -> Error {
    let kinds: Vec<_> = info.recipient_kinds.iter().map(|k| k.as_str()).collect();
    Error::InvalidRequest(format!(
        "{} takes {} recipients, not {}",
        info.platform,
        kinds.join(" or "),
        recipient.kind().as_str()
    ))
}

fn validate_send(request: &SendRequest, info: &AdapterInfo) -> Result<()> {
    if request.coupon.trim().is_empty() {
        return Err(Error::InvalidRequest("the coupon is empty".to_owned()));
    }
    if request.recipients.is_empty() {
        return Err(Error::InvalidRequest("no recipients".to_owned()));
    }
    if request.quantity == 0 {
        return Err(Error::InvalidRequest(
            "the quantity must be at least 1".to_owned(),
        ));
    }
    let mut seen = HashSet::new();
    for recipient in &request.recipients {
        if !info.recipient_kinds.contains(&recipient.kind()) {
            return Err(unsupported_kind(info, recipient));
        }
        if !seen.insert(recipient) {
            return Err(Error::InvalidRequest(format!(
                "recipient {recipient} is listed twice"
            )));
        }
    }
    Ok(())
}

fn fail_all(outcome: &mut SendOutcome, batch: &[Recipient], error: &AdapterError) {
    outcome
        .failed
        .extend(batch.iter().map(|recipient| RecipientFailure {
            recipient: recipient.clone(),
            error: error.clone(),
        }));
}

/// Adds one batch's answer, holding the adapter to the contract: each recipient of the batch
/// ends up exactly once; one the adapter did not mention is failed as `unknown`; entries for
/// recipients not in the batch are dropped.
fn merge_batch(outcome: &mut SendOutcome, batch: &[Recipient], answer: wit::SendOutcome) {
    let mut pending: HashMap<Recipient, ()> = batch.iter().map(|r| (r.clone(), ())).collect();
    for issued in answer.issued {
        let issued = IssuedCoupon::from(issued);
        if pending.remove(&issued.recipient).is_some() {
            outcome.issued.push(issued);
        } else {
            tracing::warn!(recipient = %issued.recipient, "adapter reported a recipient twice or one not in the batch");
        }
    }
    for failure in answer.failed {
        let recipient = Recipient::from(failure.recipient);
        if pending.remove(&recipient).is_some() {
            outcome.failed.push(RecipientFailure {
                recipient,
                error: failure.error.into(),
            });
        }
    }
    for recipient in batch {
        if pending.contains_key(recipient) {
            outcome.failed.push(RecipientFailure {
                recipient: recipient.clone(),
                error: AdapterError::new(
                    ErrorClass::Unknown,
                    "not-reported",
                    "the adapter did not report this recipient",
                ),
            });
        }
    }
    outcome.platform_request_ids.extend(
        answer
            .platform_request_ids
            .into_iter()
            .take(1024)
            .map(|id| id.chars().take(128).collect()),
    );
}

impl Host {
    /// Shuts the host down gracefully: from now on every [`send`](Host::send) and
    /// [`query`](Host::query) fails at once with [`Error::ShuttingDown`], and this returns when
    /// the calls already running have finished (each is bounded by its plugin's
    /// `limits.timeout_ms` per adapter call). Clones share the state, so shutting down one
    /// clone shuts down all. Calling it again waits again; it never reopens the host.
    ///
    /// ```no_run
    /// # async fn demo(host: coupon_host::Host) {
    /// tokio::signal::ctrl_c().await.ok();
    /// host.shutdown().await; // in-flight sends complete; new ones are refused
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.inner.calls.close_and_wait().await;
    }

    /// Whether [`shutdown`](Host::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.calls.is_closed()
    }
}

/// Records a finished send on its span (outcome, platform request ids, latency) and in metrics.
fn record_send(
    span: &tracing::Span,
    plugin: &str,
    result: &Result<SendOutcome>,
    elapsed: std::time::Duration,
) {
    span.record("elapsed_ms", elapsed.as_millis() as u64);
    match result {
        Ok(outcome) => {
            span.record("issued", outcome.issued.len());
            span.record("failed", outcome.failed.len());
            span.record(
                "platform_request_ids",
                outcome.platform_request_ids.join(","),
            );
        }
        Err(error) => {
            span.record("error_class", error.kind());
        }
    }
    crate::metrics::send_finished(plugin, result, elapsed);
}

/// Records a finished query on its span and in metrics.
fn record_query(
    span: &tracing::Span,
    plugin: &str,
    result: &Result<Vec<Coupon>>,
    elapsed: std::time::Duration,
) {
    span.record("elapsed_ms", elapsed.as_millis() as u64);
    match result {
        Ok(coupons) => span.record("coupons", coupons.len()),
        Err(error) => span.record("error_class", error.kind()),
    };
    crate::metrics::query_finished(plugin, result, elapsed);
}
