//! The Xero connector: bills as Xero invoices of `Type: ACCPAY`, payments
//! as Xero payments, in the wire format of the Xero Accounting API 2.0.
//! Every operation takes a batch (contract 0.2): a batch of creates is one
//! `PUT /Invoices?summarizeErrors=false`, with a result per element. See
//! README.md for the mapping of Xero's answers to the contract.

mod answers;
mod api;
mod bills;
mod payments;
mod wire;

use ledgerbridge_sdk::*;

struct XeroConnector;

impl Connector for XeroConnector {
    fn describe() -> Descriptor {
        Descriptor {
            name: "xero".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            // Xero cannot modify a payment (only delete it): a changed
            // payment is reported, never replaced.
            capabilities: Capabilities::PAYMENTS,
            settings: vec![
                SettingSpec {
                    name: "tenant-id".into(),
                    description: "the Xero organisation's tenant id (sent as `xero-tenant-id`)"
                        .into(),
                    required: true,
                },
                SettingSpec {
                    name: "api-url".into(),
                    description: format!(
                        "the Accounting API's base URL; {} unless you run a simulator",
                        api::DEFAULT_API_URL
                    ),
                    required: false,
                },
                SettingSpec {
                    name: "document-url".into(),
                    description: format!(
                        "the bill's `Url` in Xero (\"Go to …\"), with {{document-id}}: the link back to the AP product and how lookup finds the bill again; default {}",
                        wire::DEFAULT_DOCUMENT_URL
                    ),
                    required: false,
                },
            ],
            // Xero's limits per organisation (calls at once, a minute, a
            // day). A request with many elements is one call; Xero asks for
            // batches of up to 50.
            limits: Limits {
                calls_at_once: 5,
                calls_per_minute: Some(60),
                calls_per_day: Some(5000),
                lookups_per_call: 50,
                creates_per_call: 50,
                updates_per_call: 50,
            },
        }
    }

    fn lookup_bill(
        ctx: &Context,
        bill: &Bill,
        known_id: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        only(bills::lookup(
            ctx,
            &[BillLookup {
                key: ctx.idempotency_key.clone(),
                bill: bill.clone(),
                known_id: known_id.map(str::to_string),
            }],
        ))
    }

    fn create_bill(ctx: &Context, bill: &Bill) -> Result<Entry, ConnectorError> {
        only(bills::create(
            ctx,
            &[BillCreate {
                key: ctx.idempotency_key.clone(),
                bill: bill.clone(),
            }],
        ))
    }

    fn update_bill(ctx: &Context, entry: &Entry, bill: &Bill) -> Result<Entry, ConnectorError> {
        only(bills::update(
            ctx,
            &[BillUpdate {
                key: ctx.idempotency_key.clone(),
                entry: entry.clone(),
                bill: bill.clone(),
            }],
        ))
    }

    fn lookup_payment(
        ctx: &Context,
        payment: &Payment,
        known_id: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        only(payments::lookup(
            ctx,
            &[PaymentLookup {
                key: ctx.idempotency_key.clone(),
                payment: payment.clone(),
                known_id: known_id.map(str::to_string),
            }],
        ))
    }

    fn create_payment(ctx: &Context, payment: &Payment) -> Result<Entry, ConnectorError> {
        only(payments::create(
            ctx,
            &[PaymentCreate {
                key: ctx.idempotency_key.clone(),
                payment: payment.clone(),
            }],
        ))
    }

    fn lookup_bills(ctx: &Context, items: &[BillLookup]) -> Results<Option<Entry>> {
        bills::lookup(ctx, items)
    }

    fn create_bills(ctx: &Context, items: &[BillCreate]) -> Results<Entry> {
        bills::create(ctx, items)
    }

    fn update_bills(ctx: &Context, items: &[BillUpdate]) -> Results<Entry> {
        bills::update(ctx, items)
    }

    fn lookup_payments(ctx: &Context, items: &[PaymentLookup]) -> Results<Option<Entry>> {
        payments::lookup(ctx, items)
    }

    fn create_payments(ctx: &Context, items: &[PaymentCreate]) -> Results<Entry> {
        payments::create(ctx, items)
    }
}

export_connector!(XeroConnector);
