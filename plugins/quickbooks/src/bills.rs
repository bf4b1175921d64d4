//! Bills: lookup, create and update, each a batch of items in as few
//! `POST /batch` requests as QuickBooks allows (30 items each).

use crate::api::{BATCH_ITEMS, Failure, Found, Qbo, Query, quoted};
use crate::faults::{self, Closing, Subject};
use crate::{vendors, wire};
use ledgerbridge_sdk::*;
use serde_json::{Value, json};

/// The company's API, or the same settings error for every item.
pub(crate) fn open<'c, T: Clone>(ctx: &'c Context, n: usize) -> Result<Qbo<'c>, Results<T>> {
    Qbo::of(ctx).map_err(|e| Ok(vec![Err(e); n]))
}

/// Every record the queries find (none asked: nothing found).
pub(crate) fn find(qbo: &Qbo, entity: &str, queries: &[Query]) -> Result<Found, CallError> {
    if queries.is_empty() {
        return Ok(Found::default());
    }
    qbo.queries(entity, queries)
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
    let ids: Vec<String> = items.iter().filter_map(|i| i.known_id.clone()).collect();
    let unknown = || items.iter().filter(|i| i.known_id.is_none());
    let numbers: Vec<String> = unknown()
        .filter_map(|i| wire::doc_number(&i.bill.number))
        .collect();
    let mut dates: Vec<String> = unknown()
        .filter(|i| wire::doc_number(&i.bill.number).is_none())
        .map(|i| i.bill.issue_date.clone())
        .collect();
    dates.sort_unstable();
    dates.dedup();
    let mut all = Query::any_of("Bill", "Id", "bill-entry-id", &ids);
    all.extend(Query::any_of("Bill", "DocNumber", "number", &numbers));
    all.extend(dates.iter().map(|d| Query {
        text: format!("select * from Bill where TxnDate = {}", quoted(d)),
        values: vec![d.clone()],
        field: "issue-date",
        one_by_one: None,
    }));
    let found = find(&qbo, "Bill", &all)?;
    let mut out = Slots::new(items.len());
    for (i, item) in items.iter().enumerate() {
        // The value this item was looked for by, and whether that query failed.
        let key = match &item.known_id {
            Some(id) => id.clone(),
            None => wire::doc_number(&item.bill.number)
                .unwrap_or_else(|| item.bill.issue_date.clone()),
        };
        if let Some(e) = found.failure(&key) {
            out.set(i, Err(e));
            continue;
        }
        let hit: Vec<&Value> = match &item.known_id {
            Some(id) => found
                .records
                .iter()
                .filter(|v| wire::text(v, "Id") == id)
                .collect(),
            None => {
                let marker = wire::bill_marker(&item.bill.document_id);
                found
                    .records
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
    let current = find(
        &qbo,
        "Bill",
        &Query::any_of("Bill", "Id", "bill-entry-id", &unversioned),
    )?;
    let targets = targets(items.iter().map(|i| &i.entry), &current);
    let bills: Vec<&Bill> = items.iter().map(|i| &i.bill).collect();
    write(&qbo, ctx, &bills, &targets, "update")
}

/// What each update is sent to: the entry's id and its `SyncToken` (the
/// entry's version, else the one just read; none when QuickBooks no longer
/// has it), or the error of the read.
pub(crate) type Target = Option<Result<(String, String), ConnectorError>>;

/// The targets of updates of `entries`, read first where unversioned.
pub(crate) fn targets<'e>(entries: impl Iterator<Item = &'e Entry>, current: &Found) -> Vec<Target> {
    entries
        .map(|e| {
            if e.version.is_none()
                && let Some(err) = current.failure(&e.id)
            {
                return Some(Err(err));
            }
            let token = e.version.clone().or_else(|| {
                current
                    .records
                    .iter()
                    .find(|v| wire::text(v, "Id") == e.id)
                    .map(|v| wire::text(v, "SyncToken").to_string())
            });
            // No token: the entry is gone (answered `not-found`).
            Some(Ok((e.id.clone(), token.unwrap_or_default())))
        })
        .collect()
}

/// Whether an entity QuickBooks answered for an item is that item's: the
/// memo names its subject and, for an update, the id is the target's. An
/// answer for another item (a mixed-up `bId`) fails the whole call: the
/// host retries it, looking up first, so nothing is recorded wrong.
pub(crate) fn answer_is_for(
    v: &Value,
    marker: &str,
    target: Option<&(String, String)>,
) -> Result<(), CallError> {
    let note = wire::text(v, "PrivateNote");
    let id = wire::text(v, "Id");
    if !wire::names(note, marker) || target.is_some_and(|(t, _)| t != id) {
        return Err(CallError::Unavailable(format!(
            "QuickBooks answered the item for `{marker}` with another entry (Id {id}, memo `{}`)",
            note.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// Resolves the vendors, then sends each bill (`create`, or `update` of
/// its target) in batches of 30 and reads each item's answer.
fn write(
    qbo: &Qbo,
    ctx: &Context,
    bills: &[&Bill],
    targets: &[Target],
    operation: &str,
) -> Results<Entry> {
    let mut out = Slots::new(bills.len());
    let vendors: Vec<&Vendor> = bills.iter().map(|b| &b.vendor).collect();
    let vendor_ids = vendors::resolve(qbo, ctx, &vendors)?;
    let mut sent: Vec<(usize, Value)> = Vec::new();
    for (i, (bill, vendor)) in bills.iter().zip(vendor_ids).enumerate() {
        let target = match &targets[i] {
            Some(Err(e)) => {
                out.set(i, Err(e.clone()));
                continue;
            }
            Some(Ok(t)) => Some(t),
            None => None,
        };
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
                    Some(b) => {
                        let target = match &targets[*i] {
                            Some(Ok(t)) => Some(t),
                            _ => None,
                        };
                        answer_is_for(b, &wire::bill_marker(&bill.document_id), target)?;
                        wire::bill_entry(b, &bill.currency)
                    }
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
