//! Payments as QuickBooks bill payments: lookup, create, update, and which
//! check numbers a bank account already uses (C3).

use crate::api::{BATCH_ITEMS, Failure, Qbo, Query};
use crate::bills::{Target, answer_is_for, find, open, targets};
use crate::faults::{self, Closing, Subject};
use crate::{vendors, wire};
use ledgerbridge_sdk::*;
use serde_json::{Value, json};

/// Each payment: by its known `Id`, else among the bill payments linked
/// to its bill (the bill's `LinkedTxn`), the one whose memo names the
/// payment. A voided bill payment counts as gone.
pub fn lookup(ctx: &Context, items: &[PaymentLookup]) -> Results<Option<Entry>> {
    let qbo = match open(ctx, items.len()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let bills: Vec<String> = items
        .iter()
        .filter(|i| i.known_id.is_none())
        .map(|i| i.payment.bill_entry_id.clone())
        .filter(|b| !b.is_empty())
        .collect();
    let linked = find(
        &qbo,
        "Bill",
        &Query::any_of("Bill", "Id", "bill-entry-id", &bills),
    )?;
    // The bill payments each bill links (where its payment may be).
    let payments_of = |bill: &str| -> Vec<String> {
        linked
            .records
            .iter()
            .filter(|b| wire::text(b, "Id") == bill)
            .flat_map(|b| {
                b.get("LinkedTxn")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|t| wire::text(t, "TxnType") == "BillPayment")
            .map(|t| wire::text(&t, "TxnId").to_string())
            .collect()
    };
    let mut ids: Vec<String> = items.iter().filter_map(|i| i.known_id.clone()).collect();
    for b in &bills {
        ids.extend(payments_of(b));
    }
    let found = find(
        &qbo,
        "BillPayment",
        &Query::any_of("BillPayment", "Id", "entry-id", &ids),
    )?;
    let mut out = Slots::new(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = &item.payment;
        // A query this item depends on was refused: its error.
        let refused = match &item.known_id {
            Some(id) => found.failure(id),
            None => linked.failure(&p.bill_entry_id).or_else(|| {
                payments_of(&p.bill_entry_id)
                    .iter()
                    .find_map(|id| found.failure(id))
            }),
        };
        if let Some(e) = refused {
            out.set(i, Err(e));
            continue;
        }
        let marker = wire::payment_note(p);
        let hit = found.records.iter().find(|v| match &item.known_id {
            Some(id) => wire::text(v, "Id") == id,
            None => wire::names(wire::text(v, "PrivateNote"), &marker),
        });
        out.set(
            i,
            hit.filter(|v| !wire::voided(v))
                .map(|v| wire::payment_entry(v, &p.currency))
                .transpose(),
        );
    }
    out.done()
}

pub fn create(ctx: &Context, items: &[PaymentCreate]) -> Results<Entry> {
    let qbo = match open(ctx, items.len()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let payments: Vec<&Payment> = items.iter().map(|i| &i.payment).collect();
    write(&qbo, ctx, &payments, &vec![None; items.len()], "create")
}

/// A full update of each bill payment, with the entry's `SyncToken`.
pub fn update(ctx: &Context, items: &[PaymentUpdate]) -> Results<Entry> {
    let qbo = match open(ctx, items.len()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let unversioned: Vec<String> = items
        .iter()
        .filter(|i| i.entry.version.is_none())
        .map(|i| i.entry.id.clone())
        .collect();
    let current = find(
        &qbo,
        "BillPayment",
        &Query::any_of("BillPayment", "Id", "entry-id", &unversioned),
    )?;
    let targets = targets(items.iter().map(|i| &i.entry), &current);
    let payments: Vec<&Payment> = items.iter().map(|i| &i.payment).collect();
    write(&qbo, ctx, &payments, &targets, "update")
}

fn write(
    qbo: &Qbo,
    ctx: &Context,
    payments: &[&Payment],
    targets: &[Target],
    operation: &str,
) -> Results<Entry> {
    let mut out = Slots::new(payments.len());
    let vendors: Vec<&Vendor> = payments.iter().map(|p| &p.vendor).collect();
    let vendor_ids = vendors::resolve(qbo, ctx, &vendors)?;
    let mut sent: Vec<(usize, Value)> = Vec::new();
    for (i, (p, vendor)) in payments.iter().zip(vendor_ids).enumerate() {
        let target = match &targets[i] {
            Some(Err(e)) => {
                out.set(i, Err(e.clone()));
                continue;
            }
            Some(Ok(t)) => Some(t),
            None => None,
        };
        if let Some((id, token)) = target
            && token.is_empty()
        {
            out.set(
                i,
                Err(ConnectorError::NotFound(format!(
                    "QuickBooks has no bill payment {id} (deleted there)"
                ))),
            );
            continue;
        }
        let body = vendor.and_then(|v| wire::bill_payment(p, &v)).map(|mut b| {
            if let Some((id, token)) = target {
                b["Id"] = id.clone().into();
                b["SyncToken"] = token.clone().into();
            }
            b
        });
        match body {
            Ok(b) => sent.push((i, b)),
            Err(e) => out.set(i, Err(e)),
        }
    }
    let mut closing = Closing::Unread(qbo);
    for chunk in sent.chunks(BATCH_ITEMS) {
        let batch = chunk
            .iter()
            .map(|(_, b)| json!({"operation": operation, "BillPayment": b}))
            .collect();
        let answers = match qbo.batch(&format!("{operation} bill payments"), batch) {
            Ok(a) => a,
            Err(Failure::Call(e)) => return Err(e),
            Err(Failure::Each(e)) => {
                chunk.iter().for_each(|(i, _)| out.set(*i, Err(e.clone())));
                continue;
            }
        };
        for ((i, _), a) in chunk.iter().zip(answers) {
            let p = payments[*i];
            let r = match a {
                Ok(v) => match v.get("BillPayment") {
                    Some(b) => {
                        let target = match &targets[*i] {
                            Some(Ok(t)) => Some(t),
                            _ => None,
                        };
                        answer_is_for(b, &wire::payment_note(p), target)?;
                        wire::payment_entry(b, &p.currency)
                    }
                    None => Err(ConnectorError::Unavailable(
                        "QuickBooks answered the item without its BillPayment".into(),
                    )),
                },
                Err((kind, errors)) => {
                    let e = faults::item(&kind, &errors, &Subject::Payment(p), &mut closing);
                    log::warn(format!(
                        "payment {}: {}",
                        p.payment_id,
                        faults::describe(&e)
                    ));
                    Err(e)
                }
            };
            out.set(*i, r);
        }
    }
    out.done()
}

/// Which of `first .. first + count - 1` QuickBooks already has as the
/// `DocNumber` of a check from `bank_account` (voided checks included: a
/// voided check's number stays used).
pub fn check_numbers_in_use(
    ctx: &Context,
    bank_account: &str,
    first: u64,
    count: u32,
) -> Result<Vec<u64>, ConnectorError> {
    let qbo = Qbo::of(ctx)?;
    let last = first.saturating_add(u64::from(count.max(1)) - 1);
    let numbers: Vec<String> = (first..=last).map(|n| n.to_string()).collect();
    let found = find(
        &qbo,
        "BillPayment",
        &Query::any_of("BillPayment", "DocNumber", "check-number", &numbers),
    )
    .map_err(|e| match e {
        CallError::Unavailable(m) => ConnectorError::Unavailable(m),
        CallError::Unauthorized(m) => ConnectorError::Unauthorized(m),
        CallError::RateLimited(r) => ConnectorError::RateLimited(r),
    })?;
    if let Some(e) = found.first_failure() {
        return Err(e);
    }
    let mut used: Vec<u64> = found
        .records
        .iter()
        .filter(|v| wire::text(v, "PayType") == "Check")
        .filter(|v| {
            v.get("CheckPayment")
                .and_then(|c| c.get("BankAccountRef"))
                .map(|r| wire::text(r, "value"))
                == Some(bank_account)
        })
        .filter_map(|v| wire::text(v, "DocNumber").parse::<u64>().ok())
        .filter(|n| (first..=last).contains(n))
        .collect();
    used.sort_unstable();
    used.dedup();
    Ok(used)
}
