//! The sandbox: one wasmtime `Engine`, compiled components cached on disk, a fresh instance per
//! call, and every limit (memory, deadline, transfer size, pool size) set here and only here.
//!
//! Nothing outside `runtime/` sees the generated WIT bindings: callers speak the host's own
//! types ([`SendCall`], [`SendAnswer`], [`crate::types`]), and [`adapter::Adapter`] converts to
//! and from whichever contract version a component exports.

pub(crate) mod adapter;
mod bindings;
pub(crate) mod caps;
mod convert;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use self::adapter::Adapter;
use self::caps::HostState;
use crate::auth::{Account, Scheme};
use crate::config::PluginConfig;
use crate::error::{Error, Result, SandboxKill};
use crate::limiter::RateLimiter;
use crate::store::{KvQuota, Storage};
use crate::transport::Transport;
use crate::types::{
    AdapterError, AdapterInfo, Coupon, IssuedCoupon, QueryRequest, Recipient, RecipientFailure,
};

/// How often the epoch ticks; deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest component file the host loads, in bytes (adapters are a few MiB; a JavaScript
/// one, with its engine, some 12).
pub(crate) const MAX_COMPONENT_BYTES: u64 = 128 << 20;

/// A component file's bytes: opened once without blocking, refused at once when it is not a
/// regular file (saying what it is: a FIFO, a device, a folder), read through
/// [`MAX_COMPONENT_BYTES`].
pub(crate) fn read_component(path: &Path) -> std::result::Result<Vec<u8>, String> {
    let (file, _) = crate::open::open_regular(path, false).map_err(|e| match e.kind() {
        // What it is, when it is not a regular file.
        std::io::ErrorKind::InvalidInput => e.to_string(),
        _ => format!("cannot read it: {e}"),
    })?;
    crate::open::read_capped(file, MAX_COMPONENT_BYTES).map_err(|e| {
        format!(
            "cannot read it: {e}; the host loads components of at most {} MiB",
            MAX_COMPONENT_BYTES >> 20
        )
    })
}

/// The most bytes a guest may hand the host in one transfer: the arguments of one host call, or the
/// answer of one adapter call. wasmtime counts them while lifting (its "hostcall fuel", 128 MiB by
/// default) and fails the lift when they run out, so a guest cannot make the host allocate more:
/// not with one huge string, nor with a list whose million entries all point at the same bytes.
pub(crate) const MAX_TRANSFER_BYTES: usize = 16 << 20;

/// Core instances one adapter instance may hold. A Rust component has about five, one built
/// with componentize-js three or four, one built with componentize-py 14 (38 with
/// `--stub-wasi`); the pool only counts core instances, so every slot gets room for the
/// largest of these at no cost.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 64;

/// Linear memories the pool holds per slot. Each is a reservation of address space (4 GiB and
/// a guard), so the pool holds an average, not a worst case: a call takes as many as its
/// component needs, and waits while they are in use.
const MEMORIES_PER_SLOT: u32 = 2;

/// Tables the pool holds per slot, shared out like the memories.
const TABLES_PER_SLOT: u32 = 4;

/// The engine, its linker, and the compiled-component cache.
pub(crate) struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    /// One permit per pool slot: a call beyond the pool's size waits for a slot instead of
    /// failing to instantiate.
    slots: Arc<tokio::sync::Semaphore>,
    /// One permit per linear memory of the pool; a call takes its component's count.
    memories: Arc<tokio::sync::Semaphore>,
    /// One permit per table of the pool; a call takes its component's count.
    tables: Arc<tokio::sync::Semaphore>,
    /// The pool's memories and tables: no component that needs more is loaded.
    pool_totals: (u32, u32),
}

/// What one instance of a component takes from the pool, besides its slot and core instances.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Needs {
    memories: u32,
    tables: u32,
}

