//! Intake (V1): documents and payments arrive as JSON and are validated
//! before anything is stored. Every problem names its field; a batch with
//! any problem is refused whole.
//!
//! ```json
//! {
//!   "documents": [{
//!     "tenant_id": "acme", "id": "doc-1001", "number": "INV-7731",
//!     "vendor": {"id": "v-1", "name": "Acme Paper"},
//!     "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
//!     "lines": [{"description": "Paper", "amount": "480.00", "category": "office", "department": "ops"}],
//!     "total": "480.00", "status": "approved"
//!   }],
//!   "payments": [{
//!     "tenant_id": "acme", "id": "pay-1", "document_id": "doc-1001", "amount": "480.00",
//!     "date": "2026-11-20", "method": "check", "funding_account": "operating", "check_number": 10001
//!   }]
//! }
//! ```
//! Amounts are decimal strings or JSON numbers in the currency's units,
//! with no more decimals than the currency has (ISO 4217: 0 for JPY, 3 for
//! KWD); they are stored exactly, in minor units, and none may exceed
//! [`money::MAX_AMOUNT`] minor units. A payment's amount is read in its
//! document's currency, so it is resolved against the document (in the same
//! batch, or already recorded) by [`resolve_payment`].
//!
//! Ids follow [`crate::model::check_id`]; text may hold no control
//! characters; dates lie between [`EARLIEST_DATE`] and [`LATEST_DATE`]; a
//! batch holds at least one document or payment.

use crate::model::{
    DisbursementStatus, Document, DocumentLine, DocumentStatus, Payment, PaymentMethod, Vendor,
    check_id, check_text,
};
use ledgerbridge_sdk::dates::Ymd;
use ledgerbridge_sdk::money;
use serde::Deserialize;
use serde_json::Value;

/// One problem with the input, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as a path: `documents[0].lines[1].amount`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in an input; nothing of it was stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid input, nothing was stored:\n{}", .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
pub struct InvalidInput(pub Vec<FieldError>);

/// Reads a connection (P4) from JSON; a malformed one is refused naming
/// the field it failed at (`limits.calls_per_minute: invalid type ...`).
/// What the fields hold is checked by the engine when it is stored.
pub fn parse_connection(text: &str) -> Result<crate::model::Connection, InvalidInput> {
    let mut de = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| InvalidInput(vec![serde_field_error(e, "connection")]))
}

/// The field a serde error is at, named as a path (`limits.calls_per_minute`,
/// `documents[0].vendor`): a missing field is named itself rather than the
/// object it is missing from; `root` names the whole value.
pub fn serde_field_error(
    e: serde_path_to_error::Error<serde_json::Error>,
    root: &str,
) -> FieldError {
    let path = e.path().to_string();
    // serde_json's own message ends with the line and column.
    let message = e.into_inner().to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m)
        .to_string();
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'));
    let field = match (path.as_str(), missing) {
        (".", Some(m)) => m.to_string(),
        (".", None) => root.to_string(),
        (p, Some(m)) => format!("{p}.{m}"),
        (p, None) => p.to_string(),
    };
    // serde quotes the value it refused: under a secret's field the value
    // may be the secret itself, and an error is logged and answered.
    let secret = [
        "credentials",
        "oauth2",
        "client_secret",
        "refresh_token",
        "access_token",
    ]
    .iter()
    .any(|s| field.split(['.', '[']).any(|part| part == *s));
    let message = match message.find('"').zip(message.rfind('"')) {
        Some((a, b)) if secret && b > a => {
            format!("{}\"(not shown)\"{}", &message[..a], &message[b + 1..])
        }
        _ => message,
    };
    FieldError { field, message }
}

