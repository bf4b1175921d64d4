//! # ledgerbridge
//!
//! Keeps an accounts-payable product's vendor bills, and the payments made
//! against them, in step with each customer's ERP. Every ERP is reached
//! through a connector plugin: a sandboxed WebAssembly component implementing
//! the `ledgerbridge:connector` contract (`wit/connector.wit`).
//!
//! - [`runtime`]: loads plugins, checks their contract version, and runs each
//!   operation in a fresh, limited sandbox.
//! - [`builtin`]: the connectors built into the binary.

pub mod builtin;
pub mod runtime;
