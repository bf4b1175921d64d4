//! The QuickBooks Online connector: bills as `Bill`, payments as
//! `BillPayment` (checks with their number in `DocNumber`), in the JSON
//! wire format of the QuickBooks Online Accounting API v3. Every operation
//! takes a batch (contract 0.2) and goes through `POST /batch`, 30 items a
//! request, with a result per `bId`. See README.md for the mapping of
//! QuickBooks' answers to the contract.

mod api;
mod bills;
mod faults;
mod payments;
mod vendors;
mod wire;

use ledgerbridge_sdk::*;

struct QuickBooksConnector;

impl Connector for QuickBooksConnector {
    fn describe() -> Descriptor {
        Descriptor {
            name: "quickbooks".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities::PAYMENTS
                | Capabilities::UPDATE_PAYMENTS
                | Capabilities::CHECK_NUMBERS_IN_USE,
            settings: vec![
                SettingSpec {
                    name: "realm-id".into(),
                    description: "the QuickBooks company's id (realmId)".into(),
                    required: true,
                },
                SettingSpec {
                    name: "api-url".into(),
                    description: format!(
                        "the API's host; {} unless you use Intuit's sandbox (https://sandbox-quickbooks.api.intuit.com) or a simulator",
                        api::DEFAULT_API_URL
                    ),
                    required: false,
                },
                SettingSpec {
                    name: "create-vendors".into(),
                    description: "true: a vendor QuickBooks does not have (by DisplayName, when mappings.vendors does not map it) is created; false (default): it is a validation error of `vendor`".into(),
                    required: false,
                },
                SettingSpec {
                    name: "minor-version".into(),
                    description: format!(
                        "the API minor version sent on every call; default {}",
                        api::MINOR_VERSION
                    ),
                    required: false,
                },
            ],
            // QuickBooks' limits per company: 10 requests at once, 500 a
            // minute, 40 batches a minute, 30 items a batch, and each item
            // may count against the 500. Every request this connector makes
            // is a batch of at most 12 items, so 40 a minute keep under both
            // (480 items). A lookup of 30 bills is one or two query items.
            limits: Limits {
                calls_at_once: 10,
                calls_per_minute: Some(40),
                calls_per_day: None,
                lookups_per_call: 30,
                creates_per_call: api::BATCH_ITEMS as u32,
                updates_per_call: api::BATCH_ITEMS as u32,
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

    fn update_payment(
        ctx: &Context,
        entry: &Entry,
        payment: &Payment,
    ) -> Result<Entry, ConnectorError> {
        only(payments::update(
            ctx,
            &[PaymentUpdate {
                key: ctx.idempotency_key.clone(),
                entry: entry.clone(),
                payment: payment.clone(),
            }],
        ))
    }

    fn check_numbers_in_use(
        ctx: &Context,
        bank_account: &str,
        first: u64,
        count: u32,
    ) -> Result<Vec<u64>, ConnectorError> {
        payments::check_numbers_in_use(ctx, bank_account, first, count)
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

    fn update_payments(ctx: &Context, items: &[PaymentUpdate]) -> Results<Entry> {
        payments::update(ctx, items)
    }
}

export_connector!(QuickBooksConnector);