/// What every call of one plugin shares.
pub(crate) struct PluginContext {
    pub(crate) name: String,
    pub(crate) config: PluginConfig,
    /// How its requests are authorised.
    pub(crate) scheme: Arc<dyn Scheme>,
    pub(crate) storage: Storage,
    /// How its requests leave the process.
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) kv_quota: KvQuota,
    /// Paces this plugin's platform requests (shared with every plugin of the same credential
    /// and plugin name, across reloads).
    pub(crate) limiter: Arc<RateLimiter>,
    /// This process, for the locks and leases it takes.
    pub(crate) holder: Arc<str>,
    /// Told when the platform refuses an account's credential for good.
    pub(crate) refusals: Arc<dyn crate::auth::Refusals>,
    /// Accounts with a `qps` of their own: their limiters, by account.
    account_limiters: std::sync::Mutex<std::collections::HashMap<String, Arc<RateLimiter>>>,
}

impl PluginContext {
    pub(crate) fn new(
        name: String,
        config: PluginConfig,
        storage: Storage,
        transport: Arc<dyn Transport>,
        limiter: Arc<RateLimiter>,
        holder: Arc<str>,
    ) -> Self {
        let kv_quota = KvQuota {
            max_keys: config.limits.kv_max_keys,
            ..KvQuota::default()
        };
        PluginContext {
            name,
            scheme: config.auth.scheme.clone(),
            config,
            storage,
            transport,
            kv_quota,
            limiter,
            holder,
            refusals: Arc::new(crate::auth::IgnoreRefusals),
            account_limiters: Default::default(),
        }
    }

    /// The same, telling `refusals` when the platform refuses an account's credential.
    pub(crate) fn with_refusals(mut self, refusals: Arc<dyn crate::auth::Refusals>) -> Self {
        self.refusals = refusals;
        self
    }

    /// The limiter of an account with a `qps` of its own, shared with every process.
    pub(crate) fn account_limiter(&self, account: &Account) -> Option<Arc<RateLimiter>> {
        let qps = account.qps?;
        let mut limiters = self
            .account_limiters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let limiter = limiters.entry(account.name.clone()).or_insert_with(|| {
            Arc::new(RateLimiter::new(Some(qps), (qps / 10).max(1)).shared(
                self.storage.clone(),
                format!("{}/account/{}", self.name, account.name),
                self.holder.to_string(),
                Duration::from_millis(self.config.limits.http_timeout_ms) + Duration::from_secs(5),
            ))
        });
        Some(limiter.clone())
    }
}

/// A plugin as loaded: what its calls share, its component, and what it said of itself.
pub(crate) struct Plugin {
    pub(crate) context: Arc<PluginContext>,
    pub(crate) component: LoadedComponent,
    pub(crate) info: crate::types::PluginInfo,
}

impl Plugin {
    /// The plugin's name.
    pub(crate) fn name(&self) -> &str {
        &self.info.name
    }
}

/// A send as the adapter gets it: one batch.
#[derive(Debug, Clone)]
pub(crate) struct SendCall {
    /// The account the call is made for (set by [`Runtime::send`]).
    pub(crate) account: String,
    pub(crate) coupon: String,
    pub(crate) recipients: Vec<Recipient>,
    pub(crate) quantity: u32,
    pub(crate) idempotency_key: String,
    pub(crate) options: Vec<(String, String)>,
}

/// What an adapter answered to a send: per recipient, issued or failed.
#[derive(Debug, Clone, Default)]
pub(crate) struct SendAnswer {
    pub(crate) issued: Vec<IssuedCoupon>,
    pub(crate) failed: Vec<RecipientFailure>,
    pub(crate) platform_request_ids: Vec<String>,
}

/// An adapter operation.
pub(crate) enum Op {
    Describe,
    Send(SendCall),
    Query(QueryRequest),
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Describe => "describe",
            Op::Send(_) => "send",
            Op::Query(_) => "query",
        }
    }
}

/// What an operation returned.
pub(crate) enum Answer {
    Describe(AdapterInfo),
    Send(std::result::Result<SendAnswer, AdapterError>),
    Query(std::result::Result<Vec<Coupon>, AdapterError>),
}

