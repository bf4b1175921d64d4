//! The simulated organisation's books: invoices, payments, contacts, the
//! chart of accounts, and Xero's rules on them (validation with Xero's
//! messages, what cannot be edited, amounts and tax).

use super::wire::{date_ms, ms_date};
use crate::money::{Amount, parse_amount, round_to};
use serde_json::{Map, Value, json};

/// What an account is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Bank,
    Expense,
    Revenue,
    Liability,
}

/// An account of the chart.
#[derive(Debug, Clone)]
pub struct Account {
    pub code: String,
    pub name: String,
    pub kind: AccountKind,
}

/// An organisation as the simulator starts it.
#[derive(Debug, Clone)]
pub struct Organisation {
    pub name: String,
    pub base_currency: String,
    /// Currencies enabled (the base one included).
    pub currencies: Vec<String>,
    pub accounts: Vec<Account>,
    /// Tax types and their rates in percent.
    pub tax_types: Vec<(String, f64)>,
    /// Tracking categories and their options.
    pub tracking: Vec<(String, Vec<String>)>,
    /// Contacts: `(ContactID, Name)`.
    pub contacts: Vec<(String, String)>,
    /// `YYYY-MM-DD`.
    pub period_lock_date: Option<String>,
    pub end_of_year_lock_date: Option<String>,
}

impl Organisation {
    /// A US organisation with the expense accounts of Xero's demo company
    /// (400 Advertising … 493 Travel), bank accounts 090 and 091, the tax
    /// types `INPUT` (10%), `NONE` and `EXEMPTEXPENSES`, tracking
    /// categories Region (North, South) and Department (Sales, Operations),
    /// and no lock dates.
    pub fn demo() -> Organisation {
        let expense = [
            ("400", "Advertising"),
            ("404", "Bank Fees"),
            ("408", "Cleaning"),
            ("412", "Consulting & Accounting"),
            ("425", "Freight & Courier"),
            ("429", "General Expenses"),
            ("433", "Insurance"),
            ("453", "Office Expenses"),
            ("461", "Printing & Stationery"),
            ("485", "Subscriptions"),
            ("489", "Telephone & Internet"),
            ("493", "Travel - National"),
        ];
        let mut accounts: Vec<Account> = expense
            .iter()
            .map(|(c, n)| Account {
                code: c.to_string(),
                name: n.to_string(),
                kind: AccountKind::Expense,
            })
            .collect();
        accounts.push(Account {
            code: "200".into(),
            name: "Sales".into(),
            kind: AccountKind::Revenue,
        });
        accounts.push(Account {
            code: "800".into(),
            name: "Accounts Payable".into(),
            kind: AccountKind::Liability,
        });
        for (c, n) in [
            ("090", "Business Bank Account"),
            ("091", "Business Savings Account"),
        ] {
            accounts.push(Account {
                code: c.into(),
                name: n.into(),
                kind: AccountKind::Bank,
            });
        }
        Organisation {
            name: "Demo Company (US)".into(),
            base_currency: "USD".into(),
            currencies: vec!["USD".into(), "EUR".into(), "JPY".into()],
            accounts,
            tax_types: vec![
                ("INPUT".into(), 10.0),
                ("NONE".into(), 0.0),
                ("EXEMPTEXPENSES".into(), 0.0),
            ],
            tracking: vec![
                ("Region".into(), vec!["North".into(), "South".into()]),
                (
                    "Department".into(),
                    vec!["Sales".into(), "Operations".into()],
                ),
            ],
            contacts: Vec::new(),
            period_lock_date: None,
            end_of_year_lock_date: None,
        }
    }
}

/// A line item as kept.
#[derive(Debug, Clone)]
pub struct Line {
    pub id: String,
    pub description: String,
    /// Quantity and unit amount in ten-thousandths.
    pub quantity: Amount,
    pub unit_amount: Amount,
    pub account_code: String,
    pub tax_type: Option<String>,
    pub tracking: Vec<(String, String)>,
}

