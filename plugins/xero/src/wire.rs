//! The contract's bills and payments in Xero's wire format, and Xero's
//! invoices read back as entries.

use ledgerbridge_sdk::{
    Bill, BillStatus, ConnectorError, Context, Entry, EntryState, Payment, PaymentMethod, dates,
    money,
};
use serde_json::{Map, Value, json};

/// Where each bill's document id is kept in Xero: the invoice's `Url`
/// (shown as "Go to …" in Xero), made from this template. `InvoiceNumber`
/// is the vendor's number, which Xero does not keep unique.
pub const DEFAULT_DOCUMENT_URL: &str = "https://ledgerbridge.invalid/documents/{document-id}";

/// The `Url` that marks the bill of `document_id`.
pub fn document_url(ctx: &Context, document_id: &str) -> String {
    let template = ctx
        .setting("document-url")
        .filter(|t| t.contains("{document-id}"))
        .unwrap_or(DEFAULT_DOCUMENT_URL);
    let id: String = form_urlencoded::byte_serialize(document_id.as_bytes()).collect();
    template.replace("{document-id}", &id)
}

/// Whether `url`'s last path segment is `document_id` (as the default
/// template and most AP products' links put it), whatever the host and
/// path before it: how a bill made under an earlier `document-url` is
/// still found.
pub fn names_document(url: &str, document_id: &str) -> bool {
    let id: String = form_urlencoded::byte_serialize(document_id.as_bytes()).collect();
    let path = url.split(['?', '#']).next().unwrap_or("");
    path.contains("://") && path.rsplit('/').next() == Some(id.as_str())
}

/// The connection's `document-url`, checked: an http(s) URL template with
/// `{document-id}`.
pub fn check_document_url(ctx: &Context) -> Result<(), ConnectorError> {
    match ctx.setting("document-url") {
        None => Ok(()),
        Some(t)
            if t.contains("{document-id}")
                && (t.starts_with("https://") || t.starts_with("http://")) =>
        {
            Ok(())
        }
        Some(t) => Err(ConnectorError::validation(
            "settings.document-url",
            format!(
                "`{t}` must be an http(s) URL holding `{{document-id}}`, e.g. https://ap.example.com/bills/{{document-id}}"
            ),
        )),
    }
}

/// Xero's status for a bill in the AP product's state: approved (and
/// paid) bills are AUTHORISED; payments make them PAID.
fn status(s: BillStatus) -> &'static str {
    match s {
        BillStatus::Draft => "DRAFT",
        BillStatus::AwaitingApproval => "SUBMITTED",
        BillStatus::Approved | BillStatus::Paid => "AUTHORISED",
    }
}

/// The invoice (`Type: ACCPAY`) for `bill`; `existing`: the line ids of
/// the invoice it updates, in order (a line sent with its `LineItemID` is
/// updated, one without is added, one left out is deleted by Xero).
pub fn invoice(
    ctx: &Context,
    bill: &Bill,
    invoice_id: Option<&str>,
    existing: &[String],
) -> Result<Value, ConnectorError> {
    let mut lines = Vec::with_capacity(bill.lines.len());
    let taxed = bill.lines.iter().any(|l| l.tax_code.is_some());
    for (i, l) in bill.lines.iter().enumerate() {
        if l.tracking.len() > 2 {
            return Err(ConnectorError::validation(
                format!("lines[{i}].tracking"),
                format!(
                    "Xero takes at most two tracking categories on a line; this one has {}",
                    l.tracking.len()
                ),
            ));
        }
        let mut line = Map::new();
        if let Some(id) = existing.get(i) {
            line.insert("LineItemID".into(), id.as_str().into());
        }
        line.insert("Description".into(), l.description.as_str().into());
        line.insert("Quantity".into(), json!(1));
        line.insert(
            "UnitAmount".into(),
            money::to_json(l.amount, &bill.currency),
        );
        line.insert("AccountCode".into(), l.account_code.as_str().into());
        if let Some(t) = &l.tax_code {
            line.insert("TaxType".into(), t.as_str().into());
        }
        if !l.tracking.is_empty() {
            line.insert(
                "Tracking".into(),
                l.tracking
                    .iter()
                    .map(|t| json!({"Name": t.category, "Option": t.option}))
                    .collect(),
            );
        }
        lines.push(Value::Object(line));
    }
    let contact = match &bill.vendor.erp_id {
        Some(id) => json!({"ContactID": id}),
        None => json!({"Name": bill.vendor.name}),
    };
    let mut inv = json!({
        "Type": "ACCPAY",
        "Contact": contact,
        "Date": bill.issue_date,
        "DueDate": bill.due_date,
        "InvoiceNumber": bill.number,
        "Url": document_url(ctx, &bill.document_id),
        "CurrencyCode": bill.currency,
        "Status": status(bill.status),
        // Amounts are what the bill says: tax included where a line has a
        // tax code, so Xero's Total is the document's total.
        "LineAmountTypes": if taxed { "Inclusive" } else { "NoTax" },
        "LineItems": lines,
    });
    if let Some(id) = invoice_id {
        inv["InvoiceID"] = id.into();
    }
    Ok(inv)
}

