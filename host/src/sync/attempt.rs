//! One attempt at a job: the plugin it calls, through one function
//! ([`Attempt::call`]) that paces calls by the connection's budget (R2) and
//! records each for the log (L1).

use super::Engine;
use super::convert::entry_state;
use super::m3::Port;
use super::retry::MAX_RETRY_AFTER;
use crate::model::LimitOverrides;
use crate::runtime::bindings as wit;
use crate::runtime::{CallError, LogLine, Operation as Call, Plugin, Reply, Sandbox};
use crate::store::{EntryRow, Job, LoggedOperation, now_ms};
use std::sync::Arc;
use std::time::Duration;

/// The calls of one attempt, with what they answered and logged.
pub(super) struct Attempt<'a> {
    pub engine: &'a Engine,
    pub job: &'a Job,
    pub plugin: Arc<Plugin>,
    pub sandbox: Sandbox,
    pub operations: Vec<LoggedOperation>,
    pub logs: Vec<LogLine>,
    /// The connection's limits, for its call budget (R2).
    pub limits: LimitOverrides,
    /// Whether the next call is paid for (the claim paid for the first).
    pub prepaid: bool,
}

impl Attempt<'_> {
    /// Makes one plugin call: every call goes through here. It first takes
    /// a call's share of the connection's budget (R2), waiting for one if
    /// need be; a `rate-limited` answer pauses the whole connection (R5).
    pub async fn call(&mut self, key: &str, op: Call) -> Result<Reply, CallError> {
        let name = op.name();
        let prepaid = std::mem::take(&mut self.prepaid);
        if let Err(wait) = self
            .engine
            .pace(&self.job.connection_id, &self.limits, prepaid)
            .await
        {
            let e = CallError::HeldBack(wait);
            self.note(name, format!("error: {e}"));
            return Err(e);
        }
        let started = std::time::Instant::now();
        let out = self
            .engine
            .runtime
            .call(&self.plugin, &self.sandbox, key, op)
            .await;
        let stats = &self.engine.stats;
        stats.plugin_ns.fetch_add(
            started.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        stats
            .plugin_calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.logs.extend(out.logs);
        if let Err(CallError::Connector(wit::ConnectorError::RateLimited(r))) = &out.result {
            let after = r
                .retry_after_ms
                .map_or(self.engine.retry.base, Duration::from_millis)
                .min(MAX_RETRY_AFTER);
            let until = now_ms().saturating_add(after.as_millis() as i64);
            let reason = format!("the ERP answered rate-limited: {}", r.message);
            self.engine
                .pause(
                    &self.job.connection_id,
                    &self.limits,
                    until,
                    crate::store::PausedBy::Erp,
                    &reason,
                )
                .await;
        }
        let result = match &out.result {
            Ok(Reply::Found(None)) => "none".to_string(),
            Ok(Reply::Found(Some(e))) => format!("found {} ({})", e.id, entry_state(e.state)),
            Ok(Reply::Entry(e)) => format!(
                "ok: {} version {}",
                e.id,
                e.version.as_deref().unwrap_or("-")
            ),
            Ok(Reply::CheckNumbers(n)) => format!("{} in use", n.len()),
            Err(e) => format!("error: {e}"),
        };
        self.operations.push(LoggedOperation {
            operation: name.to_string(),
            result,
        });
        out.result
    }

    /// Records an operation that sent nothing, for the log.
    pub fn note(&mut self, what: &str, result: String) {
        self.operations.push(LoggedOperation {
            operation: what.to_string(),
            result,
        });
    }
}

impl Port for Attempt<'_> {
    async fn call(&mut self, key: &str, op: Call) -> Result<Reply, CallError> {
        Attempt::call(self, key, op).await
    }

    fn note(&mut self, what: &str, result: String) {
        Attempt::note(self, what, result)
    }

    async fn record_intent(&mut self, row: &EntryRow) -> anyhow::Result<()> {
        self.engine.store.record_intent(row.clone(), self.job).await
    }
}
