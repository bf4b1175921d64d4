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
    /// From its name in SQL.
    pub fn parse(s: &str) -> Option<JobState> {
        Some(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "waiting" => JobState::Waiting,
            "blocked" => JobState::Blocked,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => return None,
        })
    }

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
    pub entry_id: Option<String>,
    pub version: Option<String>,
    pub state: Option<String>,
    /// Hash of what was last sent (D3).
    pub content_hash: Option<String>,
    /// Idempotency key of the create under way or done (D2).
    pub idempotency_key: Option<String>,
    /// The entry is booked in the ERP: never updated or replaced (B2).
    pub booked: bool,
    pub booked_reason: Option<String>,
}

/// One operation of a sync attempt, for the log (L1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LoggedOperation {
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
    /// Not started: its run was cancelled (M2).
    Cancelled,
    /// Merged into another job of the same document and target, or its
    /// attempt discarded because another worker took the job over: not a
    /// result of its own.
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
            JobOutcome::Cancelled => "cancelled",
        }
    }

    /// From its name in SQL.
    pub fn parse(s: &str) -> Option<JobOutcome> {
        Some(match s {
            "created" => JobOutcome::Created,
            "updated" => JobOutcome::Updated,
            "unchanged" => JobOutcome::Unchanged,
            "skipped_booked" => JobOutcome::SkippedBooked,
            "retrying" => JobOutcome::Retrying,
            "waiting" => JobOutcome::Waiting,
            "blocked" => JobOutcome::Blocked,
            "failed" => JobOutcome::Failed,
            "skipped" => JobOutcome::Skipped,
            "coalesced" => JobOutcome::Coalesced,
            "cancelled" => JobOutcome::Cancelled,
            _ => return None,
        })
    }

    /// The state a job ending with this outcome is left in.
    pub fn state(self) -> JobState {
        match self {
            JobOutcome::Retrying => JobState::Queued,
            JobOutcome::Waiting => JobState::Waiting,
            JobOutcome::Blocked => JobState::Blocked,
            JobOutcome::Failed => JobState::Failed,
            JobOutcome::Created
            | JobOutcome::Updated
            | JobOutcome::Unchanged
            | JobOutcome::SkippedBooked
            | JobOutcome::Skipped
            | JobOutcome::Coalesced
            | JobOutcome::Cancelled => JobState::Done,
        }
    }
}

/// What kind of item of Requires attention (L2) a person is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// A sync failed in a way a person must fix (a mapping, a validation,
    /// the connection's settings or plugin).
    Failed,
    /// A transient failure went on past the last retry.
    GaveUp,
    /// A payment blocked because its bill entry could not be synced (A5).
    Blocked,
    /// A job that kept crashing its workers, no longer run by itself (P7).
    Quarantined,
    /// The host itself failed while running the sync.
    HostFault,
}

impl AttentionKind {
    /// Every kind, in the order a person reads them.
    pub const ALL: [AttentionKind; 5] = [
        AttentionKind::Failed,
        AttentionKind::GaveUp,
        AttentionKind::Blocked,
        AttentionKind::Quarantined,
        AttentionKind::HostFault,
    ];

    /// The name in SQL.
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionKind::Failed => "failed",
            AttentionKind::GaveUp => "gave_up",
            AttentionKind::Blocked => "blocked",
            AttentionKind::Quarantined => "quarantined",
            AttentionKind::HostFault => "host_fault",
        }
    }

    /// From its name in SQL (unknown names read as `failed`).
    pub fn parse(s: &str) -> AttentionKind {
        match s {
            "gave_up" => AttentionKind::GaveUp,
            "blocked" => AttentionKind::Blocked,
            "quarantined" => AttentionKind::Quarantined,
            "host_fault" => AttentionKind::HostFault,
            _ => AttentionKind::Failed,
        }
    }
}

/// An item of Requires attention as the engine words it: what went wrong
/// and how to fix it (L2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attention {
    pub kind: AttentionKind,
    pub message: String,
    pub hint: String,
}

impl Attention {
    /// An item of `kind`.
    pub fn new(kind: AttentionKind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Attention {
            kind,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// What a finished job does to the document's Requires attention item for
/// its target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AttentionChange {
    /// Leave it as it is (a retry, a wait, a skip).
    #[default]
    Leave,
    /// Set it (replacing any).
    Set(Attention),
    /// Resolve it: the document synced.
    Resolve,
}

/// What a finished bill job does to the document's payment jobs waiting
/// for it (A5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WaitingPayments {
    /// Leave them waiting.
    #[default]
    Leave,
    /// Queue them (one job covers them all) and resolve their blocked item.
    Release,
    /// Block them with this reason (also their jobs' error) and hint.
    Block(Attention),
}

/// What the store knows, inside its transaction, about a payment's bill job
/// when the payment must wait for it (A5).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BillFacts {
    /// A bill job for the document is queued or running.
    pub active: bool,
    /// The payment's job belongs to a manual or bulk run in which the bill
    /// already failed (or was skipped), and no bill job is active: that
    /// bill job's error.
    pub failed_in_run: Option<String>,
}