/// A component ready to instantiate.
pub(crate) struct LoadedComponent {
    pub(crate) adapter: Adapter,
    pub(crate) sha256: String,
    /// The names of the component's imports and exports, as its type says (`coupon-host check`
    /// prints them).
    pub(crate) imports: Vec<String>,
    pub(crate) exports: Vec<String>,
    needs: Needs,
}

impl Runtime {
    /// Builds the engine: pooling allocator sized for `max_instances`, epoch interruption with
    /// one ticker thread, async host calls, no component-model-async (it slows every call).
    pub(crate) fn new(max_instances: u32, cache_dir: &Path) -> Result<Runtime> {
        Runtime::build(max_instances, cache_dir, true)
    }

    /// [`Runtime::new`], with epoch interruption (deadlines) switchable so benchmarks can
    /// measure what it costs. Production always has it on.
    pub(crate) fn build(max_instances: u32, cache_dir: &Path, epoch: bool) -> Result<Runtime> {
        let mut pool = PoolingAllocationConfig::default();
        // Every limit of the pool is either room for the largest component in every slot (core
        // instances, component instances, stacks), or shared out by semaphores in `call`
        // (memories, tables), so an instantiation never fails for lack of room: a call waits.
        let total_memories = max_instances.saturating_mul(MEMORIES_PER_SLOT);
        let total_tables = max_instances.saturating_mul(TABLES_PER_SLOT);
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances.saturating_mul(MAX_CORE_INSTANCES_PER_COMPONENT))
            .total_memories(total_memories)
            .total_tables(total_tables)
            .total_stacks(max_instances)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
            .max_memories_per_component(total_memories)
            .max_tables_per_component(total_tables)
            .max_memory_size((crate::config::MAX_MEMORY_MIB as usize) << 20)
            // Reset slots by zeroing dirty pages instead of unmapping them: the next instance
            // takes no page faults (PERFORMANCE.md §5.2).
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(1 << 16)
            .pagemap_scan(wasmtime::Enabled::Auto);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(epoch)
            .parallel_compilation(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| {
            Error::runtime_from("cannot start the wasm engine", e.into_boxed_dyn_error())
        })?;

        // One ticker per engine; it stops when the engine is gone.
        let weak = engine.weak();
        if epoch {
            std::thread::Builder::new()
                .name("coupon-host-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|e| Error::runtime_from("cannot start the epoch ticker", e))?;
        }

        let mut linker = Linker::new(&engine);
        caps::add_to_linker(&mut linker).map_err(|e| {
            Error::runtime_from("cannot link host capabilities", e.into_boxed_dyn_error())
        })?;

        Ok(Runtime {
            engine,
            linker,
            cache_dir: cache_dir.to_owned(),
            slots: Arc::new(tokio::sync::Semaphore::new(max_instances as usize)),
            memories: Arc::new(tokio::sync::Semaphore::new(total_memories as usize)),
            tables: Arc::new(tokio::sync::Semaphore::new(total_tables as usize)),
            pool_totals: (total_memories, total_tables),
        })
    }

