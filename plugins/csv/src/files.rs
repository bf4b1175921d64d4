//! The files of the CSV directory: one per bill entry, one per payment entry,
//! and a marker per check number used. Every write goes to a temporary file
//! that is synced and then renamed over the old one, so a reader (or a crash)
//! sees the old file or the new one, never half of one.

use crate::csv;
use ledgerbridge_sdk::{Bill, ConnectorError, Entry, EntryState, Payment, PaymentMethod, money};
use std::fs;
use std::io::{ErrorKind, Write};

/// Where the connection's granted directory is mounted.
const ROOT: &str = "/data";

const BILL_COLUMNS: [&str; 17] = [
    "Reference",
    "InvoiceNumber",
    "Supplier",
    "SupplierId",
    "Date",
    "DueDate",
    "Currency",
    "Total",
    "Line",
    "Description",
    "AccountCode",
    "Amount",
    "TaxCode",
    "Tracking",
    "Version",
    "IdempotencyKey",
    "Booked",
];

const PAYMENT_COLUMNS: [&str; 15] = [
    "Reference",
    "BillReference",
    "BillEntryId",
    "BillNumber",
    "Supplier",
    "SupplierId",
    "Date",
    "Amount",
    "Currency",
    "BankAccount",
    "Method",
    "CheckNumber",
    "Version",
    "IdempotencyKey",
    "Booked",
];

/// A reference as a file name: letters, digits, `-` and `_` kept, every other
/// byte as `%XX`, so no reference can name a path outside its folder.
fn file_stem(reference: &str) -> String {
    let mut out = String::with_capacity(reference.len());
    for b in reference.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path of a bill entry's file, as the guest sees it.
pub fn bill_path(reference: &str) -> String {
    format!("{ROOT}/bills/{}.csv", file_stem(reference))
}

/// The path of a payment entry's file, as the guest sees it.
pub fn payment_path(reference: &str) -> String {
    format!("{ROOT}/payments/{}.csv", file_stem(reference))
}

fn check_path(bank_account: &str, number: u64) -> String {
    format!("{ROOT}/checks/{}/{number}", file_stem(bank_account))
}

fn io_error(what: &str, path: &str, e: std::io::Error) -> ConnectorError {
    if e.kind() == ErrorKind::PermissionDenied || e.kind() == ErrorKind::NotFound {
        // No directory granted, or it vanished: the connection's setup.
        ConnectorError::validation(
            "csv-directory",
            format!("cannot {what} {path}: {e} (does the connection grant a directory?)"),
        )
    } else {
        ConnectorError::Unavailable(format!("cannot {what} {path}: {e}"))
    }
}

fn read_text(path: &str) -> Result<Option<String>, ConnectorError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

fn write_atomically(path: &str, text: &str) -> Result<(), ConnectorError> {
    let dir = &path[..path.rfind('/').unwrap_or(0)];
    fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    // A name of its own per write: two writers never share a temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = format!("{path}.{stamp:x}{n}.tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| io_error("write", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io_error("replace", path, e))
}

/// A parsed file: its header's column positions and its data rows.
struct Table {
    path: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn parse(path: &str, text: &str, required: &[&str]) -> Result<Table, ConnectorError> {
        let bad = |m: String| ConnectorError::validation("csv-file", format!("{path}: {m}"));
        let mut rows = csv::parse(text).map_err(bad)?;
        if rows.is_empty() {
            return Err(bad("the file is empty".into()));
        }
        let columns = rows.remove(0);
        for r in required {
            if !columns.iter().any(|c| c == r) {
                return Err(bad(format!("the header has no `{r}` column")));
            }
        }
        if rows.is_empty() {
            return Err(bad("the file has a header and no rows".into()));
        }
        Ok(Table {
            path: path.to_string(),
            columns,
            rows,
        })
    }

    fn get<'a>(&self, row: &'a [String], column: &str) -> &'a str {
        self.columns
            .iter()
            .position(|c| c == column)
            .and_then(|i| row.get(i))
            .map_or("", |s| s.trim())
    }

    fn number(&self, row: &[String], column: &str) -> Result<u64, ConnectorError> {
        let v = self.get(row, column);
        v.parse().map_err(|_| {
            ConnectorError::validation(
                "csv-file",
                format!("{}: `{column}` is `{v}`, not a whole number", self.path),
            )
        })
    }

    /// An accountant marks a row booked with any value but blank, `no`,
    /// `false` or `0`.
    fn booked(&self) -> bool {
        self.rows.iter().any(|r| {
            let v = self.get(r, "Booked").to_ascii_lowercase();
            !(v.is_empty() || v == "no" || v == "false" || v == "0")
        })
    }
}

/// A bill entry's file: one row per line, the bill's fields on every row.
pub struct BillFile {
    pub reference: String,
    pub text: String,
    pub version: u64,
    pub idempotency_key: String,
    pub booked: bool,
    pub total: Option<i64>,
}

impl BillFile {
    pub fn read(reference: &str) -> Result<Option<BillFile>, ConnectorError> {
        let path = bill_path(reference);
        let Some(text) = read_text(&path)? else {
            return Ok(None);
        };
        let t = Table::parse(&path, &text, &["Reference", "Version"])?;
        let first = &t.rows[0];
        let currency = t.get(first, "Currency");
        let total = money::from_decimal(t.get(first, "Total"), currency).ok();
        Ok(Some(BillFile {
            reference: reference.to_string(),
            version: t.number(first, "Version")?,
            idempotency_key: t.get(first, "IdempotencyKey").to_string(),
            booked: t.booked(),
            total,
            text,
        }))
    }

