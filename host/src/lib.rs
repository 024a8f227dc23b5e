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

pub mod campaign;

#[doc(hidden)]
pub mod bench;

mod caps;
mod convert;
mod delivery;
mod drain;
mod journal;
mod limiter;
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
use crate::limiter::RateLimiter;
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
    store: Arc<Store>,
    /// The folder of the storage file: campaign files posted inline are kept here.
    data_dir: std::path::PathBuf,
    http: caps::egress::Clients,
    /// Swapped whole by [`Host::reload`]; a call holds its plugin's `Arc` until it ends.
    plugins: std::sync::RwLock<Arc<BTreeMap<String, Arc<Plugin>>>>,
    /// One limiter per (plugin, credential, qps, burst), kept across reloads.
    limiters: std::sync::Mutex<HashMap<LimiterKey, Arc<RateLimiter>>>,
    key_locks: delivery::KeyLocks,
    /// Calls in flight; closed by [`Host::shutdown`].
    calls: drain::CallGate,
}

type LimiterKey = (String, String, Option<u32>, u32);

struct Plugin {
    context: Arc<PluginContext>,
    component: LoadedComponent,
    info: PluginInfo,
}

/// What [`Host::reload`] did, plugin by plugin.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Plugins loaded from the new config (new, or replacing their old version).
    pub loaded: Vec<String>,
    /// Plugins the new config no longer names; calls already running finish.
    pub removed: Vec<String>,
    /// Plugins whose new version failed to load: the old version keeps serving (or, for a
    /// plugin that is new, none does). Each with its error.
    pub failed: Vec<(String, Error)>,
}

impl Host {
    /// Loads a config file (secrets from the environment) and every plugin it names.
    pub async fn from_config_file(path: &Path) -> Result<Host> {
        Host::new(Config::load(path)?).await
    }

    /// Starts a host from a validated config: opens storage, compiles (or loads cached)
    /// components, checks each is an adapter and asks it to `describe` itself. Any plugin that
    /// fails to load fails the whole start: a host never starts half-configured.
    pub async fn new(config: Config) -> Result<Host> {
        let runtime = Runtime::new(config.runtime.max_instances, &config.runtime.cache_dir)?;
        let store = Arc::new(Store::open(&config.storage.path)?);
        let data_dir = config
            .storage
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let http = caps::egress::Clients::new()?;
        let host = Host {
            inner: Arc::new(Inner {
                runtime,
                store,
                data_dir,
                http,
                plugins: Default::default(),
                limiters: Default::default(),
                key_locks: delivery::KeyLocks::default(),
                calls: drain::CallGate::default(),
            }),
        };
        let mut plugins = BTreeMap::new();
        for (name, plugin_config) in config.plugins {
            let plugin = host.load_plugin(&name, plugin_config).await?;
            plugins.insert(name, Arc::new(plugin));
        }
        *host.write_plugins() = Arc::new(plugins);
        Ok(host)
    }

    /// Swaps in a new config's plugins while calls are running: a call that started finishes on
    /// the version it started with; calls that start after this returns use the new one. A
    /// plugin whose new version fails to load (missing file, wrong digest, not an adapter) keeps
    /// its old version running, and the failure is logged and reported. Storage and runtime
    /// settings are fixed for the life of the host: changes to them are ignored with a warning.
    pub async fn reload(&self, config: Config) -> ReloadReport {
        let mut report = ReloadReport::default();
        let current = self.read_plugins();
        let mut next = BTreeMap::new();
        for (name, plugin_config) in config.plugins {
            match self.load_plugin(&name, plugin_config).await {
                Ok(plugin) => {
                    report.loaded.push(name.clone());
                    next.insert(name, Arc::new(plugin));
                }
                Err(error) => {
                    tracing::error!(plugin = %name, %error, "reload: the new version failed to load; the old one keeps serving");
                    if let Some(old) = current.get(&name) {
                        next.insert(name.clone(), old.clone());
                    }
                    report.failed.push((name, error));
                }
            }
        }
        report.removed = current
            .keys()
            .filter(|name| !next.contains_key(*name))
            .cloned()
            .collect();
        *self.write_plugins() = Arc::new(next);
        tracing::info!(loaded = ?report.loaded, removed = ?report.removed, failed = report.failed.len(), "reloaded");
        report
    }

    /// [`Host::reload`] from a config file; a file that does not parse changes nothing.
    pub async fn reload_from_file(&self, path: &Path) -> Result<ReloadReport> {
        let config = Config::load(path)?;
        Ok(self.reload(config).await)
    }

    async fn load_plugin(&self, name: &str, plugin_config: config::PluginConfig) -> Result<Plugin> {
        let runtime = &self.inner.runtime;
        let component = runtime.load(
            name,
            &plugin_config.component,
            plugin_config.sha256.as_deref(),
        )?;
        let limiter = self
            .inner
            .limiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((
                name.to_owned(),
                PluginContext::credential(&plugin_config),
                plugin_config.limits.qps,
                plugin_config.limits.burst,
            ))
            .or_insert_with(|| {
                Arc::new(RateLimiter::new(
                    plugin_config.limits.qps,
                    plugin_config.limits.burst,
                ))
            })
            .clone();
        let context = Arc::new(PluginContext::new(
            name.to_owned(),
            plugin_config,
            self.inner.store.clone(),
            self.inner.http.clone(),
            limiter,
        ));
        let OpResult::Describe(info) = runtime.call(&context, &component, Op::Describe).await?
        else {
            unreachable!("describe answers describe")
        };
        let describe = AdapterInfo::from(info);
        if describe.max_recipients_per_call == 0 || describe.recipient_kinds.is_empty() {
            return Err(Error::Load {
                plugin: name.to_owned(),
                path: context.config.component.clone(),
                reason: "describe() must name at least one recipient kind and allow at least one recipient per call".to_owned(),
            });
        }
        let info = PluginInfo {
            name: name.to_owned(),
            component: context.config.component.clone(),
            sha256: component.sha256.clone(),
            contract: runtime::ADAPTER_EXPORT.to_owned(),
            describe,
        };
        tracing::info!(plugin = %name, platform = %info.describe.platform, sha256 = %info.sha256, "plugin loaded");
        Ok(Plugin {
            context,
            component,
            info,
        })
    }

