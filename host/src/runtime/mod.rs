//! The plugin runtime: a wasmtime engine with the pooling allocator and epoch
//! interruption, plugins compiled once and pre-linked once per version, and a
//! fresh store and instance for every operation, so that nothing leaks
//! between tenants or calls.

pub mod bindings;
mod bounds;
mod call;
mod capture;
pub mod contract;
mod fs;
mod outbound;
mod plugin;
mod quota;
pub mod registry;
mod sandbox;
#[cfg(test)]
mod tests;
mod v0_1;
mod watch;

pub use bounds::{
    MAX_ENTRY_ID_BYTES, MAX_ENTRY_VERSION_BYTES, MAX_FIELD_BYTES, MAX_ITEMS_PER_CALL,
    MAX_MESSAGE_BYTES, MAX_RETRY_AFTER_MS,
};
pub use call::{
    BatchOutcome, CallError, CallOutcome, Item, Operation, Phases, PluginFault, Reply, call_key,
    describe_connector_error,
};
pub(crate) use capture::clip;
pub use capture::{LogLevel, LogLine, LogSource, MAX_HOST_LOG_BYTES, MAX_HOST_LOG_LINES};
pub use contract::ContractError;
pub use fs::{DiskQuota, MAX_OPEN_DESCRIPTORS, Usage as DiskUsage, scan as scan_directory};
pub(crate) use outbound::is_loopback;
pub use outbound::{
    AllowedHost, Credential, MAX_REQUESTS_PER_CALL, MAX_REQUESTS_PER_CONNECTION,
    MAX_WAITING_PER_CALL, MIN_REDACTED_SECRET,
};
pub use plugin::{LoadError, MAX_PLUGIN_BYTES, Plugin, PrunePolicy};
pub use quota::{FIELD_SIZE_LIMIT, MAX_RESOURCES};
pub use registry::{
    Listed, PluginRef, Refusal, Registry, ReloadEvent, ReloadOutcome, ResolveError, Want,
};
pub use sandbox::{Budget, GUEST_DATA_DIR, Limits, RequestBudget, Sandbox};
pub use watch::{DEFAULT_DEBOUNCE, WatchHandle};

use sandbox::StoreState;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Core module instances one plugin may have. A Rust plugin has 3, a
/// Python one (componentize-py) 14; a component with more is refused when
/// it is loaded, so that no plugin can take more than its share of the pool.
pub const MAX_CORE_INSTANCES_PER_PLUGIN: u32 = 32;
/// Linear memories one plugin may define.
pub const MAX_MEMORIES_PER_PLUGIN: u32 = 4;
/// Tables one plugin may define.
pub const MAX_TABLES_PER_PLUGIN: u32 = 32;

/// How the runtime is sized.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Plugin instances alive at once (the pool's size); further calls wait.
    pub max_instances: u32,
    /// The largest memory any connection's limit may allow.
    pub max_memory_bytes: usize,
    /// Where compiled plugins are cached between runs (`None`: no cache).
    pub cache_dir: Option<PathBuf>,
    /// How often the epoch advances: the precision of call deadlines, and how
    /// often a busy plugin yields to other tasks.
    pub epoch_tick: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: 64,
            max_memory_bytes: 512 << 20,
            cache_dir: None,
            epoch_tick: Duration::from_millis(5),
        }
    }
}

/// The engine, the linker every plugin is linked with, and the pool's permits.
pub struct Runtime {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreState>,
    pub(crate) permits: Semaphore,
    /// Each connection's share of in-flight outbound requests.
    pub(crate) outbound: outbound::ConnectionSlots,
    pub(crate) config: RuntimeConfig,
    /// Every granted directory's usage, for the disk quota.
    pub(crate) disk: fs::Registry,
    /// How often an instantiation found the pool full and waited.
    pub(crate) pool_waits: AtomicU64,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let n = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        // Every plugin is held to the per-component maxima when it is
        // loaded, and the totals hold `n` instances of the largest plugin
        // allowed: the pool cannot run out while calls hold no more than
        // the `n` permits, whatever the plugins are.
        pool.total_component_instances(n)
            .total_core_instances(n * MAX_CORE_INSTANCES_PER_PLUGIN)
            .total_memories(n * MAX_MEMORIES_PER_PLUGIN)
            .total_tables(n * MAX_TABLES_PER_PLUGIN)
            .total_stacks(n)
            .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_PLUGIN)
            .max_memories_per_component(MAX_MEMORIES_PER_PLUGIN)
            .max_tables_per_component(MAX_TABLES_PER_PLUGIN)
            .max_memory_size(config.max_memory_bytes)
            // A fresh instance per call makes resetting a slot the hot path.
            // Keeping the low pages resident and resetting only the dirty
            // ones (PAGEMAP_SCAN, Linux 6.7+) avoids a madvise, its TLB
            // shootdown and the page faults of the next call.
            .linear_memory_keep_resident(4 << 20)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(128 << 10)
            .pagemap_scan(Enabled::Auto);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(|e| wasm_error(e, "building the wasm engine"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| wasm_error(e, "linking WASI"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| wasm_error(e, "linking wasi:http"))?;
        // The host's own layers over some WASI functions: the disk quota and
        // the charge for header fields.
        linker.allow_shadowing(true);
        fs::add_to_linker(&mut linker)
            .map_err(|e| wasm_error(e, "linking the filesystem quota"))?;
        quota::add_to_linker(&mut linker)
            .map_err(|e| wasm_error(e, "linking the header-field charge"))?;
        linker.allow_shadowing(false);
        // Every contract version's own interfaces: a plugin imports those of
        // the version it was built for.
        bindings::ledgerbridge::connector::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| wasm_error(e, "linking the log interface"))?;
        bindings::ledgerbridge::connector::ledger::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| wasm_error(e, "linking the ledger interface"))?;
        bindings::v0_1::ledgerbridge::connector::log::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| wasm_error(e, "linking the 0.1 log interface"))?;
        bindings::v0_1::ledgerbridge::connector::types::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| wasm_error(e, "linking the 0.1 types interface"))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (weak, stop, tick) = (engine.weak(), ticker_stop.clone(), config.epoch_tick);
        std::thread::Builder::new()
            .name("ledgerbridge-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("starting the epoch ticker: {e}"))?;

        Ok(Runtime {
            engine,
            linker,
            permits: Semaphore::new(n as usize),
            outbound: outbound::ConnectionSlots::default(),
            config,
            disk: fs::Registry::default(),
            pool_waits: AtomicU64::new(0),
            ticker_stop,
        })
    }

    /// The engine, for callers that precompile.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// How many times an instantiation found the instance pool full and
    /// waited for room (it should stay 0: see [`MAX_CORE_INSTANCES_PER_PLUGIN`]).
    pub fn pool_waits(&self) -> u64 {
        self.pool_waits.load(Ordering::Relaxed)
    }

    /// What the granted directory `dir` holds, as the disk quota counts it
    /// (counted by a scan the first time).
    pub async fn disk_usage(&self, dir: &std::path::Path) -> std::io::Result<DiskUsage> {
        Ok(self.disk.get(dir).await?.usage())
    }
}

/// A wasmtime error as an anyhow one, with what was being done.
fn wasm_error(e: wasmtime::Error, doing: &str) -> anyhow::Error {
    anyhow::Error::from(e).context(doing.to_string())
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}