    /// Loads a component (from the cache when it was compiled before) and checks it is an
    /// adapter of a contract version the host speaks.
    pub(crate) fn load(
        &self,
        plugin: &str,
        path: &Path,
        pin: Option<&str>,
    ) -> Result<LoadedComponent> {
        let load_error = |reason: String| Error::Load {
            plugin: plugin.to_owned(),
            path: path.to_owned(),
            reason,
        };
        let bytes = read_component(path).map_err(load_error)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = pin
            && expected != sha256
        {
            return Err(Error::Integrity {
                plugin: plugin.to_owned(),
                path: path.to_owned(),
                expected: expected.to_owned(),
                actual: sha256,
                pinned_at: None,
            });
        }
        let component = self.compile_cached(&bytes, &sha256).map_err(load_error)?;
        let needs = match component.resources_required() {
            Some(resources) => Needs {
                memories: resources.num_memories,
                tables: resources.num_tables,
            },
            // Only a component that imports core modules leaves this unknown; adapters do not.
            None => Needs {
                memories: 1,
                tables: 1,
            },
        };
        let (memories, tables) = self.pool_totals;
        if needs.memories > memories || needs.tables > tables {
            return Err(load_error(format!(
                "one instance needs {} linear memories and {} tables, and the whole pool has {memories} and \
                 {tables} ({MEMORIES_PER_SLOT} and {TABLES_PER_SLOT} per [runtime] max_instances): raise max_instances",
                needs.memories, needs.tables
            )));
        }
        let adapter = Adapter::new(&self.engine, &self.linker, &component).map_err(load_error)?;
        let ty = component.component_type();
        let imports = ty
            .imports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let exports = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        Ok(LoadedComponent {
            adapter,
            sha256,
            imports,
            exports,
            needs,
        })
    }

