use crate::bindings::exports::ledgerbridge::connector::connector::Guest;
use crate::{
    Bill, BillCreate, BillLookup, BillUpdate, CallError, ConnectorError, Context, Descriptor,
    Entry, Payment, PaymentCreate, PaymentLookup, PaymentUpdate,
};

/// Each item's result, or the call's error (see `wit/connector.wit`).
pub type Results<T> = Result<Vec<Result<T, ConnectorError>>, CallError>;

/// What a connector plugin implements: one ERP's translation of bill entries
/// and payment entries. See `wit/connector.wit` for the meaning of each call.
///
/// The contract's operations take a list of items. Implement the
/// single-item methods (`lookup_bill`, `create_bill`, ...) and the SDK
/// answers each batch by calling them once per item, each with the item's
/// own idempotency key in `ctx`: correct, one ERP request per item. A
/// connector whose ERP takes many elements per request (Xero's
/// `PUT /Invoices`, QuickBooks' `POST /batch`) also overrides the batch
/// methods (`create_bills`, ...) to send one request per batch, and raises
/// the items per call in [`Descriptor::limits`].
///
/// Only bills are required. The payment calls and `check_numbers_in_use`
/// have defaults that refuse; a connector that implements them declares so in
/// [`Descriptor::capabilities`], and the host calls only what is declared.
///
/// ```ignore
/// impl Connector for MyErp {
///     // ... describe, lookup_bill, create_bill, update_bill ...
///
///     // One request for the whole batch; one result per item, in order.
///     fn create_bills(ctx: &Context, items: &[BillCreate]) -> Results<Entry> {
///         let answer = my_erp::put_invoices(ctx, items)?; // a CallError when nothing was done
///         Ok(items.iter().zip(answer.elements).map(|(_, e)| e.into_entry()).collect())
///     }
/// }
/// ```
pub trait Connector: 'static {
    /// Name, version, capabilities, settings and limits.
    fn describe() -> Descriptor;

    /// Finds the bill entry by `known_id`, else by `bill.document_id`.
    fn lookup_bill(
        ctx: &Context,
        bill: &Bill,
        known_id: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError>;

    /// Creates the bill entry.
    fn create_bill(ctx: &Context, bill: &Bill) -> Result<Entry, ConnectorError>;

    /// Makes an existing bill entry match `bill`.
    fn update_bill(ctx: &Context, entry: &Entry, bill: &Bill) -> Result<Entry, ConnectorError>;

    /// Finds the payment entry by `known_id`, else by `payment.payment_id`.
    fn lookup_payment(
        _ctx: &Context,
        _payment: &Payment,
        _known_id: Option<&str>,
    ) -> Result<Option<Entry>, ConnectorError> {
        Err(ConnectorError::unsupported("lookup-payment"))
    }

    /// Creates the payment entry.
    fn create_payment(_ctx: &Context, _payment: &Payment) -> Result<Entry, ConnectorError> {
        Err(ConnectorError::unsupported("create-payment"))
    }

    /// Makes an existing payment entry match `payment`.
    fn update_payment(
        _ctx: &Context,
        _entry: &Entry,
        _payment: &Payment,
    ) -> Result<Entry, ConnectorError> {
        Err(ConnectorError::unsupported("update-payment"))
    }

    /// The check numbers in `first .. first + count` the ERP already uses.
    fn check_numbers_in_use(
        _ctx: &Context,
        _bank_account: &str,
        _first: u64,
        _count: u32,
    ) -> Result<Vec<u64>, ConnectorError> {
        Err(ConnectorError::unsupported("check-numbers-in-use"))
    }

    /// `lookup-bills`: by default, [`Connector::lookup_bill`] per item.
    fn lookup_bills(ctx: &Context, items: &[BillLookup]) -> Results<Option<Entry>> {
        Ok(each(
            ctx,
            items,
            |i| &i.key,
            |ctx, i| Self::lookup_bill(ctx, &i.bill, i.known_id.as_deref()),
        ))
    }

    /// `create-bills`: by default, [`Connector::create_bill`] per item.
    fn create_bills(ctx: &Context, items: &[BillCreate]) -> Results<Entry> {
        Ok(each(
            ctx,
            items,
            |i| &i.key,
            |ctx, i| Self::create_bill(ctx, &i.bill),
        ))
    }

    /// `update-bills`: by default, [`Connector::update_bill`] per item.
    fn update_bills(ctx: &Context, items: &[BillUpdate]) -> Results<Entry> {
        Ok(each(
            ctx,
            items,
            |i| &i.key,
            |ctx, i| Self::update_bill(ctx, &i.entry, &i.bill),
        ))
    }

    /// `lookup-payments`: by default, [`Connector::lookup_payment`] per item.
    fn lookup_payments(ctx: &Context, items: &[PaymentLookup]) -> Results<Option<Entry>> {
        Ok(each(
            ctx,
            items,
            |i| &i.key,
            |ctx, i| Self::lookup_payment(ctx, &i.payment, i.known_id.as_deref()),
        ))
    }

    /// `create-payments`: by default, [`Connector::create_payment`] per item.
    fn create_payments(ctx: &Context, items: &[PaymentCreate]) -> Results<Entry> {
        Ok(each(
            ctx,
            items,
            |i| &i.key,
            |ctx, i| Self::create_payment(ctx, &i.payment),
        ))
    }

    /// `update-payments`: by default, [`Connector::update_payment`] per item.
    fn update_payments(ctx: &Context, items: &[PaymentUpdate]) -> Results<Entry> {
        Ok(each(
            ctx,
            items,
            |i| &i.key,
            |ctx, i| Self::update_payment(ctx, &i.entry, &i.payment),
        ))
    }
}

