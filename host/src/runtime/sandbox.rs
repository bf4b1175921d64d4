//! What one call of a plugin may use, and the store state that enforces it:
//! no environment, no arguments, no sockets, no filesystem beyond the
//! connection's directory (through the quota of [`super::fs`]), outbound
//! HTTP only through [`OutboundPolicy`], one memory limit over everything
//! the call holds ([`CallLimiter`]), and a log capture.

use super::bindings::ledgerbridge::connector::{ledger, log};
use super::bindings::v0_1::ledgerbridge::connector as v0_1;
use super::capture::{Capture, LogLevel, LogSource};
use super::fs::{CallFs, DiskQuota};
use super::outbound::{AllowedHost, Credential, Outbound, OutboundPolicy};
use super::quota::{CallLimiter, FIELD_SIZE_LIMIT, MAX_RESOURCES};
use std::path::PathBuf;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::filesystem::{WasiFilesystemCtxView, WasiFilesystemView};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Where a granted directory appears inside the plugin.
pub const GUEST_DATA_DIR: &str = "/data";

/// Resource limits of every call; each connection may override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory a call may use: all its linear memories and tables together,
    /// and the header fields the host holds for it.
    pub memory_bytes: usize,
    /// Wall time a call may take, HTTP included.
    pub deadline: Duration,
    /// Upper bound of each HTTP wait (connect, first byte, between bytes).
    pub http_timeout: Duration,
    /// Bytes of log and output kept per call.
    pub log_bytes: usize,
    /// Bytes of files the granted directory may hold.
    pub disk_bytes: u64,
    /// Files and directories the granted directory may hold, at any depth.
    pub disk_files: u64,
    /// Requests of the connection in flight at once, over its calls (R2),
    /// at most [`super::MAX_REQUESTS_PER_CONNECTION`].
    pub calls_at_once: usize,
}

impl Limits {
    /// The granted directory's quota.
    pub fn disk_quota(&self) -> DiskQuota {
        DiskQuota {
            bytes: self.disk_bytes,
            files: self.disk_files,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(30),
            http_timeout: Duration::from_secs(10),
            log_bytes: 64 << 10,
            disk_bytes: 1 << 30,
            disk_files: 100_000,
            calls_at_once: super::MAX_REQUESTS_PER_CONNECTION,
        }
    }
}

/// A connection's call budget as the runtime sees it (R2), kept by the
/// engine. The engine takes a call's share before each call, which pays for
/// the call's first request; the runtime asks for each further one.
pub trait RequestBudget: Send + Sync {
    /// Takes one request's share, or says how long until one is free.
    fn take(&self) -> Result<(), Duration>;
}

/// A shared [`RequestBudget`].
#[derive(Clone)]
pub struct Budget(pub std::sync::Arc<dyn RequestBudget>);

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Budget")
    }
}

/// Everything a connection grants its plugin. Built by the host from the
/// connection's settings; credentials stay here and never enter the guest.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    /// Tag for the plugin's log lines.
    pub tenant_id: String,
    /// Tag for the plugin's log lines.
    pub connection_id: String,
    /// The non-secret settings handed to the plugin in its context.
    pub settings: Vec<(String, String)>,
    /// The only hosts the plugin's requests may go to.
    pub allowed_hosts: Vec<AllowedHost>,
    /// Headers the host adds to requests to the allowed hosts.
    pub credentials: Vec<Credential>,
    /// A host directory mounted read-write at [`GUEST_DATA_DIR`].
    pub directory: Option<PathBuf>,
    /// This connection's limits.
    pub limits: Limits,
    /// The connection's call budget, asked before every request after a
    /// call's first; `None`: no budget.
    pub budget: Option<Budget>,
}

/// The `T` of every `Store<T>`: one per call, dropped with it.
pub struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundPolicy,
    pub(crate) limiter: CallLimiter,
    pub(crate) capture: Capture,
    /// The granted directory's usage and quota, when there is one.
    pub(crate) fs: Option<CallFs>,
}

impl StoreState {
    /// The state for one call under `sandbox`, its outbound HTTP as
    /// `outbound` says and its files as `fs`.
    pub(crate) fn new(
        sandbox: &Sandbox,
        outbound: Outbound,
        fs: Option<CallFs>,
    ) -> anyhow::Result<Self> {
        let capture = Capture::new(sandbox.limits.log_bytes);
        let mut wasi = WasiCtxBuilder::new();
        // No env, args, network or inherited stdio: the builder starts empty.
        wasi.stdout(capture.stream(LogSource::Stdout))
            .stderr(capture.stream(LogSource::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        if let Some(dir) = &sandbox.directory {
            // File operations run on the blocking pool (wasmtime-wasi's
            // default; the quota layer's own do too), never on the runtime's
            // worker threads: a slow one (a huge directory, a stalled disk)
            // holds no other connection's work, and the call's outer timer
            // can still end the call at its deadline.
            wasi.preopened_dir(dir, GUEST_DATA_DIR, FsPerms::ReadWrite)
                .map_err(|e| anyhow::anyhow!("cannot grant directory {}: {e}", dir.display()))?;
        }
        let hooks = OutboundPolicy::new(outbound, sandbox.limits.http_timeout, capture.clone());
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(FIELD_SIZE_LIMIT);
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES);
        Ok(StoreState {
            wasi: wasi.build(),
            http,
            table,
            hooks,
            limiter: CallLimiter::new(sandbox.limits.memory_bytes),
            capture,
            fs,
        })
    }

    /// The call's resources.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// wasmtime-wasi's filesystem, for the functions the quota layer shadows.
    pub(crate) fn filesystem_view(&mut self) -> WasiFilesystemCtxView<'_> {
        self.filesystem()
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for StoreState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl log::Host for StoreState {
    fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.capture.plugin_line(level, message);
    }
}

impl ledger::Host for StoreState {}

/// Contract 0.1's `log`: the same capture.
impl v0_1::log::Host for StoreState {
    fn log(&mut self, level: v0_1::log::Level, message: String) {
        let level = match level {
            v0_1::log::Level::Debug => LogLevel::Debug,
            v0_1::log::Level::Info => LogLevel::Info,
            v0_1::log::Level::Warn => LogLevel::Warn,
            v0_1::log::Level::Error => LogLevel::Error,
        };
        self.capture.plugin_line(level, message);
    }
}

impl v0_1::types::Host for StoreState {}
