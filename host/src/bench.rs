//! Hooks for `host/benches/sandbox.rs`, and nothing else: the pieces of a send taken apart, so a
//! benchmark can time a fresh instance against a reused one, the sandbox without the journal, a
//! signed request answered without a network, a cold compile against a cached load.
//!
//! Not part of the API (`#[doc(hidden)]`, no stability promise). Production never builds a
//! [`Harness`]; the one production-visible hook is `PluginContext::canned`, always `None` there.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::caps::{HostState, PluginContext};
use crate::config::Config;
use crate::limiter::RateLimiter;
use crate::runtime::bindings::latest;
use crate::runtime::bindings::latest::coupon::adapter::types as wit;
use crate::runtime::{LoadedComponent, Op, OpResult, Runtime};
use crate::store::Store;
use crate::types::{QueryRequest, SendRequest};
use crate::{Error, Result};

/// A canned `signed-http` answer: gets the signed parameters (or the body) that would have been
/// sent and returns `(status, body)`. The host still checks, paces and signs the request.
pub type Canned = Arc<dyn Fn(&[(String, String)], Option<&[u8]>) -> (u16, Vec<u8>) + Send + Sync>;

/// One plugin of a config, loaded into its own runtime, called without the journal.
pub struct Harness {
    runtime: Runtime,
    context: Arc<PluginContext>,
    component: LoadedComponent,
}

impl Harness {
    /// Loads `plugin` from `config` (its storage is opened, its component compiled or loaded from
    /// the cache). `epoch: false` builds the engine without epoch interruption; `canned` answers
    /// every signed request instead of the network.
    pub fn new(config: &Config, plugin: &str, epoch: bool, canned: Option<Canned>) -> Result<Self> {
        let plugin_config = config
            .plugins
            .get(plugin)
            .ok_or_else(|| Error::UnknownPlugin(plugin.to_owned()))?
            .clone();
        let runtime = Runtime::build(
            config.runtime.max_instances,
            &config.runtime.cache_dir,
            epoch,
        )?;
        let store = Arc::new(Store::open(&config.storage.path)?);
        let component = runtime.load(
            plugin,
            &plugin_config.component,
            plugin_config.sha256.as_deref(),
        )?;
        let limiter = Arc::new(RateLimiter::new(
            plugin_config.limits.qps,
            plugin_config.limits.burst,
        ));
        let mut context = PluginContext::new(
            plugin.to_owned(),
            plugin_config,
            store,
            crate::caps::egress::Clients::new()?,
            limiter,
        );
        context.canned = canned;
        Ok(Harness {
            runtime,
            context: Arc::new(context),
            component,
        })
    }

    /// One send as `Host::send` makes it (a fresh instance per call, the same limits), without
    /// the journal, retries or batching. Returns how many recipients were issued.
    pub async fn send(&self, request: &SendRequest) -> Result<usize> {
        let result = self
            .runtime
            .call(&self.context, &self.component, Op::Send(wit_send(request)))
            .await?;
        issued(result)
    }

    /// A live instance, for calls that reuse it.
    pub async fn instance(&self) -> Result<Instance> {
        let mut store = self.runtime.store(&self.context);
        let plugin = self
            .component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| Error::Runtime(format!("instantiate: {e:#}")))?;
        Ok(Instance { store, plugin })
    }
}

/// An instance kept across calls (what the host never does: it is the cost of isolation).
pub struct Instance {
    store: wasmtime::Store<HostState>,
    plugin: latest::Plugin,
}

impl Instance {
    /// Calls `send-coupon`; returns how many recipients were issued.
    pub async fn send(&mut self, request: &SendRequest) -> Result<usize> {
        // Per-call caps count per call, as they would on a fresh instance.
        let state = self.store.data_mut();
        state.http_requests = 0;
        state.log_lines = 0;
        state.log_bytes = 0;
        state.kv_ops = 0;
        let answer = self
            .plugin
            .coupon_adapter_adapter()
            .call_send_coupon(&mut self.store, &wit_send(request))
            .await
            .map_err(|e| Error::Runtime(format!("send-coupon: {e:#}")))?;
        issued(OpResult::Send(answer))
    }

    /// Calls `query-coupons`; returns how many coupons came back.
    pub async fn query(&mut self, request: &QueryRequest) -> Result<usize> {
        let request = wit::QueryRequest {
            recipient: (&request.recipient).into(),
            options: request.options.clone(),
        };
        let answer = self
            .plugin
            .coupon_adapter_adapter()
            .call_query_coupons(&mut self.store, &request)
            .await
            .map_err(|e| Error::Runtime(format!("query-coupons: {e:#}")))?;
        Ok(answer.map(|coupons| coupons.len()).unwrap_or(0))
    }
}

/// How long loading `component` takes in a new runtime whose cache is `cache_dir`: a compile when
/// the cache is empty, a load of the precompiled artifact when it is not.
pub fn load_time(component: &Path, cache_dir: &Path) -> Result<Duration> {
    let runtime = Runtime::build(4, cache_dir, true)?;
    let started = Instant::now();
    runtime.load("bench", component, None)?;
    Ok(started.elapsed())
}

fn wit_send(request: &SendRequest) -> wit::SendRequest {
    wit::SendRequest {
        coupon: request.coupon.clone(),
        recipients: request.recipients.iter().map(Into::into).collect(),
        quantity: request.quantity,
        idempotency_key: request
            .idempotency_key
            .clone()
            .unwrap_or_else(|| "bench".to_owned()),
        options: request.options.clone(),
    }
}

fn issued(result: OpResult) -> Result<usize> {
    match result {
        OpResult::Send(Ok(outcome)) => Ok(outcome.issued.len()),
        OpResult::Send(Err(error)) => Err(Error::Runtime(format!(
            "the adapter failed the send: {} {}",
            error.code, error.message
        ))),
        _ => unreachable!("send answers send"),
    }
}
