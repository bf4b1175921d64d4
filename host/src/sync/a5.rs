//! A5: a payment entry needs its bill entry first. The payment waits while
//! the bill is synced and follows by itself; when the bill cannot be
//! synced, the payment is blocked with the bill's reason. Pure decisions;
//! the store carries them out.

use crate::store::{Attention, AttentionKind, BillFacts, JobOutcome, PaymentWait, WaitingPayments};

/// How to fix a payment blocked by its bill.
pub const BLOCKED_HINT: &str = "Fix the bill's problem (see the bill's item); the payment follows by itself once the bill is synced.";

/// A waiting payment job's error.
pub const WAITING: &str = "waiting for the bill entry";

/// A waiting payment's line in the integration log.
pub const WAITING_LOG: &str =
    "waiting for the bill entry: the bill is synced first, the payment follows";

/// The item of a payment blocked because its bill failed with `error`.
pub fn blocked(error: &str) -> Attention {
    Attention::new(
        AttentionKind::Blocked,
        format!("blocked: the bill entry could not be synced: {error}"),
        BLOCKED_HINT,
    )
}

/// What a bill job that ended with `outcome` (and `error`) does to the
/// payments waiting for it.
pub fn after_bill(outcome: JobOutcome, error: Option<&str>) -> WaitingPayments {
    match outcome {
        // The bill entry exists (booked counts: it exists, locked).
        JobOutcome::Created
        | JobOutcome::Updated
        | JobOutcome::Unchanged
        | JobOutcome::SkippedBooked => WaitingPayments::Release,
        // A bill not synced on purpose (a draft) blocks its payments too:
        // they would otherwise wait for ever.
        JobOutcome::Failed | JobOutcome::Skipped => {
            WaitingPayments::Block(blocked(error.unwrap_or("unknown error")))
        }
        // Not over yet (a retry), or not a result of its own. A cancelled
        // bill job never had an event to carry: a payment waiting on the
        // bill waits for the job that carries the bill's event.
        JobOutcome::Retrying
        | JobOutcome::Waiting
        | JobOutcome::Blocked
        | JobOutcome::Coalesced
        | JobOutcome::Cancelled => WaitingPayments::Leave,
    }
}

/// What happens to a payment job whose bill entry is missing, given what
/// the store knows of the bill's job.
pub fn payment_waits(bill: &BillFacts) -> PaymentWait {
    match &bill.failed_in_run {
        // In a manual or bulk run whose bill already failed, the payment is
        // blocked by that failure: the run has one result per document and
        // target, not a second attempt at the bill.
        Some(error) if !bill.active => PaymentWait::Block(blocked(error)),
        // A bill job already queued or running (only another's can be
        // running: ours is this payment) is not queued twice.
        _ => PaymentWait::Wait {
            queue_bill: !bill.active,
            reason: WAITING.into(),
            log_note: WAITING_LOG.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a5_a_synced_or_booked_bill_releases_its_payments() {
        for o in [
            JobOutcome::Created,
            JobOutcome::Updated,
            JobOutcome::Unchanged,
            JobOutcome::SkippedBooked,
        ] {
            assert_eq!(after_bill(o, None), WaitingPayments::Release, "{o:?}");
        }
    }

    #[test]
    fn a5_a_failed_or_skipped_bill_blocks_its_payments_with_its_reason() {
        let WaitingPayments::Block(a) = after_bill(JobOutcome::Failed, Some("GL 6100 missing"))
        else {
            panic!("not blocked")
        };
        assert_eq!(a.kind, AttentionKind::Blocked);
        assert_eq!(
            a.message,
            "blocked: the bill entry could not be synced: GL 6100 missing"
        );
        assert_eq!(a.hint, BLOCKED_HINT);
        assert_eq!(
            after_bill(JobOutcome::Skipped, None),
            WaitingPayments::Block(blocked("unknown error"))
        );
    }

    #[test]
    fn a5_a_bill_still_under_way_leaves_its_payments_waiting() {
        for o in [
            JobOutcome::Retrying,
            JobOutcome::Waiting,
            JobOutcome::Blocked,
            JobOutcome::Coalesced,
        ] {
            assert_eq!(after_bill(o, Some("x")), WaitingPayments::Leave, "{o:?}");
        }
    }

    #[test]
    fn a5_a_payment_waits_and_queues_its_bill_unless_one_is_active() {
        let wait = |queue_bill| PaymentWait::Wait {
            queue_bill,
            reason: WAITING.into(),
            log_note: WAITING_LOG.into(),
        };
        assert_eq!(payment_waits(&BillFacts::default()), wait(true));
        let active = BillFacts {
            active: true,
            failed_in_run: None,
        };
        assert_eq!(payment_waits(&active), wait(false));
    }

    #[test]
    fn a5_in_a_run_whose_bill_failed_the_payment_is_blocked_not_retried() {
        let facts = BillFacts {
            active: false,
            failed_in_run: Some("validation: total".into()),
        };
        assert_eq!(
            payment_waits(&facts),
            PaymentWait::Block(blocked("validation: total"))
        );
    }
}
