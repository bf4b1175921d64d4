//! # ledgerbridge-sdk
//!
//! Everything a connector plugin needs, in one dependency: the bindings of the
//! `ledgerbridge:connector` contract (`wit/connector.wit`), the [`Connector`]
//! trait to implement, the [`export_connector!`] macro, a small HTTP client
//! over `wasi:http` ([`http`]), logging into the host ([`log`]), and money and
//! date helpers ([`money`], [`dates`]).
//!
//! ```ignore
//! use ledgerbridge_sdk::*;
//!
//! struct MyErp;
//!
//! impl Connector for MyErp {
//!     fn describe() -> Descriptor { /* name, version, capabilities, settings, limits */ }
//!     fn lookup_bill(ctx: &Context, bill: &Bill, known_id: Option<&str>) -> Result<Option<Entry>, ConnectorError> { .. }
//!     fn create_bill(ctx: &Context, bill: &Bill) -> Result<Entry, ConnectorError> { .. }
//!     fn update_bill(ctx: &Context, entry: &Entry, bill: &Bill) -> Result<Entry, ConnectorError> { .. }
//! }
//!
//! export_connector!(MyErp);
//! ```
//!
//! The contract's operations take batches of items. A connector that
//! implements only the single-item methods above gets batches for free: the
//! SDK calls them once per item. One whose ERP takes many elements per
//! request overrides the batch methods too ([`Connector::create_bills`] and
//! the rest); see [`Connector`].
//!
//! Build the crate as a `cdylib` with `cargo build --target wasm32-wasip2`;
//! the result is a component the host loads.

// Lets the generated bindings and the export macro name this crate by its
// public name, so plugin crates need no direct wit-bindgen dependency.
extern crate self as ledgerbridge_sdk;

#[cfg(feature = "guest")]
pub mod bindings;
#[cfg(feature = "guest")]
mod connector;
#[cfg(feature = "guest")]
mod context;
pub mod dates;
#[cfg(feature = "guest")]
mod error;
#[cfg(feature = "guest")]
pub mod http;
#[cfg(feature = "guest")]
pub mod log;
pub mod money;
#[cfg(feature = "guest")]
mod slots;

#[cfg(feature = "guest")]
pub use bindings::ledgerbridge::connector::ledger::{
    Amount, Bill, BillCreate, BillLine, BillLookup, BillStatus, BillUpdate, CallError,
    Capabilities, ConnectorError, Context, Date, Descriptor, DuplicateCheck, Entry, EntryState,
    Limits, Payment, PaymentCreate, PaymentLookup, PaymentMethod, PaymentUpdate, RateLimit,
    Setting, SettingSpec, Tracking, ValidationError, Vendor,
};
#[cfg(feature = "guest")]
pub use connector::{Connector, Results};
#[cfg(feature = "guest")]
pub use slots::{Slots, only};

/// The contract version this SDK builds plugins for (`wit/connector.wit`).
pub const CONTRACT_VERSION: &str = "0.2.0";

#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// Exports a type implementing [`Connector`] as the plugin's
/// `ledgerbridge:connector/connector` interface. Call it once per plugin crate.
#[cfg(feature = "guest")]
#[macro_export]
macro_rules! export_connector {
    ($ty:ident) => {
        $crate::bindings::__export_plugin!($ty with_types_in $crate::bindings);
    };
}
