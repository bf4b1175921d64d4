//! What the store takes and gives back.

use crate::model::{Target, Trigger};
use serde::Serialize;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Due at `due_at`.
    Queued,
    /// Claimed by a worker whose lease has not run out.
    Running,
    /// A payment waiting for its bill entry (A5).
    Waiting,
    /// A payment whose bill could not be synced; waits for a person.
    Blocked,
    /// Finished with an entry created, updated, unchanged or skipped.
    Done,
    /// Finished with a failure a person must look at.
    Failed,
}

impl JobState {
    /// The name in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Waiting => "waiting",
            JobState::Blocked => "blocked",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }
}

/// A job's place in its connection's queue (R5): claims take a
/// connection's due jobs in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// A payment whose funding completed (A4): before everything else.
    FundingComplete = 0,
    /// An automatic sync (or a person's manual one).
    Automatic = 1,
    /// Bulk re-sync work: after everything else on its connection.
    Bulk = 2,
}

impl Priority {
    /// The value in SQL.
    pub fn as_i64(self) -> i64 {
        self as i64
    }

    /// From its SQL value (unknown values sort as automatic).
    pub fn from_i64(v: i64) -> Priority {
        match v {
            0 => Priority::FundingComplete,
            2 => Priority::Bulk,
            _ => Priority::Automatic,
        }
    }

    /// The name operators see.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::FundingComplete => "funding_complete",
            Priority::Automatic => "automatic",
            Priority::Bulk => "bulk",
        }
    }
}

/// A job to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub connection_id: String,
    pub tenant_id: String,
    pub document_id: String,
    pub target: Target,
    pub trigger: Trigger,
    /// Send the update even when the content hash says the ERP has it (D3).
    pub force: bool,
    /// Milliseconds since the epoch.
    pub due_at: i64,
    /// The manual or bulk run the job belongs to, for its results.
    pub run_id: Option<String>,
    /// Its place in the connection's queue (decided by the engine).
    pub priority: Priority,
}

/// A claimed job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub connection_id: String,
    pub tenant_id: String,
    pub document_id: String,
    pub target: Target,
    pub trigger: Trigger,
    pub force: bool,
    /// Attempts before this one.
    pub attempts: u32,
    pub run_id: Option<String>,
    /// The worker holding the job's lease.
    pub lease_owner: String,
    /// Its place in the connection's queue.
    pub priority: Priority,
}

/// The host's record of an entry in one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EntryRow {
    pub connection_id: String,
    /// `bill` or `payment`.
    pub target: String,
    /// The document's id (bill entries) or the payment's id (payment entries).
    pub subject_id: String,
    pub document_id: String,
    /// The ERP's id; `None` while only an intent is recorded.
    pub erp_id: Option<String>,
    pub version: Option<String>,
    pub state: Option<String>,
    /// Hash of what was last sent (D3).
    pub content_hash: Option<String>,
    /// Idempotency key of the create under way or done (D2).
    pub intent_key: Option<String>,
    /// The entry is booked in the ERP: never updated or replaced (B2).
    pub booked: bool,
    pub booked_reason: Option<String>,
}

/// One operation of a sync attempt, for the log (L1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Operation {
    /// `lookup-bill`, `create-bill`, ...
    pub operation: String,
    /// What it answered, in a few words.
    pub result: String,
}

/// How a job ended, as the executor decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Created,
    Updated,
    Unchanged,
    /// Not synced: the entry is booked in the ERP.
    SkippedBooked,
    /// Will be tried again at `retry_at`.
    Retrying,
    /// A payment waiting for its bill.
    Waiting,
    /// A payment whose bill failed.
    Blocked,
    Failed,
    /// Not synced, on purpose: the error field says why (a draft, a payment
    /// not due yet). Nothing was sent.
    Skipped,
    /// Merged into another job of the same document and target.
    Coalesced,
}

impl JobOutcome {
    /// The name in SQL, the CLI and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Created => "created",
            JobOutcome::Updated => "updated",
            JobOutcome::Unchanged => "unchanged",
            JobOutcome::SkippedBooked => "skipped_booked",
            JobOutcome::Retrying => "retrying",
            JobOutcome::Waiting => "waiting",
            JobOutcome::Blocked => "blocked",
            JobOutcome::Failed => "failed",
            JobOutcome::Skipped => "skipped",
            JobOutcome::Coalesced => "coalesced",
        }
    }
}

/// Everything a finished attempt changes, stored in one transaction.
#[derive(Debug, Clone)]
pub struct FinishedJob {
    pub job: Job,
    pub outcome: JobOutcome,
    /// What went wrong, in plain words.
    pub error: Option<String>,
    /// For [`JobOutcome::Retrying`]: when.
    pub retry_at: Option<i64>,
    /// Entries as they now are (upserted), as the attempt learnt them.
    pub entries: Vec<EntryRow>,
    /// Entries the ERP no longer has: (target, subject) mappings to forget.
    pub forget: Vec<(String, String)>,
    pub operations: Vec<Operation>,
    /// The plugin's log lines, as JSON.
    pub plugin_log: String,
    /// A person must act: (message, hint). `None` with a success resolves
    /// the document's item for this target.
    pub attention: Option<(String, String)>,
    /// Payments whose export failed (`Some(error)`) or succeeded (`None`):
    /// their Failed to export items are set or cleared (L3).
    pub failed_exports: Vec<(String, Option<String>)>,
}

impl FinishedJob {
    /// `job` ended with `outcome` and nothing else to record yet.
    pub fn new(job: Job, outcome: JobOutcome) -> FinishedJob {
        FinishedJob {
            job,
            outcome,
            error: None,
            retry_at: None,
            entries: Vec::new(),
            forget: Vec::new(),
            operations: Vec::new(),
            plugin_log: "[]".into(),
            attention: None,
            failed_exports: Vec::new(),
        }
    }
}

/// A line of a document's integration log (L1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogRow {
    pub at: i64,
    pub connection_id: String,
    pub document_id: String,
    pub trigger: String,
    pub target: String,
    pub operations: Vec<Operation>,
    pub outcome: String,
    pub erp_id: Option<String>,
    pub error: Option<String>,
    pub plugin_log: serde_json::Value,
}

/// An item of Requires attention (L2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttentionItem {
    pub connection_id: String,
    pub tenant_id: String,
    pub document_id: String,
    pub target: String,
    pub message: String,
    pub hint: String,
    pub created_at: i64,
}

/// Where a manual or bulk run stands (M4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub total: usize,
    pub pending: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub skipped_booked: usize,
    /// Not synced on purpose, each with its reason (a draft, a payment not due).
    pub skipped: usize,
    pub failed: usize,
    /// Payments blocked because their bill failed (the bill counts as failed).
    pub blocked: usize,
    pub waiting: usize,
}
