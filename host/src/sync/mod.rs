//! The sync engine: the host's policy, the same for every ERP.
//!
//! Data flows one way. An event (a document or payment arriving or
//! changing) is recorded with the jobs it causes in one transaction
//! ([`policy`]); the worker claims due jobs in groups, up to a batch of one
//! connection's ([`Engine::run_worker`]); the [`executor`] maps each
//! document for the connection and brings each entry in line through the M3
//! state machine (`m3`), the group's calls meeting in `batcher` to go out
//! batched (contract 0.2); [`outcome`] folds the results, [`finish`]
//! settles what follows (A5, L2), and the store records it all (entry, log
//! line, attention item, next retry), a group's outcomes in one transaction.
//! The store records; the engine decides.

pub mod a5;
pub mod access;
mod api;
mod attempt;
mod batcher;
pub mod budget;
mod checks;
mod connectors;
mod convert;
mod due;
pub mod executor;
pub mod finish;
mod grants;
mod keys;
mod limits;
pub(crate) mod m3;
mod manual;
pub mod mapping;
pub mod notices;
pub mod outcome;
pub mod plain;
pub mod policy;
pub mod retry;
pub mod tokens;

pub use api::{ConnectionSummary, EngineError, InvalidConnection};
pub use retry::RetryPolicy;

use crate::intake::{Batch, FieldError, InvalidInput};
use crate::model::{Connection, Payment, Target, Trigger, check_id, check_text};
use crate::runtime::Runtime;
use crate::store::{
    ClaimPlan, FinishedJob, Job, JobOutcome, PausedBy, Priority, RunSummary, Store, now_ms,
};
use anyhow::Context as _;
use connectors::Connectors;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// How the worker runs.
#[derive(Debug, Clone, Copy)]
pub struct WorkerConfig {
    /// Groups of jobs running at once, over all connections. A group is up
    /// to one batch of one connection's jobs (its connector's items per
    /// call); within a connection, its calls at once bound its groups (R2).
    pub concurrency: usize,
    /// How long a claimed job stays leased without its worker's heartbeat
    /// before another worker may take it back. The worker beats every fifth
    /// of it.
    pub lease: Duration,
    /// How many times a job may be running when its worker dies before it
    /// is quarantined (P7).
    pub quarantine_after: u32,
    /// A group of jobs smaller than its connector's batch waits this long
    /// for more to come due before it starts (never a funding-complete
    /// payment's group: those go at once).
    pub linger: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 16,
            lease: Duration::from_secs(30),
            quarantine_after: 3,
            linger: Duration::from_millis(20),
        }
    }
}

/// What a worker did, for its summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerReport {
    /// Jobs finished, by outcome (`created`, `failed`, ...).
    pub outcomes: std::collections::BTreeMap<String, usize>,
    /// Jobs the host could not finish (its own failure) and left to run again.
    pub host_errors: usize,
    /// Jobs taken back from workers that stopped.
    pub recovered: usize,
    /// Jobs quarantined after crashing their workers.
    pub quarantined: usize,
}

impl WorkerReport {
    /// Jobs finished.
    pub fn jobs(&self) -> usize {
        self.outcomes.values().sum()
    }
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub documents: usize,
    pub payments: usize,
    /// New syncs queued.
    pub queued: usize,
    /// Syncs the changes caused that merged into syncs already queued.
    pub merged: usize,
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
    /// The engine's own: everything above it goes through its methods.
    pub(crate) store: Store,
    pub(crate) runtime: Arc<Runtime>,
    connectors: Connectors,
    pub(crate) retry: RetryPolicy,
    worker: WorkerConfig,
    wake: Notify,
    /// Set when a worker of this engine is stopping: jobs waiting for their
    /// connection's budget give up their wait (they run again later).
    stopping: tokio::sync::watch::Sender<bool>,
    /// Each connection's call budget in this process (R2).
    pub(crate) budgets: budget::Budgets,
    /// Which connection claims go to first, turning each claim (R5).
    turn: std::sync::atomic::AtomicUsize,
    /// Connections' OAuth2 access tokens (P2).
    pub(crate) tokens: tokens::Tokens,
}

/// What is wrong with a connection's OAuth2 settings (V1), each naming
/// its field. The secret and refresh token are checked against the grant
/// held when the connection is stored.
fn check_oauth2(c: &Connection, o: &crate::model::OAuth2) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(m) = crate::oauth::check_token_url(&o.token_url) {
        problems.push(format!("oauth2.token_url: {m}"));
    }
    for (field, v) in [
        ("client_id", &o.client_id),
        ("client_secret", &o.client_secret),
    ] {
        if field == "client_id" && v.is_empty() {
            problems.push("oauth2.client_id: required".into());
        } else if v.len() > 4096 || v.chars().any(char::is_control) {
            problems.push(format!(
                "oauth2.{field}: at most 4096 characters, no control characters"
            ));
        }
    }
    if let Some(r) = &o.refresh_token
        && (r.is_empty() || r.len() > 16 * 1024 || r.chars().any(char::is_control))
    {
        problems.push("oauth2.refresh_token: 1 to 16384 characters, no control characters".into());
    }
    if c.credentials
        .keys()
        .any(|k| k.eq_ignore_ascii_case("authorization"))
    {
        problems.push(
            "credentials.authorization: the host sends the OAuth2 access token in `Authorization`; leave it out of credentials"
                .into(),
        );
    }
    problems
}

/// A claim that would wait longer than this for a connection's budget
/// pauses the connection (and leaves its jobs queued) instead of holding a
/// worker.
pub const PAUSE_AFTER: Duration = Duration::from_secs(30);

/// A job already under way waits up to this for its next call's share of
/// the budget: long enough for the slowest budget a connection may have
/// (calls a day from [`crate::model::LimitOverrides::CALLS_PER_DAY`]), so a
/// job that looked an entry up gets to create it instead of looking it up
/// again on every retry.
pub const MAX_CALL_WAIT: Duration = Duration::from_secs(300);

impl Engine {
    /// An engine over `store`, running plugins on `runtime`.
    pub fn new(
        store: Store,
        runtime: Arc<Runtime>,
        retry: RetryPolicy,
        worker: WorkerConfig,
    ) -> Engine {
        let registry = Arc::new(crate::runtime::Registry::new(runtime, None));
        Engine::with_registry(store, registry, retry, worker)
    }

    /// The plugin registry connections' plugins come from.
    pub fn registry(&self) -> &Arc<crate::runtime::Registry> {
        self.connectors.registry()
    }

    /// Starts hot reload (P3): watches the plugins directory and every
    /// plugin file a connection names (each loaded now, so that it is
    /// watched); a changed file is reloaded `debounce` after its last
    /// change. Watching stops when the handle is dropped.
    pub async fn watch_plugins(
        &self,
        debounce: std::time::Duration,
    ) -> anyhow::Result<crate::runtime::WatchHandle> {
        let handle = self.connectors.registry().watch(debounce)?;
        for c in self.store.connections().await? {
            if let Err(e) = self.connectors.named(&c.plugin).await {
                tracing::warn!(connection = %c.id, "its plugin cannot be loaded: {e:#}");
            }
        }
        Ok(handle)
    }

