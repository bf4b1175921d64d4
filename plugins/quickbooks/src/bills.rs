//! Bills: lookup, create and update, each a batch of items in as few
//! `POST /batch` requests as QuickBooks allows (30 items each).

use crate::api::{BATCH_ITEMS, Failure, Qbo, quoted};
use crate::faults::{self, Closing, Subject};
use crate::{vendors, wire};
use ledgerbridge_sdk::*;
use serde_json::{Value, json};

/// Values one `IN (...)` query carries.
const PER_QUERY: usize = 50;

/// The company's API, or the same settings error for every item.
pub(crate) fn open<'c, T: Clone>(ctx: &'c Context, n: usize) -> Result<Qbo<'c>, Results<T>> {
    Qbo::of(ctx).map_err(|e| Ok(vec![Err(e); n]))
}

/// `select * from Bill where <field> in (...)` for `values`, in queries
/// of [`PER_QUERY`].
fn queries(entity: &str, field: &str, values: &[String]) -> Vec<String> {
    values
        .chunks(PER_QUERY)
        .map(|c| {
            format!(
                "select * from {entity} where {field} in ({}) maxresults 1000",
                c.iter().map(|v| quoted(v)).collect::<Vec<_>>().join(", ")
            )
        })
        .collect()
}

fn distinct(mut v: Vec<String>) -> Vec<String> {
    v.sort_unstable();
    v.dedup();
    v
}

/// Every record the queries find, in one list.
pub(crate) fn find(qbo: &Qbo, entity: &str, queries: &[String]) -> Result<Vec<Value>, Failure> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    Ok(qbo
        .queries(entity, queries)?
        .into_iter()
        .flatten()
        .collect())
}

