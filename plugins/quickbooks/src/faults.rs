//! What a QuickBooks `Fault` means for the contract (the README's table):
//! 5010 → `conflict`, 6140 on a check → `duplicate-check-number`,
//! 6200/6210 → `booked` naming the closing date, 610 → `not-found`, 2500,
//! 6000 and the other validation codes → `validation` naming the field in
//! the host's terms, an authentication fault → `unauthorized`, a throttle →
//! `rate-limited`, a system fault → `unavailable`.

use crate::api::{Failure, Qbo};
use ledgerbridge_sdk::*;
use serde_json::Value;

fn text<'v>(e: &'v Value, k: &str) -> &'v str {
    e.get(k).and_then(Value::as_str).unwrap_or_default()
}

/// The first error's code, and its message and detail for the log.
fn first(errors: &[Value]) -> (String, String) {
    let Some(e) = errors.first() else {
        return (String::new(), "QuickBooks gave no error detail".into());
    };
    let message = format!("{} ({})", text(e, "Message"), text(e, "Detail"));
    (
        text(e, "code").to_string(),
        message.chars().take(500).collect(),
    )
}

/// What an item refers to, so a rejected element can be named in the
/// host's terms.
pub enum Subject<'a> {
    Bill(&'a Bill),
    Payment(&'a Payment),
    None,
}

/// The host's field for QuickBooks' `element`/detail on `subject`.
fn field(errors: &[Value], subject: &Subject) -> String {
    let e = errors.first();
    let element = e.map(|e| text(e, "element")).unwrap_or_default();
    let detail = e.map(|e| text(e, "Detail")).unwrap_or_default();
    // The line whose value the detail names (`... element id 99 not found`).
    let line_of = |value: fn(&BillLine) -> Option<&str>, name: &str| -> String {
        if let Subject::Bill(b) = subject {
            for (i, l) in b.lines.iter().enumerate() {
                if let Some(v) = value(l)
                    && detail.contains(&format!("id {v} "))
                {
                    return format!("lines[{i}].{name}");
                }
            }
        }
        format!("lines[0].{name}")
    };
    let leaf = element.rsplit('.').next().unwrap_or_default();
    match leaf {
        "VendorRef" => "vendor".into(),
        "AccountRef" => line_of(|l| Some(l.account_code.as_str()), "account-code"),
        "ClassRef" => line_of(
            |l| l.tracking.first().map(|t| t.option.as_str()),
            "tracking",
        ),
        "TaxCodeRef" => line_of(|l| l.tax_code.as_deref(), "tax-code"),
        "BankAccountRef" | "CCAccountRef" => "bank-account".into(),
        "LinkedTxn" => "bill-entry-id".into(),
        "DocNumber" => match subject {
            Subject::Payment(_) => "check-number".into(),
            _ => "number".into(),
        },
        "TxnDate" => match subject {
            Subject::Payment(_) => "date".into(),
            _ => "issue-date".into(),
        },
        "DueDate" => "due-date".into(),
        "CurrencyRef" => "currency".into(),
        "TotalAmt" | "Amount" => "amount".into(),
        _ if element.starts_with("Line") => "lines".into(),
        // QuickBooks named no element: the whole item.
        "" => match subject {
            Subject::Bill(_) => "bill".into(),
            Subject::Payment(_) => "payment".into(),
            Subject::None => "request".into(),
        },
        other => other.to_string(),
    }
}

/// The error of a fault that concerns no one item in particular.
pub fn plain(kind: &str, errors: &[Value]) -> ConnectorError {
    item(kind, errors, &Subject::None, &mut Closing::Unknown)
}

/// The books' closing date, read once per call when a 6200/6210 needs it.
pub enum Closing<'q, 'c> {
    Unread(&'q Qbo<'c>),
    Read(Option<String>),
    Unknown,
}

impl Closing<'_, '_> {
    fn date(&mut self) -> Option<String> {
        if let Closing::Unread(q) = self {
            *self = Closing::Read(match q.book_close_date() {
                Ok(d) => d,
                Err(Failure::Call(_)) | Err(Failure::Each(_)) => None,
            });
        }
        match self {
            Closing::Read(d) => d.clone(),
            _ => None,
        }
    }
}

/// The error of one item's fault.
pub fn item(
    kind: &str,
    errors: &[Value],
    subject: &Subject,
    closing: &mut Closing,
) -> ConnectorError {
    let (code, message) = first(errors);
    match kind {
        "AuthenticationFault" | "AUTHENTICATION" => {
            return ConnectorError::Unauthorized(format!("QuickBooks: {message}"));
        }
        "AuthorizationFault" => {
            return ConnectorError::Unauthorized(format!(
                "QuickBooks refused the app for this company: {message}"
            ));
        }
        "ThrottleExceeded" => return ConnectorError::rate_limited(None, message),
        "SystemFault" => return ConnectorError::Unavailable(format!("QuickBooks: {message}")),
        _ => {}
    }
    match code.as_str() {
        "5010" => ConnectorError::Conflict(format!(
            "the entry changed in QuickBooks since it was read (stale SyncToken): {message}"
        )),
        "6140" => match subject {
            Subject::Payment(p) if p.check_number.is_some() => {
                ConnectorError::duplicate_check_number(
                    p.check_number.unwrap_or_default(),
                    format!(
                        "QuickBooks already has check number {} from this bank account: {message}",
                        p.check_number.unwrap_or_default()
                    ),
                )
            }
            _ => ConnectorError::validation(field(errors, subject), message),
        },
        "6200" | "6210" => {
            let date = closing.date();
            ConnectorError::Booked(match date {
                Some(d) => format!(
                    "the books are closed in QuickBooks through {d}{}, and this entry is dated in that period: {message}",
                    if code == "6210" {
                        " (with a password)"
                    } else {
                        ""
                    }
                ),
                None => {
                    format!("the books are closed in QuickBooks for this entry's date: {message}")
                }
            })
        }
        "610" => ConnectorError::NotFound(format!("QuickBooks has no such entry: {message}")),
        "3200" | "3100" => ConnectorError::Unauthorized(format!("QuickBooks: {message}")),
        "003001" | "3001" => ConnectorError::rate_limited(None, message),
        "10000" => ConnectorError::Unavailable(format!("QuickBooks: {message}")),
        _ => ConnectorError::validation(
            field(errors, subject),
            format!("QuickBooks refused it: {message}"),
        ),
    }
}

/// A short account of an error, for the log.
pub fn describe(e: &ConnectorError) -> String {
    match e {
        ConnectorError::Booked(m) => format!("booked: {m}"),
        ConnectorError::Validation(v) => format!("refused ({}): {}", v.field, v.message),
        ConnectorError::NotFound(m) => format!("not found: {m}"),
        ConnectorError::Conflict(m) => format!("conflict: {m}"),
        ConnectorError::DuplicateCheckNumber(d) => {
            format!("duplicate check number {}: {}", d.check_number, d.message)
        }
        other => format!("{other:?}"),
    }
}
