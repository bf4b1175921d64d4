//! The sync engine: the host's policy, the same for every ERP.
//!
//! Data flows one way. An event (a document or payment arriving or
//! changing) is recorded with the jobs it causes in one transaction
//! ([`policy`]); the worker claims due jobs ([`Engine::run_worker`]); the
//! [`executor`] maps the document for the connection and calls the plugin;
//! the outcome (entry, log line, attention item, next retry) is stored in
//! one transaction.

mod connectors;
pub mod executor;
pub mod mapping;
pub mod plain;
pub mod policy;

pub use executor::RetryPolicy;

use crate::intake::Batch;
use crate::model::{Connection, Target, Trigger};
use crate::runtime::Runtime;
use crate::store::{NewJob, RunSummary, Store, now_ms};
use anyhow::{Context as _, bail};
use connectors::Connectors;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// How the worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// Jobs running at once, over all connections.
    pub concurrency: usize,
    /// Jobs running at once in one connection.
    pub per_connection: usize,
    /// How long a claimed job is leased before another worker may take it.
    pub lease: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            per_connection: 8,
            lease: Duration::from_secs(120),
        }
    }
}

/// Which documents a bulk re-sync covers (M2).
#[derive(Debug, Clone)]
pub enum Selection {
    /// These documents.
    Documents(Vec<String>),
    /// Every document with an item in Requires attention for the connection.
    Attention,
    /// Every document of the connection's tenant.
    All,
}

/// Where the engine's time went, since it started (for `bench` and operators).
#[derive(Debug, Default)]
pub struct Stats {
    /// Jobs finished (any outcome).
    pub jobs: AtomicU64,
    /// Wall time inside jobs, plugin calls and store included.
    pub job_ns: AtomicU64,
    /// Plugin calls made, and their wall time (instantiation included).
    pub plugin_calls: AtomicU64,
    pub plugin_ns: AtomicU64,
    /// Claims of due jobs, and their wall time.
    pub claims: AtomicU64,
    pub claim_ns: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64, since: std::time::Instant) {
        counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }
}

/// The engine: store, runtime, plugins, policy.
pub struct Engine {
    /// Time spent, by kind.
    pub stats: Stats,
    pub store: Store,
    pub(crate) runtime: Arc<Runtime>,
    connectors: Connectors,
    pub(crate) retry: RetryPolicy,
    worker: WorkerConfig,
    wake: Notify,
}

/// Why a manual sync was refused (M1).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SyncRefused {
    #[error("no document {document} for tenant {tenant}")]
    NoDocument { tenant: String, document: String },
    #[error("no connection {0}")]
    NoConnection(String),
    #[error("connection {connection} belongs to tenant {owner}, not {tenant}")]
    OtherTenant {
        connection: String,
        owner: String,
        tenant: String,
    },
    #[error("connection {0} is disabled")]
    Disabled(String),
    #[error(
        "target payment: document {0} is not paid or marked as paid, so it has no payment entry to sync"
    )]
    NotPaid(String),
    #[error("target payment: connection {0} does not sync payments")]
    PaymentsOff(String),
}

impl Engine {
    /// An engine over `store`, running plugins on `runtime`.
    pub fn new(
        store: Store,
        runtime: Arc<Runtime>,
        retry: RetryPolicy,
        worker: WorkerConfig,
    ) -> Engine {
        Engine {
            stats: Stats::default(),
            store,
            runtime,
            connectors: Connectors::default(),
            retry,
            worker,
            wake: Notify::new(),
        }
    }