/// The payment (`PUT /Payments`) for `payment`.
pub fn payment(p: &Payment) -> Value {
    json!({
        "Invoice": {"InvoiceID": p.bill_entry_id},
        "Account": {"Code": p.bank_account},
        "Date": p.date,
        "Amount": money::to_json(p.amount, &p.currency),
        "Reference": payment_reference(p),
    })
}

/// A payment's `Reference`: its check number for a check, and always the
/// AP product's payment id last, by which lookup finds it again.
pub fn payment_reference(p: &Payment) -> String {
    match (p.method, p.check_number) {
        (PaymentMethod::Check, Some(n)) => format!("Check {n} {}", p.payment_id),
        _ => p.payment_id.clone(),
    }
}

/// Whether a Xero payment's `Reference` names `payment_id`.
pub fn names_payment(reference: &str, payment_id: &str) -> bool {
    reference.split_whitespace().last() == Some(payment_id)
}

/// `YYYY-MM-DD` from Xero's `/Date(ms+0000)/` or `YYYY-MM-DD[T…]`.
pub fn date_of(text: &str) -> Option<String> {
    if text.starts_with("/Date(") {
        return dates::from_ms_json_date(text).ok();
    }
    let day = text.get(..10)?;
    dates::Ymd::parse(day).ok().map(|d| d.to_string())
}

/// A field of an answer, as text.
pub fn text<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Whether Xero no longer counts the invoice (deleted or voided there):
/// for the host it does not exist, and it is created again (M3).
pub fn gone(inv: &Value) -> bool {
    matches!(text(inv, "Status"), "DELETED" | "VOIDED")
}

/// Amount paid on an invoice, in minor units.
pub fn amount_paid(inv: &Value) -> i64 {
    let currency = text(inv, "CurrencyCode");
    inv.get("AmountPaid")
        .and_then(|a| money::from_json(a, currency).ok())
        .unwrap_or(0)
}

/// An invoice as the contract's entry. A paid or part-paid bill is booked
/// (B1): Xero does not let it change.
pub fn entry(inv: &Value) -> Result<Entry, ConnectorError> {
    let id = text(inv, "InvoiceID");
    if id.is_empty() {
        return Err(ConnectorError::Unavailable(
            "Xero answered an invoice without an InvoiceID".into(),
        ));
    }
    let state = match text(inv, "Status") {
        "PAID" => EntryState::Booked,
        "DELETED" => EntryState::Deleted,
        "VOIDED" => EntryState::Voided,
        _ if amount_paid(inv) > 0 => EntryState::Booked,
        _ => EntryState::Open,
    };
    let currency = text(inv, "CurrencyCode");
    Ok(Entry {
        id: id.to_string(),
        version: inv
            .get("UpdatedDateUTC")
            .and_then(Value::as_str)
            .map(str::to_string),
        state,
        total: inv
            .get("Total")
            .and_then(|t| money::from_json(t, currency).ok()),
    })
}

/// A payment entry from Xero's payment.
pub fn payment_entry(p: &Value, currency: &str) -> Result<Entry, ConnectorError> {
    let id = text(p, "PaymentID");
    if id.is_empty() {
        return Err(ConnectorError::Unavailable(
            "Xero answered a payment without a PaymentID".into(),
        ));
    }
    Ok(Entry {
        id: id.to_string(),
        version: None,
        state: match text(p, "Status") {
            "DELETED" => EntryState::Deleted,
            _ => EntryState::Open,
        },
        total: p
            .get("Amount")
            .and_then(|a| money::from_json(a, currency).ok()),
    })
}
