//! Payments: lookup and create, each a batch in one Xero request. Xero
//! cannot modify a payment (only delete it), so the connector declares no
//! update: the host reports a changed payment and never replaces it.

use crate::answers::{self, LockDates};
use crate::api::Failure;
use crate::bills::open;
use crate::wire;
use ledgerbridge_sdk::*;
use serde_json::{Value, json};

/// Each payment is found among its bill's payments (`GET /Invoices?IDs=`
/// with the bills' ids): by its known `PaymentID`, else by the AP
/// product's payment id at the end of its `Reference`.
pub fn lookup(ctx: &Context, items: &[PaymentLookup]) -> Results<Option<Entry>> {
    let xero = match open(ctx, items.len()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut out = Slots::new(items.len());
    let mut bills: Vec<&str> = items
        .iter()
        .map(|i| i.payment.bill_entry_id.as_str())
        .filter(|b| !b.is_empty())
        .collect();
    bills.sort_unstable();
    bills.dedup();
    let found = if bills.is_empty() {
        Vec::new()
    } else {
        match xero.invoices(&[("IDs", &bills.join(","))]) {
            Ok(f) => f,
            Err(Failure::Call(e)) => return Err(e),
            Err(Failure::Each(e)) => {
                out.fill(&e);
                return out.done();
            }
        }
    };
    for (i, item) in items.iter().enumerate() {
        let p = &item.payment;
        let inv = found
            .iter()
            .find(|v| wire::text(v, "InvoiceID").eq_ignore_ascii_case(&p.bill_entry_id));
        let payments = inv
            .and_then(|v| v.get("Payments"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let hit = payments.iter().find(|x| match &item.known_id {
            Some(id) => wire::text(x, "PaymentID").eq_ignore_ascii_case(id),
            None => wire::names_payment(wire::text(x, "Reference"), &p.payment_id),
        });
        out.set(
            i,
            hit.filter(|x| wire::text(x, "Status") != "DELETED")
                .map(|x| wire::payment_entry(x, &p.currency))
                .transpose(),
        );
    }
    out.done()
}

/// One `PUT /Payments` for the batch, each element answered on its own.
pub fn create(ctx: &Context, items: &[PaymentCreate]) -> Results<Entry> {
    let xero = match open(ctx, items.len()) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut out = Slots::new(items.len());
    let body: Vec<Value> = items.iter().map(|i| wire::payment(&i.payment)).collect();
    let answer = match xero.write("PUT", "/Payments", &json!({ "Payments": body })) {
        Ok(a) => a,
        Err(Failure::Call(e)) => return Err(e),
        Err(Failure::Each(e)) => {
            out.fill(&e);
            return out.done();
        }
    };
    let (elements, all_or_nothing) = match (answer.get("Payments"), answer.get("Elements")) {
        (Some(Value::Array(v)), _) => (v.clone(), false),
        (_, Some(Value::Array(v))) => (v.clone(), true),
        _ => {
            return Err(CallError::Unavailable(
                "PUT /Payments: Xero's answer lists no payments".into(),
            ));
        }
    };
    if elements.len() != items.len() {
        return Err(CallError::Unavailable(format!(
            "PUT /Payments: Xero answered {} payments for {} sent",
            elements.len(),
            items.len()
        )));
    }
    let mut locks = LockDates::new(&xero);
    for (i, (item, el)) in items.iter().zip(&elements).enumerate() {
        let p = &item.payment;
        let r = if answers::failed(el) {
            let e = answers::payment_error(p, &answers::messages(el), &mut locks);
            log::warn(format!("payment {}: {e:?}", p.payment_id));
            Err(e)
        } else if all_or_nothing {
            Err(ConnectorError::Unavailable(
                "Xero saved nothing of the request because of other payments in it; sent again"
                    .into(),
            ))
        } else {
            wire::payment_entry(el, &p.currency)
        };
        out.set(i, r);
    }
    out.done()
}
