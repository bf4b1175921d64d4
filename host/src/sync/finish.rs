//! The rules every finished job follows before it is stored, whoever
//! concluded it: a success resolves the document's Requires attention item
//! (L2), and a bill's fate decides its waiting payments' (A5).

use super::{Engine, a5};
use crate::model::Target;
use crate::store::{AttentionChange, FinishedJob, JobOutcome, WaitingPayments};

/// Completes `f` with what follows from its outcome; what its author
/// decided already stays.
pub fn settle(f: &mut FinishedJob) {
    if f.attention == AttentionChange::Leave
        && matches!(
            f.outcome,
            JobOutcome::Created | JobOutcome::Updated | JobOutcome::Unchanged
        )
    {
        f.attention = AttentionChange::Resolve;
    }
    if f.job.target == Target::Bill && f.waiting_payments == WaitingPayments::Leave {
        f.waiting_payments = a5::after_bill(f.outcome, f.error.as_deref());
    }
}

impl Engine {
    /// Stores a finished job, settled (see [`settle`]). Returns `false`
    /// when the job was no longer this worker's (see `Store::finish`).
    pub(crate) async fn finish(&self, mut f: FinishedJob) -> anyhow::Result<bool> {
        settle(&mut f);
        self.store.finish(f).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Trigger;
    use crate::store::{Attention, AttentionKind, Job, Priority};

    fn job(target: Target) -> Job {
        Job {
            id: 1,
            connection_id: "c".into(),
            tenant_id: "t".into(),
            document_id: "d".into(),
            target,
            trigger: Trigger::Approved,
            force: false,
            attempts: 0,
            run_id: None,
            lease_owner: "w".into(),
            priority: Priority::Automatic,
        }
    }

    fn settled(target: Target, outcome: JobOutcome) -> FinishedJob {
        let mut f = FinishedJob::new(job(target), outcome);
        f.error = Some("why".into());
        settle(&mut f);
        f
    }

    #[test]
    fn l2_a_success_resolves_the_item_and_nothing_else_does() {
        for o in [
            JobOutcome::Created,
            JobOutcome::Updated,
            JobOutcome::Unchanged,
        ] {
            assert_eq!(
                settled(Target::Payment, o).attention,
                AttentionChange::Resolve
            );
        }
        for o in [
            JobOutcome::SkippedBooked,
            JobOutcome::Retrying,
            JobOutcome::Skipped,
            JobOutcome::Failed,
        ] {
            assert_eq!(
                settled(Target::Payment, o).attention,
                AttentionChange::Leave
            );
        }
        // An item the job's author set stays set.
        let mut f = FinishedJob::new(job(Target::Bill), JobOutcome::Failed);
        let a = Attention::new(AttentionKind::Failed, "m", "h");
        f.attention = AttentionChange::Set(a.clone());
        settle(&mut f);
        assert_eq!(f.attention, AttentionChange::Set(a));
    }

    #[test]
    fn a5_only_a_bill_job_decides_the_waiting_payments() {
        assert_eq!(
            settled(Target::Bill, JobOutcome::Created).waiting_payments,
            WaitingPayments::Release
        );
        assert_eq!(
            settled(Target::Bill, JobOutcome::Failed).waiting_payments,
            WaitingPayments::Block(a5::blocked("why"))
        );
        assert_eq!(
            settled(Target::Payment, JobOutcome::Failed).waiting_payments,
            WaitingPayments::Leave
        );
    }
}
