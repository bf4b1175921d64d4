//! The store: SQLite through rusqlite, in WAL mode, with migrations. Nothing
//! else in the host touches SQL.
//!
//! Every public method is async and runs its SQL on tokio's blocking pool,
//! never on the async runtime's worker threads. Each method is one
//! transaction: a document and the jobs it causes, or a job's outcome (entry,
//! log line, attention item, next retry) land together or not at all.

mod jobs;
mod records;
mod rows;

pub use records::JobPlan;
pub use rows::{
    AttentionItem, EntryRow, FinishedJob, Job, JobOutcome, JobState, LogRow, NewJob, Operation,
    RunSummary,
};

use anyhow::Context as _;
use rusqlite::Connection as Db;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The migrations, in order; `user_version` records how many have run.
const MIGRATIONS: &[&str] = &[include_str!("schema.sql")];

/// A handle on the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Arc<Mutex<Db>>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        let db = Db::open(path).with_context(|| format!("opening the store {}", path.display()))?;
        Self::setup(db)
    }

    /// A private in-memory database, for tests and the demo.
    pub fn open_in_memory() -> anyhow::Result<Store> {
        Self::setup(Db::open_in_memory()?)
    }

    fn setup(mut db: Db) -> anyhow::Result<Store> {
        // WAL with synchronous=NORMAL: a commit survives the process being
        // killed at any point (the crash test does that); only an OS crash can
        // lose the last commits, never corrupt the file.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tx = db.transaction()?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(sql)
                .with_context(|| format!("running store migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        }
        tx.commit()?;
        Ok(Store {
            db: Arc::new(Mutex::new(db)),
        })
    }

    /// Runs `f` on the database on the blocking pool.
    async fn with<R, F>(&self, f: F) -> anyhow::Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Db) -> anyhow::Result<R> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = db.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut db)
        })
        .await
        .context("the store's blocking task failed")?
    }
}

/// Milliseconds since the Unix epoch: the store's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