    fn read_plugins(&self) -> Arc<BTreeMap<String, Arc<Plugin>>> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn write_plugins(&self) -> std::sync::RwLockWriteGuard<'_, Arc<BTreeMap<String, Arc<Plugin>>>> {
        self.inner
            .plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.read_plugins()
            .values()
            .map(|p| p.info.clone())
            .collect()
    }

    fn plugin(&self, name: &str) -> Result<Arc<Plugin>> {
        self.read_plugins()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownPlugin(name.to_owned()))
    }

    /// Sends a coupon. Every recipient ends in exactly one of `issued` / `failed`; an error is
    /// returned only when the send failed as a whole (bad request, bad credentials, sandbox kill).
    ///
    /// The send runs under an idempotency key (`request.idempotency_key`, or a generated one,
    /// returned in the outcome). The host journals it: sending again with a key that already
    /// ended returns the recorded outcome (`replayed: true`) without calling the platform, and
    /// concurrent sends with one key make one platform call. Failures that may pass are retried
    /// by class within the plugin's `retry` settings; see [`SendOutcome`] for what each
    /// recipient's final state means. A send that failed as a whole and had no effect leaves
    /// no journal entry, so its key can be used again.
    pub async fn send(&self, plugin_name: &str, request: SendRequest) -> Result<SendOutcome> {
        let _call = self.inner.calls.enter()?;
        let plugin = self.plugin(plugin_name)?;
        let key = match &request.idempotency_key {
            Some(key) => {
                validate_key(key)?;
                key.clone()
            }
            None => new_idempotency_key(),
        };
        validate_send(&request, &plugin.info.describe)?;
        let span = tracing::info_span!("send", plugin = plugin_name, idempotency_key = %key, recipients = request.recipients.len(),
            issued = Empty, failed = Empty, platform_request_ids = Empty, error_class = Empty, elapsed_ms = Empty);
        let started = std::time::Instant::now();
        let result = self
            .deliver(&plugin, &request, &key, true)
            .instrument(span.clone())
            .await;
        record_send(&span, plugin_name, &result, started.elapsed());
        result
    }

    /// Lists a recipient's coupons.
    pub async fn query(&self, plugin_name: &str, request: QueryRequest) -> Result<Vec<Coupon>> {
        let _call = self.inner.calls.enter()?;
        let plugin = self.plugin(plugin_name)?;
        let span = tracing::info_span!(
            "query",
            plugin = plugin_name,
            coupons = Empty,
            error_class = Empty,
            elapsed_ms = Empty
        );
        let started = std::time::Instant::now();
        let result = self
            .query_plugin(&plugin, request)
            .instrument(span.clone())
            .await;
        record_query(&span, plugin_name, &result, started.elapsed());
        result
    }

    async fn query_plugin(&self, plugin: &Plugin, request: QueryRequest) -> Result<Vec<Coupon>> {
        if !plugin
            .info
            .describe
            .recipient_kinds
            .contains(&request.recipient.kind())
        {
            return Err(unsupported_kind(&plugin.info.describe, &request.recipient));
        }
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
                plugin: plugin.info.name.clone(),
                error: error.into(),
            }),
            _ => unreachable!("query answers query"),
        }
    }
}

fn validate_key(key: &str) -> Result<()> {
    // Counted in characters, as JSON Schema's `maxLength` (the HTTP API's description) counts.
    if key.trim().is_empty() || key.chars().count() > 128 || key.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(
            "the idempotency key must be 1 to 128 characters, not blank, without control characters"
                .to_owned(),
        ));
    }
    Ok(())
}

/// A generated key: milliseconds since the epoch, then 80 random bits (like a UUIDv7). Keys that
/// grow with time go in at the end of the journal's B-trees, which are keyed on them; fully
/// random keys dirtied (and had to read) a random leaf page of each table per send.
fn new_idempotency_key() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let random = rand::random::<u128>() & ((1 << 80) - 1);
    format!("ch-{:012x}{random:020x}", ms & 0xFFFF_FFFF_FFFF)
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

#[cfg(test)]
mod tests {
    use super::new_idempotency_key;

    #[test]
    fn generated_keys_are_distinct_and_grow_with_time() {
        let first = new_idempotency_key();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = new_idempotency_key();
        assert_ne!(first, second);
        assert_eq!(first.len(), "ch-".len() + 32);
        assert!(first.starts_with("ch-") && first[3..].bytes().all(|b| b.is_ascii_hexdigit()));
        // The time prefix orders keys made a millisecond or more apart.
        assert!(first[..15] < second[..15], "{first} then {second}");
    }
}
