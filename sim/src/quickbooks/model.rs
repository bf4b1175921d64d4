//! One QuickBooks Online company's books: vendors, accounts, classes, tax
//! codes, bills and bill payments, the closing date, and the rules
//! QuickBooks applies when an entity is written (`ERP_FACTS.md`).

use crate::money::{Amount, parse_amount, to_json};
use serde_json::{Value, json};

/// An error element of a `Fault` (`IntuitRestServiceDef.xsd`, `Error`).
#[derive(Debug, Clone)]
pub struct QbError {
    pub code: &'static str,
    pub message: &'static str,
    pub detail: String,
    pub element: String,
}

impl QbError {
    fn new(code: &'static str, message: &'static str, detail: String, element: &str) -> Self {
        QbError {
            code,
            message,
            detail,
            element: element.into(),
        }
    }

    pub fn json(&self) -> Value {
        json!({"Message": self.message, "Detail": self.detail, "code": self.code, "element": self.element})
    }
}

fn missing(element: &str) -> QbError {
    QbError::new(
        "2020",
        "Required param missing, need to supply the required value for the API",
        format!("Required parameter {element} is missing in the request"),
        element,
    )
}

fn invalid_reference(kind: &str, id: &str, element: &str) -> QbError {
    QbError::new(
        "2500",
        "Invalid Reference Id",
        format!("Invalid Reference Id : {kind} element id {id} not found"),
        element,
    )
}

fn business(detail: String, element: &str) -> QbError {
    QbError::new(
        "6000",
        "A business validation error has occurred while processing your request",
        format!("Business Validation Error: {detail}"),
        element,
    )
}

fn length(element: &str, max: usize, got: usize) -> QbError {
    QbError::new(
        "2050",
        "String length is either shorter or longer than supported by specification",
        format!(
            "String length specified does not match the supported length. Min:0 Max:{max} supported. Supplied length:{got}"
        ),
        element,
    )
}

fn invalid(element: &str, what: String) -> QbError {
    QbError::new(
        "2010",
        "Request has invalid or unsupported property",
        format!("Property Name:{element} specified is unsupported or invalid: {what}"),
        element,
    )
}

pub fn not_found(kind: &str, id: &str) -> QbError {
    QbError::new(
        "610",
        "Object Not Found",
        format!(
            "Object Not Found : Something you're trying to use has been made inactive. Check the fields with accounts, customers, items, vendors or employees. ({kind} {id})"
        ),
        "",
    )
}

/// What kind of account it is (`AccountType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    Expense,
    Bank,
    CreditCard,
    AccountsPayable,
}

