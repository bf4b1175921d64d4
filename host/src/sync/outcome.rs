//! Folding an attempt's results into the job's outcome: the best of its
//! subjects' results, or its first failure, classified (R1, R3) into a
//! retry or an item of Requires attention (L2). Pure.

use super::mapping::MappingError;
use super::plain::{Verdict, verdict};
use super::retry::RetryPolicy;
use crate::runtime::{CallError, LogLine, describe_connector_error};
use crate::store::{
    Attention, AttentionChange, AttentionKind, EntryRow, FinishedJob, Job, JobOutcome,
    LoggedOperation, now_ms,
};

/// Why a subject was not synced.
#[derive(Debug)]
pub enum Failure {
    /// The plugin call failed (the ERP's answer, or the plugin's fault).
    Call(CallError),
    /// The document cannot be mapped for the connection.
    Mapping(MappingError),
    /// The host itself failed (its store): not the ERP's fault nor the
    /// plugin's; the job is left to be run again.
    Host(anyhow::Error),
}

/// One subject brought in line (M3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub outcome: JobOutcome,
    /// The host's record of the entry, as the attempt left it.
    pub row: EntryRow,
    /// The ERP no longer had the entry the host knew of.
    pub forgot: bool,
}

/// A finished job with nothing else to record yet.
pub fn finished(job: &Job, outcome: JobOutcome) -> FinishedJob {
    FinishedJob::new(job.clone(), outcome)
}

/// A job failed before any call, in a way a person must fix.
pub fn failed(job: &Job, message: String, hint: &str) -> FinishedJob {
    let mut f = finished(job, JobOutcome::Failed);
    f.attention =
        AttentionChange::Set(Attention::new(AttentionKind::Failed, message.clone(), hint));
    f.error = Some(message);
    f
}

/// The connection's plugin could not be loaded at run time (its file being
/// rebuilt or replaced, a version removed): retried as an ERP that is down
/// is, then Requires attention. (A connection is only stored when its
/// plugin loads, so this is usually a passing state.)
pub fn plugin_unavailable(
    retry: &RetryPolicy,
    job: &Job,
    message: String,
    hint: &str,
) -> FinishedJob {
    if job.attempts + 1 < retry.max_attempts {
        let mut f = finished(job, JobOutcome::Retrying);
        let wait = retry.backoff(job.attempts, None);
        f.retry_at = Some(now_ms().saturating_add(wait.as_millis().min(i64::MAX as u128) as i64));
        f.error = Some(format!(
            "{message} (attempt {} of {}, next in {wait:.1?})",
            job.attempts + 1,
            retry.max_attempts
        ));
        return f;
    }
    let text = format!("gave up after {} attempts: {message}", job.attempts + 1);
    let mut f = finished(job, JobOutcome::Failed);
    f.error = Some(text.clone());
    f.attention = AttentionChange::Set(Attention::new(AttentionKind::GaveUp, text, hint));
    f
}

/// A job not run, on purpose, with its reason (M4).
pub fn skipped(job: &Job, reason: String) -> FinishedJob {
    let mut f = finished(job, JobOutcome::Skipped);
    f.error = Some(reason);
    f
}

