//! The store: SQLite through rusqlite, in WAL mode, with migrations. Nothing
//! else in the host touches SQL.
//!
//! Every public method is async; its SQL runs on the store's own thread,
//! which owns the connection, never on the async runtime's worker threads. Each method is one
//! transaction: a document and the jobs it causes, or a job's outcome (entry,
//! log line, attention item, next retry) land together or not at all.

mod access;
mod jobs;
mod payments;
mod queue;
mod records;
mod rows;
mod secrets;
mod tokens;

pub use access::{ApiToken, IdempotencyBegin};

pub use payments::{ChecksExhausted, FailedExport, FundingAccount, MAX_CHECK_NUMBER};
pub use queue::{ClaimPlan, ConnectionStatus, DueConnection, PausedBy};
pub use records::{JobContext, JobPlan, PaymentMerge, Recorded};
pub use rows::{
    Attention, AttentionChange, AttentionItem, AttentionKind, BillFacts, EntryRow, FinishedJob,
    Job, JobOutcome, JobState, LogRow, LoggedOperation, NewJob, PaymentWait, Priority, RunSummary,
    WaitingPayments,
};
pub use tokens::Grant;

use crate::seal::Keyring;
use anyhow::Context as _;
use rusqlite::Connection as Db;
use std::path::Path;
use std::sync::Arc;

/// The migrations, in order; `user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
    include_str!("schema.sql"),
    include_str!("schema_2.sql"),
    include_str!("schema_3.sql"),
    include_str!("schema_4.sql"),
    include_str!("schema_5.sql"),
    include_str!("schema_6.sql"),
    include_str!("schema_7.sql"),
    include_str!("schema_8.sql"),
    include_str!("schema_9.sql"),
    include_str!("schema_10.sql"),
    include_str!("schema_11.sql"),
];

/// A handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    requests: std::sync::mpsc::Sender<Request>,
    busy: Arc<std::sync::atomic::AtomicU64>,
    calls: Arc<std::sync::atomic::AtomicU64>,
    path: Option<Arc<std::path::PathBuf>>,
    key_file: Option<Arc<std::path::PathBuf>>,
    // Declared after `requests`: the last handle drops its sender first, so
    // the thread sees the channel close, and then waits for it.
    #[allow(dead_code)] // held for its Drop
    closer: Arc<Closer>,
}

/// Waits for the store's thread when the last handle goes: dropping the store
/// closes the database file (its WAL checkpointed) before the drop returns,
/// so a process, or a test, that opens the file next sees all of it.
struct Closer(std::sync::Mutex<Option<std::thread::JoinHandle<()>>>);

impl Drop for Closer {
    fn drop(&mut self) {
        let handle = self.0.get_mut().ok().and_then(|h| h.take());
        if let Some(handle) = handle
            && handle.thread().id() != std::thread::current().id()
        {
            let _ = handle.join();
        }
    }
}

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long to wait for another process's write lock before a
    /// transaction fails.
    pub busy_timeout: std::time::Duration,
    /// The keys secrets are sealed with (O2). `None`: the key file beside
    /// the store (`<store>.seal-key`), made when missing; an in-memory
    /// store gets a key kept nowhere.
    pub keys: Option<Arc<Keyring>>,
    /// The file `keys` were read from, if any: kept from plugins (P8).
    pub key_file: Option<std::path::PathBuf>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: std::time::Duration::from_secs(10),
            keys: None,
            key_file: None,
        }
    }
}

/// The key file used when none is given: `<store>.seal-key`.
pub fn default_key_file(store: &Path) -> std::path::PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".seal-key");
    name.into()
}

/// Work for the store's thread: it runs (given the database) or is refused
/// (given `None`, when no transaction could begin), then, once its batch is
/// committed (or not), the returned closure answers the caller.
type Request = Box<dyn FnOnce(Option<&mut Db>) -> Answer + Send>;
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Most requests one commit covers.
const MAX_BATCH: usize = 256;