/// What the engine decided for a payment whose bill entry is missing (A5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentWait {
    /// The payment waits: its job's error says `reason`, its log line
    /// `log_note`; with `queue_bill`, the bill job is queued too.
    Wait {
        queue_bill: bool,
        reason: String,
        log_note: String,
    },
    /// The payment is blocked (the run's bill failed).
    Block(Attention),
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
    pub operations: Vec<LoggedOperation>,
    /// The plugin's log lines, as JSON.
    pub plugin_log: String,
    /// The plugin version that ran the operations (P3).
    pub plugin: Option<crate::model::PluginVersion>,
    /// What happens to the document's Requires attention item for the
    /// job's target (L2).
    pub attention: AttentionChange,
    /// For a bill job: what happens to the payments waiting for it (A5).
    pub waiting_payments: WaitingPayments,
    /// Payments whose export failed (`Some(error)`) or succeeded (`None`):
    /// their Failed to export items are set or cleared (L3).
    pub failed_exports: Vec<(String, Option<String>)>,
    /// Whether this was an attempt that counts toward the retry limit (R1);
    /// not when the host's own call budget held its call back.
    pub attempted: bool,
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
            plugin: None,
            attention: AttentionChange::Leave,
            waiting_payments: WaitingPayments::Leave,
            failed_exports: Vec::new(),
            attempted: true,
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
    pub operations: Vec<LoggedOperation>,
    pub outcome: String,
    pub entry_id: Option<String>,
    pub error: Option<String>,
    pub plugin_log: serde_json::Value,
    /// The plugin version that ran the attempt's operations (P3).
    pub plugin: Option<crate::model::PluginVersion>,
}

/// An item of Requires attention (L2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttentionItem {
    pub kind: AttentionKind,
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
    /// Not started because the run was cancelled.
    pub cancelled: usize,
}

impl RunSummary {
    /// Counts `n` jobs of a run in `state` with `outcome` (M4). A coalesced
    /// job merged into another of the run: it is not a result of its own.
    pub fn count(&mut self, state: Option<JobState>, outcome: Option<JobOutcome>, n: usize) {
        if outcome == Some(JobOutcome::Coalesced) {
            return;
        }
        self.total += n;
        match (state, outcome) {
            (Some(JobState::Done), Some(JobOutcome::Created)) => self.created += n,
            (Some(JobState::Done), Some(JobOutcome::Updated)) => self.updated += n,
            (Some(JobState::Done), Some(JobOutcome::Unchanged)) => self.unchanged += n,
            (Some(JobState::Done), Some(JobOutcome::SkippedBooked)) => self.skipped_booked += n,
            (Some(JobState::Done), Some(JobOutcome::Skipped)) => self.skipped += n,
            (Some(JobState::Done), Some(JobOutcome::Cancelled)) => self.cancelled += n,
            (Some(JobState::Failed), _) => self.failed += n,
            (Some(JobState::Blocked), _) => self.blocked += n,
            (Some(JobState::Waiting), _) => self.waiting += n,
            _ => self.pending += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for o in [
            JobOutcome::Created,
            JobOutcome::Updated,
            JobOutcome::Unchanged,
            JobOutcome::SkippedBooked,
            JobOutcome::Retrying,
            JobOutcome::Waiting,
            JobOutcome::Blocked,
            JobOutcome::Failed,
            JobOutcome::Skipped,
            JobOutcome::Coalesced,
            JobOutcome::Cancelled,
        ] {
            assert_eq!(JobOutcome::parse(o.as_str()), Some(o));
        }
        for s in [
            JobState::Queued,
            JobState::Running,
            JobState::Waiting,
            JobState::Blocked,
            JobState::Done,
            JobState::Failed,
        ] {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        for k in [
            AttentionKind::Failed,
            AttentionKind::GaveUp,
            AttentionKind::Blocked,
            AttentionKind::Quarantined,
            AttentionKind::HostFault,
        ] {
            assert_eq!(AttentionKind::parse(k.as_str()), k);
        }
    }

    /// M4: a coalesced job is no result; each other job counts once.
    #[test]
    fn m4_a_run_counts_each_result_once_and_never_a_coalesced_job() {
        let mut s = RunSummary::default();
        s.count(Some(JobState::Done), Some(JobOutcome::Coalesced), 5);
        assert_eq!(s, RunSummary::default());
        s.count(Some(JobState::Done), Some(JobOutcome::Created), 2);
        s.count(Some(JobState::Done), Some(JobOutcome::SkippedBooked), 1);
        s.count(Some(JobState::Failed), Some(JobOutcome::Failed), 1);
        s.count(Some(JobState::Blocked), Some(JobOutcome::Blocked), 1);
        s.count(Some(JobState::Queued), Some(JobOutcome::Retrying), 1);
        s.count(Some(JobState::Queued), None, 1);
        assert_eq!(
            s,
            RunSummary {
                total: 7,
                pending: 2,
                created: 2,
                skipped_booked: 1,
                failed: 1,
                blocked: 1,
                ..RunSummary::default()
            }
        );
    }
}