    /// Compiles `bytes`, or loads the artifact compiled earlier by this same engine configuration.
    fn compile_cached(&self, bytes: &[u8], sha256: &str) -> std::result::Result<Component, String> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let file = self
            .cache_dir
            .join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));
        if file.is_file() {
            // SAFETY: the cache holds only files this host wrote with `precompile_component` for
            // an engine of the same compatibility hash (part of the name), renamed into place
            // atomically. A file that fails to load is recompiled below.
            #[expect(unsafe_code, reason = "loading our own precompiled artifact (mmap)")]
            let loaded = unsafe { Component::deserialize_file(&self.engine, &file) };
            match loaded {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "recompiling a cached component that failed to load")
                }
            }
        }
        if is_core_module(bytes) {
            return Err(
                "it is a core wasm module, not a component (build it with --target wasm32-wasip2)"
                    .to_owned(),
            );
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| format!("it is not a valid WebAssembly component: {}", one_line(&e)))?;
        if let Err(e) = crate::text::write_atomically(&file, &compiled) {
            tracing::warn!(dir = %self.cache_dir.display(), error = %e, "cannot cache the compiled component");
        }
        // SAFETY: `compiled` was produced a moment ago by this engine.
        #[expect(unsafe_code, reason = "loading an artifact this engine just produced")]
        let component = unsafe { Component::deserialize(&self.engine, &compiled) };
        component.map_err(|e| format!("cannot load the compiled component: {}", one_line(&e)))
    }

    /// A call's store: the plugin's memory cap, the transfer cap and the epoch deadline.
    pub(crate) fn store(
        &self,
        plugin: &Arc<PluginContext>,
        account: &Arc<Account>,
    ) -> Store<HostState> {
        let limits = &plugin.config.limits;
        let mut store = Store::new(
            &self.engine,
            HostState::new(plugin.clone(), account.clone()),
        );
        store.limiter(|state| &mut state.limiter);
        store.set_hostcall_fuel(MAX_TRANSFER_BYTES);
        let ticks = limits
            .timeout_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            .max(1);
        store.set_epoch_deadline(ticks);
        // Time spent waiting for the rate limiter does not count: when the epoch deadline
        // comes, it is moved by however long the call waited its turn so far.
        let waited = store.data().limiter_wait_ms.clone();
        let tick_ms = EPOCH_TICK.as_millis() as u64;
        let mut credited = 0;
        store.epoch_deadline_callback(move |_| {
            let total = waited.load(std::sync::atomic::Ordering::Relaxed);
            let extra = total - credited;
            credited = total;
            if extra == 0 {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            Ok(wasmtime::UpdateDeadline::Continue(
                extra.div_ceil(tick_ms).max(1),
            ))
        });
        store
    }

    /// Asks a component to describe itself.
    pub(crate) async fn describe(
        &self,
        plugin: &Arc<PluginContext>,
        component: &LoadedComponent,
    ) -> Result<AdapterInfo> {
        let account = Arc::new(crate::auth::default_account());
        match self.call(plugin, &account, component, Op::Describe).await? {
            Answer::Describe(info) => Ok(info),
            _ => unreachable!("describe answers describe"),
        }
    }

    /// One `send-coupon` call for `account`.
    pub(crate) async fn send(
        &self,
        plugin: &Arc<PluginContext>,
        account: &Arc<Account>,
        component: &LoadedComponent,
        call: SendCall,
    ) -> Result<std::result::Result<SendAnswer, AdapterError>> {
        match self
            .call(plugin, account, component, Op::Send(call))
            .await?
        {
            Answer::Send(answer) => Ok(answer),
            _ => unreachable!("send answers send"),
        }
    }

    /// One `query-coupons` call for `account`.
    pub(crate) async fn query(
        &self,
        plugin: &Arc<PluginContext>,
        account: &Arc<Account>,
        component: &LoadedComponent,
        request: QueryRequest,
    ) -> Result<std::result::Result<Vec<Coupon>, AdapterError>> {
        match self
            .call(plugin, account, component, Op::Query(request))
            .await?
        {
            Answer::Query(answer) => Ok(answer),
            _ => unreachable!("query answers query"),
        }
    }

    /// Runs one adapter operation on a fresh instance of `component`, within the plugin's limits.
    async fn call(
        &self,
        plugin: &Arc<PluginContext>,
        account: &Arc<Account>,
        component: &LoadedComponent,
        op: Op,
    ) -> Result<Answer> {
        let limits = &plugin.config.limits;
        // The slot first, then the component's share of memories and tables; every caller
        // takes them in this order, so no two wait on each other.
        let closed = |_| Error::runtime("the runtime is shutting down");
        let _slot = self.slots.acquire().await.map_err(closed)?;
        let _memories = self
            .memories
            .acquire_many(component.needs.memories)
            .await
            .map_err(closed)?;
        let _tables = self
            .tables
            .acquire_many(component.needs.tables)
            .await
            .map_err(closed)?;
        let _in_use = crate::metrics::InstanceInUse::enter();
        let mut store = self.store(plugin, account);
        let waited_total = store.data().limiter_wait_ms.clone();

        let deadline = Duration::from_millis(limits.timeout_ms);
        let (op_name, started) = (op.name(), std::time::Instant::now());
        let run = component.adapter.run(&mut store, op);
        let result = with_movable_deadline(deadline, &waited_total, run).await;
        let platform_time = store.data().platform_time;
        crate::metrics::adapter_call(&plugin.name, op_name, started.elapsed(), platform_time);
        let kill = |kind, message: String| {
            crate::metrics::sandbox_kill(&plugin.name, kind);
            Error::Sandbox {
                plugin: plugin.name.clone(),
                kind,
                message,
            }
        };
        // An instance that never came to be sent nothing (unless its start code made a
        // request, which is counted): that is not a kill with an unknown outcome, but a failure
        // to try — `transient`, retried like any.
        if !store.data().instantiated && store.data().http_requests == 0 && op_name != "describe" {
            let why = match &result {
                Err(_elapsed) => Some(format!(
                    "instantiating took longer than {} ms (limits.timeout_ms)",
                    limits.timeout_ms
                )),
                Ok(Err(error)) if !store.data().limiter.memory_refused => Some(
                    crate::secret::redact_str(&one_line(error), &store.data().secrets()),
                ),
                _ => None,
            };
            if let Some(why) = why {
                tracing::warn!(plugin = %plugin.name, %why, "no adapter instance; nothing was sent");
                let error = AdapterError::new(
                    crate::types::ErrorClass::Transient,
                    "no-instance",
                    format!("no adapter instance could be made, so nothing was sent: {why}"),
                );
                return Ok(match op_name {
                    "send" => Answer::Send(Err(error)),
                    _ => Answer::Query(Err(error)),
                });
            }
        }
        match result {
            Err(_elapsed) => Err(kill(
                SandboxKill::Deadline,
                format!(
                    "no answer within {} ms (limits.timeout_ms)",
                    limits.timeout_ms
                ),
            )),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                let mut message =
                    crate::secret::redact_str(&one_line(&error), &store.data().secrets());
                let trap = error.downcast_ref::<wasmtime::Trap>();
                let kind = if store.data().limiter.memory_refused {
                    SandboxKill::Memory
                } else if matches!(trap, Some(wasmtime::Trap::Interrupt)) {
                    SandboxKill::Deadline
                } else if trap.is_some() {
                    SandboxKill::Trap
                } else {
                    // Not a trap of the guest's own code: the host refused what the guest handed
                    // over (too much data, a string that is not UTF-8, a pointer out of bounds),
                    // or could not give it an instance.
                    if message.contains("fuel allocated for hostcalls") {
                        message = format!(
                            "the adapter handed the host more than {} MiB at once: {message}",
                            MAX_TRANSFER_BYTES >> 20
                        );
                    }
                    SandboxKill::Contract
                };
                Err(kill(kind, message))
            }
        }
    }
}

