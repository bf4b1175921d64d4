//! A connector built for contract 0.1.0, frozen in `wit/since_v0.1.0/`: one
//! item per operation, the values in the interface `types`. It is built from
//! that file alone (no SDK, which follows the current contract), the way a
//! plugin written before 0.2 was, so the host's support of 0.1 is tested
//! against a real 0.1 component.
//!
//! Entries are files in the granted directory: `/data/<kind>-<reference>`
//! holding `<id> <version> <idempotency key>`. A create repeated with the
//! same key answers the first entry.

wit_bindgen::generate!({
    path: "../../../wit/since_v0.1.0",
    world: "ledgerbridge:connector/plugin",
    generate_all,
});

use exports::ledgerbridge::connector::connector::Guest;
use ledgerbridge::connector::types::{
    Bill, Capabilities, ConnectorError, Context, Descriptor, Entry, EntryState, Payment,
};

struct Legacy;

fn io(e: std::io::Error) -> ConnectorError {
    ConnectorError::Unavailable(format!("legacy connector I/O: {e}"))
}

fn path(kind: &str, reference: &str) -> String {
    format!("/data/{kind}-{reference}")
}

/// The entry recorded for a reference, with its key.
fn read(kind: &str, reference: &str) -> Result<Option<(Entry, String)>, ConnectorError> {
    let text = match std::fs::read_to_string(path(kind, reference)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut parts = text.split_whitespace();
    let (Some(id), Some(version), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ConnectorError::Unavailable(format!("{} is malformed", path(kind, reference))));
    };
    let entry = Entry {
        id: id.to_string(),
        version: Some(version.to_string()),
        state: EntryState::Open,
        total: None,
    };
    Ok(Some((entry, key.to_string())))
}

fn write(kind: &str, reference: &str, version: u64, key: &str) -> Result<Entry, ConnectorError> {
    let id = format!("L-{kind}-{reference}");
    std::fs::write(path(kind, reference), format!("{id} {version} {key}\n")).map_err(io)?;
    Ok(Entry {
        id,
        version: Some(version.to_string()),
        state: EntryState::Open,
        total: None,
    })
}

fn lookup(kind: &str, reference: &str, known: Option<String>) -> Result<Option<Entry>, ConnectorError> {
    Ok(read(kind, reference)?
        .map(|(e, _)| e)
        .filter(|e| known.as_ref().is_none_or(|k| *k == e.id)))
}

fn create(ctx: &Context, kind: &str, reference: &str) -> Result<Entry, ConnectorError> {
    match read(kind, reference)? {
        Some((e, key)) if key == ctx.idempotency_key => Ok(e),
        Some(_) => Err(ConnectorError::Conflict(format!("{kind} {reference} exists already"))),
        None => write(kind, reference, 1, &ctx.idempotency_key),
    }
}

fn update(ctx: &Context, kind: &str, reference: &str, e: &Entry) -> Result<Entry, ConnectorError> {
    let Some((current, _)) = read(kind, reference)? else {
        return Err(ConnectorError::NotFound(format!("no {kind} entry {}", e.id)));
    };
    if current.version != e.version {
        return Err(ConnectorError::Conflict(format!("{kind} entry {} changed", e.id)));
    }
    let next = current.version.and_then(|v| v.parse::<u64>().ok()).unwrap_or(1) + 1;
    write(kind, reference, next, &ctx.idempotency_key)
}

impl Guest for Legacy {
    fn describe() -> Descriptor {
        Descriptor {
            name: "legacy".into(),
            version: "0.1.0".into(),
            capabilities: Capabilities::PAYMENTS | Capabilities::UPDATE_PAYMENTS,
            settings: vec![],
        }
    }

    fn lookup_bill(_: Context, b: Bill, known: Option<String>) -> Result<Option<Entry>, ConnectorError> {
        lookup("bill", &b.document_id, known)
    }

    fn create_bill(ctx: Context, b: Bill) -> Result<Entry, ConnectorError> {
        create(&ctx, "bill", &b.document_id)
    }

    fn update_bill(ctx: Context, e: Entry, b: Bill) -> Result<Entry, ConnectorError> {
        update(&ctx, "bill", &b.document_id, &e)
    }

    fn lookup_payment(_: Context, p: Payment, known: Option<String>) -> Result<Option<Entry>, ConnectorError> {
        lookup("payment", &p.payment_id, known)
    }

    fn create_payment(ctx: Context, p: Payment) -> Result<Entry, ConnectorError> {
        create(&ctx, "payment", &p.payment_id)
    }

    fn update_payment(ctx: Context, e: Entry, p: Payment) -> Result<Entry, ConnectorError> {
        update(&ctx, "payment", &p.payment_id, &e)
    }

    fn check_numbers_in_use(_: Context, _: String, _: u64, _: u32) -> Result<Vec<u64>, ConnectorError> {
        Err(ConnectorError::Validation(ledgerbridge::connector::types::ValidationError {
            field: "connector".into(),
            message: "the legacy connector does not implement check-numbers-in-use".into(),
        }))
    }
}

export!(Legacy);
