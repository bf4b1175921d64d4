//! Import-ready files: besides its per-entry files (the source of truth for
//! lookups), the connector appends each entry it creates or changes to one
//! file per day and kind, in the column layout of an ERP's bill import, so
//! an accountant imports one file a day instead of a thousand.
//!
//! Layouts (the connection's `import-layout` setting):
//! - `xero`: Xero's bill import template (*Business › Bills to pay ›
//!   Import*), one row per line, required columns marked `*` as in Xero's
//!   template;
//! - `quickbooks`: QuickBooks Online's bill import (*Settings › Import data
//!   › Bills*), one row per line;
//! - `none` (the default): no import files.
//!
//! Neither product publishes an import template for bill payments, so
//! payments go to a plain layout of the connector's own, named as such.
//!
//! Files: `imports/<kind>-<layout>-<YYYY-MM-DD>.csv`, the day (UTC) the
//! entry was written; kinds `bills` and `payments` for new entries,
//! `changed-bills` and `changed-payments` for updates (an import creates, it
//! never updates: a changed bill is edited in the ERP, or its draft replaced).
//! Each call appends its rows in one write, under the folder's lock (calls
//! run at once); the header is written when the file is new.

use crate::dialect::escape;
use ledgerbridge_sdk::dates::Ymd;
use ledgerbridge_sdk::{Bill, ConnectorError, Context, Payment, PaymentMethod, money};
use std::io::Write;

/// The folder, in the granted directory.
pub const DIR: &str = "/data/imports";

/// The setting that picks the layout.
pub const SETTING: &str = "import-layout";
/// The setting that picks how dates are written.
pub const DATE_SETTING: &str = "import-date-format";

/// Which layout the connection's import files follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Xero,
    QuickBooks,
}

impl Layout {
    /// The connection's layout; `None` for `none` or no setting.
    pub fn of(ctx: &Context) -> Result<Option<Layout>, ConnectorError> {
        match ctx.setting(SETTING).map(str::trim) {
            None | Some("") | Some("none") => Ok(None),
            Some("xero") => Ok(Some(Layout::Xero)),
            Some("quickbooks") => Ok(Some(Layout::QuickBooks)),
            Some(other) => Err(ConnectorError::validation(
                format!("settings.{SETTING}"),
                format!("`{other}` is not a layout: use xero, quickbooks or none"),
            )),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Layout::Xero => "xero",
            Layout::QuickBooks => "quickbooks",
        }
    }

    /// The bill import's columns.
    pub fn bill_columns(self) -> &'static [&'static str] {
        match self {
            // Xero's bill import template (Xero Central, "Import bills"),
            // in its order; `*` marks what Xero requires.
            Layout::Xero => &[
                "*ContactName",
                "EmailAddress",
                "POAddressLine1",
                "POAddressLine2",
                "POAddressLine3",
                "POAddressLine4",
                "POCity",
                "PORegion",
                "POPostalCode",
                "POCountry",
                "*InvoiceNumber",
                "*InvoiceDate",
                "*DueDate",
                "InventoryItemCode",
                "Description",
                "*Quantity",
                "*UnitAmount",
                "*AccountCode",
                "*TaxType",
                "TrackingName1",
                "TrackingOption1",
                "TrackingName2",
                "TrackingOption2",
                "Currency",
            ],
            // QuickBooks Online's bill import sample file.
            Layout::QuickBooks => &[
                "Bill No",
                "Vendor",
                "Bill Date",
                "Due Date",
                "Terms",
                "Location",
                "Memo",
                "Account",
                "Line Description",
                "Line Amount",
                "Line Tax Code",
                "Currency Code",
            ],
        }
    }
}

/// How dates are written: Xero reads them in the organisation's region
/// format, QuickBooks in the company's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateFormat {
    Iso,
    DayFirst,
    MonthFirst,
}

impl DateFormat {
    pub fn of(ctx: &Context) -> Result<DateFormat, ConnectorError> {
        match ctx.setting(DATE_SETTING).map(str::trim) {
            None | Some("") | Some("YYYY-MM-DD") => Ok(DateFormat::Iso),
            Some("DD/MM/YYYY") => Ok(DateFormat::DayFirst),
            Some("MM/DD/YYYY") => Ok(DateFormat::MonthFirst),
            Some(other) => Err(ConnectorError::validation(
                format!("settings.{DATE_SETTING}"),
                format!("`{other}` is not a date format: use YYYY-MM-DD, DD/MM/YYYY or MM/DD/YYYY"),
            )),
        }
    }

