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
//!
//! It batches (fifty items a call) and appends one line per call to
//! `/data/calls` (`<operation> <items>`) when it starts and `end
//! <operation>` when it ends, so a test can count the calls the host made,
//! the way an ERP meters them, and see whether any overlapped.

use ledgerbridge_sdk::*;
use std::io::Write;

/// This build's tag: minted ids start with it and the version carries it.
/// The hot-reload tests patch these bytes in the component (same length)
/// to make builds whose answers tell them apart, with no rebuild.
macro_rules! build_tag {
    () => {
        "build-AAAAAAAA"
    };
}

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
    let id = format!("{}-{nanos:x}", build_tag!());
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

/// Counts one call of `operation` with `items` items.
fn count(operation: &str, items: usize) -> Result<(), CallError> {
    let mut calls = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/data/calls")
        .map_err(|e| CallError::Unavailable(format!("minting connector I/O: {e}")))?;
    calls
        .write_all(format!("{operation} {items}\n").as_bytes())
        .map_err(|e| CallError::Unavailable(format!("minting connector I/O: {e}")))
}

/// Records the end of a call of `operation`, passing its answer through.
fn end<T>(operation: &str, answer: Results<T>) -> Results<T> {
    let mut calls = std::fs::OpenOptions::new()
        .append(true)
        .open("/data/calls")
        .map_err(|e| CallError::Unavailable(format!("minting connector I/O: {e}")))?;
    calls
        .write_all(format!("end {operation}\n").as_bytes())
        .map_err(|e| CallError::Unavailable(format!("minting connector I/O: {e}")))?;
    answer
}

fn update(kind: &str, reference: &str, e: &Entry) -> Result<Entry, ConnectorError> {
    match lookup(kind, reference, Some(&e.id))? {
        Some(found) => Ok(found),
        None => Err(ConnectorError::NotFound(format!("no {kind} entry {}", e.id))),
    }
}

impl Connector for Minting {
    fn describe() -> Descriptor {
        // A build tagged `build-TTTTTTTT` traps here: a broken build for the
        // hot-reload tests. `black_box`: the tag is read from the component's
        // bytes at run time, not folded away when this is compiled.
        if std::hint::black_box(build_tag!()).starts_with("build-T") {
            panic!("this build traps in describe");
        }
        Descriptor {
            name: "minting".into(),
            version: concat!("1.0.0+", build_tag!()).into(),
            capabilities: Capabilities::PAYMENTS | Capabilities::UPDATE_PAYMENTS,
            settings: vec![
                SettingSpec {
                    name: "dedupe".into(),
                    description: "`call`: a retried batch is told apart by the call's key".into(),
                    required: false,
                },
                SettingSpec {
                    name: "trap-after-batch-create".into(),
                    description: "trap after the ERP made a batch".into(),
                    required: false,
                },
            ],
            // Local files: a batch of fifty is one call.
            limits: Limits {
                lookups_per_call: 50,
                creates_per_call: 50,
                updates_per_call: 50,
                ..Limits::default()
            },
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

    fn lookup_bills(ctx: &Context, items: &[BillLookup]) -> Results<Option<Entry>> {
        count("lookup-bills", items.len())?;
        end("lookup-bills", Ok(items.iter().map(|i| Self::lookup_bill(&ctx.for_item(&i.key), &i.bill, i.known_id.as_deref())).collect()))
    }

    /// Setting `dedupe=call` keys creates by the call's key, as an ERP
    /// taking one key per request does; `trap-after-batch-create` makes the
    /// plugin trap after the ERP made a batch's entries (more than one).
    fn create_bills(ctx: &Context, items: &[BillCreate]) -> Results<Entry> {
        count("create-bills", items.len())?;
        let by_call = ctx.setting("dedupe") == Some("call");
        let out = items
            .iter()
            .map(|i| Self::create_bill(&if by_call { ctx.clone() } else { ctx.for_item(&i.key) }, &i.bill))
            .collect();
        if items.len() > 1 && ctx.setting("trap-after-batch-create").is_some() {
            panic!("minting traps after creating a batch");
        }
        end("create-bills", Ok(out))
    }

    fn update_bills(ctx: &Context, items: &[BillUpdate]) -> Results<Entry> {
        count("update-bills", items.len())?;
        end("update-bills", Ok(items.iter().map(|i| Self::update_bill(&ctx.for_item(&i.key), &i.entry, &i.bill)).collect()))
    }

    fn lookup_payments(ctx: &Context, items: &[PaymentLookup]) -> Results<Option<Entry>> {
        count("lookup-payments", items.len())?;
        end("lookup-payments", Ok(items.iter().map(|i| Self::lookup_payment(&ctx.for_item(&i.key), &i.payment, i.known_id.as_deref())).collect()))
    }

    fn create_payments(ctx: &Context, items: &[PaymentCreate]) -> Results<Entry> {
        count("create-payments", items.len())?;
        end("create-payments", Ok(items.iter().map(|i| Self::create_payment(&ctx.for_item(&i.key), &i.payment)).collect()))
    }

    fn update_payments(ctx: &Context, items: &[PaymentUpdate]) -> Results<Entry> {
        count("update-payments", items.len())?;
        end("update-payments", Ok(items.iter().map(|i| Self::update_payment(&ctx.for_item(&i.key), &i.entry, &i.payment)).collect()))
    }
}

export_connector!(Minting);