/// Runs `one` for each item with the item's key in its context. Once the
/// ERP throttles or refuses the credentials, the items after it are not
/// sent (each would fail the same way and spend a call): they answer that
/// error too, and the host retries them.
fn each<I, T>(
    ctx: &Context,
    items: &[I],
    key: impl Fn(&I) -> &String,
    one: impl Fn(&Context, &I) -> Result<T, ConnectorError>,
) -> Vec<Result<T, ConnectorError>> {
    let mut stop: Option<ConnectorError> = None;
    items
        .iter()
        .map(|item| {
            if let Some(e) = &stop {
                return Err(e.clone());
            }
            let r = one(&ctx.for_item(key(item)), item);
            if let Err(e @ (ConnectorError::RateLimited(_) | ConnectorError::Unauthorized(_))) = &r
            {
                stop = Some(e.clone());
            }
            r
        })
        .collect()
}

// The generated trait takes owned values; the SDK trait takes references so
// implementations read naturally. This adapter is the only glue.
impl<T: Connector> Guest for T {
    fn describe() -> Descriptor {
        T::describe()
    }
    fn lookup_bills(ctx: Context, items: Vec<BillLookup>) -> Results<Option<Entry>> {
        T::lookup_bills(&ctx, &items)
    }
    fn create_bills(ctx: Context, items: Vec<BillCreate>) -> Results<Entry> {
        T::create_bills(&ctx, &items)
    }
    fn update_bills(ctx: Context, items: Vec<BillUpdate>) -> Results<Entry> {
        T::update_bills(&ctx, &items)
    }
    fn lookup_payments(ctx: Context, items: Vec<PaymentLookup>) -> Results<Option<Entry>> {
        T::lookup_payments(&ctx, &items)
    }
    fn create_payments(ctx: Context, items: Vec<PaymentCreate>) -> Results<Entry> {
        T::create_payments(&ctx, &items)
    }
    fn update_payments(ctx: Context, items: Vec<PaymentUpdate>) -> Results<Entry> {
        T::update_payments(&ctx, &items)
    }
    fn check_numbers_in_use(
        ctx: Context,
        bank_account: String,
        first: u64,
        count: u32,
    ) -> Result<Vec<u64>, ConnectorError> {
        T::check_numbers_in_use(&ctx, &bank_account, first, count)
    }
}