/// The store's thread: group commit. The requests waiting at any moment run
/// in one transaction, each in a savepoint of its own (so one that fails
/// rolls back alone), and are answered only after the commit, so no caller
/// hears "stored" before it is.
fn serve(mut db: Db, inbox: std::sync::mpsc::Receiver<Request>) {
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        // No transaction, no work: run outside one, a request's statements
        // would commit one by one while its caller hears "not stored".
        if let Err(e) = db.execute_batch("BEGIN IMMEDIATE") {
            let why = format!(
                "could not begin a transaction (another process holds the store's write lock?): {e}"
            );
            for r in batch {
                r(None)(Err(why.clone()));
            }
            continue;
        }
        let answers: Vec<Answer> = batch.into_iter().map(|r| r(Some(&mut db))).collect();
        let committed = db.execute_batch("COMMIT").map_err(|e| e.to_string());
        if committed.is_err() {
            let _ = db.execute_batch("ROLLBACK");
        }
        for answer in answers {
            answer(committed.clone());
        }
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        Self::open_with(path, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(path: &Path, mut options: StoreOptions) -> anyhow::Result<Store> {
        if options.keys.is_none() {
            let file = default_key_file(path);
            let (keys, made) = Keyring::from_file_or_new(&file)?;
            if made {
                tracing::warn!(
                    key_file = %file.display(),
                    "made a new seal key beside the store: secrets in the store are sealed with it. Keep it apart from the store in production (--seal-key-file or LEDGERBRIDGE_SEAL_KEY)"
                );
            }
            options.keys = Some(Arc::new(keys));
            options.key_file = Some(file);
        }
        let db = Db::open(path).with_context(|| format!("opening the store {}", path.display()))?;
        // The file itself, absolute: the engine keeps plugins' directories
        // away from it (P8).
        let file = std::path::absolute(path).ok();
        Self::setup(db, options, file)
    }

    /// A private in-memory database, for tests and the demo.
    pub fn open_in_memory() -> anyhow::Result<Store> {
        let options = StoreOptions {
            keys: Some(Arc::new(Keyring::ephemeral())),
            ..StoreOptions::default()
        };
        Self::setup(Db::open_in_memory()?, options, None)
    }

    /// The file the seal keys were read from, when they were.
    pub fn key_file(&self) -> Option<&Path> {
        self.key_file.as_deref().map(|p| p.as_path())
    }

    /// The database file, when the store has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref().map(|p| p.as_path())
    }

    fn setup(
        mut db: Db,
        options: StoreOptions,
        path: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Store> {
        // WAL with synchronous=NORMAL: a commit survives the process being
        // killed at any point (the crash test does that); only an OS crash can
        // lose the last commits, never corrupt the file.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        // Checkpoint every ~16 MiB of WAL rather than 4 MiB: each checkpoint
        // syncs the database file, and bulk runs write a lot.
        db.pragma_update(None, "wal_autocheckpoint", 4000)?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(options.busy_timeout)?;
        db.set_prepared_statement_cache_capacity(128);
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tx = db.transaction()?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)
                .with_context(|| format!("running store migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        let keys = options
            .keys
            .clone()
            .unwrap_or_else(|| Arc::new(Keyring::ephemeral()));
        // Secrets kept in clear by an earlier version, or sealed under a
        // key since rotated, are sealed under the current key now.
        let resealed =
            secrets::reseal_all(&mut db, &keys).context("sealing the store's secrets")?;
        if resealed > 0 {
            tracing::info!(
                resealed,
                key = keys.current_id(),
                "sealed the store's secrets under the current key"
            );
        }
        // One thread owns the connection and runs requests in order: no lock
        // to contend for, and the async workers never block on SQLite.
        let (requests, inbox) = std::sync::mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("ledgerbridge-store".into())
            .spawn(move || {
                secrets::install(keys);
                serve(db, inbox)
            })
            .context("starting the store's thread")?;
        Ok(Store {
            requests,
            closer: Arc::new(Closer(std::sync::Mutex::new(Some(thread)))),
            busy: Arc::default(),
            calls: Arc::default(),
            path: path.map(Arc::new),
            key_file: options
                .key_file
                .map(|f| Arc::new(std::path::absolute(&f).unwrap_or(f))),
        })
    }

    /// Runs `f` on the database on the blocking pool.
    async fn with<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> anyhow::Result<R> + Send + 'static,
    {
        let (busy, calls) = (self.busy.clone(), self.calls.clone());
        let (answer, reply) = tokio::sync::oneshot::channel();
        self.requests
            .send(Box::new(move |db: Option<&mut Db>| -> Answer {
                let Some(db) = db else {
                    return Box::new(move |refused: Result<(), String>| {
                        let why = refused.err().unwrap_or_default();
                        let _ = answer.send(Err(anyhow::Error::new(StoreBusy(why))));
                    });
                };
                let t = std::time::Instant::now();
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(db)))
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a store request panicked")));
                busy.fetch_add(
                    t.elapsed().as_nanos() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Box::new(move |committed: Result<(), String>| {
                    let r = match committed {
                        Ok(()) => r,
                        Err(e) => Err(anyhow::Error::new(StoreError(format!(
                            "could not commit: {e}"
                        )))),
                    };
                    let _ = answer.send(r);
                })
            }))
            .map_err(|_| StoreError("its thread has stopped".into()))?;
        reply
            .await
            .context("the store's thread dropped a request")?
    }
}

impl Store {
    /// Calls made, and the time the database was held by them.
    pub fn busy(&self) -> (u64, std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.calls.load(Relaxed),
            std::time::Duration::from_nanos(self.busy.load(Relaxed)),
        )
    }
}

