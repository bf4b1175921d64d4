//! The QuickBooks Online JSON of bills and bill payments (element names
//! from Intuit's `Finance.xsd`), and the entries the host gets back.

use ledgerbridge_sdk::*;
use serde_json::{Value, json};

/// QuickBooks' limit on `DocNumber`.
pub const DOC_NUMBER_MAX: usize = 21;

pub fn text<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The `DocNumber` a vendor number is sent as: itself, or its first 21
/// characters (QuickBooks keeps no more; the whole number goes in the
/// bill's memo, `PrivateNote`). `None` for an empty number.
pub fn doc_number(number: &str) -> Option<String> {
    let n = number.trim();
    if n.is_empty() {
        return None;
    }
    Some(n.chars().take(DOC_NUMBER_MAX).collect())
}

/// The memo (`PrivateNote`) that names the document: how a lookup finds
/// the bill an earlier attempt made.
pub fn bill_note(bill: &Bill) -> String {
    let mut note = bill_marker(&bill.document_id);
    let n = bill.number.trim();
    if n.chars().count() > DOC_NUMBER_MAX {
        note.push_str(&format!("; vendor invoice number {n}"));
    }
    note
}

/// The marker that names a document: the first part of its bill's memo.
pub fn bill_marker(document_id: &str) -> String {
    format!("ledgerbridge document {document_id}")
}

/// The memo of a bill payment that names the payment.
pub fn payment_note(payment: &Payment) -> String {
    format!("ledgerbridge payment {}", payment.payment_id)
}

/// Whether memo `note` names the subject (`marker` is
/// `ledgerbridge document <id>` or `ledgerbridge payment <id>`). Only the
/// memo's first part counts: what follows (a vendor number, which may
/// hold anything) never names another document. Ids hold no `;`.
pub fn names(note: &str, marker: &str) -> bool {
    note.split(';').next().map(str::trim) == Some(marker)
}

/// An amount as QuickBooks takes it: a decimal of at most two places.
fn amount(a: Amount, currency: &str, field: &str) -> Result<Value, ConnectorError> {
    if money::minor_digits(currency) > 2 {
        return Err(ConnectorError::validation(
            field,
            format!("QuickBooks Online keeps amounts to two decimals; {currency} has more"),
        ));
    }
    Ok(money::to_json(a, currency))
}

fn reference(value: &str) -> Value {
    json!({ "value": value })
}

/// A `Bill` for `bill`, from vendor `vendor_id`; with `Id` and
/// `SyncToken` for an update.
pub fn bill(
    bill: &Bill,
    vendor_id: &str,
    update: Option<(&str, &str)>,
) -> Result<Value, ConnectorError> {
    if bill.lines.is_empty() {
        return Err(ConnectorError::validation(
            "lines",
            "QuickBooks needs at least one line on a bill",
        ));
    }
    let mut lines = Vec::new();
    for (i, l) in bill.lines.iter().enumerate() {
        let mut detail = json!({ "AccountRef": reference(&l.account_code) });
        match l.tracking.as_slice() {
            [] => {}
            [t] => detail["ClassRef"] = reference(&t.option),
            more => {
                return Err(ConnectorError::validation(
                    format!("lines[{i}].tracking"),
                    format!(
                        "QuickBooks takes one class on a line; the department maps to {}",
                        more.len()
                    ),
                ));
            }
        }
        if let Some(t) = &l.tax_code {
            detail["TaxCodeRef"] = reference(t);
        }
        let mut line = json!({
            "Amount": amount(l.amount, &bill.currency, &format!("lines[{i}].amount"))?,
            "DetailType": "AccountBasedExpenseLineDetail",
            "AccountBasedExpenseLineDetail": detail,
        });
        if !l.description.is_empty() {
            line["Description"] = l.description.clone().into();
        }
        lines.push(line);
    }
    let mut v = json!({
        "VendorRef": reference(vendor_id),
        "TxnDate": bill.issue_date,
        "DueDate": bill.due_date,
        "CurrencyRef": reference(&bill.currency.to_ascii_uppercase()),
        "PrivateNote": bill_note(bill),
        "Line": lines,
    });
    if let Some(n) = doc_number(&bill.number) {
        v["DocNumber"] = n.into();
    }
    if let Some((id, token)) = update {
        v["Id"] = id.into();
        v["SyncToken"] = token.into();
    }
    Ok(v)
}

