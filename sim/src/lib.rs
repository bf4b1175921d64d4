//! Local simulators of the ERPs ledgerbridge connects to: test doubles of
//! the real services (not of ledgerbridge), faithful to
//! `shared/reference/ERP_FACTS.md` and to each ERP's official API
//! description. The tests run against them, `ledgerbridge demo --erp xero`
//! starts one, and integrators run them with `ledgerbridge-sim`.

mod common;
mod money;
mod oauth;
pub mod openapi;
pub mod quickbooks;
pub mod reference;
pub mod xero;
pub mod xsd;