/// An invoice as kept.
#[derive(Debug, Clone)]
pub struct Invoice {
    pub id: String,
    pub kind: String,
    pub contact_id: String,
    pub contact_name: String,
    pub date: String,
    pub due_date: Option<String>,
    pub number: String,
    pub url: Option<String>,
    pub currency: String,
    pub status: String,
    pub line_amount_types: String,
    pub lines: Vec<Line>,
    pub updated_ms: i64,
    /// Sum of live payments, in ten-thousandths.
    pub paid: Amount,
    pub payment_ids: Vec<String>,
    pub fully_paid_on: Option<String>,
}

/// A payment as kept.
#[derive(Debug, Clone)]
pub struct Payment {
    pub id: String,
    pub invoice_id: String,
    pub account_code: String,
    pub date: String,
    pub amount: Amount,
    pub reference: String,
    pub status: String,
    pub updated_ms: i64,
}

/// An organisation's books.
#[derive(Debug, Clone)]
pub struct Books {
    pub id: String,
    pub org: Organisation,
    pub invoices: Vec<Invoice>,
    pub payments: Vec<Payment>,
    pub contacts: Vec<(String, String)>,
}

/// Currency digits Xero rounds totals to.
pub fn digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "VND" | "CLP" | "ISK" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

/// A lock date in Xero's message format, `30-Nov-2018`.
fn shown_date(date: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    match chrono::NaiveDate::parse_from_str(date.get(..10).unwrap_or(date), "%Y-%m-%d") {
        Ok(d) => {
            use chrono::Datelike as _;
            format!(
                "{:02}-{}-{}",
                d.day(),
                MONTHS[d.month0() as usize],
                d.year()
            )
        }
        Err(_) => date.to_string(),
    }
}

/// Whether `text` is a `YYYY-MM-DD` date (time of day allowed after it).
pub fn day_of(text: &str) -> Option<String> {
    let day = text.get(..10)?;
    let ok = day.len() == 10
        && day.as_bytes()[4] == b'-'
        && day.as_bytes()[7] == b'-'
        && chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").is_ok();
    ok.then(|| day.to_string())
}

impl Books {
    pub fn new(id: String, org: Organisation) -> Books {
        let contacts = org.contacts.clone();
        Books {
            id,
            org,
            invoices: Vec::new(),
            payments: Vec::new(),
            contacts,
        }
    }

    pub fn invoice(&self, id: &str) -> Option<&Invoice> {
        self.invoices.iter().find(|i| i.id.eq_ignore_ascii_case(id))
    }

    fn invoice_mut(&mut self, id: &str) -> Option<&mut Invoice> {
        self.invoices
            .iter_mut()
            .find(|i| i.id.eq_ignore_ascii_case(id))
    }

    fn rate(&self, tax_type: &Option<String>) -> f64 {
        tax_type
            .as_ref()
            .and_then(|t| self.org.tax_types.iter().find(|(n, _)| n == t))
            .map_or(0.0, |(_, r)| *r)
    }

    /// Each line's amount, tax, and the subtotal, tax and total, in the
    /// currency's digits (as ten-thousandths).
    pub fn amounts(&self, inv: &Invoice) -> (Vec<(Amount, Amount)>, Amount, Amount, Amount) {
        let d = digits(&inv.currency);
        let mut lines = Vec::new();
        let (mut sub, mut tax) = (0i128, 0i128);
        for l in &inv.lines {
            let amount = round_to(l.quantity as i128 * l.unit_amount as i128 / 10_000, d);
            let rate = self.rate(&l.tax_type);
            let t = match inv.line_amount_types.as_str() {
                "NoTax" => 0,
                "Inclusive" => round_to((amount as f64 * rate / (100.0 + rate)).round() as i128, d),
                _ => round_to((amount as f64 * rate / 100.0).round() as i128, d),
            };
            let net = if inv.line_amount_types == "Inclusive" {
                amount - t
            } else {
                amount
            };
            sub += net;
            tax += t;
            lines.push((amount as Amount, t as Amount));
        }
        (lines, sub as Amount, tax as Amount, (sub + tax) as Amount)
    }

    pub fn total(&self, inv: &Invoice) -> Amount {
        self.amounts(inv).3
    }

