//! The files of the CSV directory: one per bill entry, one per payment entry,
//! and a marker per check number used. Every write goes to a temporary file
//! that is synced and then renamed over the old one, so a reader (or a crash)
//! sees the old file or the new one, never half of one; temporary files a
//! crash left behind are swept now and then (see [`sweep_if_due`]).

use crate::dialect;
use ledgerbridge_sdk::{
    Bill, ConnectorError, Entry, EntryState, Payment, PaymentMethod, log, money,
};
use std::fs;
use std::io::{ErrorKind, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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

/// The longest file-name stem a reference may become. File systems take 255
/// bytes per name; the stem also carries `.csv` and, while it is written, a
/// temporary suffix of up to 42 bytes.
const MAX_STEM: usize = 200;

/// A reference as a file name: letters, digits, `-` and `_` kept, every other
/// byte as `%XX`, so no reference can name a path outside its folder. An
/// empty reference, or one too long for a file name once encoded, is refused
/// as a validation error of `field` (a file system would refuse it with an
/// error that reads like an outage).
fn file_stem(field: &str, reference: &str) -> Result<String, ConnectorError> {
    if reference.is_empty() {
        return Err(ConnectorError::validation(field, "is empty"));
    }
    let mut out = String::with_capacity(reference.len());
    for b in reference.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_STEM {
        return Err(ConnectorError::validation(
            field,
            format!(
                "`{}…` is too long to name a file: {} bytes once encoded, at most {MAX_STEM}",
                reference.chars().take(40).collect::<String>(),
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// The path of a bill entry's file, as the guest sees it; `field` names the
/// reference in an error.
pub fn bill_path(field: &str, reference: &str) -> Result<String, ConnectorError> {
    Ok(format!("{ROOT}/bills/{}.csv", file_stem(field, reference)?))
}

/// The path of a payment entry's file, as the guest sees it.
pub fn payment_path(field: &str, reference: &str) -> Result<String, ConnectorError> {
    Ok(format!(
        "{ROOT}/payments/{}.csv",
        file_stem(field, reference)?
    ))
}

fn check_path(bank_account: &str, number: u64) -> Result<String, ConnectorError> {
    Ok(format!(
        "{ROOT}/checks/{}/{number}",
        file_stem("bank-account", bank_account)?
    ))
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

fn read_bytes(path: &str) -> Result<Option<Vec<u8>>, ConnectorError> {
    match fs::read(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, e)),
    }
}

/// Refuses a value a CSV file should not hold: control characters other
/// than tab and line breaks (a NUL, an escape sequence), which spreadsheets
/// and ERP importers truncate at or choke on.
fn plain_text(field: &str, value: &str) -> Result<(), ConnectorError> {
    match value
        .chars()
        .find(|&c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        Some(c) => Err(ConnectorError::validation(
            field,
            format!("holds the control character U+{:04X}", c as u32),
        )),
        None => Ok(()),
    }
}

fn write_atomically(path: &str, data: &[u8]) -> Result<(), ConnectorError> {
    sweep_if_due();
    let dir = &path[..path.rfind('/').unwrap_or(0)];
    fs::create_dir_all(dir).map_err(|e| io_error("create", dir, e))?;
    // A name of its own per write: two writers never share a temporary file.
    // `<file>.<hex digits>.tmp` is the pattern the sweep recognises.
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = format!("{path}.{stamp:x}{n}.tmp");
    let mut f = fs::File::create(&tmp).map_err(|e| io_error("create", &tmp, e))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| io_error("write", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io_error("replace", path, e))
}

/// Records when the directory was last swept for stale temporary files: its
/// modification time is what counts.
const SWEEP_MARKER: &str = "/data/.ledgerbridge-sweep";
/// How often a directory is swept.
const SWEEP_EVERY: Duration = Duration::from_secs(10 * 60);
/// How old a temporary file must be to be removed. A write keeps its
/// temporary file for milliseconds, and no call outlives its deadline, so a
/// file this old belongs to a write that crashed or was stopped, never to one
/// still running.
const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

/// Before the first write of a call, and at most every [`SWEEP_EVERY`] per
/// directory (the marker's age says when), removes the temporary files a
/// crash left behind: the connector's own pattern only, in the folders it
/// writes, older than [`STALE_AFTER`]. Between sweeps this costs one `stat`
/// per call. Best effort: nothing here fails the operation.
fn sweep_if_due() {
    static CHECKED: AtomicBool = AtomicBool::new(false);
    if CHECKED.swap(true, Ordering::Relaxed) {
        return;
    }
    let now = SystemTime::now();
    let due = match fs::metadata(SWEEP_MARKER).and_then(|m| m.modified()) {
        // A marker from the future (the clock was set back) is due too.
        Ok(at) => now
            .duration_since(at)
            .ok()
            .is_none_or(|age| age >= SWEEP_EVERY),
        Err(_) => true,
    };
    // Touch the marker first, so that calls running beside this one do not
    // sweep as well. No directory granted: nothing to sweep.
    if !due || fs::write(
        SWEEP_MARKER,
        "ledgerbridge CSV connector: when this file was written, stale *.tmp files were removed\n",
    )
    .is_err()
    {
        return;
    }
    let mut removed = Vec::new();
    for folder in ["bills", "payments"] {
        sweep_folder(
            &format!("{ROOT}/{folder}"),
            is_entry_temp,
            now,
            &mut removed,
        );
    }
    if let Ok(banks) = fs::read_dir(format!("{ROOT}/checks")) {
        for bank in banks.flatten() {
            if bank.file_type().is_ok_and(|t| t.is_dir()) {
                let dir = format!("{ROOT}/checks/{}", bank.file_name().to_string_lossy());
                sweep_folder(&dir, is_check_temp, now, &mut removed);
            }
        }
    }
    if let Some(first) = removed.first() {
        log::info(format!(
            "removed {} stale temporary file(s) left by an interrupted write, {first} among them",
            removed.len()
        ));
    }
}

fn sweep_folder(dir: &str, owned: fn(&str) -> bool, now: SystemTime, removed: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !owned(name) {
            continue;
        }
        let stale = e.metadata().is_ok_and(|m| {
            m.is_file()
                && m.modified()
                    .is_ok_and(|at| now.duration_since(at).is_ok_and(|a| a >= STALE_AFTER))
        });
        let path = format!("{dir}/{name}");
        if stale && fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
}

/// `<stem>.<hex digits>.tmp`, the temporary name [`write_atomically`] gives
/// a file named `<stem>`; the stem's own shape is checked by `stem_ok`.
fn temp_of(name: &str, stem_ok: fn(&str) -> bool) -> bool {
    let Some((stem, token)) = name.strip_suffix(".tmp").and_then(|n| n.rsplit_once('.')) else {
        return false;
    };
    !token.is_empty()
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && stem_ok(stem)
}

/// The temporary file of an entry: `<file_stem>.csv.<hex>.tmp`.
fn is_entry_temp(name: &str) -> bool {
    temp_of(name, |stem| {
        stem.strip_suffix(".csv").is_some_and(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'%'))
        })
    })
}

/// The temporary file of a check-number marker: `<number>.<hex>.tmp`.
fn is_check_temp(name: &str) -> bool {
    temp_of(name, |stem| {
        !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A parsed file: its header's column positions and its data rows.
struct Table {
    path: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn parse(path: &str, data: &[u8], required: &[&str]) -> Result<Table, ConnectorError> {
        let bad = |m: String| ConnectorError::validation("csv-file", format!("{path}: {m}"));
        let (columns, rows) = dialect::parse(data).map_err(bad)?;
        if columns.is_empty() {
            return Err(bad("the file is empty".into()));
        }
        let t = Table {
            path: path.to_string(),
            columns,
            rows,
        };
        for r in required {
            if t.column(r).is_none() {
                return Err(bad(format!("the header has no `{r}` column")));
            }
        }
        if t.rows.is_empty() {
            return Err(bad("the file has a header and no rows".into()));
        }
        Ok(t)
    }

    /// A column's position; a spreadsheet's `booked ` is `Booked`.
    fn column(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }

    /// A cell's value exactly as written (unescaped); blank when the row is
    /// short.
    fn text<'a>(&self, row: &'a [String], column: &str) -> &'a str {
        self.column(column)
            .and_then(|i| row.get(i))
            .map_or("", |s| s.as_str())
    }

    /// A cell's value with surrounding spaces removed: for numbers, codes
    /// and marks.
    fn get<'a>(&self, row: &'a [String], column: &str) -> &'a str {
        self.text(row, column).trim()
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

    /// The file must be the entry of `reference`: two references can name
    /// one file where the file system ignores case (`INV-1`, `inv-1`), and
    /// an entry must never answer for another.
    fn check_reference(&self, reference: &str) -> Result<(), ConnectorError> {
        let found = self.text(&self.rows[0], "Reference");
        if found.trim() == reference.trim() {
            return Ok(());
        }
        Err(ConnectorError::validation(
            "csv-file",
            format!(
                "{}: holds the entry of reference `{found}`, not of `{reference}` (on a file system that ignores case, the two name the same file)",
                self.path
            ),
        ))
    }
}

/// A bill entry's file: one row per line, the bill's fields on every row.
pub struct BillFile {
    pub reference: String,
    pub path: String,
    data: Vec<u8>,
    pub version: u64,
    pub idempotency_key: String,
    pub booked: bool,
    pub total: Option<i64>,
}

impl BillFile {
    /// The bill entry `reference`, if its file exists; `field` names the
    /// reference in an error.
    pub fn read(field: &str, reference: &str) -> Result<Option<BillFile>, ConnectorError> {
        let path = bill_path(field, reference)?;
        let Some(data) = read_bytes(&path)? else {
            return Ok(None);
        };
        let t = Table::parse(&path, &data, &["Reference", "Version", "Booked"])?;
        t.check_reference(reference)?;
        let first = &t.rows[0];
        let currency = t.get(first, "Currency");
        let total = money::from_decimal(t.get(first, "Total"), currency).ok();
        Ok(Some(BillFile {
            reference: reference.to_string(),
            version: t.number(first, "Version")?,
            idempotency_key: t.get(first, "IdempotencyKey").to_string(),
            booked: t.booked(),
            total,
            path,
            data,
        }))
    }

    pub fn from_bill(bill: &Bill, version: u64, key: &str) -> Result<BillFile, ConnectorError> {
        if bill.lines.is_empty() {
            return Err(ConnectorError::validation(
                "lines",
                "a bill needs at least one line",
            ));
        }
        let path = bill_path("document-id", &bill.document_id)?;
        for (field, value) in [
            ("document-id", &bill.document_id),
            ("number", &bill.number),
            ("vendor.name", &bill.vendor.name),
            ("vendor.id", &bill.vendor.id),
            ("issue-date", &bill.issue_date),
            ("due-date", &bill.due_date),
            ("currency", &bill.currency),
        ] {
            plain_text(field, value)?;
        }
        let total = money::to_decimal(bill.total, &bill.currency);
        let version_text = version.to_string();
        let mut lines = Vec::with_capacity(bill.lines.len());
        for (i, line) in bill.lines.iter().enumerate() {
            let tracking: Vec<String> = line
                .tracking
                .iter()
                .map(|t| format!("{}={}", t.category, t.option))
                .collect();
            let tracking = tracking.join(";");
            let tax_code = line.tax_code.as_deref().unwrap_or("");
            for (field, value) in [
                ("description", line.description.as_str()),
                ("account-code", &line.account_code),
                ("tax-code", tax_code),
                ("tracking", &tracking),
            ] {
                plain_text(&format!("lines[{i}].{field}"), value)?;
            }
            lines.push([
                (i + 1).to_string(),
                money::to_decimal(line.amount, &bill.currency),
                tracking,
            ]);
        }
        let rows: Vec<Vec<&str>> = bill
            .lines
            .iter()
            .zip(&lines)
            .map(|(line, [number, amount, tracking])| {
                vec![
                    bill.document_id.as_str(),
                    &bill.number,
                    &bill.vendor.name,
                    &bill.vendor.id,
                    &bill.issue_date,
                    &bill.due_date,
                    &bill.currency,
                    &total,
                    number,
                    &line.description,
                    &line.account_code,
                    amount,
                    line.tax_code.as_deref().unwrap_or(""),
                    tracking,
                    &version_text,
                    key,
                    "",
                ]
            })
            .collect();
        Ok(BillFile {
            reference: bill.document_id.clone(),
            path,
            data: dialect::write(&BILL_COLUMNS, &rows),
            version,
            idempotency_key: key.to_string(),
            booked: false,
            total: Some(bill.total),
        })
    }

    pub fn write(&self) -> Result<(), ConnectorError> {
        write_atomically(&self.path, &self.data)
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
    pub path: String,
    pub bank_account: String,
    pub check_number: Option<u64>,
    data: Vec<u8>,
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
    /// The payment entry `reference`, if its file exists.
    pub fn read(reference: &str) -> Result<Option<PaymentFile>, ConnectorError> {
        let path = payment_path("payment-id", reference)?;
        let Some(data) = read_bytes(&path)? else {
            return Ok(None);
        };
        let t = Table::parse(
            &path,
            &data,
            &["Reference", "BankAccount", "Version", "Booked"],
        )?;
        t.check_reference(reference)?;
        let row = &t.rows[0];
        let check = t.get(row, "CheckNumber");
        let check_number = if check.is_empty() {
            None
        } else {
            Some(t.number(row, "CheckNumber")?)
        };
        Ok(Some(PaymentFile {
            reference: reference.to_string(),
            bank_account: t.text(row, "BankAccount").to_string(),
            check_number,
            version: t.number(row, "Version")?,
            idempotency_key: t.get(row, "IdempotencyKey").to_string(),
            booked: t.booked(),
            amount: money::from_decimal(t.get(row, "Amount"), t.get(row, "Currency")).ok(),
            path,
            data,
        }))
    }

    pub fn from_payment(
        p: &Payment,
        version: u64,
        key: &str,
    ) -> Result<PaymentFile, ConnectorError> {
        let path = payment_path("payment-id", &p.payment_id)?;
        if let Some(n) = p.check_number {
            check_path(&p.bank_account, n)?;
        }
        for (field, value) in [
            ("payment-id", &p.payment_id),
            ("document-id", &p.document_id),
            ("bill-entry-id", &p.bill_entry_id),
            ("bill-number", &p.bill_number),
            ("vendor.name", &p.vendor.name),
            ("vendor.id", &p.vendor.id),
            ("date", &p.date),
            ("currency", &p.currency),
            ("bank-account", &p.bank_account),
        ] {
            plain_text(field, value)?;
        }
        let check = p.check_number.map(|n| n.to_string()).unwrap_or_default();
        let amount = money::to_decimal(p.amount, &p.currency);
        let version_text = version.to_string();
        let row = vec![
            p.payment_id.as_str(),
            &p.document_id,
            &p.bill_entry_id,
            &p.bill_number,
            &p.vendor.name,
            &p.vendor.id,
            &p.date,
            &amount,
            &p.currency,
            &p.bank_account,
            method_name(p.method),
            &check,
            &version_text,
            key,
            "",
        ];
        Ok(PaymentFile {
            reference: p.payment_id.clone(),
            path,
            bank_account: p.bank_account.clone(),
            check_number: p.check_number,
            data: dialect::write(&PAYMENT_COLUMNS, &[row]),
            version,
            idempotency_key: key.to_string(),
            booked: false,
            amount: Some(p.amount),
        })
    }

    /// Writes the file, then its check-number marker.
    pub fn write(&self) -> Result<(), ConnectorError> {
        write_atomically(&self.path, &self.data)?;
        if let Some(n) = self.check_number {
            write_atomically(
                &check_path(&self.bank_account, n)?,
                self.reference.as_bytes(),
            )?;
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
    let path = check_path(bank_account, number)?;
    Ok(read_bytes(&path)?.map(|t| String::from_utf8_lossy(&t).trim().to_string()))
}

/// Frees a check number's marker when its payment moves to another number.
pub fn release_check(bank_account: &str, number: u64) -> Result<(), ConnectorError> {
    let path = check_path(bank_account, number)?;
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", &path, e)),
    }
}
