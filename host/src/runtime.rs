//! The sandbox: one wasmtime `Engine`, compiled components cached on disk, a fresh instance per
//! call from an `InstancePre`, and every limit (memory, deadline, pool size) set here and only here.

pub(crate) mod bindings;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

use crate::caps::{self, HostState, PluginContext};
use crate::error::{Error, Result, SandboxKill};
use bindings::latest;
use latest::exports::coupon::adapter::adapter;

/// How often the epoch ticks; deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The most bytes a guest may hand the host in one transfer: the arguments of one host call, or the
/// answer of one adapter call. wasmtime counts them while lifting (its "hostcall fuel", 128 MiB by
/// default) and fails the lift when they run out, so a guest cannot make the host allocate more:
/// not with one huge string, nor with a list whose million entries all point at the same bytes.
pub(crate) const MAX_TRANSFER_BYTES: usize = 16 << 20;

/// The export every adapter of this contract version has.
pub(crate) const ADAPTER_EXPORT: &str = "coupon:adapter/adapter@0.1.0";

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
struct Needs {
    memories: u32,
    tables: u32,
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
        let engine = Engine::new(&config)
            .map_err(|e| Error::Runtime(format!("cannot start the wasm engine: {e:#}")))?;

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
                .map_err(|e| Error::Runtime(format!("cannot start the epoch ticker: {e}")))?;
        }

        let mut linker = Linker::new(&engine);
        caps::add_to_linker(&mut linker)
            .map_err(|e| Error::Runtime(format!("cannot link host capabilities: {e:#}")))?;

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

    /// Loads a component (from the cache when it was compiled before) and checks it is an adapter.
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
        let bytes = std::fs::read(path).map_err(|e| load_error(format!("cannot read it: {e}")))?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if let Some(expected) = pin
            && expected != sha256
        {
            return Err(Error::Integrity {
                plugin: plugin.to_owned(),
                path: path.to_owned(),
                expected: expected.to_owned(),
                actual: sha256,
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

        let exports_adapter = component
            .component_type()
            .exports(&self.engine)
            .any(|(name, _)| name == ADAPTER_EXPORT);
        if !exports_adapter {
            return Err(load_error(format!(
                "it is not a coupon adapter: it does not export {ADAPTER_EXPORT}"
            )));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| load_error(format!("it is not a coupon adapter: {}", one_line(&e))))?;
        let pre = latest::PluginPre::new(pre)
            .map_err(|e| load_error(format!("it is not a coupon adapter: {}", one_line(&e))))?;
        Ok(LoadedComponent { pre, sha256, needs })
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
        if let Err(e) = write_atomically(&self.cache_dir, &file, &compiled) {
            tracing::warn!(dir = %self.cache_dir.display(), error = %e, "cannot cache the compiled component");
        }
        // SAFETY: `compiled` was produced a moment ago by this engine.
        #[expect(unsafe_code, reason = "loading an artifact this engine just produced")]
        let component = unsafe { Component::deserialize(&self.engine, &compiled) };
        component.map_err(|e| format!("cannot load the compiled component: {}", one_line(&e)))
    }

    /// A call's store: the plugin's memory cap, the transfer cap and the epoch deadline.
    pub(crate) fn store(&self, plugin: &Arc<PluginContext>) -> Store<HostState> {
        let limits = &plugin.config.limits;
        let mut store = Store::new(&self.engine, HostState::new(plugin.clone()));
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

    /// Runs one adapter operation on a fresh instance of `component`, within the plugin's limits.
    pub(crate) async fn call(
        &self,
        plugin: &Arc<PluginContext>,
        component: &LoadedComponent,
        op: Op,
    ) -> Result<OpResult> {
        let limits = &plugin.config.limits;
        // The slot first, then the component's share of memories and tables; every caller
        // takes them in this order, so no two wait on each other.
        let closed = |_| Error::Runtime("the runtime is shutting down".to_owned());
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
        let mut store = self.store(plugin);
        let waited_total = store.data().limiter_wait_ms.clone();

        let deadline = Duration::from_millis(limits.timeout_ms);
        let (op_name, started) = (op.name(), std::time::Instant::now());
        let mut instantiated = false;
        let run = async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            instantiated = true;
            let adapter = instance.coupon_adapter_adapter();
            Ok::<_, wasmtime::Error>(match op {
                Op::Describe => OpResult::Describe(adapter.call_describe(&mut store).await?),
                Op::Send(request) => {
                    OpResult::Send(adapter.call_send_coupon(&mut store, &request).await?)
                }
                Op::Query(request) => {
                    OpResult::Query(adapter.call_query_coupons(&mut store, &request).await?)
                }
            })
        };
        let result = with_movable_deadline(deadline, &waited_total, run).await;
        let platform_time = store.data().platform_time;
        crate::metrics::adapter_call(&plugin.name, op_name, started.elapsed(), platform_time);
        // An instance that never came to be sent nothing (unless its start code made a request,
        // which is counted): that is not a kill with an unknown outcome, but a failure to try.
        if !instantiated
            && store.data().http_requests == 0
            && op_name != "describe"
            && let Some(error) = match &result {
                Err(_elapsed) => Some(format!(
                    "instantiating took longer than {} ms (limits.timeout_ms)",
                    limits.timeout_ms
                )),
                Ok(Err(error)) if !store.data().limiter.memory_refused => Some(
                    crate::secret::redact_str(&one_line(error), &plugin.secrets()),
                ),
                _ => None,
            }
        {
            tracing::warn!(plugin = %plugin.name, %error, "no adapter instance; nothing was sent");
            use latest::coupon::adapter::types as wit;
            let failure = wit::AdapterError {
                class: wit::ErrorClass::Transient,
                code: "no-instance".to_owned(),
                message: format!("no adapter instance could be made, so nothing was sent: {error}"),
                retry_after_ms: None,
            };
            return Ok(match op_name {
                "send" => OpResult::Send(Err(failure)),
                _ => OpResult::Query(Err(failure)),
            });
        }
        let kill = |kind, message: String| {
            crate::metrics::sandbox_kill(&plugin.name, kind);
            Error::Sandbox {
                plugin: plugin.name.clone(),
                kind,
                message,
            }
        };
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
                let mut message = crate::secret::redact_str(&one_line(&error), &plugin.secrets());
                let trap = error.downcast_ref::<wasmtime::Trap>();
                let kind = if store.data().limiter.memory_refused {
                    SandboxKill::Memory
                } else if matches!(trap, Some(wasmtime::Trap::Interrupt)) {
                    SandboxKill::Deadline
                } else if trap.is_some() {
                    SandboxKill::Trap
                } else {
                    // Not a trap of the guest's own code: the host refused what the guest handed
                    // over (too much data, a string that is not UTF-8, a pointer out of bounds).
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

/// An adapter operation, in the WIT's own types.
pub(crate) enum Op {
    Describe,
    Send(adapter::SendRequest),
    Query(adapter::QueryRequest),
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
pub(crate) enum OpResult {
    Describe(adapter::AdapterInfo),
    Send(std::result::Result<adapter::SendOutcome, adapter::AdapterError>),
    Query(std::result::Result<Vec<adapter::Coupon>, adapter::AdapterError>),
}

/// A component ready to instantiate.
pub(crate) struct LoadedComponent {
    pub(crate) pre: latest::PluginPre<HostState>,
    pub(crate) sha256: String,
    needs: Needs,
}

fn is_core_module(bytes: &[u8]) -> bool {
    // A core module's preamble is `\0asm` + version 1; a component's is `\0asm` + 0x0d 0x00 0x01 0x00.
    bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[4..8] == [1, 0, 0, 0]
}

fn write_atomically(dir: &Path, file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}

/// An error chain on one line, for messages a person reads.
pub(crate) fn one_line(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    let mut line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() > 500 {
        let mut end = 500;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
        line.push('…');
    }
    line
}