    fn write(self, date: &str) -> String {
        let Ok(d) = Ymd::parse(date) else {
            return date.to_string();
        };
        match self {
            DateFormat::Iso => format!("{:04}-{:02}-{:02}", d.year, d.month, d.day),
            DateFormat::DayFirst => format!("{:02}/{:02}/{:04}", d.day, d.month, d.year),
            DateFormat::MonthFirst => format!("{:02}/{:02}/{:04}", d.month, d.day, d.year),
        }
    }
}

/// The rows one call appends, by file.
pub struct Appends {
    layout: Layout,
    dates: DateFormat,
    bills: Vec<Vec<String>>,
    changed_bills: Vec<Vec<String>>,
    payments: Vec<Vec<String>>,
    changed_payments: Vec<Vec<String>>,
}

/// The payment file's columns (the connector's own layout).
const PAYMENT_COLUMNS: &[&str] = &[
    "PaymentReference",
    "BillNumber",
    "Supplier",
    "Date",
    "Amount",
    "Currency",
    "BankAccount",
    "Method",
    "CheckNumber",
];

impl Appends {
    /// The appends of a call with `ctx`'s settings; `None` when the
    /// connection writes no import files.
    pub fn new(ctx: &Context) -> Result<Option<Appends>, ConnectorError> {
        let Some(layout) = Layout::of(ctx)? else {
            return Ok(None);
        };
        Ok(Some(Appends {
            layout,
            dates: DateFormat::of(ctx)?,
            bills: Vec::new(),
            changed_bills: Vec::new(),
            payments: Vec::new(),
            changed_payments: Vec::new(),
        }))
    }

    /// Adds `bill`'s lines, new (`changed`: false) or changed.
    pub fn bill(&mut self, bill: &Bill, changed: bool) {
        let rows = bill_rows(self.layout, self.dates, bill);
        let to = if changed {
            &mut self.changed_bills
        } else {
            &mut self.bills
        };
        to.extend(rows);
    }

    /// Adds `payment`, new or changed.
    pub fn payment(&mut self, payment: &Payment, changed: bool) {
        let row = vec![
            payment.payment_id.clone(),
            payment.bill_number.clone(),
            payment.vendor.name.clone(),
            self.dates.write(&payment.date),
            money::to_decimal(payment.amount, &payment.currency),
            payment.currency.clone(),
            payment.bank_account.clone(),
            method(payment.method).to_string(),
            payment
                .check_number
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ];
        if changed {
            self.changed_payments.push(row);
        } else {
            self.payments.push(row);
        }
    }

    /// Appends everything added to today's files: one write per file,
    /// under the folder's lock (calls run at once, each its own instance).
    pub fn write(self) -> Result<(), ConnectorError> {
        if self.bills.is_empty()
            && self.changed_bills.is_empty()
            && self.payments.is_empty()
            && self.changed_payments.is_empty()
        {
            return Ok(());
        }
        std::fs::create_dir_all(DIR).map_err(|e| {
            ConnectorError::Unavailable(format!("CSV connector: cannot create {DIR}: {e}"))
        })?;
        let _lock = Lock::take()?;
        let day = today();
        let layout = self.layout.name();
        for (kind, columns, rows) in [
            ("bills", self.layout.bill_columns(), &self.bills),
            (
                "changed-bills",
                self.layout.bill_columns(),
                &self.changed_bills,
            ),
            ("payments", PAYMENT_COLUMNS, &self.payments),
            ("changed-payments", PAYMENT_COLUMNS, &self.changed_payments),
        ] {
            if rows.is_empty() {
                continue;
            }
            append(&format!("{DIR}/{kind}-{layout}-{day}.csv"), columns, rows)?;
        }
        Ok(())
    }
}

fn method(m: PaymentMethod) -> &'static str {
    match m {
        PaymentMethod::Check => "check",
        PaymentMethod::Ach => "ach",
        PaymentMethod::Wire => "wire",
        PaymentMethod::Card => "card",
    }
}

