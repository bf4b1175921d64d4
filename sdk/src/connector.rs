use crate::bindings::exports::ledgerbridge::connector::connector::Guest;
use crate::{Bill, ConnectorError, Context, Descriptor, Entry, Payment};

/// What a connector plugin implements: one ERP's translation of bill entries
/// and payment entries. See `wit/connector.wit` for the meaning of each call.
///
/// Only bills are required. The payment calls and `check_numbers_in_use`
/// have defaults that refuse; a connector that implements them declares so in
/// [`Descriptor::capabilities`], and the host calls only what is declared.
pub trait Connector: 'static {
    /// Name, version, capabilities and the settings the connector reads.
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
}

// The generated trait takes owned values; the SDK trait takes references so
// implementations read naturally. This adapter is the only glue.
impl<T: Connector> Guest for T {
    fn describe() -> Descriptor {
        T::describe()
    }
    fn lookup_bill(
        ctx: Context,
        bill: Bill,
        known_id: Option<String>,
    ) -> Result<Option<Entry>, ConnectorError> {
        T::lookup_bill(&ctx, &bill, known_id.as_deref())
    }
    fn create_bill(ctx: Context, bill: Bill) -> Result<Entry, ConnectorError> {
        T::create_bill(&ctx, &bill)
    }
    fn update_bill(ctx: Context, entry: Entry, bill: Bill) -> Result<Entry, ConnectorError> {
        T::update_bill(&ctx, &entry, &bill)
    }
    fn lookup_payment(
        ctx: Context,
        payment: Payment,
        known_id: Option<String>,
    ) -> Result<Option<Entry>, ConnectorError> {
        T::lookup_payment(&ctx, &payment, known_id.as_deref())
    }
    fn create_payment(ctx: Context, payment: Payment) -> Result<Entry, ConnectorError> {
        T::create_payment(&ctx, &payment)
    }
    fn update_payment(
        ctx: Context,
        entry: Entry,
        payment: Payment,
    ) -> Result<Entry, ConnectorError> {
        T::update_payment(&ctx, &entry, &payment)
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
