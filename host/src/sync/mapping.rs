//! A document (or payment) as one connection's plugin receives it: the AP
//! product's categories, departments and funding accounts mapped to the
//! ERP's codes with the connection's settings.

use crate::model::{Connection, Document, DocumentStatus, Payment, PaymentMethod};
use crate::runtime::bindings as wit;

/// A code with no mapping: a person must add one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    pub field: String,
    pub message: String,
    pub hint: String,
}

/// The bill the plugin receives for `doc` in `c`.
pub fn bill(doc: &Document, c: &Connection) -> Result<wit::Bill, MappingError> {
    let mut lines = Vec::with_capacity(doc.lines.len());
    for (i, l) in doc.lines.iter().enumerate() {
        let account = c.mappings.categories.get(&l.category).ok_or_else(|| MappingError {
            field: format!("lines[{i}].category"),
            message: format!("category `{}` has no GL account in connection {}", l.category, c.id),
            hint: format!(
                "Map category `{}` to a GL account code in the connection's mappings.categories, then re-sync.",
                l.category
            ),
        })?;
        let tracking = match &l.department {
            None => Vec::new(),
            Some(d) => {
                let t = c.mappings.departments.get(d).ok_or_else(|| MappingError {
                    field: format!("lines[{i}].department"),
                    message: format!("department `{d}` has no tracking category in connection {}", c.id),
                    hint: format!(
                        "Map department `{d}` to a tracking category and option in the connection's mappings.departments, then re-sync."
                    ),
                })?;
                vec![wit::Tracking {
                    category: t.category.clone(),
                    option: t.option.clone(),
                }]
            }
        };
        lines.push(wit::BillLine {
            description: l.description.clone(),
            amount: l.amount,
            account_code: account.clone(),
            tracking,
            tax_code: l.tax_code.clone(),
        });
    }
    Ok(wit::Bill {
        document_id: doc.id.clone(),
        number: doc.number.clone(),
        vendor: wit::Vendor {
            id: doc.vendor.id.clone(),
            name: doc.vendor.name.clone(),
            erp_id: c.mappings.vendors.get(&doc.vendor.id).cloned(),
        },
        issue_date: doc.issue_date.clone(),
        due_date: doc.due_date.clone(),
        currency: doc.currency.clone(),
        lines,
        total: doc.total,
        status: match doc.status {
            DocumentStatus::Draft => wit::BillStatus::Draft,
            DocumentStatus::AwaitingApproval => wit::BillStatus::AwaitingApproval,
            DocumentStatus::Approved => wit::BillStatus::Approved,
            DocumentStatus::Paid => wit::BillStatus::Paid,
        },
    })
}

/// The payment the plugin receives for `p` in `c`; the bill's entry is
/// `bill_entry_id`.
pub fn payment(
    p: &Payment,
    doc: &Document,
    bill_entry_id: &str,
    c: &Connection,
) -> Result<wit::Payment, MappingError> {
    let bank = p
        .bank_id
        .as_ref()
        .or_else(|| c.mappings.bank_accounts.get(&p.funding_account))
        .or(c.default_bank_account.as_ref())
        .ok_or_else(|| if p.funding_account.is_empty() {
            MappingError {
                field: "default_bank_account".into(),
                message: format!(
                    "the document was paid outside the product, and connection {} has no default bank account to record it against",
                    c.id
                ),
                hint: "Set the connection's default_bank_account, then re-sync.".into(),
            }
        } else {
            MappingError {
                field: "funding_account".into(),
                message: format!(
                    "funding account `{}` has no bank account in connection {}, and the connection has no default",
                    p.funding_account, c.id
                ),
                hint: "Map the funding account in mappings.bank_accounts, or set default_bank_account, then re-sync.".into(),
            }
        })?;
    Ok(wit::Payment {
        payment_id: p.id.clone(),
        document_id: doc.id.clone(),
        bill_entry_id: bill_entry_id.to_string(),
        bill_number: doc.number.clone(),
        vendor: wit::Vendor {
            id: doc.vendor.id.clone(),
            name: doc.vendor.name.clone(),
            erp_id: c.mappings.vendors.get(&doc.vendor.id).cloned(),
        },
        amount: p.amount,
        currency: doc.currency.clone(),
        date: p.date.clone(),
        method: match p.method {
            PaymentMethod::Check => wit::PaymentMethod::Check,
            PaymentMethod::Ach => wit::PaymentMethod::Ach,
            PaymentMethod::Wire => wit::PaymentMethod::Wire,
            PaymentMethod::Card => wit::PaymentMethod::Card,
        },
        bank_account: bank.clone(),
        check_number: p.check_number,
    })
}
