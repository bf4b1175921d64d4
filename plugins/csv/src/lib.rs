//! The CSV connector: bill entries and payment entries as CSV files in the
//! directory the connection grants (mounted at `/data`). See README.md for
//! the layout. One file per entry, named after the document's (or payment's)
//! reference, so lookup, create and update cost the same however many entries
//! the directory holds. Creates and updates come in batches (contract 0.2):
//! each item is written on its own, and the entries a call wrote are
//! appended to the day's import-ready files (`imports`) in one write.

mod dialect;
mod files;
mod imports;

use files::{BillFile, PaymentFile};
use imports::Appends;
use ledgerbridge_sdk::*;

struct CsvConnector;

impl Connector for CsvConnector {
    fn describe() -> Descriptor {
        Descriptor {
            name: "csv".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities::PAYMENTS
                | Capabilities::UPDATE_PAYMENTS
                | Capabilities::CHECK_NUMBERS_IN_USE,
            settings: vec![
                SettingSpec {
                    name: imports::SETTING.into(),
                    description: "import-ready files of each day's new and changed entries: xero (Xero's bill import template), quickbooks (QuickBooks Online's bill import), or none (the default)".into(),
                    required: false,
                },
                SettingSpec {
                    name: imports::DATE_SETTING.into(),
                    description: "how import-ready files write dates: YYYY-MM-DD (the default), DD/MM/YYYY or MM/DD/YYYY, as the ERP's region expects".into(),
                    required: false,
                },
            ],
            // Files on a local disk: a batch of fifty is one call.
            limits: Limits {
                lookups_per_call: 50,
                creates_per_call: 50,
                updates_per_call: 50,
                ..Limits::default()
            },
        }
    }

    fn lookup_bill(
        _ctx: &Context,
        bill: &Bill,
        known_id: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        let reference = known_id.unwrap_or(&bill.document_id);
        Ok(BillFile::read("document-id", reference)?.map(|f| f.entry()))
    }

    fn lookup_payment(
        _ctx: &Context,
        payment: &Payment,
        known_id: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        let reference = known_id.unwrap_or(&payment.payment_id);
        Ok(PaymentFile::read(reference)?.map(|f| f.entry()))
    }

    fn create_bill(ctx: &Context, bill: &Bill) -> Result<Entry, ConnectorError> {
        create_bill(ctx, bill).map(|(e, _)| e)
    }

    fn update_bill(ctx: &Context, entry: &Entry, bill: &Bill) -> Result<Entry, ConnectorError> {
        update_bill(ctx, entry, bill)
    }

    fn create_payment(ctx: &Context, payment: &Payment) -> Result<Entry, ConnectorError> {
        create_payment(ctx, payment).map(|(e, _)| e)
    }

    fn update_payment(
        ctx: &Context,
        entry: &Entry,
        payment: &Payment,
    ) -> Result<Entry, ConnectorError> {
        update_payment(ctx, entry, payment)
    }

    fn create_bills(ctx: &Context, items: &[BillCreate]) -> Results<Entry> {
        Ok(written(ctx, items, |ctx, i, appends| {
            let (entry, new) = create_bill(&ctx.for_item(&i.key), &i.bill)?;
            if new && let Some(a) = appends {
                a.bill(&i.bill, false);
            }
            Ok(entry)
        }))
    }

    fn update_bills(ctx: &Context, items: &[BillUpdate]) -> Results<Entry> {
        Ok(written(ctx, items, |ctx, i, appends| {
            let entry = update_bill(&ctx.for_item(&i.key), &i.entry, &i.bill)?;
            if let Some(a) = appends {
                a.bill(&i.bill, true);
            }
            Ok(entry)
        }))
    }

    fn create_payments(ctx: &Context, items: &[PaymentCreate]) -> Results<Entry> {
        Ok(written(ctx, items, |ctx, i, appends| {
            let (entry, new) = create_payment(&ctx.for_item(&i.key), &i.payment)?;
            if new && let Some(a) = appends {
                a.payment(&i.payment, false);
            }
            Ok(entry)
        }))
    }

    fn update_payments(ctx: &Context, items: &[PaymentUpdate]) -> Results<Entry> {
        Ok(written(ctx, items, |ctx, i, appends| {
            let entry = update_payment(&ctx.for_item(&i.key), &i.entry, &i.payment)?;
            if let Some(a) = appends {
                a.payment(&i.payment, true);
            }
            Ok(entry)
        }))
    }

    fn check_numbers_in_use(
        _ctx: &Context,
        bank_account: &str,
        first: u64,
        count: u32,
    ) -> Result<Vec<u64>, ConnectorError> {
        let mut used = Vec::new();
        for n in first..first.saturating_add(u64::from(count)) {
            if files::check_holder(bank_account, n)?.is_some() {
                used.push(n);
            }
        }
        Ok(used)
    }
}