/// A write the store refused because of what was asked (a field's value,
/// a subject that is not there): the caller's to fix, never the host's
/// failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
}

/// A [`Refused::Invalid`] of `field`.
pub(crate) fn invalid(field: &str, message: impl Into<String>) -> anyhow::Error {
    Refused::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
    .into()
}

/// The store failed as a whole (no transaction, no commit, no thread): the
/// host's own failure, never the ERP's.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the store failed: {0}")]
pub struct StoreError(pub String);

/// The store could not begin a transaction in time (another process held
/// its write lock past the busy timeout): nothing was done, and the same
/// request can be made again.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the store is busy: {0}")]
pub struct StoreBusy(pub String);

/// Runs a statement, prepared once per connection and cached.
pub(crate) fn exec(db: &Db, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    db.prepare_cached(sql)?.execute(params)
}

/// Reads one row with a cached statement.
pub(crate) fn query_row<T>(
    db: &Db,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    db.prepare_cached(sql)?.query_row(params, f)
}

/// Milliseconds since the Unix epoch: the store's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropping the last handle closes the file before the drop returns: the
    /// WAL is checkpointed and gone, so whoever opens the file next sees all
    /// of it (a test that compared the file's bytes once raced the thread).
    #[tokio::test]
    async fn dropping_the_store_closes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        for i in 0..20 {
            let store = Store::open_with(&path, StoreOptions::default()).unwrap();
            let copy = store.clone();
            copy.add_tenant(&format!("t{i}")).await.unwrap();
            drop(copy);
            drop(store);
            assert!(
                !dir.path().join("store.db-wal").exists(),
                "the WAL outlived the store (round {i})"
            );
        }
    }

    /// Migration 5 gives the items recorded before it their kind, from the
    /// words the engine wrote until then.
    #[test]
    fn migration_5_gives_existing_attention_items_a_kind() {
        let db = Db::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..4] {
            db.execute_batch(sql).unwrap();
        }
        let messages = [
            ("d1", "blocked: the bill entry could not be synced: x"),
            (
                "d2",
                "quarantined: the plugin crashed the worker (3 workers stopped ...)",
            ),
            ("d3", "gave up after 6 attempts: the ERP is unavailable"),
            ("d4", "the host failed while running this sync: a panic"),
            (
                "d5",
                "lines[0].account_code: GL account 6100 does not exist",
            ),
        ];
        for (doc, message) in messages {
            db.execute(
                "INSERT INTO attention (connection_id, tenant_id, document_id, target, message, hint, created_at)
                 VALUES ('c', 't', ?1, 'bill', ?2, 'h', 0)",
                rusqlite::params![doc, message],
            )
            .unwrap();
        }
        db.execute_batch(MIGRATIONS[4]).unwrap();
        let kinds: Vec<String> = db
            .prepare("SELECT kind FROM attention ORDER BY document_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            kinds,
            ["blocked", "quarantined", "gave_up", "host_fault", "failed"]
        );
    }

    /// Migration 6 renames to the SPEC's words and keeps every row.
    #[test]
    fn migration_6_renames_and_keeps_the_log_and_entries() {
        let db = Db::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..5] {
            db.execute_batch(sql).unwrap();
        }
        db.execute_batch(
            "PRAGMA foreign_keys = OFF;
             INSERT INTO sync_log (tenant_id, connection_id, document_id, at, trigger, target, operations,
               outcome, erp_id, error, plugin_log) VALUES ('t', 'c', 'd', 1, 'manual', 'bill', '[]', 'created', 'E1', NULL, '[]');
             INSERT INTO entries (connection_id, target, subject_id, document_id, erp_id, intent_key, updated_at)
               VALUES ('c', 'bill', 'd', 'd', 'E1', 'k1', 1);",
        )
        .unwrap();
        db.execute_batch(MIGRATIONS[5]).unwrap();
        let logged: String = db
            .query_row("SELECT entry_id FROM integration_log", [], |r| r.get(0))
            .unwrap();
        let entry: (String, String) = db
            .query_row("SELECT entry_id, idempotency_key FROM entries", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            (logged.as_str(), entry.0.as_str(), entry.1.as_str()),
            ("E1", "E1", "k1")
        );
    }
}
