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
pub mod secret;
pub mod signing;
pub mod store;
pub mod types;

pub mod campaign;

#[doc(hidden)]
pub mod bench;

mod caps;
mod convert;
mod delivery;
mod journal;
mod limiter;
mod runtime;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use tracing::Instrument;

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
    plugins: BTreeMap<String, Plugin>,
    key_locks: delivery::KeyLocks,
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
        let http = caps::egress::Clients::new()?;

        let mut plugins = BTreeMap::new();
        let mut limiters: HashMap<(String, String), Arc<RateLimiter>> = HashMap::new();
        for (name, plugin_config) in config.plugins {
            let component = runtime.load(
                &name,
                &plugin_config.component,
                plugin_config.sha256.as_deref(),
            )?;
            let limiter = limiters
                .entry((name.clone(), PluginContext::credential(&plugin_config)))
                .or_insert_with(|| {
                    Arc::new(RateLimiter::new(
                        plugin_config.limits.qps,
                        plugin_config.limits.burst,
                    ))
                })
                .clone();
            let context = Arc::new(PluginContext::new(
                name.clone(),
                plugin_config,
                store.clone(),
                http.clone(),
                limiter,
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
                store,
                plugins,
                key_locks: delivery::KeyLocks::default(),
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
    ///
    /// The send runs under an idempotency key (`request.idempotency_key`, or a generated one,
    /// returned in the outcome). The host journals it: sending again with a key that already
    /// ended returns the recorded outcome (`replayed: true`) without calling the platform, and
    /// concurrent sends with one key make one platform call. Failures that may pass are retried
    /// by class within the plugin's `retry` settings; see [`SendOutcome`] for what each
    /// recipient's final state means. A send that failed as a whole and had no effect leaves
    /// no journal entry, so its key can be used again.
    pub async fn send(&self, plugin_name: &str, request: SendRequest) -> Result<SendOutcome> {
        let plugin = self.plugin(plugin_name)?;
        let key = match &request.idempotency_key {
            Some(key) => {
                validate_key(key)?;
                key.clone()
            }
            None => new_idempotency_key(),
        };
        validate_send(&request, &plugin.info.describe)?;
        let span = tracing::info_span!("send", plugin = plugin_name, idempotency_key = %key, recipients = request.recipients.len());
        self.deliver(plugin, &request, &key, true)
            .instrument(span)
            .await
    }

    /// Lists a recipient's coupons.
    pub async fn query(&self, plugin_name: &str, request: QueryRequest) -> Result<Vec<Coupon>> {
        let plugin = self.plugin(plugin_name)?;
        let span = tracing::info_span!("query", plugin = plugin_name);
        self.query_plugin(plugin, request).instrument(span).await
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
    if key.trim().is_empty() || key.len() > 128 || key.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(
            "the idempotency key must be 1 to 128 bytes, without control characters".to_owned(),
        ));
    }
    Ok(())
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
