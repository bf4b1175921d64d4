//! What one element of Xero's answer means for its item: the entry, or
//! the contract's error naming the field in the host's terms (see the
//! README's table).

use crate::wire;
use ledgerbridge_sdk::{Bill, ConnectorError, Payment};
use serde_json::Value;

/// The lock dates, read once per call when an answer needs them.
pub struct LockDates<'x> {
    read: Option<Option<(Option<String>, Option<String>)>>,
    xero: &'x crate::api::Xero<'x>,
}

impl<'x> LockDates<'x> {
    pub fn new(xero: &'x crate::api::Xero<'x>) -> Self {
        LockDates { read: None, xero }
    }

    /// `(period, end of year)`, from `GET /Organisation` on first use;
    /// `None` when it could not be read.
    fn get(&mut self) -> Option<&(Option<String>, Option<String>)> {
        if self.read.is_none() {
            self.read = Some(self.xero.lock_dates().ok());
        }
        self.read.as_ref().and_then(Option::as_ref)
    }
}

/// Each validation message of an element.
pub fn messages(element: &Value) -> Vec<String> {
    element
        .get("ValidationErrors")
        .and_then(Value::as_array)
        .map(|v| {
            v.iter()
                .filter_map(|e| e.get("Message").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the element failed (`StatusAttributeString: ERROR`, or errors
/// listed).
pub fn failed(element: &Value) -> bool {
    wire::text(element, "StatusAttributeString") == "ERROR"
        || element.get("HasErrors").and_then(Value::as_bool) == Some(true)
        || !messages(element).is_empty()
}

/// The contract's error for a bill Xero refused with `messages`.
pub fn bill_error(bill: &Bill, messages: &[String], locks: &mut LockDates) -> ConnectorError {
    if let Some(booked) = booked(messages, &bill.issue_date, "bill", locks) {
        return booked;
    }
    let first = messages.first().map(String::as_str).unwrap_or("");
    let field = bill_field(bill, first);
    ConnectorError::validation(field, format!("Xero: {}", messages.join("; ")))
}

/// The contract's error for a payment Xero refused with `messages`.
pub fn payment_error(
    payment: &Payment,
    messages: &[String],
    locks: &mut LockDates,
) -> ConnectorError {
    if let Some(booked) = booked(messages, &payment.date, "payment", locks) {
        return booked;
    }
    let first = messages.first().map(String::as_str).unwrap_or("");
    let m = first.to_ascii_lowercase();
    let field = if m.contains("amount") {
        "amount"
    } else if m.contains("account") {
        "bank-account"
    } else if m.contains("date") {
        "date"
    } else if m.contains("invoice") || m.contains("document") {
        "bill-entry-id"
    } else if m.contains("currency") {
        "currency"
    } else {
        ""
    };
    ConnectorError::validation(field, format!("Xero: {}", messages.join("; ")))
}

/// B1: a refusal that means the entry is booked in Xero: a paid or
/// part-paid bill, or a date on or before a lock date (named with the
/// date, read from the organisation).
fn booked(
    messages: &[String],
    date: &str,
    what: &str,
    locks: &mut LockDates,
) -> Option<ConnectorError> {
    let all = messages.join(" ").to_ascii_lowercase();
    if all.contains("not of valid status for modification") {
        return Some(ConnectorError::Booked(format!(
            "the {what} is paid or part-paid in Xero, which does not allow it to change (Xero: {})",
            messages.join("; ")
        )));
    }
    let period = all.contains("period lock date");
    let year = all.contains("end of year lock date");
    if !(period || year) {
        return None;
    }
    let which = if year {
        "end-of-year lock date"
    } else {
        "period lock date"
    };
    let named = locks
        .get()
        .and_then(|(p, y)| if year { y.clone() } else { p.clone() });
    Some(ConnectorError::Booked(match named {
        // The new date is past the lock: the entry Xero has lies in the
        // closed period, and Xero lets it neither change nor move out.
        Some(lock) if date > lock.as_str() => format!(
            "the {what}'s entry in Xero is dated inside Xero's {which} {lock}: the period is closed, so Xero lets it neither change nor move out of it (Xero: {})",
            messages.join("; ")
        ),
        Some(lock) => format!(
            "the {what}'s date {date} is inside Xero's {which} {lock}: the period is closed (Xero: {})",
            messages.join("; ")
        ),
        None => format!(
            "the {what}'s date {date} is inside Xero's {which} (Xero: {})",
            messages.join("; ")
        ),
    }))
}

/// The field (in the host's terms) a bill's error message is about.
fn bill_field(bill: &Bill, message: &str) -> String {
    let m = message.to_ascii_lowercase();
    let quoted = quoted(message);
    let line_with = |f: &dyn Fn(&ledgerbridge_sdk::BillLine) -> bool| bill.lines.iter().position(f);
    if m.contains("account code") || m.contains("accountcode") {
        let i = line_with(&|l| Some(l.account_code.as_str()) == quoted.as_deref()).unwrap_or(0);
        return format!("lines[{i}].account-code");
    }
    if m.contains("taxtype") || m.contains("tax type") || m.contains("tax rate") {
        let i = line_with(&|l| l.tax_code.as_deref() == quoted.as_deref()).unwrap_or(0);
        return format!("lines[{i}].tax-code");
    }
    if m.contains("tracking") {
        let i = line_with(&|l| {
            l.tracking.iter().any(|t| {
                Some(t.category.as_str()) == quoted.as_deref()
                    || Some(t.option.as_str()) == quoted.as_deref()
            })
        })
        .or_else(|| line_with(&|l| !l.tracking.is_empty()))
        .unwrap_or(0);
        return format!("lines[{i}].tracking");
    }
    if m.contains("contact") {
        return "vendor".into();
    }
    if m.contains("currency") {
        return "currency".into();
    }
    if m.contains("due date") || m.contains("duedate") {
        return "due-date".into();
    }
    if m.contains("date") {
        return "issue-date".into();
    }
    if m.contains("invoice number") || m.contains("invoicenumber") || m.contains("reference") {
        return "number".into();
    }
    if m.contains("line") || m.contains("description") {
        return "lines".into();
    }
    String::new()
}

/// The first `'…'` quoted in a message (Xero quotes the code it refuses).
fn quoted(message: &str) -> Option<String> {
    let start = message.find('\'')? + 1;
    let len = message[start..].find('\'')?;
    Some(message[start..start + len].to_string())
}
