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

/// A payment's change the host refuses at import.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentChangeRefused {
    /// A check keeps the funding account its number was issued from (C1).
    #[error(
        "payment {payment}: funding_account: it holds check number {check_number} of funding account {funding_account}; a check's funding account cannot change"
    )]
    FundingAccountOfIssuedCheck {
        payment: String,
        check_number: u64,
        funding_account: String,
    },
}

/// What an incoming payment keeps of the one recorded (`previous`): the
/// check number is the host's (C1), so it stays; an operator's bank id stays
/// unless the AP product sends another (L3). A check already numbered cannot
/// move to another funding account.
pub fn merge_payment(
    previous: Option<&Payment>,
    mut payment: Payment,
) -> Result<Payment, PaymentChangeRefused> {
    let Some(p) = previous else {
        return Ok(payment);
    };
    if let Some(n) = p.check_number
        && p.funding_account != payment.funding_account
    {
        return Err(PaymentChangeRefused::FundingAccountOfIssuedCheck {
            payment: payment.id,
            check_number: n,
            funding_account: p.funding_account.clone(),
        });
    }
    payment.check_number = p.check_number;
    if payment.bank_id.is_none() {
        payment.bank_id = p.bank_id.clone();
    }
    Ok(payment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PaymentMethod;

    fn payment() -> Payment {
        Payment {
            tenant_id: "t".into(),
            id: "p1".into(),
            document_id: "d1".into(),
            amount: 100,
            date: "2026-11-01".into(),
            method: PaymentMethod::Check,
            funding_account: "fa1".into(),
            check_number: None,
            bank_id: None,
            disbursement_status: None,
        }
    }

    /// C1, L3: the host's check number and an operator's bank id survive a
    /// re-import; the AP product's own bank id wins.
    #[test]
    fn c1_a_reimported_payment_keeps_its_check_number_and_bank_id() {
        assert_eq!(merge_payment(None, payment()), Ok(payment()));
        let mut recorded = payment();
        recorded.check_number = Some(1043);
        recorded.bank_id = Some("op-bank".into());
        let merged = merge_payment(Some(&recorded), payment()).unwrap();
        assert_eq!(merged.check_number, Some(1043));
        assert_eq!(merged.bank_id.as_deref(), Some("op-bank"));
        let mut sent = payment();
        sent.bank_id = Some("ap-bank".into());
        sent.check_number = Some(7);
        let merged = merge_payment(Some(&recorded), sent).unwrap();
        assert_eq!(merged.check_number, Some(1043), "the number is the host's");
        assert_eq!(merged.bank_id.as_deref(), Some("ap-bank"));
    }

    /// C1: a numbered check cannot move to another funding account; an
    /// unnumbered one can.
    #[test]
    fn c1_a_numbered_check_keeps_its_funding_account() {
        let mut recorded = payment();
        recorded.check_number = Some(5);
        let mut moved = payment();
        moved.funding_account = "fa2".into();
        let e = merge_payment(Some(&recorded), moved.clone()).unwrap_err();
        assert!(
            e.to_string().starts_with("payment p1: funding_account:"),
            "{e}"
        );
        assert_eq!(
            merge_payment(Some(&payment()), moved.clone())
                .unwrap()
                .funding_account,
            "fa2"
        );
    }
}
