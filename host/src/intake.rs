//! Intake (V1): documents and payments arrive as JSON and are validated
//! before anything is stored. Every problem names its field; a batch with
//! any problem is refused whole.
//!
//! ```json
//! {
//!   "documents": [{
//!     "tenant": "acme", "id": "doc-1001", "number": "INV-7731",
//!     "vendor": {"id": "v-1", "name": "Acme Paper"},
//!     "issue_date": "2026-11-02", "due_date": "2026-12-02", "currency": "USD",
//!     "lines": [{"description": "Paper", "amount": "480.00", "category": "office", "department": "ops"}],
//!     "total": "480.00", "status": "approved"
//!   }],
//!   "payments": [{
//!     "tenant": "acme", "id": "pay-1", "document_id": "doc-1001", "amount": "480.00",
//!     "date": "2026-11-20", "method": "check", "funding_account": "operating", "check_number": 10001
//!   }]
//! }
//! ```
//! Amounts are decimal strings or JSON numbers in the currency's units;
//! they are stored exactly, in minor units.

use crate::model::{
    DisbursementStatus, Document, DocumentLine, DocumentStatus, Payment, PaymentMethod, Vendor,
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

/// A validated batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub documents: Vec<Document>,
    pub payments: Vec<Payment>,
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
    let raw: RawBatch = serde_json::from_str(json).map_err(|e| {
        InvalidInput(vec![FieldError {
            field: "(input)".into(),
            message: format!("not a batch of {{\"documents\": [...], \"payments\": [...]}}: {e}"),
        }])
    })?;
    let mut errors = Vec::new();
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
        match self.obj.get(k) {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= max => {
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

    /// An id: 1 to 128 of letters, digits and `._:-`.
    fn id(&mut self, k: &str) -> String {
        let s = self.string(k, 128);
        if !s.is_empty()
            && !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        {
            self.errors.push(err(
                &self.path(k),
                format!("`{s}` may hold only letters, digits, `.`, `_`, `:` and `-`"),
            ));
        }
        s
    }

    fn date(&mut self, k: &str) -> String {
        let s = self.string(k, 10);
        if !s.is_empty()
            && let Err(e) = Ymd::parse(&s)
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
            Some(v) => {
                match money::from_json(v, if currency.is_empty() { "USD" } else { currency }) {
                    Ok(n) => n,
                    Err(e) => {
                        self.errors.push(err(path, e));
                        0
                    }
                }
            }
        }
    }
}

/// Validates one document.
pub fn document(v: &Value, at: &str) -> Result<Document, Vec<FieldError>> {
    let mut f = Fields::new(
        v,
        at,
        &[
            "tenant",
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
    let tenant_id = f.id("tenant");
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
    let iso = currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency.is_empty() && !iso {
        f.errors.push(err(
            &f.path("currency"),
            format!("`{currency}` is not an ISO 4217 code like USD"),
        ));
    }
    let mut lines = Vec::new();
    match f.obj.get("lines") {
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
                            description: lf.string("description", 500),
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
    let sum: i64 = lines.iter().map(|l| l.amount).sum();
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

/// Validates one payment. Its currency is its document's; the amount is
/// read with two decimals here and checked against the document on record.
pub fn payment(v: &Value, at: &str) -> Result<Payment, Vec<FieldError>> {
    let mut f = Fields::new(
        v,
        at,
        &[
            "tenant",
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
    let tenant_id = f.id("tenant");
    let id = f.id("id");
    let document_id = f.id("document_id");
    let amount = f.amount("amount", "USD");
    if amount <= 0 && !f.errors.iter().any(|e| e.field.ends_with(".amount")) {
        f.errors
            .push(err(&f.path("amount"), "must be more than zero"));
    }
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
    let bank_id = f.optional_string("bank_id", 100);
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
        Ok(Payment {
            tenant_id,
            id,
            document_id,
            amount,
            date,
            method,
            funding_account,
            // Check numbers are the host's to assign (C1).
            check_number: None,
            bank_id,
            disbursement_status,
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
            "tenant": "acme", "id": "doc-1", "number": "INV-1",
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
        v["lines"][1]["amount"] = "1.234".into();
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
        let p = serde_json::json!({"tenant": "acme", "id": "p1", "document_id": "doc-1", "amount": "0",
            "date": "2026-11-20", "method": "ach", "funding_account": "op", "check_number": 7,
            "disbursement_status": "sent"});
        let errors = payment(&p, "p").unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        // Check numbers are assigned by the host, never taken from input (C1).
        assert_eq!(
            fields,
            ["p.check_number", "p.amount", "p.disbursement_status"]
        );
        assert!(errors[0].message.contains("funding-account set-next"));
    }
}
