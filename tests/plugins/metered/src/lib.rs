//! A connector for the metered test ERP (`ledgerbridge_tests::metered`): one
//! HTTP request per operation, as a real ERP's connector makes, and the
//! ERP's answers classified by the SDK (a `429` becomes `rate-limited` with
//! its `Retry-After`). The ERP enforces rate limits; this plugin does no
//! pacing of its own, as the host promises plugins need none (R2).
//!
//! Routes under `settings.base-url`: `GET|POST|PUT /bills/<document id>`
//! and `/payments/<payment id>`; a found entry answers `{"id": ...}`.

use ledgerbridge_sdk::http::{Request, Response};
use ledgerbridge_sdk::*;

struct Metered;

fn url(ctx: &Context, kind: &str, reference: &str) -> Result<String, ConnectorError> {
    Ok(format!("{}/{kind}/{reference}", ctx.require_setting("base-url")?))
}

fn failed(r: &Response) -> ConnectorError {
    ConnectorError::from_status(r.status, r.retry_after_ms(), r.text_lossy(200))
}

fn entry(r: &Response) -> Result<Entry, ConnectorError> {
    let v = r.json()?;
    let id = v["id"]
        .as_str()
        .ok_or_else(|| ConnectorError::Unavailable("the ERP answered no id".into()))?;
    Ok(Entry {
        id: id.to_string(),
        version: None,
        state: EntryState::Open,
        total: None,
    })
}

fn lookup(ctx: &Context, kind: &str, reference: &str) -> Result<Option<Entry>, ConnectorError> {
    let r = Request::get(url(ctx, kind, reference)?).send()?;
    match r.status {
        404 => Ok(None),
        _ if r.is_success() => entry(&r).map(Some),
        _ => Err(failed(&r)),
    }
}

fn write(ctx: &Context, method: &str, kind: &str, reference: &str) -> Result<Entry, ConnectorError> {
    let u = url(ctx, kind, reference)?;
    let req = if method == "POST" { Request::post(u) } else { Request::put(u) };
    let r = req
        .header("idempotency-key", ctx.idempotency_key.clone())
        .body(b"{}".to_vec())
        .send()?;
    if r.is_success() { entry(&r) } else { Err(failed(&r)) }
}

impl Connector for Metered {
    fn describe() -> Descriptor {
        Descriptor {
            name: "metered".into(),
            version: "0.1.0".into(),
            capabilities: Capabilities::PAYMENTS | Capabilities::UPDATE_PAYMENTS,
            settings: vec![SettingSpec {
                name: "base-url".into(),
                description: "the metered ERP's address".into(),
                required: false,
            }],
            // The test ERP's limits are set by each test: the connector
            // states the most the host runs, and each test's connection
            // lowers them.
            limits: Limits {
                calls_at_once: 16,
                // One ERP request per item, and no batch endpoint: one item a call.
                lookups_per_call: 1,
                creates_per_call: 1,
                updates_per_call: 1,
                ..Limits::default()
            },
        }
    }

    fn lookup_bill(ctx: &Context, b: &Bill, _: Option<&str>) -> Result<Option<Entry>, ConnectorError> {
        lookup(ctx, "bills", &b.document_id)
    }

    fn create_bill(ctx: &Context, b: &Bill) -> Result<Entry, ConnectorError> {
        write(ctx, "POST", "bills", &b.document_id)
    }

    fn update_bill(ctx: &Context, _: &Entry, b: &Bill) -> Result<Entry, ConnectorError> {
        write(ctx, "PUT", "bills", &b.document_id)
    }

    fn lookup_payment(ctx: &Context, p: &Payment, _: Option<&str>) -> Result<Option<Entry>, ConnectorError> {
        lookup(ctx, "payments", &p.payment_id)
    }

    fn create_payment(ctx: &Context, p: &Payment) -> Result<Entry, ConnectorError> {
        write(ctx, "POST", "payments", &p.payment_id)
    }

    fn update_payment(ctx: &Context, _: &Entry, p: &Payment) -> Result<Entry, ConnectorError> {
        write(ctx, "PUT", "payments", &p.payment_id)
    }
}

export_connector!(Metered);
