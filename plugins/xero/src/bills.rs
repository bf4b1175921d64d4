//! Bills: lookup, create and update, each a batch of items in as few Xero
//! requests as the API allows.

use crate::answers::{self, LockDates};
use crate::api::{Failure, Xero};
use crate::wire;
use ledgerbridge_sdk::*;
use serde_json::{Value, json};

/// The organisation's API, or the same settings error for every item.
pub(crate) fn open<'c, T: Clone>(ctx: &'c Context, n: usize) -> Result<Xero<'c>, Results<T>> {
    let failed = |e: ConnectorError| Ok(vec![Err(e); n]);
    let xero = Xero::of(ctx).map_err(failed)?;
    wire::check_document_url(ctx).map_err(failed)?;
    Ok(xero)
}

/// A lookup request: the items it answers and its query.
type Query<'a> = (Vec<usize>, Vec<(&'a str, String)>);

/// `'…'` in a `where` string, with its quotes escaped as Xero reads them.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The lookup of each item: by its known `InvoiceID` (`IDs=`), else by its
/// vendor number (`InvoiceNumbers=`, not unique in Xero) narrowed to the
/// invoice whose `Url` names the document. Deleted and voided invoices do
/// not count: for the host the entry is gone, and it is created again.
pub fn lookup(ctx: &Context, items: &[BillLookup]) -> Results<Option<Entry>> {
    let xero = match open(ctx, items.len()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut out = Slots::new(items.len());
    let by_id: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].known_id.is_some())
        .collect();
    if !by_id.is_empty() {
        let ids: Vec<&str> = by_id
            .iter()
            .filter_map(|&i| items[i].known_id.as_deref())
            .collect();
        match xero.invoices(&[("IDs", &ids.join(","))]) {
            Ok(found) => {
                for &i in &by_id {
                    let id = items[i].known_id.as_deref().unwrap_or("");
                    let inv = found
                        .iter()
                        .find(|v| wire::text(v, "InvoiceID").eq_ignore_ascii_case(id));
                    out.set(
                        i,
                        match inv {
                            Some(v) if !wire::gone(v) => wire::entry(v).map(Some),
                            _ => Ok(None),
                        },
                    );
                }
            }
            Err(Failure::Call(e)) => return Err(e),
            Err(Failure::Each(e)) => by_id.iter().for_each(|&i| out.set(i, Err(e.clone()))),
        }
    }
    // By reference: one request for every number Xero's list can carry;
    // a number with a comma goes alone through `where`.
    let by_ref: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].known_id.is_none())
        .collect();
    let (listed, alone): (Vec<usize>, Vec<usize>) = by_ref
        .into_iter()
        .partition(|&i| !items[i].bill.number.contains(','));
    let mut queries: Vec<Query> = Vec::new();
    if !listed.is_empty() {
        let mut numbers: Vec<&str> = listed
            .iter()
            .map(|&i| items[i].bill.number.as_str())
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        queries.push((
            listed,
            vec![
                ("InvoiceNumbers", numbers.join(",")),
                ("where", "Type==\"ACCPAY\"".into()),
            ],
        ));
    }
    for i in alone {
        queries.push((
            vec![i],
            vec![(
                "where",
                format!(
                    "Type==\"ACCPAY\" AND InvoiceNumber=={}",
                    quoted(&items[i].bill.number)
                ),
            )],
        ));
    }
    for (which, query) in queries {
        let q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match xero.invoices(&q) {
            Ok(found) => {
                for i in which {
                    let id = &items[i].bill.document_id;
                    let live: Vec<&Value> = found
                        .iter()
                        .filter(|v| wire::text(v, "Type") == "ACCPAY" && !wire::gone(v))
                        .collect();
                    let url = wire::document_url(ctx, id);
                    let exact: Vec<&Value> = live
                        .iter()
                        .copied()
                        .filter(|v| wire::text(v, "Url") == url)
                        .collect();
                    // A bill made under another `document-url`: its Url
                    // still ends with the document's id.
                    let live = if exact.is_empty() {
                        live.into_iter()
                            .filter(|v| wire::names_document(wire::text(v, "Url"), id))
                            .collect()
                    } else {
                        exact
                    };
                    if live.len() > 1 {
                        log::warn(format!(
                            "bill {}: {} live invoices in Xero carry its Url; the first is taken",
                            items[i].bill.document_id,
                            live.len()
                        ));
                    }
                    out.set(i, live.first().map(|v| wire::entry(v)).transpose());
                }
            }
            Err(Failure::Call(e)) => return Err(e),
            Err(Failure::Each(e)) => which.iter().for_each(|&i| out.set(i, Err(e.clone()))),
        }
    }
    out.done()
}

/// One `PUT /Invoices` for the batch, each element answered on its own.
pub fn create(ctx: &Context, items: &[BillCreate]) -> Results<Entry> {
    let xero = match open(ctx, items.len()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut out = Slots::new(items.len());
    let mut sent = Vec::new();
    let mut body = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match wire::invoice(ctx, &item.bill, None, &[]) {
            Ok(inv) => {
                sent.push(i);
                body.push(inv);
            }
            Err(e) => out.set(i, Err(e)),
        }
    }
    if !sent.is_empty() {
        let bills: Vec<&Bill> = sent.iter().map(|&i| &items[i].bill).collect();
        write(&xero, "PUT", body, &bills, &sent, &mut out)?;
    }
    out.done()
}