/// Runs `one` for each item of a call, then appends what the call wrote to
/// the day's import-ready files in one write. A connection whose import
/// settings are wrong gets that validation error for every item, and
/// nothing is written. An import file that cannot be appended to is logged
/// (the entries are written; the entry files are the source of truth).
fn written<I>(
    ctx: &Context,
    items: &[I],
    one: impl Fn(&Context, &I, &mut Option<Appends>) -> Result<Entry, ConnectorError>,
) -> Vec<Result<Entry, ConnectorError>> {
    let mut appends = match Appends::new(ctx) {
        Ok(a) => a,
        Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
    };
    let results = items.iter().map(|i| one(ctx, i, &mut appends)).collect();
    if let Some(a) = appends
        && let Err(e) = a.write()
    {
        log::warn(format!(
            "the entries are written, but not to the day's import-ready file: {e:?}"
        ));
    }
    results
}

/// Creates `bill`'s entry; `true` when this call wrote it (not a repeat of
/// the same key).
fn create_bill(ctx: &Context, bill: &Bill) -> Result<(Entry, bool), ConnectorError> {
    if let Some(existing) = BillFile::read("document-id", &bill.document_id)? {
        // A repeat of the same operation answers as the first did, the way
        // ERPs honour an idempotency key.
        if existing.idempotency_key == ctx.idempotency_key {
            return Ok((existing.entry(), false));
        }
        return Err(ConnectorError::validation(
            "document-id",
            format!(
                "a bill entry with reference {} already exists",
                bill.document_id
            ),
        ));
    }
    let file = BillFile::from_bill(bill, 1, &ctx.idempotency_key)?;
    file.write()?;
    log::info(format!("created {}", file.path));
    Ok((file.entry(), true))
}

/// Makes `entry` match `bill`.
fn update_bill(ctx: &Context, entry: &Entry, bill: &Bill) -> Result<Entry, ConnectorError> {
    let current = BillFile::read("document-id", &entry.id)?.ok_or_else(|| {
        ConnectorError::NotFound(format!("no bill entry {} in the CSV directory", entry.id))
    })?;
    if current.booked {
        return Err(ConnectorError::Booked(format!(
            "bill entry {} is marked booked in {}",
            entry.id, current.path
        )));
    }
    check_version(entry, current.version)?;
    let file = BillFile::from_bill(bill, current.version + 1, &ctx.idempotency_key)?;
    file.write()?;
    log::info(format!("updated {}", file.path));
    Ok(file.entry())
}

/// Creates `payment`'s entry; `true` when this call wrote it.
fn create_payment(ctx: &Context, payment: &Payment) -> Result<(Entry, bool), ConnectorError> {
    if let Some(existing) = PaymentFile::read(&payment.payment_id)? {
        if existing.idempotency_key == ctx.idempotency_key {
            return Ok((existing.entry(), false));
        }
        return Err(ConnectorError::validation(
            "payment-id",
            format!(
                "a payment entry with reference {} already exists",
                payment.payment_id
            ),
        ));
    }
    if BillFile::read("bill-entry-id", &payment.bill_entry_id)?.is_none() {
        return Err(ConnectorError::validation(
            "bill-entry-id",
            format!("no bill entry {} to pay", payment.bill_entry_id),
        ));
    }
    refuse_used_check_number(payment)?;
    let file = PaymentFile::from_payment(payment, 1, &ctx.idempotency_key)?;
    file.write()?;
    log::info(format!("created {}", file.path));
    Ok((file.entry(), true))
}

/// Makes `entry` match `payment`.
fn update_payment(
    ctx: &Context,
    entry: &Entry,
    payment: &Payment,
) -> Result<Entry, ConnectorError> {
    let current = PaymentFile::read(&entry.id)?.ok_or_else(|| {
        ConnectorError::NotFound(format!(
            "no payment entry {} in the CSV directory",
            entry.id
        ))
    })?;
    if current.booked {
        return Err(ConnectorError::Booked(format!(
            "payment entry {} is marked booked in {}",
            entry.id, current.path
        )));
    }
    check_version(entry, current.version)?;
    refuse_used_check_number(payment)?;
    let file = PaymentFile::from_payment(payment, current.version + 1, &ctx.idempotency_key)?;
    file.write()?;
    if let Some(old) = current.check_number
        && (payment.check_number != Some(old) || payment.bank_account != current.bank_account)
    {
        files::release_check(&current.bank_account, old)?;
    }
    log::info(format!("updated {}", file.path));
    Ok(file.entry())
}

/// The version token guards against overwriting an accountant's edit the
/// host has not seen (the way QuickBooks' SyncToken does).
fn check_version(entry: &Entry, current: u64) -> Result<(), ConnectorError> {
    match entry.version.as_deref() {
        Some(v) if v != current.to_string() => Err(ConnectorError::Conflict(format!(
            "entry {} is at version {current}, the host sent version {v}",
            entry.id
        ))),
        _ => Ok(()),
    }
}

fn refuse_used_check_number(payment: &Payment) -> Result<(), ConnectorError> {
    let Some(number) = payment.check_number else {
        return Ok(());
    };
    match files::check_holder(&payment.bank_account, number)? {
        Some(holder) if holder != payment.payment_id => {
            Err(ConnectorError::duplicate_check_number(
                number,
                format!(
                    "check number {number} on bank account {} is already used by {holder}",
                    payment.bank_account
                ),
            ))
        }
        _ => Ok(()),
    }
}

export_connector!(CsvConnector);
