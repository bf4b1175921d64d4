//! A connector that answers what its connection's settings script, with no
//! I/O: for tests of the host's policy and for the runtime benchmark.
//!
//! Setting `<operation>` (for example `create-bill`) scripts that operation:
//! `ok` (the default), or one of the contract's error cases: `booked`,
//! `not-found`, `conflict`, `duplicate-check-number`, `validation`,
//! `rate-limited`, `unavailable`, `unauthorized`. `lookup-bill` and
//! `lookup-payment` also take `none` (the default) and `found`.
//! `used-checks` lists check numbers in use (`1001,1003`); with
//! `checks-outside-range` set it also answers numbers it was not asked about
//! (a lying plugin). `retry-after-ms` sets the rate-limited answer's wait.
//! Setting `panic-on` names a subject whose every operation traps (a
//! plugin that chokes on one item's data).
//! Setting `<operation>:<subject>` (for example `create-bill:d3`, the
//! subject a document's or payment's id) scripts that operation for that
//! item alone, so one batch can mix answers.
//! A lookup that finds an entry answers version `2` (another writer's edit),
//! creates and updates answer version `1`. Every operation logs its
//! idempotency key (`<operation> key <key>`), so tests can see keys.

use ledgerbridge_sdk::*;

struct Scripted;

fn script(ctx: &Context, op: &str, subject: &str, default: &str) -> Result<String, ConnectorError> {
    log::info(format!("{op} key {}", ctx.idempotency_key));
    if !subject.is_empty() && ctx.setting("panic-on") == Some(subject) {
        panic!("scripted panic on {subject}");
    }
    let answer = ctx
        .setting(&format!("{op}:{subject}"))
        .or_else(|| ctx.setting(op))
        .unwrap_or(default)
        .to_string();
    let msg = format!("scripted {answer} for {op}");
    match answer.as_str() {
        "booked" => Err(ConnectorError::Booked(msg)),
        "not-found" => Err(ConnectorError::NotFound(msg)),
        "conflict" => Err(ConnectorError::Conflict(msg)),
        "duplicate-check-number" => Err(ConnectorError::duplicate_check_number(1001, msg)),
        "validation" => Err(ConnectorError::validation("lines[0].account-code", msg)),
        "rate-limited" => Err(ConnectorError::rate_limited(
            Some(
                ctx.setting("retry-after-ms")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1500),
            ),
            msg,
        )),
        "unavailable" => Err(ConnectorError::Unavailable(msg)),
        "unauthorized" => Err(ConnectorError::Unauthorized(msg)),
        _ => Ok(answer),
    }
}

fn entry(id: String, total: i64) -> Entry {
    Entry {
        id,
        version: Some("1".into()),
        state: EntryState::Open,
        total: Some(total),
    }
}

fn found(id: String, total: i64) -> Entry {
    Entry {
        id,
        version: Some("2".into()),
        state: EntryState::Open,
        total: Some(total),
    }
}

/// A rejected check names the payment's own number, as an ERP's would.
fn own_number(e: ConnectorError, p: &Payment) -> ConnectorError {
    match (e, p.check_number) {
        (ConnectorError::DuplicateCheckNumber(_), Some(n)) => {
            ConnectorError::duplicate_check_number(n, format!("check number {n} is already used"))
        }
        (e, _) => e,
    }
}

impl Connector for Scripted {
    fn describe() -> Descriptor {
        Descriptor {
            name: "scripted".into(),
            version: "0.1.0".into(),
            capabilities: Capabilities::PAYMENTS
                | Capabilities::UPDATE_PAYMENTS
                | Capabilities::CHECK_NUMBERS_IN_USE,
            settings: vec![SettingSpec {
                // A test double: every setting names an answer to script.
                name: "*".into(),
                description: "any operation or operation:subject, with the answer to give".into(),
                required: false,
            }],
            // No I/O: a batch of fifty is one cheap call.
            limits: Limits {
                lookups_per_call: 50,
                creates_per_call: 50,
                updates_per_call: 50,
                ..Limits::default()
            },
        }
    }

    fn lookup_bill(
        ctx: &Context,
        bill: &Bill,
        known: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        Ok(match script(ctx, "lookup-bill", &bill.document_id, "none")?.as_str() {
            "found" => Some(found(
                known.map_or_else(|| format!("S-{}", bill.document_id), str::to_string),
                bill.total,
            )),
            _ => None,
        })
    }

    fn create_bill(ctx: &Context, bill: &Bill) -> Result<Entry, ConnectorError> {
        script(ctx, "create-bill", &bill.document_id, "ok")?;
        Ok(entry(format!("S-{}", bill.document_id), bill.total))
    }

    fn update_bill(ctx: &Context, e: &Entry, bill: &Bill) -> Result<Entry, ConnectorError> {
        // `another-id`: a lying plugin answers another entry than it updated.
        let id = match script(ctx, "update-bill", &bill.document_id, "ok")?.as_str() {
            "another-id" => format!("{}-other", e.id),
            _ => e.id.clone(),
        };
        Ok(entry(id, bill.total))
    }

    fn lookup_payment(
        ctx: &Context,
        p: &Payment,
        known: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        Ok(match script(ctx, "lookup-payment", &p.payment_id, "none")?.as_str() {
            "found" => Some(found(
                known.map_or_else(|| format!("SP-{}", p.payment_id), str::to_string),
                p.amount,
            )),
            _ => None,
        })
    }

    fn create_payment(ctx: &Context, p: &Payment) -> Result<Entry, ConnectorError> {
        script(ctx, "create-payment", &p.payment_id, "ok").map_err(|e| own_number(e, p))?;
        Ok(entry(format!("SP-{}", p.payment_id), p.amount))
    }

    fn update_payment(ctx: &Context, e: &Entry, p: &Payment) -> Result<Entry, ConnectorError> {
        script(ctx, "update-payment", &p.payment_id, "ok").map_err(|e| own_number(e, p))?;
        Ok(entry(e.id.clone(), p.amount))
    }

    fn check_numbers_in_use(
        ctx: &Context,
        _bank: &str,
        first: u64,
        count: u32,
    ) -> Result<Vec<u64>, ConnectorError> {
        script(ctx, "check-numbers-in-use", "", "ok")?;
        let last = first.saturating_add(u64::from(count));
        let lie = ctx.setting("checks-outside-range").is_some();
        Ok(ctx
            .setting("used-checks")
            .unwrap_or("")
            .split(',')
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .filter(|n| lie || (first..last).contains(n))
            .collect())
    }
}

export_connector!(Scripted);