#[cfg(test)]
mod connection_tests {
    /// Finding of the issue 9 attack (V1): a wrong type in a connection's
    /// limits was reported by line and column only.
    #[test]
    fn v1_a_connection_field_of_the_wrong_type_is_named() {
        let e = super::parse_connection(
            r#"{"id": "c", "tenant_id": "t", "plugin": "csv", "limits": {"calls_per_minute": "60"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.0[0].field, "limits.calls_per_minute");
        assert!(
            e.0[0].message.contains("invalid type"),
            "{}",
            e.0[0].message
        );
        let e =
            super::parse_connection(r#"{"id": "c", "tenant_id": "t", "plugin": "csv", "nope": 1}"#)
                .unwrap_err();
        assert!(e.0[0].message.contains("unknown field `nope`"), "{:?}", e.0);
        assert!(super::parse_connection("[").is_err());
    }
}

/// The end of the id of the payment the host makes for a document marked
/// paid with no payment recorded; no payment from input may use it.
pub const MARKED_PAID_SUFFIX: &str = ":marked-paid";

/// The most lines one document may have.
pub const MAX_LINES: usize = 1000;

/// The earliest date accepted anywhere.
pub const EARLIEST_DATE: &str = "1900-01-01";
/// The latest date accepted anywhere.
pub const LATEST_DATE: &str = "2199-12-31";

/// A validated batch. Payments still need their document's currency to
/// read their amounts ([`resolve_payment`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub documents: Vec<Document>,
    pub payments: Vec<PaymentInput>,
}

/// A payment checked in every field but its amount, which is read once its
/// document's currency is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInput {
    /// The payment, with `amount` 0 until resolved.
    pub payment: Payment,
    /// The amount as sent.
    pub amount: Value,
    /// Where the payment was in the input (`payments[2]`), for messages.
    pub at: String,
}