    /// Every plugin version the registry holds, with the connections that
    /// run each now.
    pub async fn plugins(&self) -> anyhow::Result<Vec<PluginListing>> {
        let registry = self.connectors.registry();
        // Each connection's version first: a file named by path is in the
        // registry once resolved.
        let mut running = Vec::new();
        let mut failing = Vec::new();
        for c in self.store.connections().await? {
            match self.connectors.named(&c.plugin).await {
                Ok(p) => running.push((c.id, p)),
                Err(_) => failing.push(c),
            }
        }
        let mut out: Vec<PluginListing> = registry
            .list()
            .await
            .into_iter()
            .map(|version| PluginListing {
                version,
                connections: Vec::new(),
            })
            .collect();
        for (id, p) in running {
            if let Some(l) = out.iter_mut().find(|l| l.version.is(&p)) {
                l.connections.push(id);
            }
        }
        // A file that cannot be loaded is listed with why; its connections
        // with it.
        for c in failing {
            if let Some(f) = plugin_file(&c.plugin)
                && let Some(l) = out
                    .iter_mut()
                    .find(|l| l.version.plugin.is_none() && l.version.path.as_deref() == f.to_str())
            {
                l.connections.push(c.id);
            }
        }
        Ok(out)
    }

    /// An engine whose connections' plugins come from `registry` (a plugins
    /// directory, hot reload: P3).
    pub fn with_registry(
        store: Store,
        registry: Arc<crate::runtime::Registry>,
        retry: RetryPolicy,
        worker: WorkerConfig,
    ) -> Engine {
        let runtime = registry.runtime().clone();
        Engine {
            stats: Stats::default(),
            store,
            runtime,
            connectors: Connectors::new(registry),
            retry,
            worker,
            wake: Notify::new(),
            stopping: tokio::sync::watch::Sender::new(false),
            budgets: budget::Budgets::default(),
            turn: Default::default(),
            tokens: tokens::Tokens::default(),
        }
    }

