//! What a job has to sync, and why nothing, in plain words (M4): the
//! payments due, with the payment of a document marked paid outside the
//! product (A3).

use crate::model::{Connection, Document, DocumentStatus, Payment, PaymentMethod};
use crate::store::now_ms;

/// Why a document's bill entry is not wanted in `conn`.
pub fn not_wanted_reason(conn: &Connection, doc: &Document) -> String {
    if !conn.sync_bills {
        format!("not synced: connection {} does not sync bills", conn.id)
    } else {
        format!(
            "not synced: the document is {} and connection {} syncs only approved documents (sync_before_approval is off)",
            doc.status.as_str().replace('_', " "),
            conn.id
        )
    }
}

/// Why none of `payments` is due.
pub fn not_due_reason(payments: &[Payment]) -> String {
    use crate::model::DisbursementStatus as D;
    let states: Vec<String> = payments
        .iter()
        .map(|p| match p.disbursement_status {
            Some(D::Initiated) => format!("{}: disbursement initiated, not funded yet", p.id),
            Some(D::Failed) => format!("{}: disbursement failed", p.id),
            _ => format!("{}: not due", p.id),
        })
        .collect();
    if states.is_empty() {
        "not synced: the document has no payment and is not marked as paid".into()
    } else {
        format!("not synced: no payment is due ({})", states.join("; "))
    }
}

/// The payments of a document to sync; a document marked paid with none
/// recorded gets one for its total, dated today, from the connection's
/// default bank account (A3: paid outside the product).
pub fn payments_to_sync(
    mut payments: Vec<Payment>,
    doc: &Document,
    conn: &Connection,
) -> Vec<Payment> {
    if payments.is_empty() && doc.status == DocumentStatus::Paid {
        let today = ledgerbridge_sdk::dates::Ymd::from_epoch_days(now_ms().div_euclid(86_400_000))
            .to_string();
        payments.push(Payment {
            tenant_id: doc.tenant_id.clone(),
            id: format!("{}{}", doc.id, crate::intake::MARKED_PAID_SUFFIX),
            document_id: doc.id.clone(),
            amount: doc.total,
            date: today,
            method: PaymentMethod::Ach,
            funding_account: conn.default_bank_account.clone().unwrap_or_default(),
            check_number: None,
            bank_id: None,
            disbursement_status: None,
        });
    }
    payments.retain(Payment::ready);
    payments
}