/// Reads a payment's amount in its document's `currency`: more than zero,
/// no more decimals than the currency has.
pub fn resolve_payment(input: &PaymentInput, currency: &str) -> Result<Payment, FieldError> {
    let field = format!("{}.amount", input.at);
    let amount = money::from_json(&input.amount, currency).map_err(|m| err(&field, m))?;
    if amount <= 0 {
        return Err(err(&field, "must be more than zero"));
    }
    Ok(Payment {
        amount,
        ..input.payment.clone()
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    #[serde(default)]
    documents: Vec<Value>,
    #[serde(default)]
    payments: Vec<Value>,
}

/// Parses and validates a batch.
pub fn parse_batch(json: &str) -> Result<Batch, InvalidInput> {
    // A byte-order mark, as some editors write, is not part of the JSON.
    let json = json.strip_prefix('\u{FEFF}').unwrap_or(json);
    let raw: RawBatch = serde_json::from_str(json).map_err(|e| {
        InvalidInput(vec![FieldError {
            field: "(input)".into(),
            message: format!("not a batch of {{\"documents\": [...], \"payments\": [...]}}: {e}"),
        }])
    })?;
    let mut errors = Vec::new();
    if raw.documents.is_empty() && raw.payments.is_empty() {
        errors.push(err(
            "(input)",
            "the batch holds no documents and no payments",
        ));
    }
    let mut batch = Batch::default();
    for (i, v) in raw.documents.iter().enumerate() {
        match document(v, &format!("documents[{i}]")) {
            Ok(d) => batch.documents.push(d),
            Err(mut e) => errors.append(&mut e),
        }
    }
    for (i, v) in raw.payments.iter().enumerate() {
        match payment(v, &format!("payments[{i}]")) {
            Ok(p) => batch.payments.push(p),
            Err(mut e) => errors.append(&mut e),
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (i, d) in batch.documents.iter().enumerate() {
        if !seen.insert((d.tenant_id.clone(), d.id.clone())) {
            errors.push(err(
                &format!("documents[{i}].id"),
                format!("`{}` appears twice in the batch", d.id),
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for p in &batch.payments {
        if !seen.insert((p.payment.tenant_id.clone(), p.payment.id.clone())) {
            errors.push(err(
                &format!("{}.id", p.at),
                format!("`{}` appears twice in the batch", p.payment.id),
            ));
        }
    }
    if errors.is_empty() {
        Ok(batch)
    } else {
        Err(InvalidInput(errors))
    }
}

fn err(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A `YYYY-MM-DD` date that exists and lies between [`EARLIEST_DATE`] and
/// [`LATEST_DATE`].
pub fn check_date(text: &str) -> Result<Ymd, String> {
    let d = Ymd::parse(text)?;
    let (lo, hi) = (
        Ymd::parse(EARLIEST_DATE).expect("a date"),
        Ymd::parse(LATEST_DATE).expect("a date"),
    );
    if d < lo || d > hi {
        return Err(format!(
            "{text} is outside {EARLIEST_DATE} to {LATEST_DATE}"
        ));
    }
    Ok(d)
}

/// Reads fields of one JSON object, collecting problems.
struct Fields<'a> {
    obj: &'a serde_json::Map<String, Value>,
    at: String,
    errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, at: &str, known: &[&str]) -> Result<Self, Vec<FieldError>> {
        let obj = v
            .as_object()
            .ok_or_else(|| vec![err(at, "must be an object")])?;
        let mut f = Fields {
            obj,
            at: at.to_string(),
            errors: Vec::new(),
        };
        for k in obj.keys() {
            if !known.contains(&k.as_str()) {
                f.errors.push(err(
                    &f.path(k),
                    format!("unknown field (known: {})", known.join(", ")),
                ));
            }
        }
        Ok(f)
    }

    fn path(&self, k: &str) -> String {
        format!("{}.{k}", self.at)
    }

    fn string(&mut self, k: &str, max: usize) -> String {
        self.text(k, max, false)
    }

    /// A required text field; `multiline` allows line breaks and tabs.
    fn text(&mut self, k: &str, max: usize, multiline: bool) -> String {
        match self.obj.get(k) {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= max => {
                if let Err(m) = check_text(s, multiline) {
                    self.errors.push(err(&self.path(k), m));
                    return String::new();
                }
                s.trim().to_string()
            }
            Some(Value::String(s)) if s.len() > max => {
                self.errors
                    .push(err(&self.path(k), format!("longer than {max} characters")));
                String::new()
            }
            Some(Value::String(_)) | None | Some(Value::Null) => {
                self.errors.push(err(&self.path(k), "is required"));
                String::new()
            }
            Some(_) => {
                self.errors.push(err(&self.path(k), "must be a string"));
                String::new()
            }
        }
    }

    fn optional_string(&mut self, k: &str, max: usize) -> Option<String> {
        match self.obj.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(_) => Some(self.string(k, max)),
        }
    }

    /// An id ([`check_id`]).
    fn id(&mut self, k: &str) -> String {
        match self.obj.get(k) {
            Some(Value::String(s)) => {
                if let Err(m) = check_id(s) {
                    self.errors.push(err(&self.path(k), m));
                }
                s.clone()
            }
            None | Some(Value::Null) => {
                self.errors.push(err(&self.path(k), "is required"));
                String::new()
            }
            Some(_) => {
                self.errors.push(err(&self.path(k), "must be a string"));
                String::new()
            }
        }
    }

    /// A date between [`EARLIEST_DATE`] and [`LATEST_DATE`].
    fn date(&mut self, k: &str) -> String {
        let s = self.string(k, 10);
        if !s.is_empty()
            && let Err(e) = check_date(&s)
        {
            self.errors.push(err(&self.path(k), e));
        }
        s
    }

    fn amount(&mut self, k: &str, currency: &str) -> i64 {
        let path = self.path(k);
        self.amount_at(self.obj.get(k), &path, currency)
    }

    fn amount_at(&mut self, v: Option<&Value>, path: &str, currency: &str) -> i64 {
        match v {
            None | Some(Value::Null) => {
                self.errors.push(err(path, "is required"));
                0
            }
            // Without a known currency only the amount's form is checked
            // (with the most decimals any currency has); the currency's own
            // error says the rest.
            Some(v) if money::currency_digits(currency).is_none() => {
                if let Err(e) = money::from_json(v, "KWD") {
                    self.errors.push(err(path, e.replace(" for KWD", "")));
                }
                0
            }
            Some(v) => match money::from_json(v, currency) {
                Ok(n) => n,
                Err(e) => {
                    self.errors.push(err(path, e));
                    0
                }
            },
        }
    }
}

/// Validates one document.
pub fn document(v: &Value, at: &str) -> Result<Document, Vec<FieldError>> {
    let mut f = Fields::new(
        v,
        at,
        &[
            "tenant_id",
            "id",
            "number",
            "vendor",
            "issue_date",
            "due_date",
            "currency",
            "lines",
            "total",
            "status",
        ],
    )?;
    let tenant_id = f.id("tenant_id");
    let id = f.id("id");
    let number = f.string("number", 64);
    let vendor = match f.obj.get("vendor") {
        Some(vv) => match Fields::new(vv, &f.path("vendor"), &["id", "name"]) {
            Ok(mut vf) => {
                let vendor = Vendor {
                    id: vf.id("id"),
                    name: vf.string("name", 200),
                };
                f.errors.append(&mut vf.errors);
                vendor
            }
            Err(mut e) => {
                f.errors.append(&mut e);
                Vendor {
                    id: String::new(),
                    name: String::new(),
                }
            }
        },
        None => {
            f.errors.push(err(&f.path("vendor"), "is required"));
            Vendor {
                id: String::new(),
                name: String::new(),
            }
        }
    };
    let issue_date = f.date("issue_date");
    let due_date = f.date("due_date");
    if let (Ok(i), Ok(d)) = (Ymd::parse(&issue_date), Ymd::parse(&due_date))
        && d < i
    {
        f.errors.push(err(
            &f.path("due_date"),
            format!("{due_date} is before the issue date {issue_date}"),
        ));
    }
    let currency = f.string("currency", 3);
    if !currency.is_empty() && money::currency_digits(&currency).is_none() {
        f.errors.push(err(
            &f.path("currency"),
            format!(
                "`{}` is not an ISO 4217 currency code like USD (upper case)",
                currency.escape_debug()
            ),
        ));
    }
    let mut lines = Vec::new();
    match f.obj.get("lines") {
        Some(Value::Array(items)) if items.len() > MAX_LINES => f.errors.push(err(
            &f.path("lines"),
            format!("has {} lines; at most {MAX_LINES}", items.len()),
        )),
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, lv) in items.iter().enumerate() {
                let lat = format!("{}.lines[{i}]", f.at);
                match Fields::new(
                    lv,
                    &lat,
                    &[
                        "description",
                        "amount",
                        "category",
                        "department",
                        "tax_code",
                    ],
                ) {
                    Ok(mut lf) => {
                        let line = DocumentLine {
                            description: lf.text("description", 500, true),
                            amount: lf.amount("amount", &currency),
                            category: lf.string("category", 100),
                            department: lf.optional_string("department", 100),
                            tax_code: lf.optional_string("tax_code", 50),
                        };
                        f.errors.append(&mut lf.errors);
                        lines.push(line);
                    }
                    Err(mut e) => f.errors.append(&mut e),
                }
            }
        }
        Some(Value::Array(_)) => f
            .errors
            .push(err(&f.path("lines"), "needs at least one line")),
        Some(_) => f.errors.push(err(&f.path("lines"), "must be a list")),
        None => f.errors.push(err(&f.path("lines"), "is required")),
    }
    let total = f.amount("total", &currency);
    if total < 0 {
        f.errors.push(err(&f.path("total"), "must not be negative"));
    }
    // Every sum is checked: many lines near the largest amount overflow i64.
    let sum = lines
        .iter()
        .try_fold(0i64, |acc, l| acc.checked_add(l.amount));
    let Some(sum) = sum.filter(|s| s.abs() <= money::MAX_AMOUNT) else {
        f.errors.push(err(
            &f.path("lines"),
            "the lines add up to more than the largest amount",
        ));
        return Err(f.errors);
    };
    if !lines.is_empty() && f.errors.is_empty() && sum != total {
        let c = currency.as_str();
        f.errors.push(err(
            &f.path("total"),
            format!(
                "{} is not the sum of the lines, {}",
                money::to_decimal(total, c),
                money::to_decimal(sum, c)
            ),
        ));
    }
    let status = match f.obj.get("status").and_then(Value::as_str) {
        Some(s) => DocumentStatus::parse(s).unwrap_or_else(|| {
            f.errors.push(err(
                &f.path("status"),
                format!("`{s}` is not one of draft, awaiting_approval, approved, paid"),
            ));
            DocumentStatus::Draft
        }),
        None => {
            f.errors.push(err(
                &f.path("status"),
                "is required (draft, awaiting_approval, approved, paid)",
            ));
            DocumentStatus::Draft
        }
    };
    if f.errors.is_empty() {
        Ok(Document {
            tenant_id,
            id,
            number,
            vendor,
            issue_date,
            due_date,
            currency,
            lines,
            total,
            status,
        })
    } else {
        Err(f.errors)
    }
}

/// Validates one payment but its amount, which is read in its document's
/// currency by [`resolve_payment`].
pub fn payment(v: &Value, at: &str) -> Result<PaymentInput, Vec<FieldError>> {
    let mut f = Fields::new(
        v,
        at,
        &[
            "tenant_id",
            "id",
            "document_id",
            "amount",
            "date",
            "method",
            "funding_account",
            "bank_id",
            "disbursement_status",
            "check_number",
        ],
    )?;
    if f.obj.contains_key("check_number") {
        f.errors.push(err(
            &f.path("check_number"),
            "check numbers are assigned by ledgerbridge from the funding account: set its next number with `funding-account set-next`, or change a rejected payment's with `edit-export`",
        ));
    }
    let tenant_id = f.id("tenant_id");
    let id = f.id("id");
    if id.ends_with(MARKED_PAID_SUFFIX) {
        f.errors.push(err(
            &f.path("id"),
            format!("ids ending in `{MARKED_PAID_SUFFIX}` are the host's (the payment of a document marked paid)"),
        ));
    }
    let document_id = f.id("document_id");
    // Read in the document's currency once it is known (resolve_payment);
    // here only its presence and type.
    let amount = match f.obj.get("amount") {
        Some(v @ (Value::Number(_) | Value::String(_))) => v.clone(),
        None | Some(Value::Null) => {
            f.errors.push(err(&f.path("amount"), "is required"));
            Value::Null
        }
        Some(other) => {
            f.errors.push(err(
                &f.path("amount"),
                format!("`{other}` is not an amount"),
            ));
            Value::Null
        }
    };
    let date = f.date("date");
    let method = match f.obj.get("method").and_then(Value::as_str) {
        Some("check") => PaymentMethod::Check,
        Some("ach") => PaymentMethod::Ach,
        Some("wire") => PaymentMethod::Wire,
        Some("card") => PaymentMethod::Card,
        other => {
            f.errors.push(err(
                &f.path("method"),
                match other {
                    Some(s) => format!("`{s}` is not one of check, ach, wire, card"),
                    None => "is required (check, ach, wire, card)".into(),
                },
            ));
            PaymentMethod::Ach
        }
    };
    let funding_account = f.id("funding_account");
    let bank_id = match f.obj.get("bank_id") {
        None | Some(Value::Null) => None,
        Some(_) => Some(f.id("bank_id")),
    };
    let disbursement_status = match f.obj.get("disbursement_status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "initiated" => Some(DisbursementStatus::Initiated),
        Some(Value::String(s)) if s == "funding_complete" => {
            Some(DisbursementStatus::FundingComplete)
        }
        Some(Value::String(s)) if s == "failed" => Some(DisbursementStatus::Failed),
        Some(other) => {
            f.errors.push(err(
                &f.path("disbursement_status"),
                format!("`{other}` is not one of initiated, funding_complete, failed (leave it out for a payment made outside the product)"),
            ));
            None
        }
    };
    if f.errors.is_empty() {
        Ok(PaymentInput {
            payment: Payment {
                tenant_id,
                id,
                document_id,
                amount: 0,
                date,
                method,
                funding_account,
                // Check numbers are the host's to assign (C1).
                check_number: None,
                bank_id,
                disbursement_status,
            },
            amount,
            at: at.to_string(),
        })
    } else {
        Err(f.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        serde_json::json!({
            "tenant_id": "acme", "id": "doc-1", "number": "INV-1",
            "vendor": {"id": "v-1", "name": "Acme"},
            "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
            "lines": [{"description": "Paper", "amount": "100.50", "category": "office"},
                      {"description": "Ink", "amount": 20, "category": "office", "department": "ops"}],
            "total": "120.50", "status": "approved"
        })
    }

    #[test]
    fn v1_a_good_document_parses_exactly() {
        let d = document(&doc(), "d").unwrap();
        assert_eq!(d.total, 12_050);
        assert_eq!(d.lines[1].amount, 2_000);
        assert_eq!(d.lines[1].department.as_deref(), Some("ops"));
    }

    #[test]
    fn v1_every_problem_names_its_field() {
        let mut v = doc();
        v["issue_date"] = "2026-02-30".into();
        v["currency"] = "usd".into();
        v["lines"][1]["amount"] = "1.2345".into();
        v["vendor"]["name"] = "".into();
        v["colour"] = "red".into();
        let errors = document(&v, "documents[3]").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "documents[3].issue_date",
            "documents[3].currency",
            "documents[3].lines[1].amount",
            "documents[3].vendor.name",
            "documents[3].colour",
        ] {
            assert!(fields.contains(&f), "{f} not named in {errors:?}");
        }
    }

    #[test]
    fn v1_total_must_be_the_sum_of_the_lines() {
        let mut v = doc();
        v["total"] = "999.00".into();
        let e = document(&v, "d").unwrap_err();
        assert_eq!(e[0].field, "d.total");
        assert!(e[0].message.contains("120.50"), "{}", e[0].message);
    }

    #[test]
    fn v1_a_batch_with_one_bad_item_is_refused_whole() {
        let mut bad = doc();
        bad["id"] = "has spaces".into();
        let json = serde_json::json!({"documents": [doc(), bad]}).to_string();
        let e = parse_batch(&json).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].field, "documents[1].id");
        assert!(parse_batch("{\"documents\": 5}").is_err());
    }

    #[test]
    fn v1_payments_are_checked() {
        let p = serde_json::json!({"tenant_id": "acme", "id": "p1", "document_id": "doc-1", "amount": "0",
            "date": "2026-11-20", "method": "ach", "funding_account": "op", "check_number": 7,
            "disbursement_status": "sent"});
        let errors = payment(&p, "p").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        // Check numbers are assigned by the host, never taken from input (C1).
        assert_eq!(fields, ["p.check_number", "p.disbursement_status"]);
        assert!(errors[0].message.contains("funding-account set-next"));
        let mut ok = p.clone();
        ok.as_object_mut().unwrap().remove("check_number");
        ok["disbursement_status"] = "initiated".into();
        let input = payment(&ok, "payments[0]").unwrap();
        let e = resolve_payment(&input, "USD").unwrap_err();
        assert_eq!(e.field, "payments[0].amount");
        assert!(e.message.contains("more than zero"), "{e}");
    }

    /// Issue 7 item 2: a payment's amount is read in its document's currency.
    #[test]
    fn v1_payment_amounts_are_read_in_the_documents_currency() {
        let p = serde_json::json!({"tenant_id": "acme", "id": "p1", "document_id": "doc-1", "amount": "480",
            "date": "2026-11-20", "method": "ach", "funding_account": "op"});
        let input = payment(&p, "p").unwrap();
        assert_eq!(resolve_payment(&input, "JPY").unwrap().amount, 480);
        assert_eq!(resolve_payment(&input, "USD").unwrap().amount, 48_000);
        let mut kwd = p.clone();
        kwd["amount"] = "1.234".into();
        let input = payment(&kwd, "p").unwrap();
        assert_eq!(resolve_payment(&input, "KWD").unwrap().amount, 1_234);
        assert!(resolve_payment(&input, "USD").is_err());
        let mut yen = p;
        yen["amount"] = "480.5".into();
        let input = payment(&yen, "p").unwrap();
        assert!(
            resolve_payment(&input, "JPY").is_err(),
            "JPY has no decimals"
        );
    }

    fn fields_of(v: &Value) -> Vec<String> {
        document(v, "d")
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    /// Issue 7 item 15: what V1 refuses.
    #[test]
    fn v1_currencies_dates_totals_and_text_are_checked() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("currency", "ZZZ".into(), "d.currency"),
            ("currency", "XAU".into(), "d.currency"),
            ("issue_date", "0000-01-01".into(), "d.issue_date"),
            ("due_date", "9999-12-31".into(), "d.due_date"),
            ("number", "INV\u{0}1".into(), "d.number"),
            ("number", "INV\u{1b}[31m".into(), "d.number"),
        ];
        for (k, v, field) in cases {
            let mut d = doc();
            d[k] = v.clone();
            assert!(
                fields_of(&d).contains(&field.to_string()),
                "{k}={v} not refused"
            );
        }
        let mut d = doc();
        d["vendor"]["name"] = "Acme\u{0}".into();
        assert!(fields_of(&d).contains(&"d.vendor.name".to_string()));
        // A negative total (lines may be negative: a discount line).
        let mut d = doc();
        d["lines"][0]["amount"] = "-100.50".into();
        d["lines"][1]["amount"] = "20".into();
        d["total"] = "-80.50".into();
        assert!(fields_of(&d).contains(&"d.total".to_string()));
        let mut d = doc();
        d["lines"][0]["amount"] = "-10.00".into();
        d["lines"][1]["amount"] = "30".into();
        d["total"] = "20.00".into();
        assert!(document(&d, "d").is_ok(), "a discount line is fine");
        // Descriptions may span lines, other text may not.
        let mut d = doc();
        d["lines"][0]["description"] = "Paper\nA4".into();
        assert!(document(&d, "d").is_ok());
        // Ids: one rule everywhere.
        for bad in ["..", ".", "", "a/b"] {
            let mut d = doc();
            d["tenant_id"] = bad.into();
            assert!(
                fields_of(&d).contains(&"d.tenant_id".to_string()),
                "{bad:?}"
            );
        }
        let mut d = doc();
        d["id"] = "x".repeat(100_000).into();
        assert!(fields_of(&d).contains(&"d.id".to_string()));
        // Empty batches.
        for empty in ["[]", "{}", "{\"documents\": [], \"payments\": []}"] {
            let e = parse_batch(empty).unwrap_err();
            assert!(e.to_string().contains("no documents"), "{empty}: {e}");
        }
    }

    /// Issue 7 item 4: two lines of 92233720368547758.07 made `import` panic.
    #[test]
    fn v1_huge_amounts_are_refused_not_overflowed() {
        let mut d = doc();
        d["lines"][0]["amount"] = "92233720368547758.07".into();
        d["lines"][1]["amount"] = "92233720368547758.07".into();
        d["total"] = "1.00".into();
        assert!(fields_of(&d).contains(&"d.lines[0].amount".to_string()));
        // At the maximum each, the sum of many lines overflows i64 unless checked.
        let mut d = doc();
        let line =
            serde_json::json!({"description": "x", "amount": "9999999999999.99", "category": "c"});
        d["lines"] = Value::Array(vec![line; 1000]);
        d["total"] = "1.00".into();
        assert!(fields_of(&d).contains(&"d.lines".to_string()));
    }

    mod fuzz {
        //! Issue 7 item 4: any JSON document or payment is refused with a
        //! field, or accepted; intake never panics.
        use super::super::*;
        use proptest::prelude::*;

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>().prop_map(
                    |f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                ),
                "[0-9]{1,22}(\\.[0-9]{0,4})?".prop_map(Value::String),
                "-?[0-9]{0,20}\\.?[0-9]{0,20}".prop_map(Value::String),
                "[A-Z]{3}".prop_map(Value::String),
                "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::String),
                ".{0,40}".prop_map(Value::String),
                prop::sample::select(vec![
                    "approved",
                    "paid",
                    "draft",
                    "check",
                    "ach",
                    "funding_complete",
                    "USD",
                    "JPY",
                    "KWD"
                ])
                .prop_map(|s| Value::String(s.into())),
            ]
        }

        fn json() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(3, 40, 8, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(
                        prop::sample::select(vec![
                            "tenant_id",
                            "id",
                            "number",
                            "vendor",
                            "name",
                            "issue_date",
                            "due_date",
                            "currency",
                            "lines",
                            "description",
                            "amount",
                            "category",
                            "department",
                            "tax_code",
                            "total",
                            "status",
                            "document_id",
                            "date",
                            "method",
                            "funding_account",
                            "bank_id",
                            "disbursement_status",
                            "check_number",
                            "x",
                        ]),
                        inner,
                        0..12,
                    )
                    .prop_map(|m| Value::Object(
                        m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                    )),
                ]
            })
        }

        /// A well-formed document whose values are then replaced at random,
        /// so the fuzzer reaches deep checks (sums, currencies) too.
        fn near_document() -> impl Strategy<Value = Value> {
            (
                prop::collection::vec(leaf(), 1..5),
                leaf(),
                leaf(),
                leaf(),
            )
                .prop_map(|(amounts, total, currency, date)| {
                    let lines: Vec<Value> = amounts
                        .into_iter()
                        .map(|a| serde_json::json!({"description": "x", "amount": a, "category": "c"}))
                        .collect();
                    serde_json::json!({
                        "tenant_id": "t", "id": "d", "number": "n", "vendor": {"id": "v", "name": "V"},
                        "issue_date": date, "due_date": "2026-12-01", "currency": currency,
                        "lines": lines, "total": total, "status": "approved"
                    })
                })
        }

        fn refused_with_fields(r: Result<Batch, InvalidInput>) -> bool {
            match r {
                Ok(_) => true,
                Err(InvalidInput(errors)) => {
                    !errors.is_empty() && errors.iter().all(|e| !e.field.is_empty())
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
            #[test]
            fn intake_never_panics(docs in prop::collection::vec(prop_oneof![json(), near_document()], 0..4),
                                   pays in prop::collection::vec(json(), 0..4),
                                   currency in prop::sample::select(vec!["USD", "JPY", "KWD", "ZZZ", ""])) {
                let batch = serde_json::json!({"documents": docs, "payments": pays}).to_string();
                let r = parse_batch(&batch);
                if let Ok(b) = &r {
                    for p in &b.payments {
                        let _ = resolve_payment(p, currency);
                    }
                    for d in &b.documents {
                        prop_assert!(d.total >= 0 && d.total <= money::MAX_AMOUNT);
                    }
                }
                prop_assert!(refused_with_fields(r));
            }
        }
    }
}
