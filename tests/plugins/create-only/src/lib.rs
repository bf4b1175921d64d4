//! A connector whose ERP, like Xero, can create payment entries but never
//! modify them: it declares `payments` without `update-payments`. Stateless:
//! an entry the host names by id exists (the ERP has what it created), and
//! setting `lookup-payment` = `found` makes the payment's entry exist when
//! looked up by reference.

use ledgerbridge_sdk::*;

struct CreateOnly;

fn entry(id: String, total: i64) -> Entry {
    Entry {
        id,
        version: None,
        state: EntryState::Open,
        total: Some(total),
    }
}

impl Connector for CreateOnly {
    fn describe() -> Descriptor {
        Descriptor {
            name: "create-only".into(),
            version: "0.1.0".into(),
            capabilities: Capabilities::PAYMENTS,
            settings: vec![SettingSpec {
                name: "lookup-payment".into(),
                description: "`found`: lookup-payment finds the entry".into(),
                required: false,
            }],
            limits: Limits {
                // One ERP request per item, and no batch endpoint: one item a call.
                lookups_per_call: 1,
                creates_per_call: 1,
                updates_per_call: 1,
                ..Limits::default()
            },
        }
    }

    fn lookup_bill(
        _: &Context,
        bill: &Bill,
        known: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        Ok(known.map(|id| entry(id.to_string(), bill.total)))
    }

    fn create_bill(_: &Context, bill: &Bill) -> Result<Entry, ConnectorError> {
        Ok(entry(format!("B-{}", bill.document_id), bill.total))
    }

    fn update_bill(_: &Context, e: &Entry, bill: &Bill) -> Result<Entry, ConnectorError> {
        Ok(entry(e.id.clone(), bill.total))
    }

    fn lookup_payment(
        ctx: &Context,
        p: &Payment,
        known: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        if let Some(id) = known {
            return Ok(Some(entry(id.to_string(), p.amount)));
        }
        Ok((ctx.setting("lookup-payment") == Some("found"))
            .then(|| entry(format!("P-{}", p.payment_id), p.amount)))
    }

    fn create_payment(_: &Context, p: &Payment) -> Result<Entry, ConnectorError> {
        log::info(format!("created payment P-{}", p.payment_id));
        Ok(entry(format!("P-{}", p.payment_id), p.amount))
    }
}

export_connector!(CreateOnly);