/// Each item's bill: by its known `Id`, else by its vendor number
/// (`DocNumber`, not unique) narrowed to the bill whose memo names the
/// document (a bill without a number is looked for by its date). A bill
/// deleted in QuickBooks is not found, so the host creates it again.
pub fn lookup(ctx: &Context, items: &[BillLookup]) -> Results<Option<Entry>> {
    let qbo = match open(ctx, items.len()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let ids = distinct(items.iter().filter_map(|i| i.known_id.clone()).collect());
    let unknown = || items.iter().filter(|i| i.known_id.is_none());
    let numbers = distinct(
        unknown()
            .filter_map(|i| wire::doc_number(&i.bill.number))
            .collect(),
    );
    let dates = distinct(
        unknown()
            .filter(|i| wire::doc_number(&i.bill.number).is_none())
            .map(|i| i.bill.issue_date.clone())
            .collect(),
    );
    let mut all = queries("Bill", "Id", &ids);
    all.extend(queries("Bill", "DocNumber", &numbers));
    all.extend(dates.iter().map(|d| {
        format!(
            "select * from Bill where TxnDate = {} maxresults 1000",
            quoted(d)
        )
    }));
    let found = match find(&qbo, "Bill", &all) {
        Ok(f) => f,
        Err(Failure::Call(e)) => return Err(e),
        Err(Failure::Each(e)) => return Ok(vec![Err(e); items.len()]),
    };
    let mut out = Slots::new(items.len());
    for (i, item) in items.iter().enumerate() {
        let hit: Vec<&Value> = match &item.known_id {
            Some(id) => found.iter().filter(|v| wire::text(v, "Id") == id).collect(),
            None => {
                let marker = format!("ledgerbridge document {}", item.bill.document_id);
                found
                    .iter()
                    .filter(|v| wire::names(wire::text(v, "PrivateNote"), &marker))
                    .collect()
            }
        };
        if hit.len() > 1 {
            log::warn(format!(
                "bill {}: {} bills in QuickBooks name it in their memo; the first is taken",
                item.bill.document_id,
                hit.len()
            ));
        }
        out.set(
            i,
            hit.first()
                .map(|v| wire::bill_entry(v, &item.bill.currency))
                .transpose(),
        );
    }
    out.done()
}

/// One batch of creates (after the vendors are resolved).
pub fn create(ctx: &Context, items: &[BillCreate]) -> Results<Entry> {
    let qbo = match open(ctx, items.len()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let bills: Vec<&Bill> = items.iter().map(|i| &i.bill).collect();
    write(&qbo, ctx, &bills, &vec![None; items.len()], "create")
}

/// One batch of full updates, each with the entry's `SyncToken` (read
/// first where the host has none). A stale token is a `conflict`: the host
/// reads the bill again and updates once more.
pub fn update(ctx: &Context, items: &[BillUpdate]) -> Results<Entry> {
    let qbo = match open(ctx, items.len()) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let unversioned: Vec<String> = items
        .iter()
        .filter(|i| i.entry.version.is_none())
        .map(|i| i.entry.id.clone())
        .collect();
    let current = match find(&qbo, "Bill", &queries("Bill", "Id", &distinct(unversioned))) {
        Ok(f) => f,
        Err(Failure::Call(e)) => return Err(e),
        Err(Failure::Each(e)) => return Ok(vec![Err(e); items.len()]),
    };
    let targets: Vec<Option<(String, String)>> = items
        .iter()
        .map(|i| {
            let token = i.entry.version.clone().or_else(|| {
                current
                    .iter()
                    .find(|v| wire::text(v, "Id") == i.entry.id)
                    .map(|v| wire::text(v, "SyncToken").to_string())
            });
            // No token: the bill is gone (answered `not-found` below).
            Some((i.entry.id.clone(), token.unwrap_or_default()))
        })
        .collect();
    let bills: Vec<&Bill> = items.iter().map(|i| &i.bill).collect();
    write(&qbo, ctx, &bills, &targets, "update")
}

/// Resolves the vendors, then sends each bill (`create`, or `update` of
/// its target) in batches of 30 and reads each item's answer.
fn write(
    qbo: &Qbo,
    ctx: &Context,
    bills: &[&Bill],
    targets: &[Option<(String, String)>],
    operation: &str,
) -> Results<Entry> {
    let mut out = Slots::new(bills.len());
    let vendors: Vec<&Vendor> = bills.iter().map(|b| &b.vendor).collect();
    let vendor_ids = vendors::resolve(qbo, ctx, &vendors)?;
    let mut sent: Vec<(usize, Value)> = Vec::new();
    for (i, (bill, vendor)) in bills.iter().zip(vendor_ids).enumerate() {
        let target = targets[i].as_ref();
        if let Some((_, token)) = target
            && token.is_empty()
        {
            out.set(
                i,
                Err(ConnectorError::NotFound(format!(
                    "QuickBooks has no bill {} (deleted there)",
                    target.map(|t| t.0.as_str()).unwrap_or_default()
                ))),
            );
            continue;
        }
        let body = vendor
            .and_then(|v| wire::bill(bill, &v, target.map(|(id, t)| (id.as_str(), t.as_str()))));
        match body {
            Ok(b) => sent.push((i, b)),
            Err(e) => out.set(i, Err(e)),
        }
    }
    let mut closing = Closing::Unread(qbo);
    let mut refused = 0;
    for chunk in sent.chunks(BATCH_ITEMS) {
        let batch = chunk
            .iter()
            .map(|(_, b)| json!({"operation": operation, "Bill": b}))
            .collect();
        let answers = match qbo.batch(&format!("{operation} bills"), batch) {
            Ok(a) => a,
            Err(Failure::Call(e)) => return Err(e),
            Err(Failure::Each(e)) => {
                chunk.iter().for_each(|(i, _)| out.set(*i, Err(e.clone())));
                continue;
            }
        };
        for ((i, _), a) in chunk.iter().zip(answers) {
            let bill = bills[*i];
            let r = match a {
                Ok(v) => match v.get("Bill") {
                    Some(b) => wire::bill_entry(b, &bill.currency),
                    None => Err(ConnectorError::Unavailable(
                        "QuickBooks answered the item without its Bill".into(),
                    )),
                },
                Err((kind, errors)) => {
                    refused += 1;
                    let e = faults::item(&kind, &errors, &Subject::Bill(bill), &mut closing);
                    log::warn(format!(
                        "bill {}: {}",
                        bill.document_id,
                        faults::describe(&e)
                    ));
                    Err(e)
                }
            };
            out.set(*i, r);
        }
    }
    log::info(format!(
        "{operation} bills: {} sent, {refused} refused by QuickBooks",
        sent.len()
    ));
    let truncated = bills
        .iter()
        .filter(|b| b.number.trim().chars().count() > wire::DOC_NUMBER_MAX)
        .count();
    if truncated > 0 {
        log::warn(format!(
            "{truncated} vendor numbers are longer than QuickBooks' {} characters: DocNumber holds their first {}, the memo the whole number",
            wire::DOC_NUMBER_MAX,
            wire::DOC_NUMBER_MAX
        ));
    }
    out.done()
}
