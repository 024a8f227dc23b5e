//! The capabilities lent to adapters, and the per-call state they run on (the `T` of `Store<T>`).
//!
//! One capability = one file = one WIT interface: `http` (signed-http), `kv`, `log`, `settings`.
//! Besides these, a guest gets WASI with nothing in it: no preopened directories, no environment,
//! no arguments, no sockets, stdio discarded.

mod compat;
pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod log;
pub(crate) mod settings;

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::PluginContext;
use super::bindings::{latest, v0_1};
use crate::auth::Account;
use crate::secret::Secret;
use crate::store::Scope;

/// The state of one adapter call: a fresh one per instance.
pub(crate) struct HostState {
    pub(crate) plugin: Arc<PluginContext>,
    /// The merchant the call is made for: its secrets sign the requests, its settings override
    /// the plugin's.
    pub(crate) account: Arc<Account>,
    /// (plugin, account): the kv namespace.
    pub(crate) scope: Scope,
    pub(crate) limiter: Limiter,
    pub(crate) http_requests: u32,
    /// Time this call spent waiting for the rate limiter, in ms: the deadline is moved by it,
    /// so a plugin is never killed for waiting its turn.
    pub(crate) limiter_wait_ms: Arc<std::sync::atomic::AtomicU64>,
    /// Log lines and bytes this call has written (`caps/log.rs` caps both).
    pub(crate) log_lines: u32,
    pub(crate) log_bytes: usize,
    /// kv operations this call has made (`caps/kv.rs` caps them).
    pub(crate) kv_ops: u32,
    /// Time this call spent in `signed-http` requests (metrics: host overhead = the rest).
    pub(crate) platform_time: std::time::Duration,
    /// Whether the adapter's instance came to be (a call that never got one sent nothing).
    pub(crate) instantiated: bool,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<PluginContext>, account: Arc<Account>) -> Self {
        let memory_bytes = (plugin.config.limits.memory_mib as usize) << 20;
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            scope: Scope::new(plugin.name.clone(), account.name.clone()),
            plugin,
            account,
            limiter: Limiter {
                memory_bytes,
                memory_refused: false,
            },
            http_requests: 0,
            limiter_wait_ms: Arc::default(),
            log_lines: 0,
            log_bytes: 0,
            kv_ops: 0,
            platform_time: std::time::Duration::ZERO,
            instantiated: false,
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

/// Links WASI (empty) and every coupon capability, under the names of every contract version
/// the host speaks. Nothing else is reachable from a guest.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    latest::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    v0_1::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}

impl latest::coupon::adapter::types::Host for HostState {}
impl v0_1::coupon::adapter::types::Host for HostState {}

impl HostState {
    /// Every secret this call's requests may carry, for redaction.
    pub(crate) fn secrets(&self) -> Vec<Secret> {
        self.plugin.scheme.secrets(&self.account)
    }
}
