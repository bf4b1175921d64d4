//! The engine's words for Requires attention items (L2) that no sync
//! attempt writes itself: a job quarantined after crashing its workers, a
//! sync task that failed inside the host.

use crate::store::{Attention, AttentionKind, FinishedJob, Job, JobOutcome};

/// The item of a job quarantined after `crashes` workers stopped while
/// running it (P7).
pub fn quarantined(crashes: i64) -> Attention {
    Attention::new(
        AttentionKind::Quarantined,
        format!(
            "quarantined: the plugin crashed the worker ({crashes} workers stopped while running this sync); it is not run again by itself"
        ),
        "Look at the connection's plugin (a newer build, its memory and deadline limits) and the workers' logs; re-sync the document once fixed.",
    )
}

/// A job whose task failed inside the host (`why`: a panic's message): it
/// fails alone, and a person is told it is the host's fault.
pub fn task_failed(job: Job, why: &str) -> FinishedJob {
    let message = format!("the host failed while running this sync: {why}");
    let mut f = FinishedJob::new(job, JobOutcome::Failed);
    f.error = Some(message.clone());
    f.attention = crate::store::AttentionChange::Set(Attention::new(
        AttentionKind::HostFault,
        message,
        "This is a fault in ledgerbridge itself: report it with the worker's log; re-sync the document after upgrading.",
    ));
    f
}