impl AccountKind {
    fn name(self) -> &'static str {
        match self {
            AccountKind::Expense => "Expense",
            AccountKind::Bank => "Bank",
            AccountKind::CreditCard => "Credit Card",
            AccountKind::AccountsPayable => "Accounts Payable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub kind: AccountKind,
}

#[derive(Debug, Clone)]
pub struct Vendor {
    pub id: String,
    pub display_name: String,
    pub active: bool,
    sync_token: u64,
    created: String,
}

#[derive(Debug, Clone)]
struct Line {
    id: String,
    description: Option<String>,
    amount: Amount,
    account: String,
    class: Option<String>,
    tax_code: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Bill {
    pub id: String,
    sync_token: u64,
    vendor: String,
    doc_number: Option<String>,
    pub txn_date: String,
    due_date: Option<String>,
    currency: String,
    private_note: Option<String>,
    lines: Vec<Line>,
    created: String,
    updated: String,
}

#[derive(Debug, Clone)]
pub struct BillPayment {
    pub id: String,
    sync_token: u64,
    vendor: String,
    pay_type: String,
    account: String,
    /// A check's `PrintStatus` (`NotSet`, `NeedToPrint`, `PrintComplete`).
    print_status: String,
    pub doc_number: Option<String>,
    txn_date: String,
    currency: String,
    private_note: Option<String>,
    total: Amount,
    /// (bill id, amount applied)
    lines: Vec<(String, Amount)>,
    pub voided: bool,
    created: String,
    updated: String,
}

/// A company's settings and books.
#[derive(Debug, Clone)]
pub struct Company {
    pub name: String,
    pub home_currency: String,
    /// Currencies the company may use (multicurrency on when more than one).
    pub currencies: Vec<String>,
    /// `Preferences.AccountingInfoPrefs.BookCloseDate`.
    pub book_close_date: Option<String>,
    /// The closing date is password-protected (6210 instead of 6200).
    pub close_password: bool,
    pub accounts: Vec<Account>,
    /// (id, name)
    pub classes: Vec<(String, String)>,
    /// (id, name)
    pub tax_codes: Vec<(String, String)>,
    pub vendors: Vec<Vendor>,
    pub bills: Vec<Bill>,
    pub payments: Vec<BillPayment>,
    next_id: u64,
}

fn account(id: &str, name: &str, kind: AccountKind) -> Account {
    Account {
        id: id.into(),
        name: name.into(),
        kind,
    }
}

/// The time as QuickBooks writes it in `MetaData`.
pub fn timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn is_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
}

/// The `value` of a reference (`{"value": "56", "name": "..."}`).
fn reference(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(|r| r.get("value"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// What a write asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Update,
    Delete,
    /// `operation=update&include=void` on a bill payment.
    Void,
}

impl Company {
    /// A US company with USD, EUR and CAD; accounts 33 (A/P), 35 Checking
    /// and 36 Savings (bank), 41 Mastercard, 60 Office Supplies, 61
    /// Freight & Shipping, 62 Rent or Lease, 63 Utilities, 64 Travel
    /// (expense); classes 100 Sales and 101 Operations; tax codes TAX and
    /// NON; vendors 56 Acme Paper, 57 Globex Freight, 58 Initech Supplies.
    pub fn demo() -> Company {
        let mut c = Company {
            name: "Ledgerbridge Demo Co (simulated)".into(),
            home_currency: "USD".into(),
            currencies: vec!["USD".into(), "EUR".into(), "CAD".into()],
            book_close_date: None,
            close_password: false,
            accounts: vec![
                account("33", "Accounts Payable (A/P)", AccountKind::AccountsPayable),
                account("35", "Checking", AccountKind::Bank),
                account("36", "Savings", AccountKind::Bank),
                account("41", "Mastercard", AccountKind::CreditCard),
                account("60", "Office Supplies", AccountKind::Expense),
                account("61", "Freight & Shipping", AccountKind::Expense),
                account("62", "Rent or Lease", AccountKind::Expense),
                account("63", "Utilities", AccountKind::Expense),
                account("64", "Travel", AccountKind::Expense),
            ],
            classes: vec![
                ("100".into(), "Sales".into()),
                ("101".into(), "Operations".into()),
            ],
            tax_codes: vec![("TAX".into(), "TAX".into()), ("NON".into(), "NON".into())],
            vendors: Vec::new(),
            bills: Vec::new(),
            payments: Vec::new(),
            next_id: 56,
        };
        for name in ["Acme Paper", "Globex Freight", "Initech Supplies"] {
            let _ = c.save_vendor(&json!({"DisplayName": name}));
        }
        c.next_id = 145;
        c
    }

    fn id(&mut self) -> String {
        let id = self.next_id.to_string();
        self.next_id += 1;
        id
    }

    fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.id == id)
    }

    pub fn vendor(&self, id: &str) -> Option<&Vendor> {
        self.vendors.iter().find(|v| v.id == id)
    }

    pub fn bill(&self, id: &str) -> Option<&Bill> {
        self.bills.iter().find(|b| b.id == id)
    }

    fn payment(&self, id: &str) -> Option<&BillPayment> {
        self.payments.iter().find(|p| p.id == id)
    }

    /// 6200 or 6210 when `date` is on or before the closing date.
    fn closed(&self, date: &str) -> Result<(), QbError> {
        match &self.book_close_date {
            Some(close) if date <= close.as_str() => Err(if self.close_password {
                QbError::new(
                    "6210",
                    "Account Period Closed",
                    "Account Period Closed, cannot update through Services API. The books are closed with a password; please use the QuickBooks Online Company to update this transaction.".into(),
                    "",
                )
            } else {
                QbError::new(
                    "6200",
                    "Account Period Closed",
                    "Account Period Closed, cannot update through Services API. Please use the QuickBooks Online Company to update this transaction.".into(),
                    "",
                )
            }),
            _ => Ok(()),
        }
    }

    /// What has been paid on a bill (voided payments do not count).
    fn paid(&self, bill: &str) -> Amount {
        self.payments
            .iter()
            .filter(|p| !p.voided)
            .flat_map(|p| p.lines.iter())
            .filter(|(b, _)| b == bill)
            .map(|(_, a)| a)
            .sum()
    }

    fn currency(&self, el: &Value) -> Result<String, QbError> {
        let c = reference(el, "CurrencyRef").unwrap_or_else(|| self.home_currency.clone());
        if !self.currencies.contains(&c) {
            return Err(business(
                format!("The currency {c} is not enabled in this company"),
                "CurrencyRef",
            ));
        }
        Ok(c)
    }

    fn vendor_of(&self, el: &Value) -> Result<String, QbError> {
        let id = reference(el, "VendorRef").ok_or_else(|| missing("VendorRef"))?;
        match self.vendor(&id) {
            Some(v) if v.active => Ok(id),
            Some(_) => Err(QbError::new(
                "2500",
                "Invalid Reference Id",
                format!(
                    "Invalid Reference Id : Vendor assigned to this transaction has been deleted. Before you can modify this transaction, you must restore {id} (deleted)."
                ),
                "VendorRef",
            )),
            None => Err(invalid_reference("Vendors", &id, "VendorRef")),
        }
    }

    fn date(el: &Value, key: &str) -> Result<Option<String>, QbError> {
        match el.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if is_date(s) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(key, format!("{other} is not a date (yyyy-MM-dd)"))),
        }
    }

    fn doc_number(el: &Value) -> Result<Option<String>, QbError> {
        let d = text(el, "DocNumber").filter(|d| !d.is_empty());
        if let Some(d) = &d
            && d.chars().count() > 21
        {
            return Err(length("DocNumber", 21, d.chars().count()));
        }
        Ok(d)
    }

    fn private_note(el: &Value) -> Result<Option<String>, QbError> {
        let n = text(el, "PrivateNote");
        if let Some(n) = &n
            && n.chars().count() > 4000
        {
            return Err(length("PrivateNote", 4000, n.chars().count()));
        }
        Ok(n)
    }

    fn amount(v: Option<&Value>, element: &str) -> Result<Amount, QbError> {
        let v = v.ok_or_else(|| missing(element))?;
        parse_amount(v, 2).ok_or_else(|| {
            invalid(
                element,
                format!("{v} is not an amount with at most 2 decimals"),
            )
        })
    }

    /// The entity being updated: its id, after the SyncToken check.
    fn current<'a, T>(
        el: &Value,
        kind: &str,
        find: impl Fn(&str) -> Option<&'a T>,
        token: impl Fn(&T) -> u64,
    ) -> Result<&'a T, QbError> {
        let id = text(el, "Id").ok_or_else(|| missing("Id"))?;
        let found = find(&id).ok_or_else(|| not_found(kind, &id))?;
        let sent = text(el, "SyncToken").ok_or_else(|| missing("SyncToken"))?;
        if sent != token(found).to_string() {
            return Err(QbError::new(
                "5010",
                "Stale Object Error",
                format!(
                    "Stale Object Error : You and another user were working on {kind} {id} at the same time. The other user finished before you did, so your work was not saved (SyncToken {sent} is not the current {}).",
                    token(found)
                ),
                "",
            ));
        }
        Ok(found)
    }

    /// Writes a bill: create, update (full, or `sparse`) or delete.
    pub fn save_bill(&mut self, el: &Value, op: Op) -> Result<Value, QbError> {
        let now = timestamp();
        let existing = match op {
            Op::Create => None,
            _ => {
                let b = Self::current(el, "Bill", |id| self.bill(id), |b| b.sync_token)?.clone();
                self.closed(&b.txn_date)?;
                Some(b)
            }
        };
        if op == Op::Delete || op == Op::Void {
            let b = existing.expect("read above");
            if self.paid(&b.id) != 0 {
                return Err(business(
                    "This bill has payments applied to it; delete or void them first".into(),
                    "",
                ));
            }
            let v = self.bill_json(&b);
            self.bills.retain(|x| x.id != b.id);
            let mut v = json!({"Id": v["Id"], "status": "Deleted", "domain": "QBO"});
            v["SyncToken"] = (b.sync_token + 1).to_string().into();
            return Ok(v);
        }
        // A sparse update keeps what it does not name.
        let el = match (&existing, el.get("sparse").and_then(Value::as_bool)) {
            (Some(b), Some(true)) => {
                let mut merged = self.bill_json(b);
                if let (Some(m), Some(sent)) = (merged.as_object_mut(), el.as_object()) {
                    for (k, v) in sent {
                        m.insert(k.clone(), v.clone());
                    }
                }
                merged
            }
            _ => el.clone(),
        };
        let vendor = self.vendor_of(&el)?;
        let currency = self.currency(&el)?;
        let doc_number = Self::doc_number(&el)?;
        let private_note = Self::private_note(&el)?;
        let txn_date = Self::date(&el, "TxnDate")?.unwrap_or_else(today);
        let due_date = Self::date(&el, "DueDate")?;
        let sent_lines = match el.get("Line") {
            Some(Value::Array(l)) if !l.is_empty() => l,
            _ => return Err(missing("Line")),
        };
        let old_lines = existing
            .as_ref()
            .map(|b| b.lines.clone())
            .unwrap_or_default();
        let mut next_line = old_lines
            .iter()
            .filter_map(|l| l.id.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let mut lines = Vec::new();
        for (i, l) in sent_lines.iter().enumerate() {
            let at = |k: &str| format!("Line[{i}].{k}");
            if text(l, "DetailType").as_deref() != Some("AccountBasedExpenseLineDetail") {
                return Err(invalid(
                    &at("DetailType"),
                    "a bill line here must be AccountBasedExpenseLineDetail".into(),
                ));
            }
            let detail = l
                .get("AccountBasedExpenseLineDetail")
                .ok_or_else(|| missing(&at("AccountBasedExpenseLineDetail")))?;
            let amount = Self::amount(l.get("Amount"), &at("Amount"))?;
            let acct = reference(detail, "AccountRef").ok_or_else(|| missing("AccountRef"))?;
            match self.account(&acct) {
                None => return Err(invalid_reference("Accounts", &acct, "AccountRef")),
                Some(a) if a.kind == AccountKind::AccountsPayable => {
                    return Err(business(
                        format!("The account {} cannot be used on a bill line", a.name),
                        "AccountRef",
                    ));
                }
                Some(_) => {}
            }
            let class = reference(detail, "ClassRef");
            if let Some(c) = &class
                && !self.classes.iter().any(|(id, _)| id == c)
            {
                return Err(invalid_reference("Classes", c, "ClassRef"));
            }
            let tax_code = reference(detail, "TaxCodeRef");
            if let Some(t) = &tax_code
                && !self.tax_codes.iter().any(|(id, _)| id == t)
            {
                return Err(invalid_reference("TaxCodes", t, "TaxCodeRef"));
            }
            // A line sent with an existing line's Id updates it; others
            // are new. Lines left out are removed (a full update).
            let id = match text(l, "Id").filter(|id| old_lines.iter().any(|o| &o.id == id)) {
                Some(id) => id,
                None => {
                    next_line += 1;
                    (next_line - 1).to_string()
                }
            };
            lines.push(Line {
                id,
                description: text(l, "Description"),
                amount,
                account: acct,
                class,
                tax_code,
            });
        }
        self.closed(&txn_date)?;
        let total: Amount = lines.iter().map(|l| l.amount).sum();
        if let Some(b) = &existing {
            let paid = self.paid(&b.id);
            if total < paid {
                return Err(business(
                    format!(
                        "The bill's total {} is less than what has been paid on it, {}",
                        to_json(total, 2),
                        to_json(paid, 2)
                    ),
                    "Line",
                ));
            }
        }
        let bill = Bill {
            id: existing.as_ref().map(|b| b.id.clone()).unwrap_or_default(),
            sync_token: existing.as_ref().map_or(0, |b| b.sync_token + 1),
            vendor,
            doc_number,
            txn_date,
            due_date,
            currency,
            private_note,
            lines,
            created: existing
                .as_ref()
                .map_or_else(|| now.clone(), |b| b.created.clone()),
            updated: now,
        };
        let bill = match existing {
            Some(_) => {
                let slot = self
                    .bills
                    .iter_mut()
                    .find(|b| b.id == bill.id)
                    .expect("read above");
                *slot = bill;
                slot.clone()
            }
            None => {
                let bill = Bill {
                    id: self.id(),
                    ..bill
                };
                self.bills.push(bill.clone());
                bill
            }
        };
        Ok(self.bill_json(&bill))
    }

    /// Writes a bill payment: create, update, void or delete.
    pub fn save_payment(
        &mut self,
        el: &Value,
        op: Op,
        allow_duplicate: bool,
    ) -> Result<Value, QbError> {
        let now = timestamp();
        let existing = match op {
            Op::Create => None,
            _ => {
                let p = Self::current(el, "BillPayment", |id| self.payment(id), |p| p.sync_token)?
                    .clone();
                self.closed(&p.txn_date)?;
                Some(p)
            }
        };
        if let (Some(p), Op::Void | Op::Delete) = (&existing, op) {
            let id = p.id.clone();
            if op == Op::Delete {
                self.payments.retain(|x| x.id != id);
                return Ok(
                    json!({"Id": id, "status": "Deleted", "domain": "QBO", "SyncToken": (p.sync_token + 1).to_string()}),
                );
            }
            let slot = self
                .payments
                .iter_mut()
                .find(|x| x.id == id)
                .expect("read above");
            slot.voided = true;
            slot.total = 0;
            slot.lines.iter_mut().for_each(|l| l.1 = 0);
            slot.private_note = Some("Voided".into());
            slot.sync_token += 1;
            slot.updated = now;
            let p = slot.clone();
            return Ok(self.payment_json(&p));
        }
        let vendor = self.vendor_of(el)?;
        let currency = self.currency(el)?;
        let doc_number = Self::doc_number(el)?;
        let private_note = Self::private_note(el)?;
        let txn_date = Self::date(el, "TxnDate")?.unwrap_or_else(today);
        let pay_type = text(el, "PayType").ok_or_else(|| missing("PayType"))?;
        let mut print_status = "NotSet".to_string();
        let account = match pay_type.as_str() {
            "Check" => {
                if let Some(s) = el.get("CheckPayment").and_then(|c| c.get("PrintStatus")) {
                    match s.as_str() {
                        Some(x @ ("NotSet" | "NeedToPrint" | "PrintComplete")) => {
                            print_status = x.to_string()
                        }
                        _ => {
                            return Err(invalid(
                                "CheckPayment.PrintStatus",
                                format!("`{s}` is not NotSet, NeedToPrint or PrintComplete"),
                            ));
                        }
                    }
                }
                let a = el
                    .get("CheckPayment")
                    .and_then(|c| reference(c, "BankAccountRef"))
                    .ok_or_else(|| missing("CheckPayment.BankAccountRef"))?;
                match self.account(&a) {
                    None => return Err(invalid_reference("Accounts", &a, "BankAccountRef")),
                    Some(x) if x.kind != AccountKind::Bank => {
                        return Err(business(
                            format!(
                                "{} is a {} account, not a bank account",
                                x.name,
                                x.kind.name()
                            ),
                            "BankAccountRef",
                        ));
                    }
                    Some(_) => a,
                }
            }
            "CreditCard" => {
                let a = el
                    .get("CreditCardPayment")
                    .and_then(|c| reference(c, "CCAccountRef"))
                    .ok_or_else(|| missing("CreditCardPayment.CCAccountRef"))?;
                match self.account(&a) {
                    Some(x) if x.kind == AccountKind::CreditCard => a,
                    _ => return Err(invalid_reference("Accounts", &a, "CCAccountRef")),
                }
            }
            other => {
                return Err(invalid(
                    "PayType",
                    format!("`{other}` is not Check or CreditCard"),
                ));
            }
        };
        let total = Self::amount(el.get("TotalAmt"), "TotalAmt")?;
        if total < 0 {
            return Err(business("TotalAmt may not be negative".into(), "TotalAmt"));
        }
        let mut lines = Vec::new();
        for (i, l) in el
            .get("Line")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let amount = Self::amount(l.get("Amount"), &format!("Line[{i}].Amount"))?;
            let linked = l
                .get("LinkedTxn")
                .and_then(|t| t.as_array().and_then(|a| a.first()).or(Some(t)))
                .filter(|t| t.is_object())
                .ok_or_else(|| missing(&format!("Line[{i}].LinkedTxn")))?;
            if text(linked, "TxnType").as_deref() != Some("Bill") {
                return Err(invalid(
                    "LinkedTxn.TxnType",
                    "a bill payment's lines link bills".into(),
                ));
            }
            let bill_id = text(linked, "TxnId").ok_or_else(|| missing("LinkedTxn.TxnId"))?;
            let Some(bill) = self.bill(&bill_id) else {
                return Err(invalid_reference("Bills", &bill_id, "LinkedTxn"));
            };
            if bill.vendor != vendor {
                return Err(business(
                    format!("Bill {bill_id} is from another vendor than this payment's"),
                    "LinkedTxn",
                ));
            }
            let mut paid = self.paid(&bill_id);
            if let Some(p) = &existing {
                paid -= p
                    .lines
                    .iter()
                    .filter(|(b, _)| *b == bill_id)
                    .map(|(_, a)| a)
                    .sum::<Amount>();
            }
            let balance = bill.lines.iter().map(|l| l.amount).sum::<Amount>() - paid;
            if amount > balance {
                return Err(business(
                    format!(
                        "The amount applied to bill {bill_id}, {}, is more than its open balance, {}",
                        to_json(amount, 2),
                        to_json(balance, 2)
                    ),
                    "Line.Amount",
                ));
            }
            lines.push((bill_id, amount));
        }
        if lines.iter().map(|(_, a)| a).sum::<Amount>() > total {
            return Err(business(
                "The lines apply more than the payment's TotalAmt".into(),
                "TotalAmt",
            ));
        }
        self.closed(&txn_date)?;
        // A check number used on another live check from the same bank
        // account (QuickBooks' duplicate-number warning, enforced by the API).
        let own = existing.as_ref().map(|p| p.id.clone());
        if pay_type == "Check"
            && !allow_duplicate
            && let Some(n) = &doc_number
            && let Some(other) = self.payments.iter().find(|p| {
                // A voided check's number stays used.
                p.pay_type == "Check"
                    && p.account == account
                    && p.doc_number.as_ref() == Some(n)
                    && Some(&p.id) != own.as_ref()
            })
        {
            return Err(QbError::new(
                "6140",
                "Duplicate Document Number Error",
                format!(
                    "Duplicate Document Number Error : You must specify a different number. This number has already been used. DocNumber={n} is assigned to TxnType=BillPayment with TxnId={}",
                    other.id
                ),
                "DocNumber",
            ));
        }
        let p = BillPayment {
            id: own.clone().unwrap_or_default(),
            sync_token: existing.as_ref().map_or(0, |p| p.sync_token + 1),
            vendor,
            pay_type,
            account,
            print_status,
            doc_number,
            txn_date,
            currency,
            private_note,
            total,
            lines,
            voided: false,
            created: existing
                .as_ref()
                .map_or_else(|| now.clone(), |p| p.created.clone()),
            updated: now,
        };
        let p = match own {
            Some(id) => {
                let slot = self
                    .payments
                    .iter_mut()
                    .find(|x| x.id == id)
                    .expect("read above");
                *slot = p;
                slot.clone()
            }
            None => {
                let p = BillPayment { id: self.id(), ..p };
                self.payments.push(p.clone());
                p
            }
        };
        Ok(self.payment_json(&p))
    }

    /// Creates a vendor; `DisplayName` must be unique (6240).
    pub fn save_vendor(&mut self, el: &Value) -> Result<Value, QbError> {
        let name = text(el, "DisplayName")
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| missing("DisplayName"))?;
        if name.chars().count() > 500 {
            return Err(length("DisplayName", 500, name.chars().count()));
        }
        if self
            .vendors
            .iter()
            .any(|v| v.display_name.eq_ignore_ascii_case(name.trim()))
        {
            return Err(QbError::new(
                "6240",
                "Duplicate Name Exists Error",
                format!(
                    "The name supplied already exists. : Another customer, vendor or employee is already using this name. Please use a different name. ({name})"
                ),
                "DisplayName",
            ));
        }
        let v = Vendor {
            id: self.id(),
            display_name: name.trim().to_string(),
            active: true,
            sync_token: 0,
            created: timestamp(),
        };
        self.vendors.push(v.clone());
        Ok(self.vendor_json(&v))
    }

    fn reference_json(&self, id: &str, name: &str) -> Value {
        json!({"value": id, "name": name})
    }

    fn meta(created: &str, updated: &str) -> Value {
        json!({"CreateTime": created, "LastUpdatedTime": updated})
    }

    pub fn bill_json(&self, b: &Bill) -> Value {
        let total: Amount = b.lines.iter().map(|l| l.amount).sum();
        let paid = self.paid(&b.id);
        let name_of = |id: &str| self.account(id).map(|a| a.name.clone()).unwrap_or_default();
        let lines: Vec<Value> = b
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut detail = json!({
                    "AccountRef": self.reference_json(&l.account, &name_of(&l.account)),
                    "BillableStatus": "NotBillable",
                });
                if let Some(c) = &l.class {
                    let name = self
                        .classes
                        .iter()
                        .find(|(id, _)| id == c)
                        .map(|(_, n)| n.clone())
                        .unwrap_or_default();
                    detail["ClassRef"] = self.reference_json(c, &name);
                }
                if let Some(t) = &l.tax_code {
                    detail["TaxCodeRef"] = json!({"value": t});
                }
                let mut line = json!({
                    "Id": l.id,
                    "LineNum": i + 1,
                    "Amount": to_json(l.amount, 2),
                    "DetailType": "AccountBasedExpenseLineDetail",
                    "AccountBasedExpenseLineDetail": detail,
                });
                if let Some(d) = &l.description {
                    line["Description"] = d.clone().into();
                }
                line
            })
            .collect();
        let linked: Vec<Value> = self
            .payments
            .iter()
            .filter(|p| p.lines.iter().any(|(x, _)| *x == b.id))
            .map(|p| json!({"TxnId": p.id, "TxnType": "BillPayment"}))
            .collect();
        let vendor = self
            .vendor(&b.vendor)
            .map(|v| v.display_name.clone())
            .unwrap_or_default();
        let mut v = json!({
            "Id": b.id,
            "SyncToken": b.sync_token.to_string(),
            "domain": "QBO",
            "sparse": false,
            "MetaData": Self::meta(&b.created, &b.updated),
            "TxnDate": b.txn_date,
            "CurrencyRef": {"value": b.currency},
            "Line": lines,
            "VendorRef": self.reference_json(&b.vendor, &vendor),
            "APAccountRef": self.reference_json("33", "Accounts Payable (A/P)"),
            "TotalAmt": to_json(total, 2),
            "Balance": to_json(total - paid, 2),
        });
        if let Some(d) = &b.doc_number {
            v["DocNumber"] = d.clone().into();
        }
        if let Some(d) = &b.due_date {
            v["DueDate"] = d.clone().into();
        }
        if let Some(n) = &b.private_note {
            v["PrivateNote"] = n.clone().into();
        }
        if !linked.is_empty() {
            v["LinkedTxn"] = linked.into();
        }
        v
    }

    pub fn payment_json(&self, p: &BillPayment) -> Value {
        let vendor = self
            .vendor(&p.vendor)
            .map(|v| v.display_name.clone())
            .unwrap_or_default();
        let account = self
            .account(&p.account)
            .map(|a| a.name.clone())
            .unwrap_or_default();
        let lines: Vec<Value> = p
            .lines
            .iter()
            .map(|(bill, amount)| {
                json!({"Amount": to_json(*amount, 2), "LinkedTxn": [{"TxnId": bill, "TxnType": "Bill"}]})
            })
            .collect();
        let mut v = json!({
            "Id": p.id,
            "SyncToken": p.sync_token.to_string(),
            "domain": "QBO",
            "sparse": false,
            "MetaData": Self::meta(&p.created, &p.updated),
            "TxnDate": p.txn_date,
            "CurrencyRef": {"value": p.currency},
            "Line": lines,
            "VendorRef": self.reference_json(&p.vendor, &vendor),
            "PayType": p.pay_type,
            "TotalAmt": to_json(p.total, 2),
        });
        if p.pay_type == "Check" {
            v["CheckPayment"] = json!({"BankAccountRef": self.reference_json(&p.account, &account), "PrintStatus": p.print_status});
        } else {
            v["CreditCardPayment"] =
                json!({"CCAccountRef": self.reference_json(&p.account, &account)});
        }
        if let Some(d) = &p.doc_number {
            v["DocNumber"] = d.clone().into();
        }
        if let Some(n) = &p.private_note {
            v["PrivateNote"] = n.clone().into();
        }
        v
    }

    pub fn vendor_json(&self, v: &Vendor) -> Value {
        json!({
            "Id": v.id,
            "SyncToken": v.sync_token.to_string(),
            "domain": "QBO",
            "sparse": false,
            "MetaData": Self::meta(&v.created, &v.created),
            "DisplayName": v.display_name,
            "PrintOnCheckName": v.display_name,
            "Active": v.active,
            "Vendor1099": false,
        })
    }

    pub fn account_json(&self, a: &Account) -> Value {
        json!({
            "Id": a.id, "SyncToken": "0", "domain": "QBO", "sparse": false,
            "Name": a.name, "FullyQualifiedName": a.name, "Active": true,
            "AccountType": a.kind.name(),
            "CurrencyRef": {"value": self.home_currency},
        })
    }

    pub fn preferences_json(&self) -> Value {
        let mut accounting = json!({"TrackDepartments": false, "ClassTrackingPerTxnLine": true, "ClassTrackingPerTxn": false});
        if let Some(d) = &self.book_close_date {
            accounting["BookCloseDate"] = d.clone().into();
        }
        json!({
            "Id": "1", "SyncToken": "0", "domain": "QBO", "sparse": false,
            "AccountingInfoPrefs": accounting,
            "CurrencyPrefs": {"MultiCurrencyEnabled": self.currencies.len() > 1, "HomeCurrency": {"value": self.home_currency}},
        })
    }

    /// Every entity of a kind, as a query reads it.
    pub fn entities(&self, kind: &str) -> Option<Vec<Value>> {
        Some(match kind {
            "Bill" => self.bills.iter().map(|b| self.bill_json(b)).collect(),
            "BillPayment" => self.payments.iter().map(|p| self.payment_json(p)).collect(),
            "Vendor" => self.vendors.iter().map(|v| self.vendor_json(v)).collect(),
            "Account" => self.accounts.iter().map(|a| self.account_json(a)).collect(),
            "Class" => self
                .classes
                .iter()
                .map(|(id, n)| json!({"Id": id, "SyncToken": "0", "domain": "QBO", "sparse": false, "Name": n, "FullyQualifiedName": n, "Active": true, "SubClass": false}))
                .collect(),
            "TaxCode" => self
                .tax_codes
                .iter()
                .map(|(id, n)| json!({"Id": id, "SyncToken": "0", "domain": "QBO", "sparse": false, "Name": n, "Active": true, "Taxable": id == "TAX"}))
                .collect(),
            "Preferences" => vec![self.preferences_json()],
            _ => return None,
        })
    }

    /// A person edits the bill in QuickBooks: its first line's description
    /// changes, so its SyncToken moves on.
    pub fn edit_bill(&mut self, id: &str) -> Result<(), String> {
        let b = self
            .bills
            .iter_mut()
            .find(|b| b.id == id)
            .ok_or_else(|| format!("no bill {id}"))?;
        if let Some(l) = b.lines.first_mut() {
            l.description = Some(format!(
                "{} (edited in QuickBooks)",
                l.description.clone().unwrap_or_default()
            ));
        }
        b.sync_token += 1;
        b.updated = timestamp();
        Ok(())
    }
}
