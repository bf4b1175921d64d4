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
            // Paid outside the product: no funding account of ours; the
            // ERP's bank account is the connection's default.
            funding_account: String::new(),
            check_number: None,
            bank_id: conn.default_bank_account.clone(),
            disbursement_status: None,
        });
    }
    payments.retain(Payment::ready);
    payments
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9 item 4: the payment of a document marked paid outside the
    /// product carried the ERP's bank account code as its funding account
    /// (an AP product's account). It has no funding account; the ERP's
    /// bank account is its bank id.
    #[test]
    fn a3_a_marked_paid_payment_has_a_bank_id_not_a_funding_account() {
        let doc = crate::intake::document(
            &serde_json::json!({"tenant_id": "t", "id": "d1", "number": "N", "vendor": {"id": "v", "name": "V"},
                "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
                "lines": [{"description": "x", "amount": "5.00", "category": "c"}],
                "total": "5.00", "status": "paid"}),
            "d",
        )
        .unwrap();
        let conn: Connection = serde_json::from_value(serde_json::json!(
            {"id": "c", "tenant_id": "t", "plugin": "csv", "default_bank_account": "1010"}))
        .unwrap();
        let p = payments_to_sync(Vec::new(), &doc, &conn);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].funding_account, "");
        assert_eq!(p[0].bank_id.as_deref(), Some("1010"));
        assert_eq!(p[0].amount, 500);
    }
}
