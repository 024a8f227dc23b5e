//! The capabilities lent to adapters, and the per-call state they run on (the `T` of `Store<T>`).
//!
//! One capability = one file = one WIT interface: `http` (signed-http), `kv`, `log`, `settings`.
//! Besides these, a guest gets WASI with nothing in it: no preopened directories, no environment,
//! no arguments, no sockets, stdio discarded.

pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod log;
pub(crate) mod settings;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::config::PluginConfig;
use crate::runtime::bindings::latest;
use crate::secret::Secret;
use crate::store::{KvQuota, Store};

/// What every call of one plugin shares.
pub(crate) struct PluginContext {
    pub(crate) name: String,
    pub(crate) config: PluginConfig,
    pub(crate) store: Arc<Store>,
    pub(crate) http: reqwest::Client,
    pub(crate) kv_quota: KvQuota,
}

impl PluginContext {
    /// Every secret this plugin's requests carry, for redaction.
    pub(crate) fn secrets(&self) -> Vec<&Secret> {
        match &self.config.auth {
            crate::config::Auth::None => Vec::new(),
            crate::config::Auth::Top(top) => {
                let mut secrets = vec![&top.app_secret];
                secrets.extend(top.session.as_ref());
                secrets
            }
        }
    }
}

/// The state of one adapter call: a fresh one per instance.
pub(crate) struct HostState {
    pub(crate) plugin: Arc<PluginContext>,
    pub(crate) limiter: Limiter,
    pub(crate) http_requests: u32,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<PluginContext>) -> Self {
        let memory_bytes = (plugin.config.limits.memory_mib as usize) << 20;
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            plugin,
            limiter: Limiter {
                memory_bytes,
                memory_refused: false,
            },
            http_requests: 0,
            wasi,
            table: ResourceTable::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps a plugin's linear memory and remembers refusing, so the trap that follows is reported
/// as a memory kill rather than a generic crash.
pub(crate) struct Limiter {
    memory_bytes: usize,
    pub(crate) memory_refused: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_refused = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Links WASI (empty) and every coupon capability. Nothing else is reachable from a guest.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    latest::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}

impl latest::coupon::adapter::types::Host for HostState {}