    pub fn from_bill(bill: &Bill, version: u64, key: &str) -> Result<BillFile, ConnectorError> {
        if bill.lines.is_empty() {
            return Err(ConnectorError::validation(
                "lines",
                "a bill needs at least one line",
            ));
        }
        let mut text = String::new();
        csv::write_row(&mut text, &BILL_COLUMNS);
        let total = money::to_decimal(bill.total, &bill.currency);
        let version_text = version.to_string();
        for (i, line) in bill.lines.iter().enumerate() {
            let tracking: Vec<String> = line
                .tracking
                .iter()
                .map(|t| format!("{}={}", t.category, t.option))
                .collect();
            csv::write_row(
                &mut text,
                &[
                    &bill.document_id,
                    &bill.number,
                    &bill.vendor.name,
                    &bill.vendor.id,
                    &bill.issue_date,
                    &bill.due_date,
                    &bill.currency,
                    &total,
                    &(i + 1).to_string(),
                    &line.description,
                    &line.account_code,
                    &money::to_decimal(line.amount, &bill.currency),
                    line.tax_code.as_deref().unwrap_or(""),
                    &tracking.join(";"),
                    &version_text,
                    key,
                    "",
                ],
            );
        }
        Ok(BillFile {
            reference: bill.document_id.clone(),
            text,
            version,
            idempotency_key: key.to_string(),
            booked: false,
            total: Some(bill.total),
        })
    }

    pub fn write(&self) -> Result<(), ConnectorError> {
        write_atomically(&bill_path(&self.reference), &self.text)
    }

    pub fn entry(&self) -> Entry {
        Entry {
            id: self.reference.clone(),
            version: Some(self.version.to_string()),
            state: if self.booked {
                EntryState::Booked
            } else {
                EntryState::Open
            },
            total: self.total,
        }
    }
}

/// A payment entry's file: one row.
pub struct PaymentFile {
    pub reference: String,
    pub bank_account: String,
    pub check_number: Option<u64>,
    pub text: String,
    pub version: u64,
    pub idempotency_key: String,
    pub booked: bool,
    pub amount: Option<i64>,
}

fn method_name(m: PaymentMethod) -> &'static str {
    match m {
        PaymentMethod::Check => "check",
        PaymentMethod::Ach => "ach",
        PaymentMethod::Wire => "wire",
        PaymentMethod::Card => "card",
    }
}

impl PaymentFile {
    pub fn read(reference: &str) -> Result<Option<PaymentFile>, ConnectorError> {
        let path = payment_path(reference);
        let Some(text) = read_text(&path)? else {
            return Ok(None);
        };
        let t = Table::parse(&path, &text, &["Reference", "BankAccount", "Version"])?;
        let row = &t.rows[0];
        let check = t.get(row, "CheckNumber");
        let check_number = if check.is_empty() {
            None
        } else {
            Some(t.number(row, "CheckNumber")?)
        };
        Ok(Some(PaymentFile {
            reference: reference.to_string(),
            bank_account: t.get(row, "BankAccount").to_string(),
            check_number,
            version: t.number(row, "Version")?,
            idempotency_key: t.get(row, "IdempotencyKey").to_string(),
            booked: t.booked(),
            amount: money::from_decimal(t.get(row, "Amount"), t.get(row, "Currency")).ok(),
            text,
        }))
    }

    pub fn from_payment(p: &Payment, version: u64, key: &str) -> PaymentFile {
        let mut text = String::new();
        csv::write_row(&mut text, &PAYMENT_COLUMNS);
        let check = p.check_number.map(|n| n.to_string()).unwrap_or_default();
        csv::write_row(
            &mut text,
            &[
                &p.payment_id,
                &p.document_id,
                &p.bill_entry_id,
                &p.bill_number,
                &p.vendor.name,
                &p.vendor.id,
                &p.date,
                &money::to_decimal(p.amount, &p.currency),
                &p.currency,
                &p.bank_account,
                method_name(p.method),
                &check,
                &version.to_string(),
                key,
                "",
            ],
        );
        PaymentFile {
            reference: p.payment_id.clone(),
            bank_account: p.bank_account.clone(),
            check_number: p.check_number,
            text,
            version,
            idempotency_key: key.to_string(),
            booked: false,
            amount: Some(p.amount),
        }
    }

    /// Writes the file, then its check-number marker.
    pub fn write(&self) -> Result<(), ConnectorError> {
        write_atomically(&payment_path(&self.reference), &self.text)?;
        if let Some(n) = self.check_number {
            write_atomically(&check_path(&self.bank_account, n), &self.reference)?;
        }
        Ok(())
    }

    pub fn entry(&self) -> Entry {
        Entry {
            id: self.reference.clone(),
            version: Some(self.version.to_string()),
            state: if self.booked {
                EntryState::Booked
            } else {
                EntryState::Open
            },
            total: self.amount,
        }
    }
}

/// Which payment holds check `number` on `bank_account`, from its marker.
/// A marker written by hand (any content) reserves a number used outside
/// ledgerbridge.
pub fn check_holder(bank_account: &str, number: u64) -> Result<Option<String>, ConnectorError> {
    Ok(read_text(&check_path(bank_account, number))?.map(|t| t.trim().to_string()))
}

/// Frees a check number's marker when its payment moves to another number.
pub fn release_check(bank_account: &str, number: u64) -> Result<(), ConnectorError> {
    let path = check_path(bank_account, number);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", &path, e)),
    }
}
