//! Idempotency keys (D2) and content hashes (D3).
//!
//! Every distinct request to the ERP gets its own key, and a retry of the
//! same request keeps it: a key is a digest of what makes the request what
//! it is (connection, target, subject, operation, and for an update the
//! content and the entry version it is based on). The content hash is over
//! a canonical JSON form of what is sent, so it is the same in every build.

use crate::runtime::bindings as wit;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A hex digest of `parts`, 32 characters: short enough for every ERP's
/// idempotency key (QuickBooks allows 50).
pub fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key of an update of entry version `version` to content `hash`: a
/// retry of the same update sends the same key; an update after a conflict
/// (a fresher version) or of other content gets a new one.
pub fn update_key(
    connection: &str,
    target: &str,
    subject: &str,
    hash: &str,
    version: Option<&str>,
) -> String {
    digest(&[
        connection,
        target,
        subject,
        "update",
        hash,
        version.unwrap_or("-"),
    ])
}

/// What a bill is, in a form that does not depend on the build: keys in
/// sorted order (serde_json's map), every field by its WIT name.
pub fn canonical_bill(b: &wit::Bill) -> Value {
    json!({
        "document-id": b.document_id,
        "number": b.number,
        "vendor": vendor(&b.vendor),
        "issue-date": b.issue_date,
        "due-date": b.due_date,
        "currency": b.currency,
        "lines": b.lines.iter().map(|l| json!({
            "description": l.description,
            "amount": l.amount,
            "account-code": l.account_code,
            "tracking": l.tracking.iter().map(|t| json!({"category": t.category, "option": t.option})).collect::<Vec<_>>(),
            "tax-code": l.tax_code,
        })).collect::<Vec<_>>(),
        "total": b.total,
        "status": match b.status {
            wit::BillStatus::Draft => "draft",
            wit::BillStatus::AwaitingApproval => "awaiting-approval",
            wit::BillStatus::Approved => "approved",
            wit::BillStatus::Paid => "paid",
        },
    })
}

/// A vendor, canonically. Its ERP id only when mapped, so that entries
/// synced before vendors could be mapped keep their hashes (D3).
fn vendor(v: &wit::Vendor) -> Value {
    match &v.erp_id {
        None => json!({"id": v.id, "name": v.name}),
        Some(e) => json!({"id": v.id, "name": v.name, "erp-id": e}),
    }
}

/// What a payment is, canonically (see [`canonical_bill`]).
pub fn canonical_payment(p: &wit::Payment) -> Value {
    json!({
        "payment-id": p.payment_id,
        "document-id": p.document_id,
        "bill-entry-id": p.bill_entry_id,
        "bill-number": p.bill_number,
        "vendor": vendor(&p.vendor),
        "amount": p.amount,
        "currency": p.currency,
        "date": p.date,
        "method": match p.method {
            wit::PaymentMethod::Check => "check",
            wit::PaymentMethod::Ach => "ach",
            wit::PaymentMethod::Wire => "wire",
            wit::PaymentMethod::Card => "card",
        },
        "bank-account": p.bank_account,
        "check-number": p.check_number,
    })
}

/// The content hash of a canonical value (D3), versioned so a change of
/// form never matches an old hash by accident.
pub fn content_hash(canonical: &Value) -> String {
    digest(&["content-v1", &canonical.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bill() -> wit::Bill {
        wit::Bill {
            document_id: "d1".into(),
            number: "INV-1".into(),
            vendor: wit::Vendor {
                id: "v".into(),
                name: "Acme".into(),
                erp_id: None,
            },
            issue_date: "2026-11-01".into(),
            due_date: "2026-12-01".into(),
            currency: "USD".into(),
            lines: vec![wit::BillLine {
                description: "Paper".into(),
                amount: 1000,
                account_code: "6100".into(),
                tracking: vec![],
                tax_code: None,
            }],
            total: 1000,
            status: wit::BillStatus::Approved,
        }
    }

    /// Issue 7 item 8: the hash is over a canonical serialization, fixed
    /// here so that a change of build (or of Rust's Debug output) cannot
    /// move it.
    #[test]
    fn d3_the_content_hash_is_stable_across_builds() {
        assert_eq!(
            canonical_bill(&bill()).to_string(),
            r#"{"currency":"USD","document-id":"d1","due-date":"2026-12-01","issue-date":"2026-11-01","lines":[{"account-code":"6100","amount":1000,"description":"Paper","tax-code":null,"tracking":[]}],"number":"INV-1","status":"approved","total":1000,"vendor":{"id":"v","name":"Acme"}}"#
        );
        assert_eq!(
            content_hash(&canonical_bill(&bill())),
            "cda3ecbbdfbb5e5b635104407a2ccd07"
        );
        let mut other = bill();
        other.lines[0].amount = 1001;
        assert_ne!(
            content_hash(&canonical_bill(&other)),
            content_hash(&canonical_bill(&bill()))
        );
    }

    /// Issue 7 item 7: an update after a conflict is a distinct request.
    #[test]
    fn d2_each_distinct_update_has_its_own_key_and_a_retry_keeps_it() {
        let a = update_key("c", "bill", "d1", "h", Some("1"));
        assert_eq!(a, update_key("c", "bill", "d1", "h", Some("1")));
        assert_ne!(a, update_key("c", "bill", "d1", "h", Some("2")));
        assert_ne!(a, update_key("c", "bill", "d1", "h2", Some("1")));
    }
}
