//! The plugin behind each connection, as the registry resolves it now
//! (P3), and the sandbox each connection grants it.

use crate::model::Connection;
use crate::runtime::bindings as wit;
use crate::runtime::{AllowedHost, Credential, Limits, Plugin, Registry, Sandbox};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The registry, and the limits each connection's plugin declared.
pub struct Connectors {
    registry: Arc<Registry>,
    /// The limits each `plugin` reference's version declared when last
    /// resolved, readable without waiting for a load.
    declared: std::sync::Mutex<HashMap<String, wit::Limits>>,
}

impl Connectors {
    /// Connectors resolved by `registry`.
    pub fn new(registry: Arc<Registry>) -> Connectors {
        Connectors {
            registry,
            declared: Default::default(),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The plugin version `c` runs now (loaded on first use). A job holds
    /// it for all its operations: a reload meanwhile does not touch it.
    pub async fn plugin(&self, c: &Connection) -> anyhow::Result<Arc<Plugin>> {
        self.named(&c.plugin).await
    }

    /// The limits the plugin `name` declared, once it has been loaded.
    pub fn declared(&self, name: &str) -> Option<wit::Limits> {
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The plugin version a `plugin` reference names now.
    pub async fn named(&self, name: &str) -> anyhow::Result<Arc<Plugin>> {
        let plugin = self.registry.resolve_text(name).await?;
        self.declared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), plugin.descriptor.limits);
        Ok(plugin)
    }
}

/// The sandbox `c` grants its plugin, under `limits` (the connection's
/// effective ones), or why its settings cannot make one.
pub fn sandbox(c: &Connection, limits: &crate::model::LimitOverrides) -> Result<Sandbox, String> {
    let allowed_hosts = c
        .allowed_hosts
        .iter()
        .enumerate()
        .map(|(i, h)| AllowedHost::parse(h).map_err(|e| format!("allowed_hosts[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let credentials = c
        .credentials
        .iter()
        .map(|(k, v)| Credential::new(k, v).map_err(|e| format!("credentials.{k}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let defaults = Limits::default();
    let limits = Limits {
        memory_bytes: c
            .limits
            .memory_mib
            .map_or(defaults.memory_bytes, |m| (m as usize) << 20),
        deadline: c
            .limits
            .deadline_ms
            .map_or(defaults.deadline, Duration::from_millis),
        http_timeout: c
            .limits
            .http_timeout_ms
            .map_or(defaults.http_timeout, Duration::from_millis),
        log_bytes: defaults.log_bytes,
        disk_bytes: c
            .limits
            .disk_mib
            .map_or(defaults.disk_bytes, |m| m.saturating_mul(1 << 20)),
        disk_files: c.limits.disk_files.unwrap_or(defaults.disk_files),
        calls_at_once: limits.calls_at_once() as usize,
    };
    Ok(Sandbox {
        tenant_id: c.tenant_id.clone(),
        connection_id: c.id.clone(),
        settings: c
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        allowed_hosts,
        credentials,
        directory: c.directory.as_ref().map(Into::into),
        limits,
        // The engine attaches the connection's budget when it runs a job.
        budget: None,
    })
}
