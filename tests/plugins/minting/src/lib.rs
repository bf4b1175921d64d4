//! A connector that mints its own entry ids, as every ERP does, and keeps a
//! record of every create in its granted directory, so a test can count
//! creates per reference and see a duplicate entry, which a connector keyed
//! by the reference alone (one file per reference) would hide.
//!
//! Layout under `/data`: `refs/<kind>-<reference>`, one line per entry
//! created for that reference (`<minted id> <idempotency key>`), written by
//! one append, so a create is atomic as an ERP's is: a host killed in the
//! middle of a call finds the entry or finds nothing. Lookup answers the
//! first; more than one line is a duplicate. A create repeated with the same
//! idempotency key answers the first entry, as Xero does.

use ledgerbridge_sdk::*;
use std::io::Write;

struct Minting;

fn io(e: std::io::Error) -> ConnectorError {
    ConnectorError::Unavailable(format!("minting connector I/O: {e}"))
}

fn ref_path(kind: &str, reference: &str) -> String {
    // References are ids (letters, digits, `._:-`); `:` is fine on Linux.
    format!("/data/refs/{kind}-{reference}")
}

/// The ids minted for a reference, with their keys.
fn minted(kind: &str, reference: &str) -> Result<Vec<(String, String)>, ConnectorError> {
    match std::fs::read_to_string(ref_path(kind, reference)) {
        Ok(t) => Ok(t
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(id, key)| (id.to_string(), key.to_string()))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(e)),
    }
}

fn entry(id: String) -> Entry {
    Entry {
        id,
        version: None,
        state: EntryState::Open,
        total: None,
    }
}

fn lookup(kind: &str, reference: &str, known: Option<&str>) -> Result<Option<Entry>, ConnectorError> {
    let ids = minted(kind, reference)?;
    Ok(match known {
        Some(k) => ids.into_iter().find(|(id, _)| id == k).map(|(id, _)| entry(id)),
        None => ids.into_iter().next().map(|(id, _)| entry(id)),
    })
}

fn create(ctx: &Context, kind: &str, reference: &str) -> Result<Entry, ConnectorError> {
    if let Some((id, _)) = minted(kind, reference)?
        .into_iter()
        .find(|(_, key)| *key == ctx.idempotency_key)
    {
        return Ok(entry(id));
    }
    // An id of the ERP's own: unique whatever the reference.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!("M{nanos:x}");
    std::fs::create_dir_all("/data/refs").map_err(io)?;
    let mut refs = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(ref_path(kind, reference))
        .map_err(io)?;
    refs.write_all(format!("{id} {}\n", ctx.idempotency_key).as_bytes())
        .map_err(io)?;
    refs.sync_all().map_err(io)?;
    Ok(entry(id))
}

fn update(kind: &str, reference: &str, e: &Entry) -> Result<Entry, ConnectorError> {
    match lookup(kind, reference, Some(&e.id))? {
        Some(found) => Ok(found),
        None => Err(ConnectorError::NotFound(format!("no {kind} entry {}", e.id))),
    }
}

impl Connector for Minting {
    fn describe() -> Descriptor {
        Descriptor {
            name: "minting".into(),
            version: "0.1.0".into(),
            capabilities: Capabilities::PAYMENTS | Capabilities::UPDATE_PAYMENTS,
            settings: vec![],
        }
    }

    fn lookup_bill(_: &Context, b: &Bill, known: Option<&str>) -> Result<Option<Entry>, ConnectorError> {
        lookup("bill", &b.document_id, known)
    }

    fn create_bill(ctx: &Context, b: &Bill) -> Result<Entry, ConnectorError> {
        create(ctx, "bill", &b.document_id)
    }

    fn update_bill(_: &Context, e: &Entry, b: &Bill) -> Result<Entry, ConnectorError> {
        update("bill", &b.document_id, e)
    }

    fn lookup_payment(_: &Context, p: &Payment, known: Option<&str>) -> Result<Option<Entry>, ConnectorError> {
        lookup("payment", &p.payment_id, known)
    }

    fn create_payment(ctx: &Context, p: &Payment) -> Result<Entry, ConnectorError> {
        create(ctx, "payment", &p.payment_id)
    }

    fn update_payment(_: &Context, e: &Entry, p: &Payment) -> Result<Entry, ConnectorError> {
        update("payment", &p.payment_id, e)
    }
}

export_connector!(Minting);
