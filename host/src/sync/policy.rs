//! Which syncs an event causes (A1-A3, P4). Pure: the store calls these
//! inside the transaction that records the event, so a document and its
//! jobs are stored together.

use crate::model::{
    Connection, DisbursementStatus, Document, DocumentStatus, Payment, Target, Trigger,
};
use crate::store::{NewJob, Priority};

fn job(c: &Connection, document_id: &str, target: Target, trigger: Trigger, now: i64) -> NewJob {
    NewJob {
        connection_id: c.id.clone(),
        tenant_id: c.tenant_id.clone(),
        document_id: document_id.to_string(),
        target,
        trigger,
        force: false,
        due_at: now,
        run_id: None,
        priority: priority(trigger),
    }
}

/// A job's place in its connection's queue (R5): a funding-complete payment
/// first (A4: seconds), then automatic and manual syncs, bulk work last.
pub fn priority(trigger: Trigger) -> Priority {
    match trigger {
        Trigger::FundingComplete => Priority::FundingComplete,
        Trigger::Bulk => Priority::Bulk,
        Trigger::Approved | Trigger::Changed | Trigger::Paid | Trigger::Manual | Trigger::Retry => {
            Priority::Automatic
        }
    }
}

/// Whether `doc` belongs in connection `c`'s ERP at all.
pub fn bill_wanted(c: &Connection, doc: &Document) -> bool {
    c.enabled && c.sync_bills && (doc.status.is_approved() || c.sync_before_approval)
}

/// The jobs a document's arrival or change causes.
pub fn document_jobs(
    previous: Option<&Document>,
    doc: &Document,
    connections: &[Connection],
    now: i64,
) -> Vec<NewJob> {
    let mut jobs = Vec::new();
    for c in connections.iter().filter(|c| c.tenant_id == doc.tenant_id) {
        if bill_wanted(c, doc) {
            let trigger = match previous {
                // A1: approved now (or exists, with sync before approval).
                None => Some(Trigger::Approved),
                Some(p) if !bill_wanted(c, p) => Some(Trigger::Approved),
                // A2: details changed.
                Some(p) if p.details_differ(doc) => Some(Trigger::Changed),
                Some(_) => None,
            };
            if let Some(t) = trigger {
                jobs.push(job(c, &doc.id, Target::Bill, t, now));
            }
        }
        // A3: marked as paid.
        let newly_paid = doc.status == DocumentStatus::Paid
            && previous.is_none_or(|p| p.status != DocumentStatus::Paid);
        if newly_paid && c.enabled && c.sync_payments {
            jobs.push(job(c, &doc.id, Target::Payment, Trigger::Paid, now));
        }
    }
    jobs
}

/// The jobs a payment's arrival or change causes: at once when it was paid
/// outside the product (A3), the moment its disbursement's funding completes
/// (A4), and when a synced payment changes; never while its disbursement is
/// only initiated, or failed.
pub fn payment_jobs(
    previous: Option<&Payment>,
    payment: &Payment,
    connections: &[Connection],
    now: i64,
) -> Vec<NewJob> {
    if previous == Some(payment) || !payment.ready() {
        return Vec::new();
    }
    let trigger = match previous {
        Some(p) if p.ready() => Trigger::Changed,
        _ if payment.disbursement_status == Some(DisbursementStatus::FundingComplete) => {
            Trigger::FundingComplete
        }
        _ => Trigger::Paid,
    };
    connections
        .iter()
        .filter(|c| c.tenant_id == payment.tenant_id && c.enabled && c.sync_payments)
        .map(|c| job(c, &payment.document_id, Target::Payment, trigger, now))
        .collect()
}