/// Folds the subjects' results into one outcome for `job`; `plugin` names
/// the connector in a hint.
pub fn conclude(
    retry: &RetryPolicy,
    job: &Job,
    plugin: &str,
    operations: Vec<LoggedOperation>,
    logs: Vec<LogLine>,
    results: Vec<Result<Synced, Failure>>,
) -> FinishedJob {
    let mut f = finished(job, JobOutcome::Unchanged);
    f.operations = operations;
    f.plugin_log = serde_json::to_string(&logs).unwrap_or_else(|_| "[]".into());
    let rank = |o: JobOutcome| match o {
        JobOutcome::Created => 3,
        JobOutcome::Updated => 2,
        JobOutcome::SkippedBooked => 1,
        _ => 0,
    };
    let mut failure = None;
    for r in results {
        match r {
            Ok(Synced {
                outcome,
                row,
                forgot,
            }) => {
                if forgot && row.entry_id.is_none() {
                    f.forget.push((row.target.clone(), row.subject_id.clone()));
                }
                if rank(outcome) > rank(f.outcome) {
                    f.outcome = outcome;
                }
                f.entries.push(row);
            }
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if f.outcome == JobOutcome::SkippedBooked {
        let reason = f
            .entries
            .iter()
            .find_map(|e| e.booked_reason.clone())
            .unwrap_or_default();
        f.error = Some(format!(
            "not synced: the entry is booked in the ERP ({reason})"
        ));
    }
    let Some(failure) = failure else { return f };
    let mut kind = AttentionKind::Failed;
    let (verdict, message) = match failure {
        Failure::Mapping(m) => (
            Verdict::Attention {
                message: format!("{}: {}", m.field, m.message),
                hint: m.hint,
            },
            None,
        ),
        Failure::Call(e) => {
            let v = verdict(&e);
            (v, Some(e))
        }
        Failure::Host(e) => {
            kind = AttentionKind::HostFault;
            (
                Verdict::Attention {
                    message: format!("the host failed: {e:#}"),
                    hint: "Check the host's store and logs, then re-sync.".into(),
                },
                None,
            )
        }
    };
    let plugin_at_fault = matches!(message, Some(CallError::Fault(_)));
    // A call the host's own budget held back reached neither the plugin
    // nor the ERP: it is retried when the budget allows, and is no attempt
    // toward the retry limit (R1, R2).
    if let (Some(CallError::HeldBack(after)), Verdict::Retry { message: m, .. }) =
        (&message, &verdict)
    {
        f.outcome = JobOutcome::Retrying;
        f.attempted = false;
        f.retry_at = Some(now_ms().saturating_add(after.as_millis().min(i64::MAX as u128) as i64));
        f.error = Some(format!("{m} (not an attempt; next in {after:.1?})"));
        return f;
    }
    match verdict {
        Verdict::Retry { after, message: m } if job.attempts + 1 < retry.max_attempts => {
            f.outcome = JobOutcome::Retrying;
            let wait = retry.backoff(job.attempts, after);
            f.retry_at =
                Some(now_ms().saturating_add(wait.as_millis().min(i64::MAX as u128) as i64));
            f.error = Some(format!(
                "{m} (attempt {} of {}, next in {wait:.1?})",
                job.attempts + 1,
                retry.max_attempts
            ));
        }
        Verdict::Retry { message: m, .. } => {
            f.outcome = JobOutcome::Failed;
            let text = format!("gave up after {} attempts: {m}", job.attempts + 1);
            f.error = Some(text.clone());
            let hint = if plugin_at_fault {
                format!(
                    "The {plugin} connector plugin kept failing (not the ERP): check its deadline and memory limits in the connection, or report it to the plugin's author; then re-sync."
                )
            } else {
                "The ERP kept failing for a while; check its status page and the connection, then re-sync.".into()
            };
            f.attention = AttentionChange::Set(Attention::new(AttentionKind::GaveUp, text, hint));
        }
        Verdict::Attention { message: m, hint } => {
            f.outcome = JobOutcome::Failed;
            f.error = Some(m.clone());
            f.attention = AttentionChange::Set(Attention::new(kind, m, hint));
        }
    }
    if let Some(CallError::Connector(c)) = &message {
        tracing::debug!(
            job = job.id,
            "connector answered {}",
            describe_connector_error(c)
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Target, Trigger};
    use crate::store::Priority;
    use std::time::Duration;

    fn job(attempts: u32) -> Job {
        Job {
            id: 1,
            connection_id: "c".into(),
            tenant_id: "t".into(),
            document_id: "d".into(),
            target: Target::Bill,
            trigger: Trigger::Approved,
            force: false,
            attempts,
            run_id: None,
            lease_owner: "w".into(),
            priority: Priority::Automatic,
        }
    }

    /// Finding of the issue 9 attack (R1, R2): a call the host's own budget
    /// held back counted as an attempt, so a small budget (or another job's
    /// rate-limited answer) sent syncs to Requires attention as "gave up",
    /// blaming the ERP. It is retried when the budget allows, at any
    /// attempt count, and counts no attempt.
    #[test]
    fn r2_a_held_back_call_is_no_attempt() {
        let retry = RetryPolicy::default();
        let last = job(retry.max_attempts - 1);
        let held = Err(Failure::Call(CallError::HeldBack(Duration::from_secs(90))));
        let f = conclude(&retry, &last, "p", Vec::new(), Vec::new(), vec![held]);
        assert_eq!(f.outcome, JobOutcome::Retrying);
        assert!(!f.attempted);
        let wait = f.retry_at.unwrap() - now_ms();
        assert!((89_000..=90_000).contains(&wait), "{wait}");
        assert!(matches!(f.attention, AttentionChange::Leave));
        // An ERP's own failure still counts.
        let down = Err(Failure::Call(CallError::Connector(
            crate::runtime::bindings::ConnectorError::Unavailable("503".into()),
        )));
        let f = conclude(&retry, &last, "p", Vec::new(), Vec::new(), vec![down]);
        assert_eq!(f.outcome, JobOutcome::Failed);
        assert!(f.attempted);
    }
}