/// Runs `work` until `deadline` plus whatever `waited` (ms) says was spent waiting for the rate
/// limiter; `Err(())` when that time passes first.
async fn with_movable_deadline<T>(
    deadline: Duration,
    waited: &std::sync::atomic::AtomicU64,
    work: impl std::future::Future<Output = T>,
) -> std::result::Result<T, ()> {
    let started = tokio::time::Instant::now();
    let mut work = std::pin::pin!(work);
    loop {
        let waited_ms = waited.load(std::sync::atomic::Ordering::Relaxed);
        let until = started + deadline + Duration::from_millis(waited_ms);
        match tokio::time::timeout_at(until, &mut work).await {
            Ok(value) => return Ok(value),
            Err(_) if waited.load(std::sync::atomic::Ordering::Relaxed) != waited_ms => continue,
            Err(_) => return Err(()),
        }
    }
}

fn is_core_module(bytes: &[u8]) -> bool {
    // A core module's preamble is `\0asm` + version 1; a component's is `\0asm` + 0x0d 0x00 0x01 0x00.
    bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

/// An error chain on one line, for messages a person reads.
pub(crate) fn one_line(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::text::bounded(line, 500)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::PluginContext;
    use crate::auth::Account;
    use crate::transport::Transport;

    /// A plugin `p` whose `[plugins.p]` table holds `plugin_toml` (secrets: `APP_SECRET` =
    /// `app-secret-value`, `SESSION` = `session-value`), on SQLite in a temporary folder, with
    /// `transport` or the network; and its default account.
    pub(crate) async fn test_plugin(
        plugin_toml: &str,
        transport: Option<Arc<dyn Transport>>,
    ) -> (tempfile::TempDir, Arc<PluginContext>, Arc<Account>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.wasm"), b"not a component").unwrap();
        let text = format!("[plugins.p]\ncomponent = \"x.wasm\"\n{plugin_toml}\n");
        let env = |name: &str| match name {
            "APP_SECRET" => Some("app-secret-value".to_owned()),
            "SESSION" => Some("session-value".to_owned()),
            _ => None,
        };
        let config = crate::config::Config::parse(
            &text,
            std::path::Path::new("test.toml"),
            dir.path(),
            &env,
        )
        .unwrap();
        let storage = crate::store::open(&config.storage.backend, config.storage.options.clone())
            .await
            .unwrap();
        let plugin = config.plugins["p"].clone();
        let transport = transport.unwrap_or_else(|| {
            let clients = crate::transport::egress::Clients::new().unwrap();
            Arc::new(crate::transport::Network::new(
                clients.for_plugin(plugin.allow_private_addresses),
            ))
        });
        let account = Arc::new(plugin.auth.default_account.clone());
        let context = PluginContext::new(
            "p".into(),
            plugin,
            storage,
            transport,
            Arc::new(crate::limiter::RateLimiter::new(None, 1)),
            "test-holder".into(),
        );
        (dir, Arc::new(context), account)
    }
}
