//! What one call of a plugin may use, and the store state that enforces it:
//! no environment, no arguments, no sockets, no filesystem beyond the
//! connection's directory, outbound HTTP only through [`OutboundPolicy`],
//! a memory limit, and a log capture.

use super::bindings::ledgerbridge::connector::{log, types};
use super::capture::{Capture, LogLevel, LogSource};
use super::outbound::{AllowedHost, Credential, Outbound, OutboundPolicy};
use std::path::PathBuf;
use std::time::Duration;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Where a granted directory appears inside the plugin.
pub const GUEST_DATA_DIR: &str = "/data";

/// Resource limits of every call; each connection may override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory a call may grow to.
    pub memory_bytes: usize,
    /// Wall time a call may take, HTTP included.
    pub deadline: Duration,
    /// Upper bound of each HTTP wait (connect, first byte, between bytes).
    pub http_timeout: Duration,
    /// Bytes of log and output kept per call.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            deadline: Duration::from_secs(30),
            http_timeout: Duration::from_secs(10),
            log_bytes: 64 << 10,
        }
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
}

/// Memory limit of one store; remembers that it refused, so that the
/// resulting trap is reported as the limit rather than a plugin crash.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) hit: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
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
        Ok(desired <= 1 << 20)
    }
}

/// The `T` of every `Store<T>`: one per call, dropped with it.
pub struct StoreState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundPolicy,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) capture: Capture,
}

impl StoreState {
    /// The state for one call under `sandbox`, its outbound HTTP as
    /// `outbound` says.
    pub(crate) fn new(sandbox: &Sandbox, outbound: Outbound) -> anyhow::Result<Self> {
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
            // A granted directory is local: its file operations take
            // microseconds, far less than handing each to the blocking pool
            // and back, so they run on the calling thread.
            wasi.allow_blocking_current_thread(true);
            wasi.preopened_dir(dir, GUEST_DATA_DIR, FsPerms::ReadWrite)
                .map_err(|e| anyhow::anyhow!("cannot grant directory {}: {e}", dir.display()))?;
        }
        let hooks = OutboundPolicy::new(outbound, sandbox.limits.http_timeout, capture.clone());
        Ok(StoreState {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks,
            limiter: MemoryLimiter {
                limit: sandbox.limits.memory_bytes,
                hit: false,
            },
            capture,
        })
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

impl types::Host for StoreState {}
