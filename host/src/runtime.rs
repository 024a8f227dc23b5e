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

/// The engine, its linker, and the compiled-component cache.
pub(crate) struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: PathBuf,
    /// One permit per pool slot: a call beyond the pool's size waits for a slot instead of
    /// failing to instantiate.
    slots: Arc<tokio::sync::Semaphore>,
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
        // A Rust wasm32-wasip2 component holds several core instances (the program, the WASI
        // adapter, shims) and up to two memories.
        pool.total_component_instances(max_instances)
            .total_core_instances(max_instances.saturating_mul(10))
            .total_memories(max_instances.saturating_mul(2))
            .total_tables(max_instances.saturating_mul(4))
            .total_stacks(max_instances)
            .max_core_instances_per_component(20)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
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
        Ok(LoadedComponent { pre, sha256 })
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
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Error::Runtime("the runtime is shutting down".to_owned()))?;
        let _in_use = crate::metrics::InstanceInUse::enter();
        let mut store = self.store(plugin);
        let waited_total = store.data().limiter_wait_ms.clone();

        let deadline = Duration::from_millis(limits.timeout_ms);
        let (op_name, started) = (op.name(), std::time::Instant::now());
        let run = async {
            let instance = component.pre.instantiate_async(&mut store).await?;
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