    /// Adds or replaces a connection after checking it (V1, P4): the tenant
    /// exists, the plugin loads, its required settings are present, the
    /// hosts, credentials and directory are usable.
    pub async fn put_connection(&self, c: Connection) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if !self.store.tenant_exists(&c.tenant_id).await? {
            problems.push(format!("tenant_id: no tenant {}", c.tenant_id));
        }
        if c.id.is_empty()
            || !c
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            problems.push(format!(
                "id: `{}` may hold only letters, digits, `.`, `_`, `:` and `-`",
                c.id
            ));
        }
        if let Err(e) = connectors::sandbox(&c) {
            problems.push(e);
        }
        if let Some(d) = &c.directory
            && !std::path::Path::new(d).is_dir()
        {
            problems.push(format!("directory: {d} is not a directory"));
        }
        match self.connectors.plugin(&self.runtime, &c).await {
            Ok(p) => {
                for s in p.descriptor.settings.iter().filter(|s| s.required) {
                    if c.settings.get(&s.name).is_none_or(|v| v.trim().is_empty()) {
                        problems.push(format!(
                            "settings.{}: required by the {} connector: {}",
                            s.name, p.descriptor.name, s.description
                        ));
                    }
                }
            }
            Err(e) => problems.push(format!("plugin: {e:#}")),
        }
        if !problems.is_empty() {
            bail!(
                "connection {} is not valid, nothing was stored:\n  {}",
                c.id,
                problems.join("\n  ")
            );
        }
        self.store.put_connection(c).await
    }

    /// Records a validated batch and the jobs it causes (A1-A3), all or
    /// nothing. Returns the jobs queued.
    pub async fn import(&self, batch: Batch) -> anyhow::Result<Vec<NewJob>> {
        let mut missing = Vec::new();
        for t in batch
            .documents
            .iter()
            .map(|d| &d.tenant_id)
            .chain(batch.payments.iter().map(|p| &p.tenant_id))
        {
            if !missing.contains(t) && !self.store.tenant_exists(t).await? {
                missing.push(t.clone());
            }
        }
        if !missing.is_empty() {
            bail!(
                "invalid input, nothing was stored: tenant: no tenant {}",
                missing.join(", ")
            );
        }
        let now = now_ms();
        let documents = batch
            .documents
            .into_iter()
            .map(|d| {
                let plan: crate::store::JobPlan<_> =
                    Box::new(move |prev, doc, conns| policy::document_jobs(prev, doc, conns, now));
                (d, plan)
            })
            .collect();
        let payments = batch
            .payments
            .into_iter()
            .map(|p| {
                let plan: crate::store::JobPlan<_> =
                    Box::new(move |prev, pay, conns| policy::payment_jobs(prev, pay, conns, now));
                (p, plan)
            })
            .collect();
        let jobs = self.store.record(documents, payments).await?;
        self.wake.notify_one();
        Ok(jobs)
    }

    /// Queues a manual sync of one document in one connection (M1) and
    /// returns its run id; `target` is the bill entry or the payment entry.
    pub async fn request_sync(
        &self,
        tenant: &str,
        document: &str,
        connection: &str,
        target: Target,
        force: bool,
    ) -> anyhow::Result<String> {
        let (doc, conn) = self.check_manual(tenant, document, connection).await?;
        let payments = self.store.payments_of(tenant, document).await?;
        if target == Target::Payment {
            if doc.status != crate::model::DocumentStatus::Paid && payments.is_empty() {
                return Err(SyncRefused::NotPaid(document.into()).into());
            }
            if !conn.sync_payments {
                return Err(SyncRefused::PaymentsOff(connection.into()).into());
            }
        }
        let run = run_id("sync");
        let jobs = executor::manual_jobs(
            &doc,
            !payments.is_empty(),
            &conn,
            Some(target),
            Trigger::Manual,
            force,
            &run,
        );
        self.store.enqueue(jobs).await?;
        self.wake.notify_one();
        Ok(run)
    }

    /// L3: sends a payment again after an edit: a manual sync of its
    /// document's payment entry in `connection`. Returns the run id.
    pub async fn request_export(
        &self,
        payment_id: &str,
        connection: &str,
    ) -> anyhow::Result<String> {
        let conn = self
            .store
            .connection(connection)
            .await?
            .ok_or_else(|| SyncRefused::NoConnection(connection.into()))?;
        let item = self
            .store
            .failed_exports(Some(connection))
            .await?
            .into_iter()
            .find(|f| f.payment_id == payment_id);
        let document = match item {
            Some(f) => f.document_id,
            None => {
                bail!("payment {payment_id} is not in Failed to export for connection {connection}")
            }
        };
        self.request_sync(
            &conn.tenant_id,
            &document,
            connection,
            Target::Payment,
            false,
        )
        .await
    }

    async fn check_manual(
        &self,
        tenant: &str,
        document: &str,
        connection: &str,
    ) -> anyhow::Result<(crate::model::Document, Connection)> {
        let doc = self
            .store
            .document(tenant, document)
            .await?
            .ok_or_else(|| SyncRefused::NoDocument {
                tenant: tenant.into(),
                document: document.into(),
            })?;
        let conn = self
            .store
            .connection(connection)
            .await?
            .ok_or_else(|| SyncRefused::NoConnection(connection.into()))?;
        if conn.tenant_id != tenant {
            return Err(SyncRefused::OtherTenant {
                connection: connection.into(),
                owner: conn.tenant_id,
                tenant: tenant.into(),
            }
            .into());
        }
        if !conn.enabled {
            return Err(SyncRefused::Disabled(connection.into()).into());
        }
        Ok((doc, conn))
    }

    /// Queues a bulk re-sync (M2) and returns its run id and how many
    /// documents it covers. For each document every entry is synced: the
    /// bill entry, and the payment entries of a paid document.
    pub async fn request_resync(
        &self,
        connection: &str,
        selection: Selection,
        force: bool,
    ) -> anyhow::Result<(String, usize)> {
        let conn = self
            .store
            .connection(connection)
            .await?
            .ok_or_else(|| SyncRefused::NoConnection(connection.into()))?;
        if !conn.enabled {
            return Err(SyncRefused::Disabled(connection.into()).into());
        }
        let ids: Vec<String> = match selection {
            Selection::Documents(ids) => ids,
            Selection::All => self.store.document_ids(&conn.tenant_id).await?,
            Selection::Attention => {
                let mut ids: Vec<String> = self
                    .store
                    .attention(Some(connection))
                    .await?
                    .into_iter()
                    .map(|a| a.document_id)
                    .collect();
                ids.dedup();
                ids
            }
        };
        let run = run_id("resync");
        let mut jobs = Vec::new();
        let mut unknown = Vec::new();
        for id in &ids {
            match self.store.document(&conn.tenant_id, id).await? {
                Some(doc) => {
                    let has_payments = !self
                        .store
                        .payments_of(&conn.tenant_id, id)
                        .await?
                        .is_empty();
                    let target = (!conn.sync_payments).then_some(Target::Bill);
                    jobs.extend(executor::manual_jobs(
                        &doc,
                        has_payments,
                        &conn,
                        target,
                        Trigger::Bulk,
                        force,
                        &run,
                    ));
                }
                None => unknown.push(id.clone()),
            }
        }
        if !unknown.is_empty() {
            bail!(
                "documents: no document {} for tenant {}; nothing was queued",
                unknown.join(", "),
                conn.tenant_id
            );
        }
        self.store.enqueue(jobs).await?;
        self.wake.notify_one();
        Ok((run, ids.len()))
    }

    /// Runs the worker until `run` has no job left to do, reporting its
    /// summary to `progress` as it goes.
    pub async fn finish_run(
        self: &Arc<Self>,
        run: &str,
        mut progress: impl FnMut(&RunSummary),
    ) -> anyhow::Result<RunSummary> {
        let done = tokio::sync::watch::channel(false);
        let worker = self.run_worker(false, done.1);
        let watch = async {
            loop {
                let s = self.store.run_summary(run).await?;
                progress(&s);
                if s.pending == 0 && s.waiting == 0 {
                    let _ = done.0.send(true);
                    return anyhow::Ok(s);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let (w, s) = tokio::join!(worker, watch);
        w?;
        s
    }

    /// Claims and runs due jobs until `stop` turns true, or, with
    /// `until_idle`, until no job is queued or running.
    pub async fn run_worker(
        self: &Arc<Self>,
        until_idle: bool,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        // Jobs a dead worker left running are taken back: at once when its
        // process is gone, else when its lease runs out.
        self.store.recover().await?;
        let mut renewed = std::time::Instant::now();
        let global = Arc::new(Semaphore::new(self.worker.concurrency));
        let mut per_conn: HashMap<String, Arc<Semaphore>> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            if *stop.borrow() {
                break;
            }
            if renewed.elapsed() >= self.worker.lease / 4 {
                self.store
                    .renew_leases(now_ms() + self.worker.lease.as_millis() as i64)
                    .await?;
                self.store.recover().await?;
                renewed = std::time::Instant::now();
            }
            let free = global.available_permits();
            let claimed = if free > 0 {
                let lease = now_ms() + self.worker.lease.as_millis() as i64;
                let t = std::time::Instant::now();
                let c = self.store.claim(free, lease).await?;
                Stats::add(&self.stats.claim_ns, t);
                self.stats.claims.fetch_add(1, Ordering::Relaxed);
                c
            } else {
                Vec::new()
            };
            let got = claimed.len();
            for job in claimed {
                let g = global
                    .clone()
                    .acquire_owned()
                    .await
                    .context("worker semaphore")?;
                let c = per_conn
                    .entry(job.connection_id.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.worker.per_connection)))
                    .clone();
                let engine = self.clone();
                tasks.spawn(async move {
                    let _c = c.acquire_owned().await;
                    let r = engine.execute(job).await;
                    drop(g);
                    r
                });
            }
            while let Some(r) = tasks.try_join_next() {
                r.context("a sync task panicked")??;
            }
            if got == 0 {
                // Nothing claimable now. With free hands, find when the next
                // job is due; with none, wait for a running one to finish.
                let mut wait = Duration::from_millis(200);
                if free > 0 {
                    let (queued, running, next_due) = self.store.pending().await?;
                    if until_idle && !queued && !running && tasks.is_empty() {
                        break;
                    }
                    if let Some(d) = next_due {
                        wait = Duration::from_millis((d - now_ms()).clamp(1, 200) as u64);
                    }
                }
                tokio::select! {
                    Some(r) = tasks.join_next(), if !tasks.is_empty() => { r.context("a sync task panicked")??; }
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.context("a sync task panicked")??;
        }
        Ok(())
    }

    async fn execute(&self, job: crate::store::Job) -> anyhow::Result<()> {
        let t = std::time::Instant::now();
        match executor::run(self, &job).await? {
            executor::Step::Finished(f) => self.store.finish(*f).await?,
            executor::Step::WaitForBill(bill) => self.store.wait_for_bill(job, bill).await?,
        }
        Stats::add(&self.stats.job_ns, t);
        self.stats.jobs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn run_id(kind: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{kind}-{}-{}",
        now_ms(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}