    /// The lock date a document dated `date` falls on or before, as Xero's
    /// message, if any.
    pub fn locked(&self, date: &str) -> Option<String> {
        if let Some(l) = &self.org.end_of_year_lock_date
            && date <= l.as_str()
        {
            return Some(format!(
                "The document date cannot be before the end of year lock date, currently set at {}",
                shown_date(l)
            ));
        }
        if let Some(l) = &self.org.period_lock_date
            && date <= l.as_str()
        {
            return Some(format!(
                "The document date cannot be before the period lock date, currently set at {}",
                shown_date(l)
            ));
        }
        None
    }

    /// Saves an invoice element (create, or update when it names an
    /// existing `InvoiceID`), or says why Xero refuses it. `create_only`:
    /// `PUT`, which never updates. `unitdp4`: the request asked for four
    /// decimal places of unit amounts (`unitdp=4`); without it Xero rounds
    /// unit amounts to two.
    pub fn save_invoice(
        &mut self,
        el: &Value,
        create_only: bool,
        now_ms: i64,
        dry_run: bool,
        unitdp4: bool,
    ) -> Result<String, Vec<String>> {
        let mut errors = Vec::new();
        let Some(obj) = el.as_object() else {
            return Err(vec!["An invoice must be an object".into()]);
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let existing = text("InvoiceID").and_then(|id| self.invoice(&id).cloned());
        if text("InvoiceID").is_some() && existing.is_none() {
            return Err(vec![format!(
                "Invoice not found: {}",
                text("InvoiceID").unwrap_or_default()
            )]);
        }
        if existing.is_some() && create_only {
            return Err(vec![
                "An invoice with this InvoiceID already exists; PUT only creates (use POST to update)"
                    .into(),
            ]);
        }
        if let Some(e) = &existing
            && (e.paid > 0 || matches!(e.status.as_str(), "PAID" | "VOIDED" | "DELETED"))
        {
            return Err(vec!["Invoice not of valid status for modification".into()]);
        }
        let mut inv = existing.clone().unwrap_or_else(|| Invoice {
            id: uuid::Uuid::new_v4().to_string(),
            kind: String::new(),
            contact_id: String::new(),
            contact_name: String::new(),
            date: ms_date(now_ms),
            due_date: None,
            number: String::new(),
            url: None,
            currency: self.org.base_currency.clone(),
            status: "DRAFT".into(),
            line_amount_types: "Exclusive".into(),
            lines: Vec::new(),
            updated_ms: now_ms,
            paid: 0,
            payment_ids: Vec::new(),
            fully_paid_on: None,
        });
        if let Some(t) = text("Type") {
            if t != "ACCPAY" && t != "ACCREC" {
                errors.push(format!("Invoice Type '{t}' is not valid"));
            } else if existing.as_ref().is_some_and(|e| e.kind != t) {
                errors.push("The Invoice Type cannot be changed".into());
            }
            inv.kind = t;
        } else if existing.is_none() {
            errors.push("Invoice Type must be specified".into());
        }
        match obj.get("Contact") {
            Some(c) => {
                let id = c.get("ContactID").and_then(Value::as_str);
                let name = c.get("Name").and_then(Value::as_str);
                match (id, name) {
                    (Some(id), _) => match self
                        .contacts
                        .iter()
                        .find(|(i, _)| i.eq_ignore_ascii_case(id))
                    {
                        Some((i, n)) => {
                            inv.contact_id = i.clone();
                            inv.contact_name = n.clone();
                        }
                        None => errors.push(format!(
                            "The contact with ContactID '{id}' could not be found"
                        )),
                    },
                    (None, Some(n)) if !n.trim().is_empty() => {
                        match self
                            .contacts
                            .iter()
                            .find(|(_, x)| x.eq_ignore_ascii_case(n))
                        {
                            Some((i, x)) => {
                                inv.contact_id = i.clone();
                                inv.contact_name = x.clone();
                            }
                            None => {
                                inv.contact_id = uuid::Uuid::new_v4().to_string();
                                inv.contact_name = n.to_string();
                            }
                        }
                    }
                    _ => errors
                        .push("A Contact must be specified for this type of transaction".into()),
                }
            }
            None if existing.is_none() => {
                errors.push("A Contact must be specified for this type of transaction".into())
            }
            None => {}
        }
        for (k, slot) in [("Date", 0), ("DueDate", 1)] {
            if let Some(v) = obj.get(k) {
                match v
                    .as_str()
                    .and_then(|s| day_of(s).or_else(|| date_ms(s).map(ms_date)))
                {
                    Some(d) if slot == 0 => inv.date = d,
                    Some(d) => inv.due_date = Some(d),
                    None => errors.push(format!("{k} is not a valid date")),
                }
            }
        }
        if let Some(n) = text("InvoiceNumber") {
            if n.chars().count() > 255 {
                errors.push("InvoiceNumber must be at most 255 characters".into());
            }
            inv.number = n;
        }
        if let Some(u) = text("Url") {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                errors.push("Url must be a valid absolute http or https URL".into());
            }
            inv.url = Some(u);
        }
        if let Some(c) = text("CurrencyCode") {
            if !self.org.currencies.contains(&c) {
                errors.push(format!(
                    "The currency code '{c}' is not enabled for this organisation"
                ));
            }
            inv.currency = c;
        }
        if let Some(t) = text("LineAmountTypes") {
            if !matches!(t.as_str(), "Exclusive" | "Inclusive" | "NoTax") {
                errors.push(format!("LineAmountTypes '{t}' is not valid"));
            }
            inv.line_amount_types = t;
        }
        if let Some(lines) = obj.get("LineItems") {
            match lines.as_array() {
                Some(items) => match self.lines(&inv, items, unitdp4) {
                    Ok(l) => inv.lines = l,
                    Err(mut e) => errors.append(&mut e),
                },
                None => errors.push("LineItems must be a list".into()),
            }
        }
        let old_status = existing.as_ref().map(|e| e.status.clone());
        if let Some(s) = text("Status") {
            let allowed = match (old_status.as_deref(), s.as_str()) {
                (_, "PAID") => false,
                (None, "DRAFT" | "SUBMITTED" | "AUTHORISED") => true,
                (Some(a), b) if a == b => true,
                (Some("DRAFT"), "SUBMITTED" | "AUTHORISED" | "DELETED") => true,
                (Some("SUBMITTED"), "AUTHORISED" | "DRAFT" | "DELETED") => true,
                (Some("AUTHORISED"), "VOIDED") => inv.paid == 0,
                _ => false,
            };
            if !allowed {
                errors.push(format!(
                    "Invoice status cannot be changed from {} to {s}",
                    old_status.as_deref().unwrap_or("new")
                ));
            }
            inv.status = s;
        }
        if inv.lines.is_empty() && inv.status == "AUTHORISED" {
            errors.push("An approved invoice must have at least one line item".into());
        }
        // Lock dates: an approved document dated on or before one cannot be
        // saved; drafts and submitted ones still can.
        if matches!(inv.status.as_str(), "AUTHORISED" | "PAID")
            && let Some(m) = self.locked(&inv.date)
        {
            errors.push(m);
        }
        if existing.is_some()
            && let Some(old) = &existing
            && old.status == "AUTHORISED"
            && let Some(m) = self.locked(&old.date)
        {
            errors.push(m);
        }
        if !errors.is_empty() {
            errors.dedup();
            return Err(errors);
        }
        if dry_run {
            return Ok(inv.id);
        }
        if !self.contacts.iter().any(|(i, _)| *i == inv.contact_id) {
            self.contacts
                .push((inv.contact_id.clone(), inv.contact_name.clone()));
        }
        inv.updated_ms = now_ms;
        let id = inv.id.clone();
        match self.invoice_mut(&id) {
            Some(slot) => *slot = inv,
            None => self.invoices.push(inv),
        }
        Ok(id)
    }