    /// Adds or replaces a connection after checking it (V1, P4, P8): its
    /// ids, its tenant (which never changes once created), the plugin and
    /// its required settings, the hosts, credentials and limits, and its
    /// directory (resolved to an absolute path; never a system directory,
    /// never one sharing anything with the host's own files or with another
    /// tenant's grant). Nothing is stored unless all of it holds.
    pub async fn put_connection(&self, mut c: Connection) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if let Err(m) = check_id(&c.id) {
            problems.push(format!("id: {m}"));
        }
        match check_id(&c.tenant_id) {
            Err(m) => problems.push(format!("tenant_id: {m}")),
            Ok(()) if !self.store.tenant_exists(&c.tenant_id).await? => {
                problems.push(format!("tenant_id: no tenant {}", c.tenant_id))
            }
            Ok(()) => {}
        }
        let existing = self.store.connections().await?;
        if existing
            .iter()
            .any(|o| o.id == c.id && o.tenant_id != c.tenant_id)
        {
            problems.push(format!(
                "id: connection {} belongs to another tenant; a connection's tenant never changes, choose another id",
                c.id
            ));
        }
        for (k, v) in c.settings.iter() {
            if let Err(m) = check_text(k, false).and_then(|_| check_text(v, false)) {
                problems.push(format!("settings.{}: {m}", k.escape_debug()));
            }
        }
        for (field, m) in c.limits.problems() {
            problems.push(format!("{field}: {m}"));
        }
        if let Err(e) = connectors::sandbox(&c, &c.limits) {
            problems.push(e);
        }
        if let Some(o) = &c.oauth2 {
            problems.extend(check_oauth2(&c, o));
        }
        match c.directory.as_deref().map(grants::resolve) {
            Some(Ok(dir)) => {
                if let Some(owned) = self
                    .host_owned(&c)
                    .into_iter()
                    .find(|p| grants::overlap(&dir, p))
                {
                    problems.push(format!(
                        "directory: {} shares files with the host's own {} (its store, seal key, cache or plugin): a plugin must never reach them; grant a directory of its own",
                        dir.display(),
                        owned.display()
                    ));
                }
                let taken = existing.iter().any(|o| {
                    o.tenant_id != c.tenant_id
                        && o.directory.as_deref().is_some_and(|d| {
                            grants::overlap(&grants::canonical_or_absolute(std::path::Path::new(d)), &dir)
                        })
                });
                if taken {
                    problems.push(format!(
                        "directory: {} is (or shares files with) a directory granted to another tenant's connection",
                        dir.display()
                    ));
                }
                c.directory = Some(dir.display().to_string());
            }
            Some(Err(m)) => problems.push(format!("directory: {m}")),
            None if needs_directory(&c.plugin) => problems
                .push(format!(
                    "directory: the {} connector keeps its entries in a directory the connection grants; name one",
                    c.plugin
                )),
            None => {}
        }
        // A plugin file by path is stored absolute (a later command run
        // elsewhere must load the same file), and may lie in no grant: a
        // plugin that can write it could swap in other code, for this or
        // another tenant's connection.
        // One problem with the plugin is reported once: a reference that
        // does not parse, or a file that is not there, is not loaded too.
        let mut plugin_ok = true;
        if let Err(m) = crate::runtime::PluginRef::parse(&c.plugin) {
            problems.push(format!("plugin: {m}"));
            plugin_ok = false;
        }
        if plugin_ok && plugin_file(&c.plugin).is_some() {
            match std::fs::canonicalize(&c.plugin) {
                Ok(abs) => {
                    let file = abs.clone();
                    let mine = c.directory.as_deref().map(std::path::PathBuf::from);
                    let grants = existing
                        .iter()
                        .filter(|o| o.id != c.id)
                        .filter_map(|o| o.directory.as_deref().map(std::path::PathBuf::from))
                        .chain(mine);
                    for g in grants {
                        if file.starts_with(grants::canonical_or_absolute(&g)) {
                            problems.push(format!(
                                "plugin: {} lies inside a directory granted to a connection; keep plugin files where no plugin can write",
                                file.display()
                            ));
                            break;
                        }
                    }
                    c.plugin = abs.display().to_string();
                }
                Err(e) => {
                    problems.push(format!("plugin: {}: {e}", c.plugin.escape_debug()));
                    plugin_ok = false;
                }
            }
        }
        if let Some(dir) = c.directory.as_deref().map(std::path::Path::new) {
            let holds = existing.iter().filter(|o| o.id != c.id).any(|o| {
                plugin_file(&o.plugin)
                    .is_some_and(|f| grants::canonical_or_absolute(&f).starts_with(dir))
            });
            if holds {
                problems.push(format!(
                    "directory: {} holds another connection's plugin file; a plugin could rewrite it",
                    dir.display()
                ));
            }
        }
        // Every mapping the same way (V1): no control or invisible
        // characters, no text longer than an ERP's codes and names, each
        // named by its place (`mappings.departments.ops.option`).
        let mapping = |field: String, text: &str| -> Option<String> {
            let m = match check_text(text, false) {
                Err(m) => m,
                Ok(()) if text.len() > MAX_MAPPING_TEXT => {
                    format!("longer than {MAX_MAPPING_TEXT} bytes")
                }
                Ok(()) => return None,
            };
            Some(format!("{field}: {m}"))
        };
        let name = |k: &str| -> String {
            k.chars()
                .take(64)
                .collect::<String>()
                .escape_debug()
                .to_string()
        };
        for (kind, map) in [
            ("categories", &c.mappings.categories),
            ("bank_accounts", &c.mappings.bank_accounts),
            ("vendors", &c.mappings.vendors),
        ] {
            for (k, v) in map {
                let field = format!("mappings.{kind}.{}", name(k));
                problems.extend(mapping(field.clone(), k));
                problems.extend(mapping(field, v));
            }
        }
        for (k, t) in &c.mappings.departments {
            let field = format!("mappings.departments.{}", name(k));
            problems.extend(mapping(field.clone(), k));
            problems.extend(mapping(format!("{field}.category"), &t.category));
            problems.extend(mapping(format!("{field}.option"), &t.option));
        }
        if let Some(b) = &c.default_bank_account {
            problems.extend(mapping("default_bank_account".into(), b));
        }
        match self.connectors.plugin(&c).await {
            _ if !plugin_ok => {}
            Ok(p) => {
                let declared = &p.descriptor.settings;
                for k in c.settings.keys() {
                    if !declared.iter().any(|s| setting_matches(&s.name, k)) {
                        let names: Vec<&str> = declared.iter().map(|s| s.name.as_str()).collect();
                        problems.push(format!(
                            "settings.{}: the {} connector declares no such setting (it takes {})",
                            k.escape_debug(),
                            p.descriptor.name,
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        ));
                    }
                }
                for s in declared.iter().filter(|s| s.required) {
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
            return Err(InvalidConnection {
                id: c.id.escape_debug().to_string(),
                problems: problems
                    .iter()
                    .map(|p| match p.split_once(": ") {
                        Some((field, message)) => FieldError {
                            field: field.to_string(),
                            message: message.to_string(),
                        },
                        None => FieldError {
                            field: "(connection)".into(),
                            message: p.clone(),
                        },
                    })
                    .collect(),
            }
            .into());
        }
        let (id, limits) = (c.id.clone(), c.limits.clone());
        let before = self.store.connection(&id).await?.map(|old| old.limits);
        self.store.put_connection(c).await?;
        // A pause its own budget made was for the old limits.
        if before.is_some_and(|old| old != limits) {
            self.store.clear_pause(&id, true).await?;
        }
        Ok(())
    }

    /// Lifts a connection's pause, its ERP's or its budget's (R5): an
    /// operator's call, when the ERP's limit was reset early or a
    /// `Retry-After` was absurd. Returns whether it was paused.
    pub async fn resume(&self, connection: &str) -> anyhow::Result<bool> {
        let c = self.connection(connection).await?;
        let was = self.store.clear_pause(connection, false).await?;
        self.budgets
            .of(connection, &self.limits_of(&c.plugin, &c.limits))
            .set_paused_until(0);
        Ok(was)
    }

    /// Checks, before a plugin runs, that its connection's grant is still
    /// what was checked when it was added (P8): the directory resolves to
    /// itself (no link put in its place since) and shares nothing with what
    /// this process owns (its store and cache may differ from those of the
    /// command that added the connection).
    pub(crate) fn check_grant_now(&self, c: &Connection) -> Result<(), String> {
        let Some(d) = c.directory.as_deref() else {
            return Ok(());
        };
        let dir = std::path::Path::new(d);
        let now = std::fs::canonicalize(dir)
            .map_err(|e| format!("the granted directory {d} cannot be opened: {e}"))?;
        if now != dir {
            return Err(format!(
                "the granted directory {d} now resolves to {} (a link was put in its place); nothing was run",
                now.display()
            ));
        }
        if let Some(owned) = self
            .host_owned(c)
            .into_iter()
            .find(|p| grants::overlap(&now, p))
        {
            return Err(format!(
                "the granted directory {d} shares files with the host's own {} (its store, seal key, cache or plugin); nothing was run",
                owned.display()
            ));
        }
        Ok(())
    }

    /// What the host owns that no plugin may be granted (P8): the store's
    /// file, the compile cache, and the plugin's own file.
    fn host_owned(&self, c: &Connection) -> Vec<std::path::PathBuf> {
        let mut owned = Vec::new();
        if let Some(db) = self.store.path() {
            owned.push(grants::canonical_or_absolute(db));
        }
        if let Some(keys) = self.store.key_file() {
            owned.push(grants::canonical_or_absolute(keys));
        }
        if let Some(cache) = &self.runtime.config.cache_dir {
            owned.push(grants::canonical_or_absolute(cache));
        }
        if let Some(dir) = self.connectors.registry().dir() {
            owned.push(grants::canonical_or_absolute(dir));
        }
        if let Some(f) = plugin_file(&c.plugin) {
            owned.push(grants::canonical_or_absolute(&f));
        }
        owned
    }

    /// Enables or disables a connection (P4); disabling keeps its history.
    /// Enabling returns how many of the tenant's documents changed while it
    /// was disabled (they were not synced; a bulk re-sync catches up).
    pub async fn set_enabled(&self, connection: &str, enabled: bool) -> anyhow::Result<usize> {
        let conn = self
            .store
            .connection(connection)
            .await?
            .ok_or_else(|| EngineError::NoConnection(connection.into()))?;
        let disabled_at = self
            .store
            .set_connection_enabled(connection, enabled)
            .await?
            .ok_or_else(|| EngineError::NoConnection(connection.into()))?;
        match (enabled, disabled_at) {
            (true, Some(since)) => {
                self.store
                    .documents_changed_since(&conn.tenant_id, since)
                    .await
            }
            _ => Ok(0),
        }
    }

    /// Records a validated batch and the jobs it causes (A1-A3), all or
    /// nothing (V1). Each payment's amount is read in its document's
    /// currency, and no document may be paid more than its total.
    pub async fn import(&self, batch: Batch) -> anyhow::Result<Imported> {
        let mut missing = Vec::new();
        for t in batch
            .documents
            .iter()
            .map(|d| &d.tenant_id)
            .chain(batch.payments.iter().map(|p| &p.payment.tenant_id))
        {
            if !missing.contains(t) && !self.store.tenant_exists(t).await? {
                missing.push(t.clone());
            }
        }
        if !missing.is_empty() {
            return Err(InvalidInput(vec![FieldError {
                field: "tenant_id".into(),
                message: format!("no tenant {}", missing.join(", ")),
            }])
            .into());
        }
        let payments = self.resolve_payments(&batch).await?;
        let (n_docs, n_pays) = (batch.documents.len(), payments.len());
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
        let payments = payments
            .into_iter()
            .map(|p| {
                let plan: crate::store::JobPlan<_> =
                    Box::new(move |prev, pay, conns| policy::payment_jobs(prev, pay, conns, now));
                (p, plan)
            })
            .collect();
        let merge: crate::store::PaymentMerge = |prev, p| Ok(policy::merge_payment(prev, p)?);
        let recorded = self.store.record(documents, payments, merge).await?;
        self.wake.notify_one();
        Ok(Imported {
            documents: n_docs,
            payments: n_pays,
            queued: recorded.new_jobs,
            merged: recorded.jobs.len() - recorded.new_jobs,
        })
    }

    /// Reads each payment's amount in its document's currency and checks no
    /// document would be paid more than its total, counting the payments
    /// already recorded (V1).
    async fn resolve_payments(&self, batch: &Batch) -> anyhow::Result<Vec<Payment>> {
        let mut errors = Vec::new();
        let mut out = Vec::new();
        let in_batch: HashMap<(&str, &str), &crate::model::Document> = batch
            .documents
            .iter()
            .map(|d| ((d.tenant_id.as_str(), d.id.as_str()), d))
            .collect();
        let replaced: std::collections::HashSet<(&str, &str)> = batch
            .payments
            .iter()
            .map(|b| (b.payment.tenant_id.as_str(), b.payment.id.as_str()))
            .collect();
        // A document's new total or currency must still fit the payments
        // recorded against it (those not replaced by this batch).
        for (i, d) in batch.documents.iter().enumerate() {
            let recorded: Vec<Payment> = self
                .store
                .payments_of(&d.tenant_id, &d.id)
                .await?
                .into_iter()
                .filter(|r| {
                    !replaced.contains(&(r.tenant_id.as_str(), r.id.as_str())) && !r.never_paid()
                })
                .collect();
            if recorded.is_empty() {
                continue;
            }
            if let Some(prev) = self.store.document(&d.tenant_id, &d.id).await?
                && prev.currency != d.currency
            {
                errors.push(FieldError {
                    field: format!("documents[{i}].currency"),
                    message: format!(
                        "document {} has payments in {}; its currency cannot change",
                        d.id, prev.currency
                    ),
                });
            }
            let paid = recorded
                .iter()
                .map(|r| r.amount)
                .fold(0i64, i64::saturating_add);
            if paid > d.total {
                errors.push(FieldError {
                    field: format!("documents[{i}].total"),
                    message: format!(
                        "{} is below the {} already paid against document {}",
                        ledgerbridge_sdk::money::to_decimal(d.total, &d.currency),
                        ledgerbridge_sdk::money::to_decimal(paid, &d.currency),
                        d.id
                    ),
                });
            }
        }
        // (tenant, document) → (currency, total, paid by other payments).
        let mut docs: HashMap<(String, String), (String, i64, i64)> = HashMap::new();
        for input in &batch.payments {
            let p = &input.payment;
            let key = (p.tenant_id.clone(), p.document_id.clone());
            if !docs.contains_key(&key) {
                let doc = match in_batch.get(&(p.tenant_id.as_str(), p.document_id.as_str())) {
                    Some(d) => Some((*d).clone()),
                    None => self.store.document(&p.tenant_id, &p.document_id).await?,
                };
                let Some(doc) = doc else {
                    errors.push(FieldError {
                        field: format!("{}.document_id", input.at),
                        message: format!(
                            "no document {} for tenant {}",
                            p.document_id, p.tenant_id
                        ),
                    });
                    continue;
                };
                // Payments already recorded, except those this batch replaces.
                let paid: i64 = self
                    .store
                    .payments_of(&p.tenant_id, &p.document_id)
                    .await?
                    .iter()
                    .filter(|r| !replaced.contains(&(r.tenant_id.as_str(), r.id.as_str())))
                    .filter(|r| !r.never_paid())
                    .map(|r| r.amount)
                    .fold(0i64, i64::saturating_add);
                docs.insert(key.clone(), (doc.currency, doc.total, paid));
            }
            let (currency, total, paid) = docs.get_mut(&key).expect("inserted above");
            match crate::intake::resolve_payment(input, currency) {
                Ok(payment) => {
                    if !payment.never_paid() {
                        *paid = paid.saturating_add(payment.amount);
                    }
                    if *paid > *total {
                        errors.push(FieldError {
                            field: format!("{}.amount", input.at),
                            message: format!(
                                "{} {currency}: with the payments already recorded, document {} would be paid {} of its total {}",
                                ledgerbridge_sdk::money::to_decimal(payment.amount, currency),
                                p.document_id,
                                ledgerbridge_sdk::money::to_decimal(*paid, currency),
                                ledgerbridge_sdk::money::to_decimal(*total, currency),
                            ),
                        });
                    }
                    out.push(payment);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(InvalidInput(errors).into())
        }
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
                return Err(EngineError::NotPaid(document.into()).into());
            }
            if !conn.sync_payments {
                return Err(EngineError::PaymentsOff(connection.into()).into());
            }
        }
        let run = run_id();
        let jobs = manual::manual_jobs(
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
            .ok_or_else(|| EngineError::NoConnection(connection.into()))?;
        let item = self
            .store
            .failed_exports(Some(connection))
            .await?
            .into_iter()
            .find(|f| f.payment_id == payment_id);
        let (document, check) = match item {
            Some(f) => (f.document_id, f.check_number),
            None => {
                return Err(EngineError::NotFailed {
                    payment: payment_id.to_string(),
                    connection: connection.to_string(),
                }
                .into());
            }
        };
        // C3: a number the ERP rejected is not sent again; the operator
        // gives the payment another first.
        if let Some(n) = check {
            let p = self
                .store
                .payments_of(&conn.tenant_id, &document)
                .await?
                .into_iter()
                .find(|p| p.id == payment_id);
            if let Some(p) = p {
                let holder = self
                    .store
                    .check_number_holder(&conn.tenant_id, &p.funding_account, n)
                    .await?;
                if holder != Some(Some(payment_id.to_string())) {
                    return Err(EngineError::Invalid {
                        field: "check_number".into(),
                        message: format!(
                            "{n} was rejected by the ERP (or is no longer this payment's); give payment {payment_id} another (edit-export --check-number, or PATCH its failed export), then export it"
                        ),
                    }
                    .into());
                }
            }
        }
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
            .ok_or_else(|| EngineError::NoDocument {
                tenant: tenant.into(),
                document: document.into(),
            })?;
        let conn = self
            .store
            .connection(connection)
            .await?
            .ok_or_else(|| EngineError::NoConnection(connection.into()))?;
        if conn.tenant_id != tenant {
            return Err(EngineError::OtherTenant {
                connection: connection.into(),
                owner: conn.tenant_id,
                tenant: tenant.into(),
            }
            .into());
        }
        if !conn.enabled {
            return Err(EngineError::Disabled(connection.into()).into());
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
            .ok_or_else(|| EngineError::NoConnection(connection.into()))?;
        if !conn.enabled {
            return Err(EngineError::Disabled(connection.into()).into());
        }
        let ids: Vec<String> = match selection {
            // One result per document and target: a document named twice is
            // synced once.
            Selection::Documents(ids) => {
                let mut seen = std::collections::HashSet::new();
                ids.into_iter().filter(|i| seen.insert(i.clone())).collect()
            }
            Selection::All => self.store.document_ids(&conn.tenant_id).await?,
            Selection::Attention => {
                let mut ids: Vec<String> = self
                    .store
                    .attention(Some(connection))
                    .await?
                    .into_iter()
                    .map(|a| a.document_id)
                    .collect();
                ids.sort();
                ids.dedup();
                ids
            }
        };
        let run = run_id();
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
                    jobs.extend(manual::manual_jobs(
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
            return Err(EngineError::Invalid {
                field: "documents".into(),
                message: format!(
                    "no document {} for tenant {}; nothing was queued",
                    unknown.join(", "),
                    conn.tenant_id
                ),
            }
            .into());
        }
        self.store.enqueue(jobs).await?;
        self.wake.notify_one();
        Ok((run, ids.len()))
    }

    /// Runs the worker until `run` has no job left to do, or all it has
    /// left waits for a time more than [`PAUSE_AFTER`] away (a retry, a
    /// paused connection: see [`Engine::run_deferred_until`]), reporting
    /// its summary to `progress` as it goes.
    pub async fn finish_run(
        self: &Arc<Self>,
        run: &str,
        mut progress: impl FnMut(&RunSummary),
    ) -> anyhow::Result<RunSummary> {
        let done = tokio::sync::watch::channel(false);
        let worker = self.run_worker(false, done.1);
        let watch = async {
            // A run making progress is not deferred: look (a scan of its
            // jobs) only once it has made none for a second.
            let mut last: Option<(RunSummary, std::time::Instant)> = None;
            loop {
                let s = self.store.run_summary(run).await?;
                progress(&s);
                let still = match &last {
                    Some((prev, since)) if *prev == s => since.elapsed() >= Duration::from_secs(1),
                    _ => {
                        last = Some((s.clone(), std::time::Instant::now()));
                        false
                    }
                };
                let deferred = still
                    && s.waiting == 0
                    && s.pending > 0
                    && self.run_deferred_until(run).await?.is_some();
                if (s.pending == 0 && s.waiting == 0) || deferred {
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

    /// When the rest of `run` is next due (ms since the epoch), if none of
    /// it runs now and all of it waits more than [`PAUSE_AFTER`]: a retry
    /// time or a paused connection. A running worker finishes it then.
    pub async fn run_deferred_until(&self, run: &str) -> anyhow::Result<Option<i64>> {
        let before = now_ms() + PAUSE_AFTER.as_millis() as i64;
        self.store.run_deferred_until(run, before).await
    }

    /// Claims and runs due jobs until `stop` turns true, or, with
    /// `until_idle`, until no job is queued or running.
    ///
    /// The worker survives its jobs and its store (DESIGN: "a worker
    /// survives its jobs"): a job whose task fails or panics fails alone; a
    /// store error is logged, the job left to run again, and the worker
    /// backs off and goes on. It registers under a fresh unique id and
    /// beats while it runs, so other workers (in any process, container or
    /// host sharing the store) leave its jobs alone while it lives and take
    /// them back once it stops beating.
    pub async fn run_worker(
        self: &Arc<Self>,
        until_idle: bool,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<WorkerReport> {
        let worker = uuid::Uuid::new_v4().to_string();
        let label = format!(
            "{}:{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "host".into()),
            std::process::id()
        );
        self.store
            .register_worker(&worker, &label)
            .await
            .context("registering the worker in the store")?;
        match self.store.recorded_usage().await {
            Ok(usage) => {
                for (connection, minute, day) in usage {
                    self.budgets.seed(&connection, minute, day);
                }
            }
            Err(e) => tracing::warn!("could not read the calls workers made before: {e:#}"),
        }
        let report = self.worker_loop(&worker, until_idle, stop).await;
        // What this worker spent counts for the next one.
        if let Err(e) = self.share_budgets(&worker).await {
            tracing::warn!("could not record the calls this worker made: {e:#}");
        }
        if let Err(e) = self.store.deregister_worker(&worker).await {
            tracing::warn!(worker, "could not deregister the worker: {e:#}");
        }
        Ok(report)
    }

    async fn worker_loop(
        self: &Arc<Self>,
        worker: &str,
        until_idle: bool,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> WorkerReport {
        let mut report = WorkerReport::default();
        let lease = self.worker.lease;
        let beat_every = (lease / 5).max(Duration::from_millis(50));
        let mut beaten: Option<std::time::Instant> = None;
        let mut trouble = Duration::ZERO;
        let global = Arc::new(Semaphore::new(self.worker.concurrency));
        let mut logged: Option<std::time::Instant> = None;
        let mut tasks: tokio::task::JoinSet<Vec<(Job, JobResult)>> = tokio::task::JoinSet::new();
        // Each group's jobs, by task: shared, since a group claims more of
        // its connection's jobs while it lingers.
        let in_flight: InFlight = Arc::default();
        loop {
            if *stop.borrow() {
                self.stopping.send_replace(true);
                break;
            }
            if beaten.is_none_or(|b| b.elapsed() >= beat_every) {
                let ids = in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .values()
                    .flatten()
                    .map(|j| j.id)
                    .collect();
                let until = now_ms() + lease.as_millis() as i64;
                let beat = async {
                    self.store.heartbeat(worker, ids, until).await?;
                    self.store
                        .recover(
                            lease.as_millis() as i64,
                            self.worker.quarantine_after,
                            notices::quarantined,
                        )
                        .await
                };
                if let Err(e) = self.share_budgets(worker).await {
                    tracing::warn!("could not exchange budgets and pauses with the store: {e:#}");
                }
                if logged.is_none_or(|l| l.elapsed() >= STATUS_LOG_EVERY) {
                    logged = Some(std::time::Instant::now());
                    self.log_status().await;
                }
                match beat.await {
                    Ok((taken, quarantined)) => {
                        report.recovered += taken - quarantined;
                        report.quarantined += quarantined;
                        if quarantined > 0 {
                            tracing::warn!(
                                quarantined,
                                "quarantined jobs that kept crashing their workers"
                            );
                        }
                        trouble = Duration::ZERO;
                    }
                    Err(e) => {
                        self.back_off(&mut trouble, "beating and recovering", &e)
                            .await;
                        continue;
                    }
                }
                beaten = Some(std::time::Instant::now());
            }
            let free = global.available_permits();
            let claimed = if free > 0 {
                let until = now_ms() + lease.as_millis() as i64;
                let t = std::time::Instant::now();
                let mut here: HashMap<String, (usize, usize)> = HashMap::new();
                for group in in_flight.lock().unwrap_or_else(|e| e.into_inner()).values() {
                    if let Some(j) = group.first() {
                        let h = here.entry(j.connection_id.clone()).or_default();
                        h.0 += 1;
                        h.1 += group.len();
                    }
                }
                match self.claim_fairly(worker, free, &here, until).await {
                    Ok(c) => {
                        Stats::add(&self.stats.claim_ns, t);
                        self.stats.claims.fetch_add(1, Ordering::Relaxed);
                        c
                    }
                    Err(e) => {
                        self.back_off(&mut trouble, "claiming jobs", &e).await;
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            let got = claimed.len();
            for group in claimed {
                let Ok(g) = global.clone().acquire_owned().await else {
                    break;
                };
                let engine = self.clone();
                let (worker, in_flight_here) = (worker.to_string(), in_flight.clone());
                let run = group.jobs.clone();
                // Registered before the task can run, so its top-up finds it.
                let mut registry = in_flight.lock().unwrap_or_else(|e| e.into_inner());
                let handle = tasks.spawn(async move {
                    let r = engine
                        .execute_group(run, group.size, &worker, &in_flight_here)
                        .await;
                    drop(g);
                    r
                });
                registry.insert(handle.id(), group.jobs);
            }
            while let Some(r) = tasks.try_join_next_with_id() {
                self.task_done(r, &in_flight, &mut report).await;
            }
            if got == 0 {
                // Nothing claimable now: a finished job, a new event or a
                // stop wakes the worker. With nothing running here, it also
                // looks when the queue has work next (due, and its
                // connection not paused), and with `until_idle` stops once
                // nothing is left, or all that is left waits past
                // PAUSE_AFTER. Due work it could not claim (its connection's
                // calls at once or budget in use) is looked at again after
                // the usual wait, never in a tight loop.
                let mut wait = Duration::from_millis(200).min(beat_every);
                if free > 0 && tasks.is_empty() {
                    match self.store.pending().await {
                        Ok((queued, running, next)) => {
                            let now = now_ms();
                            let deferred =
                                next.is_some_and(|d| d > now + PAUSE_AFTER.as_millis() as i64);
                            if until_idle && !running && (!queued || deferred) {
                                if deferred {
                                    tracing::info!(
                                        resumes = %ms_to_rfc3339(next.unwrap_or(now)),
                                        "stopping: every sync left waits for a retry time or a paused connection"
                                    );
                                }
                                break;
                            }
                            if let Some(d) = next
                                && d > now
                            {
                                wait = wait.min(Duration::from_millis((d - now) as u64));
                            }
                        }
                        Err(e) => {
                            self.back_off(&mut trouble, "reading the queue", &e).await;
                            continue;
                        }
                    }
                }
                tokio::select! {
                    Some(r) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                        self.task_done(r, &in_flight, &mut report).await;
                    }
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => {}
                }
            }
        }
        while let Some(r) = tasks.join_next_with_id().await {
            self.task_done(r, &in_flight, &mut report).await;
        }
        report
    }

    /// Each connection's queue by kind, budget, calls made and pause (R5),
    /// for operators; only `tenant`'s connections when given (an unknown
    /// tenant is an error).
    pub async fn status(
        &self,
        tenant: Option<&str>,
    ) -> anyhow::Result<Vec<crate::store::ConnectionStatus>> {
        if let Some(t) = tenant {
            self.require_tenant(t).await?;
        }
        let mut all = self.store.queue_status().await?;
        all.retain(|c| tenant.is_none_or(|t| c.tenant_id == t));
        // The limits it runs by: its connector's (loaded for them, once),
        // lowered by its own (R2).
        for c in &mut all {
            match self.connectors.named(&c.plugin).await {
                Ok(p) => c.plugin_version = Some(crate::model::PluginVersion::of(&p)),
                Err(e) => c.plugin_refused = Some(format!("{e:#}")),
            }
            if let Ok(r) = crate::runtime::PluginRef::parse(&c.plugin)
                && let Some(newest) = self
                    .connectors
                    .registry()
                    .refusals(&r)
                    .into_iter()
                    .max_by_key(|r| r.at)
                && c.plugin_refused.is_none()
            {
                c.plugin_refused = Some(format!(
                    "{} was refused at {}, the version before it serves on: {}",
                    newest.path,
                    ms_to_rfc3339(newest.at),
                    newest.message
                ));
            }
            c.limits = self.limits_of(&c.plugin, &c.limits);
        }
        Ok(all)
    }

    /// Claims up to `free` groups of due jobs fairly (R5): round-robin over
    /// the connections that have due work, budget left and no pause, the
    /// connections whose best job is a funding-complete payment first; the
    /// turn moves on each claim so no connection is always first. A group
    /// is up to one batch of one connection's jobs (its connector's items
    /// per call), which run together so their calls go out batched. Within
    /// a connection the store takes its best jobs first (funding-complete
    /// payments, then automatic syncs, then bulk work), never more groups
    /// than its calls at once, nor more than three quarters of this
    /// worker's hands. Each group claimed takes one call's share of its
    /// connection's budget, which pays for its first plugin call; a group
    /// the budget has no share for goes back to the queue untouched, due
    /// when a share will be free, and the connection is left out of claims
    /// until then (shares are taken only for groups claimed, so none is
    /// lost to a claim that found nothing). `here`: this worker's groups
    /// and jobs per connection.
    async fn claim_fairly(
        &self,
        worker: &str,
        free: usize,
        here: &HashMap<String, (usize, usize)>,
        lease_until: i64,
    ) -> anyhow::Result<Vec<Group>> {
        // No connection holds more than three quarters of this worker's
        // hands, so a slow ERP cannot keep every other connection waiting.
        let most = (self.worker.concurrency * 3 / 4).max(1);
        let mut due = self.store.due_connections().await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let len = due.len();
        due.rotate_left(turn % len);
        due.sort_by_key(|d| d.best);
        let mut limits = Vec::with_capacity(len);
        let mut sizes = Vec::with_capacity(len);
        for d in &due {
            // The connector states the ERP's limits: loaded (once) before
            // its first claim, so every claim runs by them. One that cannot
            // be loaded runs by the connection's own, and its jobs fail.
            let declared = match self.connectors.named(&d.plugin).await {
                Ok(p) => Some(p.descriptor.limits),
                Err(_) => None,
            };
            limits.push(limits::effective(&d.limits, declared.as_ref()));
            sizes.push(limits::group_size(&d.limits, declared.as_ref()));
        }
        let budgets: Vec<_> = due
            .iter()
            .zip(&limits)
            .map(|(d, l)| self.budgets.of(&d.id, l))
            .collect();
        // What each connection may still start: groups (its calls at once,
        // counted over every worker, and three quarters of this worker's
        // hands), and the jobs that fill them.
        let rooms: Vec<(usize, usize)> = (0..len)
            .map(|i| {
                let d = &due[i];
                if budgets[i].paused_for(now).is_some() || budgets[i].empty_at(now) {
                    return (0, 0);
                }
                let (groups_here, _) = here.get(&d.id).copied().unwrap_or_default();
                let groups = (limits[i].calls_at_once() as usize)
                    .saturating_sub(d.running_groups)
                    .min(most.saturating_sub(groups_here));
                (groups, d.due)
            })
            .collect();
        let mut plan = vec![(0usize, 0usize); len]; // (groups, jobs)
        let mut groups = 0;
        'rounds: loop {
            let before = groups;
            for i in 0..len {
                if groups == free {
                    break 'rounds;
                }
                let (room_groups, room_jobs) = rooms[i];
                if plan[i].0 < room_groups && plan[i].1 < room_jobs {
                    plan[i].0 += 1;
                    plan[i].1 += sizes[i].min(room_jobs - plan[i].1);
                    groups += 1;
                }
            }
            if groups == before {
                break;
            }
        }
        let plan: Vec<ClaimPlan> = (0..len)
            .filter(|&i| plan[i].0 > 0)
            .map(|i| {
                let at_once = limits[i].calls_at_once() as usize;
                ClaimPlan {
                    connection: due[i].id.clone(),
                    groups: plan[i].0,
                    size: sizes[i],
                    most_groups: at_once,
                    most_bulk_groups: limits::bulk_groups(at_once),
                }
            })
            .collect();
        let claimed = self.store.claim(worker, plan, lease_until).await?;
        let mut run = Vec::new();
        let mut paused = Vec::new();
        for group in claimed {
            let Some(i) = group
                .first()
                .and_then(|j| due.iter().position(|d| d.id == j.connection_id))
            else {
                continue;
            };
            match budgets[i].try_take(now) {
                Ok(()) => run.push(Group {
                    jobs: group,
                    size: sizes[i],
                }),
                Err(wait) => {
                    let until = now.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
                    if wait > PAUSE_AFTER && !paused.contains(&i) {
                        paused.push(i);
                        let reason = budget_spent(&limits[i]);
                        self.pause(&due[i].id, &limits[i], until, PausedBy::Budget, &reason)
                            .await;
                    }
                    let why = format!("waiting for the connection's call budget ({wait:.1?})");
                    for job in group {
                        self.store.release(&job, until, &why).await?;
                    }
                }
            }
        }
        Ok(run)
    }

    /// The limits `plugin`'s connection runs with (R2): the connector's,
    /// lowered by the connection's `overrides`.
    pub(crate) fn limits_of(
        &self,
        plugin: &str,
        overrides: &crate::model::LimitOverrides,
    ) -> crate::model::LimitOverrides {
        limits::effective(overrides, self.connectors.declared(plugin).as_ref())
    }

    /// Waits for one call's share of `connection`'s budget (R2) unless the
    /// call is `prepaid` (a job's first, paid for by its claim): up to
    /// [`MAX_CALL_WAIT`]; when the budget has none for longer, the connection
    /// is paused until then and the wait returned, as it is while the
    /// connection is paused (prepaid or not).
    pub(crate) async fn pace(
        &self,
        connection: &str,
        limits: &crate::model::LimitOverrides,
        prepaid: bool,
    ) -> Result<(), Duration> {
        let budget = self.budgets.of(connection, limits);
        let mut stopping = self.stopping.subscribe();
        loop {
            let now = now_ms();
            if let Some(left) = budget.paused_for(now) {
                return Err(left);
            }
            if prepaid {
                return Ok(());
            }
            // A pause another process recorded holds here at once, not
            // only from this process's next heartbeat.
            if let Ok(Some((until, PausedBy::Erp))) = self.store.paused(connection).await
                && until > now
            {
                budget.pause_until(until);
                return Err(Duration::from_millis((until - now) as u64));
            }
            match budget.try_take(now) {
                Ok(()) => return Ok(()),
                Err(wait) if wait > MAX_CALL_WAIT => {
                    let until = now.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
                    let reason = budget_spent(limits);
                    self.pause(connection, limits, until, PausedBy::Budget, &reason)
                        .await;
                    return Err(wait);
                }
                Err(wait) => {
                    if *stopping.borrow_and_update() {
                        return Err(wait);
                    }
                    // A long wait shows: the connection is paused by its
                    // budget (claims skip it) while this job waits its turn.
                    if wait > PAUSE_AFTER {
                        let until =
                            now.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
                        let paused = self.store.paused(connection).await.ok().flatten();
                        if paused.is_none_or(|(u, _)| u < until) {
                            let reason = budget_spent(limits);
                            self.pause(connection, limits, until, PausedBy::Budget, &reason)
                                .await;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
                        _ = stopping.changed() => return Err(wait),
                    }
                }
            }
        }
    }

    /// Pauses `connection` until `until` (ms since the epoch) for `reason`
    /// (R5), in the store, where every worker and `status` see it. A pause
    /// by the ERP also holds in this process at once, for calls already
    /// claimed (a budget's own pause needs not: its limiter refuses them). A
    /// failure to record it is logged: this process's pause still holds.
    pub(crate) async fn pause(
        &self,
        connection: &str,
        limits: &crate::model::LimitOverrides,
        until: i64,
        by: crate::store::PausedBy,
        reason: &str,
    ) {
        if by == crate::store::PausedBy::Erp {
            self.budgets.of(connection, limits).pause_until(until);
        }
        if let Err(e) = self
            .store
            .pause_connection(connection, until, by, reason)
            .await
        {
            tracing::warn!(connection, "could not record the connection's pause: {e:#}");
        }
        tracing::info!(
            connection,
            resumes = %ms_to_rfc3339(until),
            "connection paused: {reason}"
        );
    }

    /// Reports this process's calls per connection to the store, learns
    /// the pauses other processes recorded, and how many worker processes
    /// share each budget.
    async fn share_budgets(&self, worker: &str) -> anyhow::Result<()> {
        let live = self
            .store
            .live_workers(self.worker.lease.as_millis() as i64)
            .await?;
        self.budgets.set_share(live);
        let now = now_ms();
        let usage = self
            .budgets
            .all()
            .into_iter()
            .map(|(c, b)| {
                let (minute, day) = b.used(now);
                (c, minute, day)
            })
            .filter(|(_, m, d)| *m > 0 || *d > 0)
            .collect();
        self.store.record_usage(worker, usage).await?;
        // This process's record of ERP pauses follows the store's, where
        // other processes add them and operators lift them.
        let pauses: HashMap<String, i64> = self.store.pauses().await?.into_iter().collect();
        for (connection, budget) in self.budgets.all() {
            budget.set_paused_until(pauses.get(&connection).copied().unwrap_or(0));
        }
        for (connection, until) in &pauses {
            if let Some(c) = self.store.connection(connection).await? {
                self.budgets
                    .of(connection, &self.limits_of(&c.plugin, &c.limits))
                    .set_paused_until(*until);
            }
        }
        Ok(())
    }

    /// Logs each connection with work: its queue by kind, running jobs,
    /// calls used and pause (R5, for operators).
    async fn log_status(&self) {
        match self.store.queue_status().await {
            Ok(all) => {
                for c in all
                    .iter()
                    .filter(|c| !c.queued.is_empty() || c.running > 0 || c.paused_until.is_some())
                {
                    tracing::info!(
                        connection = %c.id,
                        tenant = %c.tenant_id,
                        queued = ?c.queued,
                        due = c.due,
                        running = c.running,
                        waiting = c.waiting,
                        calls_last_minute = c.calls_last_minute,
                        calls_last_day = c.calls_last_day,
                        paused_until = c.paused_until.map(ms_to_rfc3339),
                        "queue"
                    );
                }
            }
            Err(e) => tracing::warn!("could not read the queue's status: {e:#}"),
        }
    }

    /// A store error in the worker's own loop: logged; the worker waits
    /// longer each time in a row (up to 5 s) and goes on.
    async fn back_off(&self, trouble: &mut Duration, doing: &str, e: &anyhow::Error) {
        *trouble = (*trouble * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
        tracing::warn!("the worker failed {doing}: {e:#}; retrying in {trouble:?}");
        tokio::time::sleep(*trouble).await;
    }

    /// A group's task ended: each job's outcome counted; a host failure
    /// puts that job back, a panic fails that job alone.
    async fn task_done(
        &self,
        r: Result<(tokio::task::Id, Vec<(Job, JobResult)>), tokio::task::JoinError>,
        in_flight: &InFlight,
        report: &mut WorkerReport,
    ) {
        let (id, results) = match r {
            Ok((id, results)) => (id, results),
            Err(join) => {
                // The group's own code panicked (each job's panic is caught
                // on its own): every job of it failed.
                let id = join.id();
                let why = panic_message(join.try_into_panic().ok());
                let jobs = in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id)
                    .unwrap_or_default();
                (
                    id,
                    jobs.into_iter()
                        .map(|j| (j, JobResult::Panicked(why.clone())))
                        .collect(),
                )
            }
        };
        in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        for (job, result) in results {
            match result {
                JobResult::Done(outcome) => {
                    *report
                        .outcomes
                        .entry(outcome.as_str().to_string())
                        .or_default() += 1;
                }
                JobResult::HostError(e) => {
                    report.host_errors += 1;
                    tracing::warn!(job = job.id, connection = %job.connection_id, document = %job.document_id,
                        "the host could not finish the sync, it will run again: {e:#}");
                    // Back in the queue after a pause; if even that fails, its
                    // lease runs out (no longer renewed) and recovery takes it.
                    let due = now_ms() + 5_000;
                    if let Err(e) = self.store.release(&job, due, &format!("{e:#}")).await {
                        tracing::warn!(
                            job = job.id,
                            "could not put the job back, its lease will run out: {e:#}"
                        );
                    }
                }
                JobResult::Panicked(why) => {
                    tracing::error!(job = job.id, "a sync task failed: {why}");
                    *report.outcomes.entry("failed".into()).or_default() += 1;
                    if let Err(e) = self.finish(notices::task_failed(job, &why)).await {
                        tracing::warn!(
                            "could not record the failed task, its lease will run out: {e:#}"
                        );
                    }
                }
            }
        }
    }

    /// Runs a group of one connection's jobs side by side, their calls
    /// batched (`batcher`), and stores their outcomes in one transaction.
    /// A group smaller than its batch `size` first lingers, and takes more
    /// of its connection's jobs that came due meanwhile (registered in
    /// `in_flight`, so the worker's heartbeat keeps their leases).
    async fn execute_group(
        &self,
        mut jobs: Vec<Job>,
        size: usize,
        worker: &str,
        in_flight: &InFlight,
    ) -> Vec<(Job, JobResult)> {
        let urgent = jobs.iter().any(|j| j.priority == Priority::FundingComplete);
        if jobs.len() < size && !urgent && !self.worker.linger.is_zero() {
            tokio::time::sleep(self.worker.linger).await;
            let lease_until = now_ms() + self.worker.lease.as_millis() as i64;
            // More of the connection's due jobs join this group: it counts
            // once against the connection's calls at once however full.
            if let Ok(more) = self
                .store
                .claim_into(worker, &jobs, size - jobs.len(), lease_until)
                .await
                && !more.is_empty()
            {
                if let Some(mine) = in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&tokio::task::id())
                {
                    mine.extend(more.iter().cloned());
                }
                jobs.extend(more);
            }
        }
        let t = std::time::Instant::now();
        // What every job needs, in one read.
        let contexts = match self.store.job_contexts(&jobs).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!("{e:#}");
                return jobs
                    .into_iter()
                    .map(|j| (j, JobResult::HostError(anyhow::anyhow!("{why}"))))
                    .collect();
            }
        };
        let batcher = batcher::Batcher::new(self, jobs.len());
        let runs = futures::future::join_all(jobs.iter().zip(contexts).map(|(job, ctx)| {
            let batcher = &batcher;
            async move {
                let run = std::panic::AssertUnwindSafe(executor::run(self, job, ctx, batcher));
                let r = futures::FutureExt::catch_unwind(run).await;
                batcher.done();
                r
            }
        }));
        let (steps, ()) = tokio::join!(runs, batcher.drive());
        let mut results: Vec<Option<JobResult>> = Vec::with_capacity(jobs.len());
        let mut finished = Vec::new();
        for (i, (job, step)) in jobs.iter().zip(steps).enumerate() {
            results.push(match step {
                Ok(Ok(executor::Step::Finished(mut f))) => {
                    finish::settle(&mut f);
                    finished.push((i, *f));
                    None
                }
                Ok(Ok(executor::Step::WaitForBill(bill))) => Some(
                    match self
                        .store
                        .wait_for_bill(job.clone(), bill, a5::payment_waits)
                        .await
                    {
                        Ok(()) => JobResult::Done(JobOutcome::Waiting),
                        Err(e) => JobResult::HostError(e),
                    },
                ),
                Ok(Err(e)) => Some(JobResult::HostError(e)),
                Err(panic) => Some(JobResult::Panicked(panic_message(Some(panic)))),
            });
        }
        let (slots, finished): (Vec<usize>, Vec<_>) = finished.into_iter().unzip();
        let outcomes: Vec<JobOutcome> = finished.iter().map(|f: &FinishedJob| f.outcome).collect();
        let stored = self.store.finish_all(finished).await;
        for (k, i) in slots.into_iter().enumerate() {
            results[i] = Some(match &stored {
                Ok(each) => match &each[k] {
                    Ok(true) => JobResult::Done(outcomes[k]),
                    Ok(false) => JobResult::Done(JobOutcome::Coalesced),
                    Err(e) => JobResult::HostError(anyhow::anyhow!("{e}")),
                },
                Err(e) => JobResult::HostError(anyhow::anyhow!("{e:#}")),
            });
        }
        let n = jobs.len() as u64;
        self.stats
            .job_ns
            .fetch_add(t.elapsed().as_nanos() as u64 * n, Ordering::Relaxed);
        self.stats.jobs.fetch_add(n, Ordering::Relaxed);
        jobs.into_iter()
            .zip(results)
            .map(|(j, r)| (j, r.expect("every job has a result")))
            .collect()
    }
}

/// This worker's groups in flight: each task's jobs.
type InFlight = Arc<std::sync::Mutex<HashMap<tokio::task::Id, Vec<Job>>>>;

/// A group of one connection's jobs claimed together, and the batch size
/// it was claimed for.
struct Group {
    jobs: Vec<Job>,
    size: usize,
}

/// How one job of a group ended.
enum JobResult {
    /// Finished (stored).
    Done(JobOutcome),
    /// The host could not finish it: it runs again.
    HostError(anyhow::Error),
    /// It panicked: failed, with the message.
    Panicked(String),
}

fn panic_message(p: Option<Box<dyn std::any::Any + Send>>) -> String {
    p.and_then(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
    })
    .unwrap_or_else(|| "a panic".into())
}

/// How often the worker logs each busy connection's queue.
pub const STATUS_LOG_EVERY: Duration = Duration::from_secs(30);

/// Why a connection's own budget paused it.
fn budget_spent(limits: &crate::model::LimitOverrides) -> String {
    let mut parts = Vec::new();
    if let Some(n) = limits.calls_per_minute {
        parts.push(format!("{n} a minute"));
    }
    if let Some(n) = limits.calls_per_day {
        parts.push(format!("{n} a day"));
    }
    format!(
        "the connection's call budget ({}) is spent",
        parts.join(", ")
    )
}

/// A time in ms since the epoch as RFC 3339, to the second.
pub fn ms_to_rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A unique run id (UUID v4): unique across processes and hosts sharing a
/// store, whenever they start.
/// The longest key or value of a connection's mappings: an ERP's account
/// codes, class and option names are far shorter.
const MAX_MAPPING_TEXT: usize = 255;

/// Whether a connection's setting `key` is the one a connector declares as
/// `declared`: the same name, or any name starting with what comes before a
/// declared name's final `*`.
fn setting_matches(declared: &str, key: &str) -> bool {
    match declared.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix),
        None => declared == key,
    }
}

/// A plugin version the registry holds, and the connections running it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginListing {
    #[serde(flatten)]
    pub version: crate::runtime::Listed,
    /// The connections that run this version now.
    pub connections: Vec<String>,
}

/// The file a connection's `plugin` names, when it names one by path.
fn plugin_file(plugin: &str) -> Option<std::path::PathBuf> {
    match crate::runtime::PluginRef::parse(plugin) {
        Ok(crate::runtime::PluginRef::File(f)) => Some(f),
        _ => None,
    }
}

/// Whether the plugin a connection names is a version of a built-in one
/// that must be granted a directory (contract 0.1 cannot say so itself).
fn needs_directory(plugin: &str) -> bool {
    match crate::runtime::PluginRef::parse(plugin) {
        Ok(crate::runtime::PluginRef::Named { name, .. }) => {
            crate::builtin::find(&name).is_some_and(|b| b.needs_directory)
        }
        _ => false,
    }
}

fn run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    /// Issue 7 item 13: run ids of two processes started in the same
    /// millisecond collided (`sync-<ms>-<per-process counter>`).
    #[test]
    fn run_ids_are_uuids() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| super::run_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(3) {
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        }
    }
}