/// One row per line of `bill`, in `layout`'s columns.
fn bill_rows(layout: Layout, dates: DateFormat, bill: &Bill) -> Vec<Vec<String>> {
    bill.lines
        .iter()
        .map(|line| {
            let amount = money::to_decimal(line.amount, &bill.currency);
            let tracking = |i: usize| line.tracking.get(i);
            match layout {
                Layout::Xero => {
                    let mut row = vec![String::new(); 24];
                    row[0] = bill.vendor.name.clone();
                    row[10] = bill.number.clone();
                    row[11] = dates.write(&bill.issue_date);
                    row[12] = dates.write(&bill.due_date);
                    row[14] = line.description.clone();
                    row[15] = "1".into();
                    row[16] = amount;
                    row[17] = line.account_code.clone();
                    row[18] = line.tax_code.clone().unwrap_or_default();
                    if let Some(t) = tracking(0) {
                        row[19] = t.category.clone();
                        row[20] = t.option.clone();
                    }
                    if let Some(t) = tracking(1) {
                        row[21] = t.category.clone();
                        row[22] = t.option.clone();
                    }
                    row[23] = bill.currency.clone();
                    row
                }
                Layout::QuickBooks => vec![
                    bill.number.clone(),
                    bill.vendor.name.clone(),
                    dates.write(&bill.issue_date),
                    dates.write(&bill.due_date),
                    String::new(),
                    String::new(),
                    format!("ledgerbridge {}", bill.document_id),
                    line.account_code.clone(),
                    line.description.clone(),
                    amount,
                    line.tax_code.clone().unwrap_or_default(),
                    bill.currency.clone(),
                ],
            }
        })
        .collect()
}

/// Today (UTC), `YYYY-MM-DD`, from the wall clock.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let d = Ymd::from_epoch_days((secs / 86_400) as i64);
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

/// How long a call waits for another call's appends.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// A lock older than this was left by a call that stopped: taken over.
const LOCK_STALE: std::time::Duration = std::time::Duration::from_secs(30);

/// The folder's append lock: a file created only if absent (atomic in the
/// file system), removed when dropped. Calls of one connection run at once,
/// each in an instance of its own, and append to the same day's files: the
/// lock keeps their rows whole and the header single.
struct Lock(String);

impl Lock {
    fn take() -> Result<Lock, ConnectorError> {
        let path = format!("{DIR}/.append.lock");
        let started = std::time::Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(Lock(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .is_ok_and(|at| at.elapsed().unwrap_or_default() > LOCK_STALE);
                    if stale {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    if started.elapsed() > LOCK_WAIT {
                        return Err(ConnectorError::Unavailable(format!(
                            "CSV connector: {path} was held by another call for {LOCK_WAIT:?}"
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => {
                    return Err(ConnectorError::Unavailable(format!(
                        "CSV connector: cannot create {path}: {e}"
                    )));
                }
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Appends `rows` to `path` in one write, after the header when the file is
/// new; the caller holds the folder's lock. A write that fails part way is
/// cut back, so the file never ends in half a row. A call stopped in the
/// middle can leave the file without its rows, never an entry file wrong:
/// the entry files are the source of truth.
fn append(path: &str, columns: &[&str], rows: &[Vec<String>]) -> Result<(), ConnectorError> {
    let io = |what: &str, e: std::io::Error| {
        ConnectorError::Unavailable(format!("CSV connector: cannot {what} {path}: {e}"))
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io("open", e))?;
    let before = file.metadata().map_err(|e| io("read", e))?.len();
    let mut out = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let line = |out: &mut csv::Writer<Vec<u8>>, cells: Vec<String>| {
        out.write_record(cells.iter().map(|c| escape(c).into_owned()))
            .map_err(|e| ConnectorError::Unavailable(format!("CSV connector: {e}")))
    };
    if before == 0 {
        line(&mut out, columns.iter().map(|c| c.to_string()).collect())?;
    }
    for row in rows {
        line(&mut out, row.clone())?;
    }
    let data = out
        .into_inner()
        .map_err(|e| ConnectorError::Unavailable(format!("CSV connector: {e}")))?;
    if let Err(e) = file.write_all(&data).and_then(|()| file.sync_all()) {
        let _ = file.set_len(before);
        return Err(io("append to", e));
    }
    Ok(())
}