/// The invoices are read first (`IDs=`, with their line items): a paid
/// or part-paid one is booked and not sent; the others go in one
/// `POST /Invoices` keeping each line's `LineItemID` by position (a line
/// left out is deleted by Xero, so every line is sent).
pub fn update(ctx: &Context, items: &[BillUpdate]) -> Results<Entry> {
    let xero = match open(ctx, items.len()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut out = Slots::new(items.len());
    let ids: Vec<&str> = items.iter().map(|i| i.entry.id.as_str()).collect();
    let current = match xero.invoices(&[("IDs", &ids.join(","))]) {
        Ok(c) => c,
        Err(Failure::Call(e)) => return Err(e),
        Err(Failure::Each(e)) => {
            out.fill(&e);
            return out.done();
        }
    };
    let mut sent = Vec::new();
    let mut body = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let inv = current
            .iter()
            .find(|v| wire::text(v, "InvoiceID").eq_ignore_ascii_case(&item.entry.id));
        let Some(inv) = inv.filter(|v| !wire::gone(v)) else {
            out.set(
                i,
                Err(ConnectorError::NotFound(format!(
                    "Xero has no live bill {} (deleted or voided there)",
                    item.entry.id
                ))),
            );
            continue;
        };
        let paid = wire::amount_paid(inv);
        if wire::text(inv, "Status") == "PAID" || paid > 0 {
            out.set(
                i,
                Err(ConnectorError::Booked(format!(
                    "the bill is {} in Xero ({} {} paid), which does not allow it to change",
                    if wire::text(inv, "Status") == "PAID" {
                        "paid"
                    } else {
                        "part-paid"
                    },
                    money::to_decimal(paid, wire::text(inv, "CurrencyCode")),
                    wire::text(inv, "CurrencyCode"),
                ))),
            );
            continue;
        }
        let lines: Vec<String> = inv
            .get("LineItems")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .map(|l| wire::text(l, "LineItemID").to_string())
                    .filter(|id| !id.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        match wire::invoice(ctx, &item.bill, Some(&item.entry.id), &lines) {
            Ok(v) => {
                sent.push(i);
                body.push(v);
            }
            Err(e) => out.set(i, Err(e)),
        }
    }
    if !sent.is_empty() {
        let bills: Vec<&Bill> = sent.iter().map(|&i| &items[i].bill).collect();
        write(&xero, "POST", body, &bills, &sent, &mut out)?;
    }
    out.done()
}

/// Sends `body` (the invoices of items `sent`) and sets each item's
/// result from its element of the answer.
fn write(
    xero: &Xero,
    method: &str,
    body: Vec<Value>,
    bills: &[&Bill],
    sent: &[usize],
    out: &mut Slots<Entry>,
) -> Result<(), CallError> {
    let answer = match xero.write(method, "/Invoices", &json!({ "Invoices": body })) {
        Ok(a) => a,
        Err(Failure::Call(e)) => return Err(e),
        Err(Failure::Each(e)) => {
            sent.iter().for_each(|&i| out.set(i, Err(e.clone())));
            return Ok(());
        }
    };
    // A 400 lists `Elements` and saved none of them; a 200 lists
    // `Invoices`, each saved unless it failed.
    let (elements, all_or_nothing) = match (answer.get("Invoices"), answer.get("Elements")) {
        (Some(Value::Array(v)), _) => (v.clone(), false),
        (_, Some(Value::Array(v))) => (v.clone(), true),
        _ => {
            return Err(CallError::Unavailable(format!(
                "{method} /Invoices: Xero's answer lists no invoices"
            )));
        }
    };
    if elements.len() != sent.len() {
        return Err(CallError::Unavailable(format!(
            "{method} /Invoices: Xero answered {} invoices for {} sent",
            elements.len(),
            sent.len()
        )));
    }
    let mut locks = LockDates::new(xero);
    let mut refused = 0;
    for ((&i, bill), el) in sent.iter().zip(bills).zip(&elements) {
        let r = if answers::failed(el) {
            refused += 1;
            let e = answers::bill_error(bill, &answers::messages(el), &mut locks);
            log::warn(format!("bill {}: {}", bill.document_id, describe(&e)));
            Err(e)
        } else if all_or_nothing {
            Err(ConnectorError::Unavailable(
                "Xero saved nothing of the request because of other bills in it; sent again".into(),
            ))
        } else {
            wire::entry(el)
        };
        out.set(i, r);
    }
    log::info(format!(
        "{method} /Invoices: {} bills sent, {} refused by Xero",
        sent.len(),
        refused
    ));
    Ok(())
}

/// A short account of an error, for the log.
fn describe(e: &ConnectorError) -> String {
    match e {
        ConnectorError::Booked(m) => format!("booked: {m}"),
        ConnectorError::Validation(v) => format!("refused ({}): {}", v.field, v.message),
        ConnectorError::NotFound(m) => format!("not found: {m}"),
        other => format!("{other:?}"),
    }
}