/// A `BillPayment` for `payment`, from vendor `vendor_id`: a check (with
/// its number in `DocNumber`) for checks, ACH and wires; a credit-card
/// payment for cards.
pub fn bill_payment(payment: &Payment, vendor_id: &str) -> Result<Value, ConnectorError> {
    let total = amount(payment.amount, &payment.currency, "amount")?;
    let mut v = json!({
        "VendorRef": reference(vendor_id),
        "TxnDate": payment.date,
        "CurrencyRef": reference(&payment.currency.to_ascii_uppercase()),
        "PrivateNote": payment_note(payment),
        "TotalAmt": total,
        "Line": [{
            "Amount": total,
            "LinkedTxn": [{"TxnId": payment.bill_entry_id, "TxnType": "Bill"}],
        }],
    });
    if payment.method == PaymentMethod::Card {
        v["PayType"] = "CreditCard".into();
        v["CreditCardPayment"] = json!({ "CCAccountRef": reference(&payment.bank_account) });
    } else {
        v["PayType"] = "Check".into();
        // The AP product prints and mails its checks: QuickBooks must not
        // queue them for printing again.
        let print = if payment.method == PaymentMethod::Check {
            "PrintComplete"
        } else {
            "NotSet"
        };
        v["CheckPayment"] = json!({
            "BankAccountRef": reference(&payment.bank_account),
            "PrintStatus": print,
        });
        if payment.method == PaymentMethod::Check {
            let Some(n) = payment.check_number else {
                return Err(ConnectorError::validation(
                    "check-number",
                    "a check payment has no check number",
                ));
            };
            v["DocNumber"] = n.to_string().into();
        }
    }
    Ok(v)
}

fn total(v: &Value, key: &str, currency: &str) -> Result<Option<Amount>, ConnectorError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(x) => money::from_json(x, currency).map(Some).map_err(|m| {
            ConnectorError::Unavailable(format!(
                "QuickBooks answered a {key} that is no amount: {m}"
            ))
        }),
    }
}

fn currency(v: &Value, fallback: &str) -> String {
    v.get("CurrencyRef")
        .map(|c| text(c, "value"))
        .filter(|c| !c.is_empty())
        .unwrap_or(fallback)
        .to_string()
}

/// The entry of a `Bill`: paid when its balance is zero.
pub fn bill_entry(v: &Value, fallback_currency: &str) -> Result<Entry, ConnectorError> {
    let id = text(v, "Id");
    if id.is_empty() {
        return Err(ConnectorError::Unavailable(
            "QuickBooks answered a bill without an Id".into(),
        ));
    }
    let c = currency(v, fallback_currency);
    let total = total(v, "TotalAmt", &c)?;
    let balance = total_or_zero(v, "Balance", &c)?;
    let state = if total.is_some_and(|t| t > 0) && balance == 0 {
        EntryState::Paid
    } else {
        EntryState::Open
    };
    Ok(Entry {
        id: id.to_string(),
        version: Some(text(v, "SyncToken").to_string()).filter(|s| !s.is_empty()),
        state,
        total,
    })
}

fn total_or_zero(v: &Value, key: &str, c: &str) -> Result<Amount, ConnectorError> {
    Ok(total(v, key, c)?.unwrap_or(0))
}

/// The entry of a `BillPayment`.
pub fn payment_entry(v: &Value, fallback_currency: &str) -> Result<Entry, ConnectorError> {
    let id = text(v, "Id");
    if id.is_empty() {
        return Err(ConnectorError::Unavailable(
            "QuickBooks answered a bill payment without an Id".into(),
        ));
    }
    let c = currency(v, fallback_currency);
    Ok(Entry {
        id: id.to_string(),
        version: Some(text(v, "SyncToken").to_string()).filter(|s| !s.is_empty()),
        state: if voided(v) {
            EntryState::Voided
        } else {
            EntryState::Open
        },
        total: total(v, "TotalAmt", &c)?,
    })
}

/// Whether a bill payment was voided in QuickBooks (its amounts are
/// zeroed and its memo says so).
pub fn voided(v: &Value) -> bool {
    text(v, "PrivateNote").starts_with("Voided")
}
