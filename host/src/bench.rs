//! Hooks for `host/benches/sandbox.rs`, and nothing else (cargo feature `bench`, which only the
//! bench enables): the pieces of a send taken apart, so a benchmark can time a fresh instance
//! against a reused one, the sandbox without the journal, a signed request answered without a
//! network ([`Canned`], a [`Transport`]), a cold compile against a cached load.
//!
//! Not part of the API (`#[doc(hidden)]`, no stability promise). Production never builds it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::auth::Account;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::limiter::RateLimiter;
use crate::runtime::adapter::Kept;
use crate::runtime::{LoadedComponent, PluginContext, Runtime, SendCall};
use crate::transport::{HttpRequest, HttpResponse, Transport, TransportError};
use crate::types::{QueryRequest, SendRequest};

/// The TOP signer, for the bench's native client (the same code the host signs with).
pub mod top {
    pub use crate::auth::top::{SignMethod, assemble, is_blank, sign, timestamp};
}

static DECLARED_LIMITS_LIFTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// From now on, in this process, a `Host` ignores the `limits.qps` an adapter declares (contract
/// 0.2.0): no default pace and no ceiling on the configured one. The bench measures what the
/// host itself costs per send, which Douyin's documented 100 sends a second would hide.
pub fn lift_declared_limits() {
    DECLARED_LIMITS_LIFTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn declared_limits_lifted() -> bool {
    DECLARED_LIMITS_LIFTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A canned `signed-http` answer: gets the body that would have been sent (TOP: the signed,
/// form-encoded parameters) and returns `(status, body)`. The host still checks, paces, signs
/// and encodes the request.
pub type Canned = Arc<dyn Fn(&[u8]) -> (u16, Vec<u8>) + Send + Sync>;

struct CannedTransport(Canned);

#[async_trait]
impl Transport for CannedTransport {
    async fn send(
        &self,
        request: HttpRequest,
    ) -> std::result::Result<HttpResponse, TransportError> {
        let (status, body) = (self.0)(request.body.as_deref().unwrap_or_default());
        Ok(HttpResponse {
            status,
            headers: Vec::new(),
            body,
        })
    }
}

/// One plugin of a config, loaded into its own runtime, called without the journal.
pub struct Harness {
    runtime: Runtime,
    context: Arc<PluginContext>,
    account: Arc<Account>,
    component: LoadedComponent,
}

impl Harness {
    /// Loads `plugin` from `config` (its storage is opened, its component compiled or loaded from
    /// the cache). `epoch: false` builds the engine without epoch interruption; `canned` answers
    /// every signed request instead of the network.
    pub async fn new(
        config: &Config,
        plugin: &str,
        epoch: bool,
        canned: Option<Canned>,
    ) -> Result<Self> {
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
        let storage =
            crate::store::open(&config.storage.backend, config.storage.options.clone()).await?;
        let component = runtime.load(
            plugin,
            &plugin_config.component,
            plugin_config.sha256.as_deref(),
        )?;
        let limiter = Arc::new(RateLimiter::new(
            plugin_config.limits.qps,
            plugin_config.limits.burst,
        ));
        let transport: Arc<dyn Transport> = match canned {
            Some(canned) => Arc::new(CannedTransport(canned)),
            None => Arc::new(crate::transport::Network::new(
                crate::transport::egress::Clients::new()?
                    .for_plugin(plugin_config.allow_private_addresses),
            )),
        };
        let account = Arc::new(plugin_config.auth.default_account.clone());
        let context = PluginContext::new(
            plugin.to_owned(),
            plugin_config,
            storage,
            transport,
            limiter,
            "bench".into(),
        );
        Ok(Harness {
            runtime,
            context: Arc::new(context),
            account,
            component,
        })
    }

    /// One send as `Host::send` makes it (a fresh instance per call, the same limits), without
    /// the journal, retries or batching. Returns how many recipients were issued.
    pub async fn send(&self, request: &SendRequest) -> Result<usize> {
        let answer = self
            .runtime
            .send(&self.context, &self.account, &self.component, call(request))
            .await?;
        issued(answer)
    }

    /// A live instance, for calls that reuse it.
    pub async fn instance(&self) -> Result<Instance> {
        let mut store = self.runtime.store(&self.context, &self.account);
        let kept = self
            .component
            .adapter
            .instantiate(&mut store)
            .await
            .map_err(|e| Error::runtime_from("instantiate", e.into_boxed_dyn_error()))?;
        Ok(Instance { store, kept })
    }
}

/// An instance kept across calls (what the host never does: it is the cost of isolation).
pub struct Instance {
    store: wasmtime::Store<crate::runtime::caps::HostState>,
    kept: Kept,
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
            .kept
            .send(&mut self.store, call(request))
            .await
            .map_err(|e| Error::runtime_from("send-coupon", e.into_boxed_dyn_error()))?;
        issued(answer)
    }

    /// Calls `query-coupons`; returns how many coupons came back.
    pub async fn query(&mut self, request: &QueryRequest) -> Result<usize> {
        let answer = self
            .kept
            .query(&mut self.store, request)
            .await
            .map_err(|e| Error::runtime_from("query-coupons", e.into_boxed_dyn_error()))?;
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

fn call(request: &SendRequest) -> SendCall {
    SendCall {
        account: crate::store::DEFAULT_ACCOUNT.to_owned(),
        coupon: request.coupon.clone(),
        recipients: request.recipients.clone(),
        quantity: request.quantity,
        idempotency_key: request
            .idempotency_key
            .clone()
            .unwrap_or_else(|| "bench".to_owned()),
        options: request.options.clone(),
    }
}

fn issued(
    answer: std::result::Result<crate::runtime::SendAnswer, crate::types::AdapterError>,
) -> Result<usize> {
    match answer {
        Ok(outcome) => Ok(outcome.issued.len()),
        Err(error) => Err(Error::runtime(format!(
            "the adapter failed the send: {} {}",
            error.code, error.message
        ))),
    }
}