    /// The line items of `items` for `inv`: each with its `LineItemID` is
    /// updated, each without is added, and lines left out are deleted.
    fn lines(
        &self,
        inv: &Invoice,
        items: &[Value],
        unitdp4: bool,
    ) -> Result<Vec<Line>, Vec<String>> {
        let mut errors = Vec::new();
        let mut out = Vec::new();
        for item in items {
            let text = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
            let old = text("LineItemID")
                .and_then(|id| inv.lines.iter().find(|l| l.id.eq_ignore_ascii_case(&id)));
            if let Some(id) = text("LineItemID")
                && old.is_none()
            {
                errors.push(format!("LineItemID {id} does not exist on this invoice"));
                continue;
            }
            let mut line = old.cloned().unwrap_or(Line {
                id: uuid::Uuid::new_v4().to_string(),
                description: String::new(),
                quantity: 10_000,
                unit_amount: 0,
                account_code: String::new(),
                tax_type: None,
                tracking: Vec::new(),
            });
            if let Some(d) = text("Description") {
                line.description = d;
            }
            for (k, slot) in [("Quantity", 0), ("UnitAmount", 1)] {
                if let Some(v) = item.get(k) {
                    match parse_amount(v, 4) {
                        Some(a) if slot == 0 => line.quantity = a,
                        Some(a) if unitdp4 => line.unit_amount = a,
                        Some(a) => line.unit_amount = round_to(a.into(), 2) as Amount,
                        None => errors.push(format!(
                            "{k} is not a valid number (at most 4 decimal places)"
                        )),
                    }
                }
            }
            if let Some(v) = item.get("LineAmount")
                && item.get("UnitAmount").is_none()
            {
                match parse_amount(v, 4) {
                    Some(a) if line.quantity != 0 => {
                        line.unit_amount = (a as i128 * 10_000 / line.quantity as i128) as Amount
                    }
                    _ => errors.push("LineAmount is not a valid number".into()),
                }
            }
            if let Some(code) = text("AccountCode") {
                let ok = self
                    .org
                    .accounts
                    .iter()
                    .any(|a| a.code == code && a.kind != AccountKind::Bank);
                if !ok {
                    errors.push(format!(
                        "Account code '{code}' is not a valid code for this document."
                    ));
                }
                line.account_code = code;
            } else if line.account_code.is_empty() && inv.status != "DRAFT" {
                errors.push("An account code must be specified for each line item".into());
            }
            if let Some(t) = text("TaxType") {
                if !self.org.tax_types.iter().any(|(n, _)| *n == t) {
                    errors.push(format!(
                        "The TaxType code '{t}' does not exist or cannot be used for this type of transaction."
                    ));
                }
                line.tax_type = Some(t);
            }
            if let Some(tr) = item.get("Tracking") {
                let list = tr.as_array().cloned().unwrap_or_default();
                if list.len() > 2 {
                    errors.push("A line item can have at most two tracking categories".into());
                }
                line.tracking.clear();
                for t in list {
                    let name = t.get("Name").and_then(Value::as_str).unwrap_or("");
                    let option = t.get("Option").and_then(Value::as_str).unwrap_or("");
                    match self.org.tracking.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
                        None => errors.push(format!("The TrackingCategory '{name}' does not exist.")),
                        Some((n, opts)) => match opts.iter().find(|o| o.eq_ignore_ascii_case(option)) {
                            None => errors.push(format!(
                                "The TrackingOption '{option}' does not exist for TrackingCategory '{n}'."
                            )),
                            Some(o) => line.tracking.push((n.clone(), o.clone())),
                        },
                    }
                }
            }
            out.push(line);
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Saves a payment element, or says why Xero refuses it.
    pub fn save_payment(
        &mut self,
        el: &Value,
        now_ms: i64,
        dry_run: bool,
    ) -> Result<String, Vec<String>> {
        let mut errors = Vec::new();
        let inv_ref = el.get("Invoice");
        let inv = inv_ref.and_then(|i| {
            if let Some(id) = i.get("InvoiceID").and_then(Value::as_str) {
                self.invoice(id).cloned()
            } else {
                let n = i.get("InvoiceNumber").and_then(Value::as_str)?;
                self.invoices.iter().find(|x| x.number == n).cloned()
            }
        });
        let Some(inv) = inv else {
            return Err(vec![
                "Invoice could not be found; a payment must name an InvoiceID or InvoiceNumber"
                    .into(),
            ]);
        };
        let account = el.get("Account").and_then(|a| {
            a.get("Code")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| {
                    a.get("AccountID")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
        });
        match account
            .as_deref()
            .and_then(|c| self.org.accounts.iter().find(|a| a.code == c))
        {
            Some(a) if a.kind == AccountKind::Bank => {}
            Some(a) => errors.push(format!(
                "Account code '{}' is not a bank account; payments are made from bank accounts",
                a.code
            )),
            None => errors.push(format!(
                "Account code '{}' is not a valid bank account",
                account.clone().unwrap_or_default()
            )),
        }
        let date = el.get("Date").and_then(Value::as_str).and_then(day_of);
        if date.is_none() {
            errors.push("The payment Date is not a valid date".into());
        }
        let amount = el
            .get("Amount")
            .and_then(|a| parse_amount(a, digits(&inv.currency)));
        let due = self.total(&inv) - inv.paid;
        match amount {
            None => errors
                .push("The payment Amount is not a valid amount for the invoice's currency".into()),
            Some(a) if a <= 0 => errors.push("The payment Amount must be greater than zero".into()),
            Some(a) if inv.status == "AUTHORISED" && a > due => {
                errors.push("Payment amount exceeds the amount outstanding on this document".into())
            }
            _ => {}
        }
        if inv.status != "AUTHORISED" {
            errors.push("Payments can only be made against Authorised documents".into());
        }
        if let Some(d) = &date
            && let Some(m) = self.locked(d)
        {
            errors.push(m);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let id = uuid::Uuid::new_v4().to_string();
        if dry_run {
            return Ok(id);
        }
        let amount = amount.unwrap_or(0);
        let date = date.unwrap_or_default();
        self.payments.push(Payment {
            id: id.clone(),
            invoice_id: inv.id.clone(),
            account_code: account.unwrap_or_default(),
            date: date.clone(),
            amount,
            reference: el
                .get("Reference")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            status: "AUTHORISED".into(),
            updated_ms: now_ms,
        });
        let total = self.total(&inv);
        if let Some(i) = self.invoice_mut(&inv.id) {
            i.paid += amount;
            i.payment_ids.push(id.clone());
            i.updated_ms = now_ms;
            if i.paid >= total {
                i.status = "PAID".into();
                i.fully_paid_on = Some(date);
            }
        }
        Ok(id)
    }

    /// Deletes a payment: the invoice owes its amount again.
    pub fn delete_payment(&mut self, id: &str, now_ms: i64) -> Result<(), String> {
        let Some(p) = self
            .payments
            .iter_mut()
            .find(|p| p.id.eq_ignore_ascii_case(id))
        else {
            return Err(format!("Payment {id} could not be found"));
        };
        if p.status == "DELETED" {
            return Err("The payment is already deleted".into());
        }
        p.status = "DELETED".into();
        p.updated_ms = now_ms;
        let (inv_id, amount, pid) = (p.invoice_id.clone(), p.amount, p.id.clone());
        if let Some(i) = self.invoice_mut(&inv_id) {
            i.paid -= amount;
            i.payment_ids.retain(|x| *x != pid);
            i.updated_ms = now_ms;
            if i.status == "PAID" {
                i.status = "AUTHORISED".into();
                i.fully_paid_on = None;
            }
        }
        Ok(())
    }

    /// An invoice in Xero's answer shape.
    pub fn invoice_json(&self, inv: &Invoice, with_lines: bool) -> Value {
        let d = digits(&inv.currency);
        let (lines, sub, tax, total) = self.amounts(inv);
        let num = |a: Amount| crate::money::to_json(a, d);
        let mut o = Map::new();
        o.insert("Type".into(), inv.kind.clone().into());
        o.insert("InvoiceID".into(), inv.id.clone().into());
        o.insert("InvoiceNumber".into(), inv.number.clone().into());
        o.insert("Reference".into(), "".into());
        let payments: Vec<Value> = self
            .payments
            .iter()
            .filter(|p| p.invoice_id == inv.id && p.status != "DELETED")
            .map(|p| {
                json!({
                    "PaymentID": p.id,
                    "Date": super::wire::json_date(&p.date),
                    "Amount": num(p.amount),
                    "Reference": p.reference,
                    "CurrencyRate": 1.0,
                    "HasAccount": false,
                    "HasValidationErrors": false,
                })
            })
            .collect();
        o.insert("Payments".into(), payments.into());
        o.insert("CreditNotes".into(), json!([]));
        o.insert("Prepayments".into(), json!([]));
        o.insert("Overpayments".into(), json!([]));
        o.insert("AmountDue".into(), num(total - inv.paid));
        o.insert("AmountPaid".into(), num(inv.paid));
        o.insert("AmountCredited".into(), num(0));
        o.insert("CurrencyRate".into(), json!(1.0));
        o.insert("IsDiscounted".into(), false.into());
        o.insert("HasAttachments".into(), false.into());
        o.insert("HasErrors".into(), false.into());
        o.insert(
            "Contact".into(),
            json!({"ContactID": inv.contact_id, "Name": inv.contact_name, "Addresses": [], "Phones": [], "ContactGroups": [], "ContactPersons": [], "HasValidationErrors": false}),
        );
        o.insert("DateString".into(), format!("{}T00:00:00", inv.date).into());
        o.insert("Date".into(), super::wire::json_date(&inv.date));
        if let Some(due) = &inv.due_date {
            o.insert("DueDateString".into(), format!("{due}T00:00:00").into());
            o.insert("DueDate".into(), super::wire::json_date(due));
        }
        o.insert("Status".into(), inv.status.clone().into());
        o.insert(
            "LineAmountTypes".into(),
            inv.line_amount_types.clone().into(),
        );
        let items: Vec<Value> = if with_lines {
            inv.lines
                .iter()
                .zip(&lines)
                .map(|(l, (amount, t))| {
                    let mut li = json!({
                        "LineItemID": l.id,
                        "Description": l.description,
                        "Quantity": crate::money::to_json(l.quantity, 4),
                        "UnitAmount": crate::money::to_json(l.unit_amount, 4),
                        "AccountCode": l.account_code,
                        "TaxAmount": num(*t),
                        "LineAmount": num(*amount),
                        "Tracking": l.tracking.iter().map(|(n, o)| json!({"Name": n, "Option": o, "TrackingCategoryID": uuid_of(n), "TrackingOptionID": uuid_of(&format!("{n}/{o}"))})).collect::<Vec<_>>(),
                    });
                    if let Some(t) = &l.tax_type {
                        li["TaxType"] = t.clone().into();
                    }
                    li
                })
                .collect()
        } else {
            Vec::new()
        };
        o.insert("LineItems".into(), items.into());
        o.insert("SubTotal".into(), num(sub));
        o.insert("TotalTax".into(), num(tax));
        o.insert("Total".into(), num(total));
        o.insert(
            "UpdatedDateUTC".into(),
            format!("/Date({}+0000)/", inv.updated_ms).into(),
        );
        o.insert("CurrencyCode".into(), inv.currency.clone().into());
        if let Some(u) = &inv.url {
            o.insert("Url".into(), u.clone().into());
        }
        if let Some(p) = &inv.fully_paid_on {
            o.insert("FullyPaidOnDate".into(), super::wire::json_date(p));
        }
        Value::Object(o)
    }

    /// A payment in Xero's answer shape.
    pub fn payment_json(&self, p: &Payment) -> Value {
        let inv = self.invoice(&p.invoice_id);
        let currency = inv.map_or("USD", |i| i.currency.as_str());
        json!({
            "PaymentID": p.id,
            "Date": super::wire::json_date(&p.date),
            "Amount": crate::money::to_json(p.amount, digits(currency)),
            "BankAmount": crate::money::to_json(p.amount, digits(currency)),
            "CurrencyRate": 1.0,
            "Reference": p.reference,
            "IsReconciled": false,
            "Status": p.status,
            "PaymentType": "ACCPAYPAYMENT",
            "UpdatedDateUTC": format!("/Date({}+0000)/", p.updated_ms),
            "HasAccount": true,
            "HasValidationErrors": false,
            "Account": {"Code": p.account_code, "AccountID": uuid_of(&p.account_code)},
            "Invoice": inv.map(|i| json!({
                "Type": i.kind, "InvoiceID": i.id, "InvoiceNumber": i.number,
                "Contact": {"ContactID": i.contact_id, "Name": i.contact_name},
                "CurrencyCode": i.currency,
            })).unwrap_or(Value::Null),
        })
    }
}

/// A stable UUID for a name (tracking categories and accounts have ids).
pub fn uuid_of(name: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    let a = h.finish();
    "salt".hash(&mut h);
    let b = h.finish();
    uuid::Uuid::from_u64_pair(a, b).to_string()
}
